"""The five city layouts, one function each, drawn on a scene of :mod:`plinknet.synthetic.render`."""

from __future__ import annotations

import itertools
import math

import numpy as np

from plinknet.synthetic.render import ASPHALT, CONCRETE, COURTYARD, YARD, _noise, _rect, _resample, _Scene


def _gridtown(scene: _Scene, rng):
    """Chicago-like: a street grid; perimeter blocks with courtyards, row houses, warehouses."""
    scene.angle = 0.0 if rng.random() < 0.6 else rng.uniform(-math.pi / 4, math.pi / 4)
    e = scene.extent
    lo, hi = -0.25 * e - 150, 1.25 * e + 150  # the rotated grid must still cover the tile

    def cuts(block):
        edges, x = [], lo + rng.uniform(0, block[1])
        while x < hi:
            w = rng.uniform(12, 20)
            edges.append((x, w))
            x += w + rng.uniform(*block)
        return edges

    xs, ys = cuts((70, 130)), cuts((60, 110))
    for x, w in xs:
        scene.road([(x, lo), (x, hi)], w - 5, kerb=2.5)
    for y, w in ys:
        scene.road([(lo, y), (hi, y)], w - 5, kerb=2.5)
    for (x0, wx0), (x1, wx1) in itertools.pairwise(xs):
        for (y0, wy0), (y1, wy1) in itertools.pairwise(ys):
            a, b = x0 + wx0 / 2 + 1, x1 - wx1 / 2 - 1  # the block between two streets each way
            c, d = y0 + wy0 / 2 + 1, y1 - wy1 / 2 - 1
            if b - a < 20 or d - c < 20 or not scene.inside((a + b) / 2, (c + d) / 2, 120):
                continue
            kind = rng.choice(
                ["perimeter", "rows", "warehouse", "parking", "park"], p=[0.3, 0.3, 0.2, 0.1, 0.1]
            )
            _grid_block(scene, rng, kind, a, b, c, d)
            for x in np.arange(a + 4, b - 2, rng.uniform(8, 14)):  # street trees
                for y in (c - 2, d + 2):
                    if rng.random() < 0.35:
                        scene.tree(x, y, rng.uniform(2.5, 4.5))


def _court(scene, rng, paving, lawn_chance: float, noise: float, blotch: float) -> int:
    """An inner courtyard's surface: a lawn (no look-alike) or paving, which looks like a flat roof."""
    paving = scene.jitter(paving, 0.1)
    grass = rng.random() < lawn_chance
    return scene.surface(paving, noise=noise, blotch=blotch, ground=grass, lookalike=0 if grass else COURTYARD)


def _grid_block(scene, rng, kind, a, b, c, d):
    cx, cy, lx, ly = (a + b) / 2, (c + d) / 2, b - a, d - c

    def palette():
        return rng.choice(["grey", "dark", "white", "brown"], p=[0.35, 0.3, 0.2, 0.15])

    if kind == "perimeter":
        depth = rng.uniform(11, 17)
        yard = _court(scene, rng, CONCRETE, lawn_chance=0.4, noise=0.05, blotch=0.08)
        scene.quad(cx, cy, lx, ly, 0, yard)
        for side in range(4):
            horizontal = side < 2
            span = lx if horizontal else ly - 2 * depth
            x = a if horizontal else (a + depth / 2 if side == 2 else b - depth / 2)
            pos = a if horizontal else c + depth
            end = pos + span
            while pos < end - 3:
                seg = min(end - pos, rng.uniform(12, 40))
                mid = pos + seg / 2
                h = rng.uniform(8, 20)
                if horizontal:
                    y = c + depth / 2 if side == 0 else d - depth / 2
                    scene.building(mid, y, seg, depth, 0, roof="flat", palette=palette(), height=h)
                else:
                    scene.building(
                        x, mid, seg, depth, math.pi / 2, roof="flat", palette=palette(), height=h
                    )
                pos += seg
        for _ in range(rng.integers(0, 4)):
            scene.tree(
                rng.uniform(a + depth + 3, b - depth - 3),
                rng.uniform(c + depth + 3, d - depth - 3),
                rng.uniform(2.5, 5),
            )
        for _ in range(rng.integers(0, 4)):
            scene.car(
                rng.uniform(a + depth + 3, b - depth - 3),
                rng.uniform(c + depth + 3, d - depth - 3),
                rng.uniform(0, math.pi),
            )
    elif kind == "rows":
        alley = 5.0
        scene.quad(
            cx, cy, lx, alley, 0, scene.surface(scene.jitter(ASPHALT), noise=0.05, blotch=0.1)
        )
        lot = rng.uniform(7.5, 10)
        for front, sign in ((c, 1), (d, -1)):
            for x in np.arange(a + lot / 2, b - lot / 2, lot):
                if rng.random() < 0.08:
                    continue
                deep, wide = rng.uniform(12, 20), lot - rng.uniform(1.2, 2.5)
                setback = rng.uniform(2, 5)
                roof = rng.choice(["flat", "gable"], p=[0.6, 0.4])
                scene.building(
                    x,
                    front + sign * (setback + deep / 2),
                    deep,
                    wide,
                    math.pi / 2,
                    roof=roof,
                    palette=palette(),
                    height=rng.uniform(6, 11),
                )
                if rng.random() < 0.5:  # garage on the alley
                    g = rng.uniform(5, 6.5)
                    scene.building(
                        x,
                        cy - sign * (alley / 2 + g / 2 + 0.5),
                        g,
                        g,
                        0,
                        roof="flat",
                        palette="grey",
                        height=3,
                        clutter=False,
                    )
                if rng.random() < 0.5:
                    scene.tree(
                        x + rng.uniform(-3, 3),
                        front + sign * (setback + deep + 3 + rng.uniform(0, 6)),
                        rng.uniform(2, 5),
                    )
    elif kind == "warehouse":
        scene.parking(cx, cy, lx, ly, 0, fill=0.4)
        wl, ww = rng.uniform(0.6, 0.95) * lx, rng.uniform(0.5, 0.85) * ly
        scene.building(
            a + wl / 2 + 1,
            c + ww / 2 + 1,
            wl,
            ww,
            0,
            roof="flat",
            palette=rng.choice(["white", "metal", "grey"]),
            height=rng.uniform(7, 12),
        )
    elif kind == "parking":
        scene.parking(cx, cy, lx, ly, 0, fill=rng.uniform(0.3, 0.9))
    else:  # park
        for _ in range(int(lx * ly / 120)):
            scene.tree(rng.uniform(a, b), rng.uniform(c, d), rng.uniform(2.5, 6))
        scene.line([(a, c), (b, d)], 3, scene.surface(scene.jitter(CONCRETE), noise=0.04))


def _curve(rng, x0, y0, angle, length, wiggle):
    """A gently winding polyline of the given length starting at (x0, y0)."""
    t = np.arange(0, length, 4.0)
    phase, wavelength = rng.uniform(0, 2 * math.pi), rng.uniform(150, 400)
    bend = wiggle * np.sin(2 * np.pi * t / wavelength + phase)
    c, s = math.cos(angle), math.sin(angle)
    return list(zip(x0 + t * c - bend * s, y0 + t * s + bend * c))


def _distance_to(pts, lines):
    """Distance from each point to the nearest polyline vertex (polylines sampled every 4 m)."""
    verts = np.concatenate([np.asarray(line) for line in lines])
    p = np.asarray(pts)
    return np.sqrt(((p[:, None, :] - verts[None]) ** 2).sum(-1)).min(1)


def _along_roads(rng, roads, spacing, house):
    """Call ``house(x, y, angle, side)`` at lots spaced along both sides of each road."""
    for line in roads:
        pts = np.asarray(line)
        for i in range(1, len(pts) - 1, max(1, int(spacing / 4))):
            tx, ty = pts[i + 1] - pts[i - 1]
            angle = math.atan2(ty, tx)
            for side in (-1, 1):
                house(pts[i][0], pts[i][1], angle, side)


def _suburbia(scene: _Scene, rng):
    """Austin-like: winding streets, detached houses with gardens, pools, sheds and many trees."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi, math.pi)
    spacing = rng.uniform(75, 95)
    roads = [
        _curve(rng, -0.3 * e, y, rng.normal(0, 0.1), 1.6 * e, rng.uniform(5, 25))
        for y in np.arange(-0.2 * e + rng.uniform(0, spacing), 1.2 * e, spacing)
    ]
    roads.append(_curve(rng, rng.uniform(0.2, 0.8) * e, -0.3 * e, math.pi / 2, 1.6 * e, 15))
    width = rng.uniform(7, 9)
    for line in roads:
        scene.road(line, width, kerb=0.6, marking=rng.random() < 0.3)
    sites = _shopping_sites(scene, rng)

    def on_site(x, y, margin):
        return any(abs(x - a) < u + margin and abs(y - b) < v + margin for a, b, u, v in sites)

    def house(x, y, angle, side):
        nx, ny = -math.sin(angle), math.cos(angle)
        w, l = rng.uniform(9, 14), rng.uniform(12, 22)
        setback = width / 2 + rng.uniform(6, 11)
        hx, hy = x + side * nx * (setback + w / 2), y + side * ny * (setback + w / 2)
        if not scene.inside(hx, hy, 30) or not scene.free(hx, hy, l / 2 + 2):
            return
        if _distance_to([(hx, hy)], roads)[0] < width / 2 + w / 2 + 3:
            return
        if on_site(hx, hy, l / 2 + 2):
            return
        scene.occupy(hx, hy, l / 2 + 2)
        off = l / 2 - 2  # driveway to one end of the house
        dx, dy = x + off * math.cos(angle), y + off * math.sin(angle)
        scene.line(
            [(dx, dy), (dx + side * nx * setback, dy + side * ny * setback)],
            3.5,
            scene.surface(scene.jitter(CONCRETE), noise=0.04),
        )
        roof = rng.choice(["hip", "gable", "flat"], p=[0.5, 0.4, 0.1])
        palette = rng.choice(["grey", "dark", "brown", "white"], p=[0.35, 0.3, 0.25, 0.1])
        house_id = scene.building(
            hx, hy, l, w, angle, roof=roof, palette=palette, height=rng.uniform(4, 7)
        )
        if rng.random() < 0.35:  # an extension or garage wing: part of the same building
            scene.building(
                hx + 0.4 * l * math.cos(angle) - side * nx * 0.2 * w,
                hy + 0.4 * l * math.sin(angle) - side * ny * 0.2 * w,
                rng.uniform(5, 8),
                rng.uniform(5, 8),
                angle + math.pi / 2,
                roof=roof,
                palette=palette,
                height=3.5,
                instance=house_id,
            )
        back = setback + w + rng.uniform(5, 9)
        bx, by = x + side * nx * back, y + side * ny * back
        along = rng.uniform(-0.3, 0.3) * l
        bx, by = bx + along * math.cos(angle), by + along * math.sin(angle)
        if on_site(bx, by, 6):
            pass  # the back of this garden is the neighbouring car park
        elif rng.random() < 0.25:
            scene.pool(bx, by, rng.uniform(6, 10), rng.uniform(3, 5), angle + rng.normal(0, 0.1))
        elif rng.random() < 0.4:  # shed
            s = rng.uniform(3, 5)
            scene.building(
                bx,
                by,
                s,
                s * rng.uniform(0.7, 1),
                angle,
                roof=rng.choice(["flat", "gable"]),
                palette=rng.choice(["metal", "grey", "white"]),
                height=2.5,
                clutter=False,
            )
        for _ in range(rng.poisson(4)):  # yard trees, some over the roof
            r = rng.uniform(2.5, 7.0)
            t = rng.uniform(-0.2, 1.6) * back
            a = rng.uniform(-0.8, 0.8) * spacing / 2
            scene.tree(
                x + side * nx * t + a * math.cos(angle),
                y + side * ny * t + a * math.sin(angle),
                r,
                "bare" if rng.random() < 0.3 else "broadleaf",
            )

    _along_roads(rng, roads, 24, house)


def _shopping_sites(scene: _Scene, rng) -> list[tuple[float, float, float, float]]:
    """Big flat-roofed stores and schools on their car parks, across the streets they open on.

    They are the suburb's large buildings (1,300-5,000 m^2) and its parking-lot look-alikes,
    one or two per 300 m tile. Drawn before the houses, which keep off them. Returns each
    site as (x, y, half length, half depth) in the layout frame, where streets run along x.
    """
    e, sites = scene.extent, []
    for _ in range(rng.poisson(1.5 * (e / 300) ** 2)):
        x, y = rng.uniform(0.2, 0.8, 2) * e
        length, depth = rng.uniform(80, 130), rng.uniform(55, 75)
        if any(abs(x - a) < length / 2 + u + 10 and abs(y - b) < depth / 2 + v + 10 for a, b, u, v in sites):
            continue
        sites.append((x, y, length / 2, depth / 2))
        scene.parking(x, y, length, depth, 0.0, fill=rng.uniform(0.3, 0.7))
        wl, wd = rng.uniform(0.45, 0.75) * length, rng.uniform(0.5, 0.7) * depth
        back = rng.choice([-1, 1]) * (depth - wd) / 2  # the store at the back, cars in front
        scene.building(
            x + rng.uniform(-0.5, 0.5) * (length - wl),
            y + back,
            wl,
            wd,
            0.0,
            roof="flat",
            palette=rng.choice(["white", "grey", "metal"]),
            height=rng.uniform(6, 10),
        )
    return sites


def _farmland(scene: _Scene, rng):
    """Kitsap-like: patchwork fields, a country road, farmyards with barns and sheds."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi / 3, math.pi / 3)
    lo, hi = -0.3 * e, 1.3 * e
    x = lo
    crops = [
        (0.40, 0.47, 0.26),
        (0.56, 0.52, 0.34),
        (0.47, 0.39, 0.30),
        (0.34, 0.42, 0.22),
        (0.62, 0.58, 0.44),
    ]
    while x < hi:
        w = rng.uniform(40, 120)
        y = lo
        while y < hi:
            ln = rng.uniform(60, 200)
            if scene.inside(x + w / 2, y + ln / 2, 150) and rng.random() < 0.85:
                colour = scene.jitter(crops[rng.integers(len(crops))], 0.08)
                rows = (1.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0)
                c, s = math.cos(scene.angle), math.sin(scene.angle)
                stripe_dir = (rows[0] * c - rows[1] * s, rows[0] * s + rows[1] * c)
                field = scene.surface(
                    colour,
                    noise=0.04,
                    blotch=0.06,
                    stripe=rng.uniform(0.03, 0.12),
                    stripe_dir=stripe_dir,
                    stripe_period=rng.uniform(2.5, 8),
                )
                scene.quad(x + w / 2, y + ln / 2, w - 3, ln - 3, 0, field)
            y += ln
        x += w
    road = _curve(rng, lo, rng.uniform(0.2, 0.8) * e, rng.normal(0, 0.2), hi - lo, 20)
    scene.road(road, 6.0, kerb=0, marking=True)
    track = scene.surface(scene.jitter((0.58, 0.53, 0.45)), noise=0.08, blotch=0.1)
    for _ in range(rng.integers(1, 3)):
        scene.line(
            _curve(rng, rng.uniform(0, e), lo, math.pi / 2 + rng.normal(0, 0.3), hi - lo, 10),
            3.0,
            track,
        )
    for _ in range(rng.integers(4, 7)):
        _farmyard(scene, rng, *rng.uniform(0.1, 0.9, 2) * e)
    for x, y in _resample(road, 40):  # houses along the road
        if rng.random() < 0.3:
            angle = rng.uniform(0, math.pi)
            scene.building(
                x + rng.choice([-1, 1]) * 15,
                y + rng.choice([-1, 1]) * 15,
                rng.uniform(10, 16),
                rng.uniform(8, 11),
                angle,
                roof=rng.choice(["gable", "hip"]),
                palette=rng.choice(["grey", "dark", "brown"]),
                height=6,
            )
    for _ in range(rng.integers(1, 4)):  # hedgerows
        line = _curve(rng, *rng.uniform(0, e, 2), rng.uniform(0, math.pi), rng.uniform(60, 200), 3)
        for x, y in _resample(line, 4):
            scene.tree(x, y, rng.uniform(2, 4))


def _farmyard(scene, rng, cx, cy):
    angle = rng.uniform(0, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    size = rng.uniform(50, 80)
    yard = scene.surface(scene.jitter((0.52, 0.50, 0.45)), noise=0.06, blotch=0.06, lookalike=YARD)
    scene.quad(cx, cy, size, size * 0.8, angle, yard)
    for _ in range(rng.integers(10, 16)):
        u, v = rng.uniform(-0.5, 0.5, 2) * size
        x, y = cx + u * c - v * s, cy + u * s + v * c
        big = rng.random() < 0.5
        ln = rng.uniform(25, 90) if big else rng.uniform(4, 12)
        wd = ln * rng.uniform(0.3, 0.6) if big else ln * rng.uniform(0.6, 1)
        if not scene.free(x, y, 0.3 * math.hypot(ln, wd)):
            continue
        scene.occupy(x, y, 0.3 * math.hypot(ln, wd))
        roof = (
            rng.choice(["gable", "flat"], p=[0.8, 0.2])
            if big
            else rng.choice(["gable", "flat", "hip"])
        )
        palette = rng.choice(["metal", "grey", "dark", "terracotta"], p=[0.4, 0.25, 0.15, 0.2])
        scene.building(
            x,
            y,
            ln,
            wd,
            angle + rng.choice([0, math.pi / 2]),
            roof=roof,
            palette=palette,
            height=rng.uniform(6, 11) if big else rng.uniform(2.5, 4),
            clutter=False,
        )
    if rng.random() < 0.6:  # silos: round, tall
        silo = scene.surface(
            scene.jitter((0.72, 0.73, 0.74)),
            height=14,
            building=True,
            noise=0.03,
            instance=scene.new_instance(),
        )
        scene.disc(cx + 0.45 * size * c, cy + 0.45 * size * s, rng.uniform(3, 5), silo)
    outline = _rect(cx, cy, size * 1.1, size * 0.9, angle)
    for x, y in _resample(outline + outline[:1], 6):
        if rng.random() < 0.4:  # a windbreak
            scene.tree(x, y, rng.uniform(3, 5))


def _alpine(scene: _Scene, rng):
    """Tyrol-like: meadows on slopes, forests, a winding road, a village of dark-roofed chalets."""
    e = scene.extent
    road = _curve(
        rng, -0.2 * e, rng.uniform(0.3, 0.7) * e, rng.normal(0, 0.3), 1.4 * e, rng.uniform(20, 50)
    )
    scene.road(road, 5.5, kerb=0, marking=False)
    village = np.asarray(road)[rng.integers(len(road) // 4, 3 * len(road) // 4)]
    spread = rng.uniform(40, 70)
    for k in range(rng.integers(70, 100)):
        x, y = village + rng.normal(0, spread, 2) if k % 4 else rng.uniform(0, e, 2)
        angle = rng.uniform(0, math.pi) if rng.random() < 0.3 else scene.angle + rng.normal(0, 0.2)
        big = rng.random() < 0.12
        ln, wd = (
            (rng.uniform(25, 45), rng.uniform(15, 22))
            if big
            else (rng.uniform(11, 20), rng.uniform(9, 14))
        )
        if not scene.free(x, y, 0.55 * ln) or _distance_to([(x, y)], [road])[0] < wd / 2 + 5:
            continue
        scene.occupy(x, y, 0.55 * ln)
        yard = scene.surface(
            scene.jitter((0.56, 0.54, 0.50)), noise=0.05, blotch=0.1, lookalike=YARD
        )
        scene.quad(x, y, ln + 6, wd + 6, angle, yard)
        scene.building(
            x,
            y,
            ln,
            wd,
            angle,
            roof="gable",
            palette=rng.choice(["dark", "brown", "grey"], p=[0.5, 0.35, 0.15]),
            height=rng.uniform(7, 10),
        )
        if rng.random() < 0.4:  # a woodshed or barn nearby
            sx, sy = x + rng.uniform(-1, 1) * ln, y + rng.uniform(-1, 1) * ln
            scene.occupy(sx, sy, 4)
            scene.building(
                sx,
                sy,
                rng.uniform(4, 7),
                rng.uniform(3, 5),
                angle,
                roof="gable",
                palette="brown",
                height=3,
                clutter=False,
            )
    forest = _noise(rng, 64, 12) > 0.6  # forest patches on a coarse grid, cleared around houses
    for i, j in zip(*np.nonzero(forest)):
        for _ in range(3):
            x, y = (j + rng.random()) * e / 64, (i + rng.random()) * e / 64
            if scene.free(x, y, 2):
                kind = "conifer" if rng.random() < 0.75 else "broadleaf"
                scene.tree(x, y, rng.uniform(2, 4), kind)


def _oldtown(scene: _Scene, rng):
    """Vienna-like: irregular dense blocks of terracotta roofs, narrow streets, inner courtyards."""
    e = scene.extent
    scene.angle = rng.uniform(-math.pi / 6, math.pi / 6)
    step = rng.uniform(60, 85)
    count = int(1.5 * e / step) + 2
    g = np.mgrid[0:count, 0:count].transpose(1, 2, 0)[..., ::-1] * step - 0.25 * e
    g = g + rng.normal(0, step * 0.12, g.shape)
    piazza = tuple(rng.integers(0, count - 1, 2))  # one block left open as a square
    for i in range(count - 1):
        for j in range(count - 1):
            quad = [g[i, j], g[i, j + 1], g[i + 1, j + 1], g[i + 1, j]]
            centre = np.mean(quad, axis=0)
            if not scene.inside(*centre, 100):
                continue
            street = rng.uniform(6, 11)
            quad = [tuple(p + (centre - p) * street / np.linalg.norm(centre - p)) for p in quad]
            if (i, j) == piazza:
                square = scene.surface(
                    scene.jitter((0.68, 0.64, 0.58)), noise=0.05, blotch=0.05, lookalike=COURTYARD
                )
                scene.polygon(quad, square)
                scene.building(
                    *centre, 40, 18, scene.angle + 0.05, roof="gable", palette="grey", height=20
                )
                continue
            if rng.random() < 0.06:  # about one palace per 300 m tile
                _old_palace(scene, rng, quad)
            else:
                _old_block(scene, rng, quad)


def _old_palace(scene, rng, quad):
    """One building round a whole block, with a paved courtyard: a large roof and its look-alike."""
    p00, p10, p11, p01 = (np.array(p) for p in quad)
    paving = scene.surface(
        scene.jitter((0.66, 0.63, 0.58), 0.06), noise=0.05, blotch=0.06, lookalike=COURTYARD
    )
    scene.polygon(quad, paving)

    def at(u, v):
        return (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01

    lu, lv = np.linalg.norm(p10 - p00), np.linalg.norm(p01 - p00)
    depth = rng.uniform(12, 16)
    colour = scene.jitter(scene.pick(rng.choice(["grey", "terracotta"])), 0.05)
    height, palace = rng.uniform(18, 25), None
    # four wings along the street sides, (u along the street, v into the block), as in _old_block
    for row, across in (
        (lambda u, v: at(u, v), lv),
        (lambda u, v: at(1 - u, 1 - v), lv),
        (lambda u, v: at(v, 1 - u), lu),
        (lambda u, v: at(1 - v, u), lu),
    ):
        d = depth / across
        corners = [tuple(row(0, 0)), tuple(row(1, 0)), tuple(row(1, d)), tuple(row(0, d))]
        palace = scene.roof(corners, "gable", colour, height, instance=palace)


def _old_block(scene, rng, quad):
    p00, p10, p11, p01 = (np.array(p) for p in quad)
    court = _court(scene, rng, (0.55, 0.52, 0.47), lawn_chance=0.5, noise=0.06, blotch=0.1)
    scene.polygon(quad, court)

    def at(u, v):
        return (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01

    lu = np.linalg.norm(p10 - p00)
    lv = np.linalg.norm(p01 - p00)
    # four rows of houses along the block edges, each (u along the street, v into the block)
    rows = [
        lambda u, v: at(u, v),
        lambda u, v: at(1 - u, 1 - v),
        lambda u, v: at(v, 1 - u),
        lambda u, v: at(1 - v, u),
    ]
    lengths = [lu, lu, lv, lv]
    for row, length, across in zip(rows, lengths, [lv, lv, lu, lu]):
        u = 0.0
        while u < 1:
            w = rng.uniform(7, 16) / length
            depth = rng.uniform(8, 12) / across
            if rng.random() < 0.8:
                corners = [
                    tuple(row(u, 0)),
                    tuple(row(min(u + w, 1), 0)),
                    tuple(row(min(u + w, 1), depth)),
                    tuple(row(u, depth)),
                ]
                palette = rng.choice(["terracotta", "grey", "brown"], p=[0.7, 0.15, 0.15])
                roof = "gable" if rng.random() < 0.85 else "flat"
                scene.roof(
                    corners, roof, scene.jitter(scene.pick(palette), 0.08), rng.uniform(10, 18)
                )
            u += w
    for _ in range(rng.integers(0, 4)):
        scene.tree(*at(*rng.uniform(0.3, 0.7, 2)), rng.uniform(2, 4.5))


_LAYOUTS = {
    "gridtown": _gridtown,
    "suburbia": _suburbia,
    "farmland": _farmland,
    "alpine": _alpine,
    "oldtown": _oldtown,
}

