"""The renderer: palettes, surfaces, the scene with its buildings, roads, trees, shadows and look-alikes."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# sRGB in [0, 1], picked by eye against Inria crops (Inria tiles average about 0.45).
ROOF_COLOURS = {
    "terracotta": [(0.58, 0.40, 0.32), (0.52, 0.35, 0.28), (0.62, 0.46, 0.38), (0.48, 0.36, 0.31)],
    "grey": [(0.55, 0.55, 0.54), (0.47, 0.47, 0.48), (0.62, 0.61, 0.59)],
    "dark": [(0.25, 0.25, 0.27), (0.30, 0.28, 0.27), (0.33, 0.30, 0.28)],
    "brown": [(0.42, 0.34, 0.29), (0.48, 0.40, 0.34), (0.38, 0.30, 0.27)],
    "white": [(0.84, 0.84, 0.82), (0.78, 0.78, 0.76), (0.90, 0.89, 0.86)],
    "metal": [(0.70, 0.72, 0.73), (0.60, 0.63, 0.66), (0.55, 0.25, 0.21), (0.36, 0.45, 0.40)],
}


ASPHALT = (0.34, 0.35, 0.36)


CONCRETE = (0.64, 0.63, 0.60)


CAR_COLOURS = [
    (0.85, 0.85, 0.85),
    (0.12, 0.12, 0.13),
    (0.55, 0.56, 0.58),
    (0.55, 0.12, 0.10),
    (0.15, 0.22, 0.40),
    (0.75, 0.75, 0.73),
    (0.30, 0.30, 0.32),
]


TREE_COLOURS = {
    "broadleaf": [(0.22, 0.30, 0.16), (0.27, 0.33, 0.19), (0.20, 0.26, 0.15), (0.30, 0.35, 0.22)],
    "bare": [(0.36, 0.34, 0.29), (0.32, 0.31, 0.27), (0.40, 0.37, 0.31)],
    "conifer": [(0.17, 0.24, 0.16), (0.20, 0.27, 0.18), (0.15, 0.21, 0.15)],
}


# Ground: (grass, dry grass, soil) blended by low-frequency noise, per city style.
GROUND = {
    "gridtown": [(0.36, 0.40, 0.27), (0.50, 0.49, 0.40), (0.55, 0.52, 0.46)],
    "suburbia": [(0.36, 0.40, 0.25), (0.50, 0.48, 0.36), (0.52, 0.46, 0.38)],
    "farmland": [(0.38, 0.43, 0.27), (0.55, 0.52, 0.38), (0.50, 0.43, 0.34)],
    "alpine": [(0.33, 0.43, 0.22), (0.42, 0.47, 0.28), (0.45, 0.42, 0.34)],
    "oldtown": [(0.60, 0.57, 0.52), (0.54, 0.52, 0.48), (0.50, 0.46, 0.41)],
}


@dataclass
class _Surface:
    colour: tuple[float, float, float]
    height: float = 0.0  # metres above ground, for shadows
    building: bool = False  # counted in the mask
    noise: float = 0.05  # per-pixel grain
    blotch: float = 0.05  # stains at a few metres
    stripe: float = 0.0  # amplitude of periodic lines (crop rows, metal ribs)
    stripe_dir: tuple[float, float] = (1.0, 0.0)  # intensity varies along this pixel direction
    stripe_period: float = 4.0  # pixels
    ground: bool = False  # take the ground texture instead of colour
    instance: int = 0  # building instance drawn with this surface (lab labels); 0: not a building
    lookalike: int = 0  # LOOKALIKE_KINDS code of the distractor region it belongs to; 0: none


class _Scene:
    """Paint-order drawing of surfaces (labels), trees and their shadows on one tile."""

    def __init__(self, size: int, resolution: float, sun, rng, city: str):
        self.size, self.res, self.rng, self.city = size, resolution, rng, city
        self.extent = size * resolution  # metres on a side
        azimuth, elevation = map(math.radians, sun)
        # unit vector towards the sun in pixel axes (x east, y south)
        self.sun_dir = (math.sin(azimuth), -math.cos(azimuth))
        self.sun_elev = elevation
        self.angle = 0.0  # layout rotation about the tile centre, radians
        self.surfaces = [_Surface(GROUND[city][0], ground=True)]
        self.labels = Image.new("I", (size, size), 0)
        self.draw = ImageDraw.Draw(self.labels)
        self.trees = Image.new("L", (size, size), 0)
        self.tree_draw = ImageDraw.Draw(self.trees)
        self.tree_types = [(TREE_COLOURS["broadleaf"][0], 8.0)]
        self.kind_index = {}
        for kind, colours in TREE_COLOURS.items():
            start = len(self.tree_types)
            for _ in range(40):
                c = np.array(colours[rng.integers(len(colours))]) * rng.uniform(0.85, 1.15)
                h = rng.uniform(10, 18) if kind == "conifer" else rng.uniform(5, 12)
                self.tree_types.append((tuple(c), h))
            self.kind_index[kind] = (start, len(self.tree_types))
        self.occupied = []  # (x, y, radius) in metres, to keep objects apart
        self.instance_count = 0  # building instances drawn so far (ids 1, 2, ...)
        self.lookalike_code = 0  # surfaces drawn now belong to this distractor kind

    # ------------------------------------------------------------------ geometry helpers
    def px(self, pts) -> list[tuple[float, float]]:
        """Metres in the (rotated) layout frame -> pixel coordinates."""
        c, s, h = math.cos(self.angle), math.sin(self.angle), self.extent / 2
        return [
            (((x - h) * c - (y - h) * s + h) / self.res, ((x - h) * s + (y - h) * c + h) / self.res)
            for x, y in pts
        ]

    def free(self, x, y, r) -> bool:
        return all((x - a) ** 2 + (y - b) ** 2 > (r + q) ** 2 for a, b, q in self.occupied)

    def occupy(self, x, y, r):
        self.occupied.append((x, y, r))

    def inside(self, x, y, margin=0.0) -> bool:
        """Whether a layout point falls on the tile (after rotation), give or take margin metres."""
        ((u, v),) = self.px([(x, y)])
        m = margin / self.res
        return -m <= u <= self.size + m and -m <= v <= self.size + m

    def surface(self, colour, **kw) -> int:
        """A new surface id; non-building surfaces inherit the current look-alike kind."""
        assert kw.get("building", False) == (kw.get("instance", 0) > 0), "building <=> instance"
        if not kw.get("building", False):
            kw.setdefault("lookalike", self.lookalike_code)
        self.surfaces.append(_Surface(tuple(float(c) for c in colour), **kw))
        return len(self.surfaces) - 1

    def new_instance(self) -> int:
        """The id of a new building instance."""
        self.instance_count += 1
        return self.instance_count

    @contextmanager
    def lookalike(self, code: int):
        """Surfaces drawn inside this block belong to distractor kind ``code`` (LOOKALIKE_KINDS)."""
        outer, self.lookalike_code = self.lookalike_code, code
        try:
            yield
        finally:
            self.lookalike_code = outer

    def jitter(self, colour, amount=0.06):
        """The colour a little lighter or darker, and very slightly tinted."""
        factor = self.rng.uniform(1 - amount, 1 + amount) * self.rng.uniform(0.98, 1.02, 3)
        return tuple(np.clip(np.array(colour) * factor, 0, 1))

    # ------------------------------------------------------------------ primitives
    def polygon(self, pts, sid):
        self.draw.polygon(self.px(pts), fill=sid)

    def quad(self, cx, cy, length, width, angle, sid):
        self.polygon(_rect(cx, cy, length, width, angle), sid)

    def line(self, pts, width, sid):
        self.draw.line(self.px(pts), fill=sid, width=max(1, round(width / self.res)), joint="curve")
        r = width / 2 / self.res  # round caps
        for x, y in self.px([pts[0], pts[-1]]):
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=sid)

    def disc(self, cx, cy, r, sid):
        ((x, y),) = self.px([(cx, cy)])
        r /= self.res
        self.draw.ellipse([x - r, y - r, x + r, y + r], fill=sid)

    def tree(self, cx, cy, r, kind="broadleaf"):
        lo, hi = self.kind_index[kind]
        t = int(self.rng.integers(lo, hi))
        rng = self.rng
        n = 1 if kind == "conifer" else 1 + int(r / 2)
        for _ in range(n):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.45 * r) if n > 1 else 0.0
            ((x, y),) = self.px([(cx + d * math.cos(a), cy + d * math.sin(a))])
            q = (r - d) * rng.uniform(0.75, 1.0) / self.res
            self.tree_draw.ellipse([x - q, y - q, x + q, y + q], fill=t)

    def car(self, cx, cy, angle):
        colour = CAR_COLOURS[self.rng.integers(len(CAR_COLOURS))]
        self.quad(cx, cy, 4.5, 1.9, angle, self.surface(colour, height=1.5, noise=0.02, blotch=0))
        c, s = math.cos(angle), math.sin(angle)  # dark windscreen
        glass = self.surface((0.12, 0.13, 0.15), height=1.5, noise=0.02, blotch=0)
        self.quad(cx + 0.6 * c, cy + 0.6 * s, 1.1, 1.6, angle, glass)

    def building(
        self,
        cx,
        cy,
        length,
        width,
        angle,
        roof="gable",
        colour=None,
        height=6.0,
        palette="grey",
        clutter=True,
        instance=None,
    ) -> int:
        """A rectangular building; its ridge (if any) runs along ``length``.

        Returns its instance id; pass it as ``instance`` to draw a wing of the same building.
        """
        corners = _rect(cx, cy, length, width, angle)
        colour = colour or self.jitter(self.pick(palette))
        metal = palette == "metal" or self.rng.random() < 0.1
        return self.roof(corners, roof, colour, height, clutter, metal, instance)

    def pick(self, palette):
        options = ROOF_COLOURS[palette]
        return options[self.rng.integers(len(options))]

    def roof(self, quad, roof, colour, height, clutter=True, metal=False, instance=None) -> int:
        """A building on a quadrilateral p00, p10, p11, p01; the ridge runs along p00 -> p10.

        Every surface of it (faces, parapet, rooftop units) carries one instance id: ``instance``
        when given (a wing of an existing building), else a new one, which is returned.
        """
        instance = instance or self.new_instance()
        p00, p10, p11, p01 = (np.array(p, float) for p in quad)

        def at(u, v):  # bilinear point in the quad
            return tuple(
                (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01
            )

        ridge = np.array(self.px([at(1, 0.5)])[0]) - np.array(self.px([at(0, 0.5)])[0])
        u_dir = tuple(ridge / (np.linalg.norm(ridge) + 1e-9))
        ribs = 0.08 if metal and roof != "flat" else 0.0
        kw = {
            "height": height,
            "building": True,
            "noise": 0.04,
            "blotch": 0.06,
            "stripe": ribs,
            "stripe_dir": u_dir,
            "stripe_period": 3.0,
            "instance": instance,
        }
        if roof == "flat":
            self.polygon(quad, self.surface(np.array(colour) * 0.85, **kw))  # parapet
            inset = (
                min(0.8 / max(np.linalg.norm(p10 - p00), 1), 0.1),
                min(0.8 / max(np.linalg.norm(p01 - p00), 1), 0.1),
            )
            a, b = inset
            inner = [at(a, b), at(1 - a, b), at(1 - a, 1 - b), at(a, 1 - b)]
            self.polygon(inner, self.surface(colour, **kw))
            area = np.linalg.norm(p10 - p00) * np.linalg.norm(p01 - p00)
            if clutter:  # rooftop units: small, raised, so they cast small shadows
                for _ in range(self.rng.poisson(area / 400)):
                    u, v = self.rng.uniform(0.15, 0.85, 2)
                    x, y = at(u, v)
                    size = self.rng.uniform(1.5, 4.0)
                    unit = self.surface(
                        self.jitter((0.70, 0.70, 0.70), 0.15),
                        height=height + 1.2,
                        building=True,
                        noise=0.03,
                        instance=instance,
                    )
                    angle = math.atan2(u_dir[1], u_dir[0]) - self.angle  # back to layout frame
                    self.quad(x, y, size, size * self.rng.uniform(0.5, 1), angle, unit)
            return instance
        v_px = np.array(self.px([at(0.5, 1)])[0]) - np.array(self.px([at(0.5, 0)])[0])
        v_dir = v_px / (np.linalg.norm(v_px) + 1e-9)
        pitch = math.radians(self.rng.uniform(25, 45))

        def face(normal, pts):
            light = self._facet_light(normal, pitch)
            self.polygon(pts, self.surface(np.clip(np.array(colour) * light, 0, 1), **kw))

        if roof == "gable":
            face(-v_dir, [at(0, 0), at(1, 0), at(1, 0.5), at(0, 0.5)])
            face(v_dir, [at(0, 0.5), at(1, 0.5), at(1, 1), at(0, 1)])
        else:  # hip: ridge shortened by half the width at each end
            length = np.linalg.norm(p10 - p00)
            width = np.linalg.norm(p01 - p00)
            r = min(0.45, 0.5 * width / max(length, 1e-6))
            u_vec = np.array(u_dir)
            face(-v_dir, [at(0, 0), at(1, 0), at(1 - r, 0.5), at(r, 0.5)])
            face(v_dir, [at(r, 0.5), at(1 - r, 0.5), at(1, 1), at(0, 1)])
            face(-u_vec, [at(0, 0), at(r, 0.5), at(0, 1)])
            face(u_vec, [at(1, 0), at(1, 1), at(1 - r, 0.5)])
        return instance

    def _facet_light(self, normal_px, pitch):
        """Lambert brightness of a roof face relative to flat ground, sun from ``self.sun_dir``."""
        nx, ny = normal_px
        sx, sy = self.sun_dir
        ce, se = math.cos(self.sun_elev), math.sin(self.sun_elev)
        dot = math.sin(pitch) * (nx * sx + ny * sy) * ce + math.cos(pitch) * se
        return float(np.clip(dot / se, 0.35, 1.4) ** 0.8)

    def road(self, pts, width, kerb=1.5, marking=True, colour=ASPHALT):
        if kerb > 0:  # kerb and pavement on both sides
            pavement = self.surface(self.jitter(CONCRETE), noise=0.04, blotch=0.04)
            self.line(pts, width + 2 * kerb, pavement)
        self.line(pts, width, self.surface(self.jitter(colour, 0.04), noise=0.05, blotch=0.08))
        if marking:
            paint = self.surface((0.85, 0.84, 0.78), noise=0.03, blotch=0.0)
            pts = _resample(pts, 3.0)
            for a, b in zip(pts[0::2], pts[1::2]):
                self.line([a, b], 0.3, paint)

    def parking(self, cx, cy, length, width, angle, fill=0.6):
        """An asphalt lot with painted stalls and parked cars: roof-like, but no shadow."""
        with self.lookalike(PARKING):
            self._parking(cx, cy, length, width, angle, fill)

    def _parking(self, cx, cy, length, width, angle, fill):
        asphalt = self.surface(self.jitter(ASPHALT, 0.1), noise=0.05, blotch=0.08)
        self.quad(cx, cy, length, width, angle, asphalt)
        paint = self.surface((0.82, 0.82, 0.78), noise=0.02, blotch=0.0)
        c, s = math.cos(angle), math.sin(angle)
        for row in np.arange(-width / 2 + 3, width / 2 - 2.9, 6.0 if width < 14 else 15.0):
            for k in np.arange(-length / 2 + 1.5, length / 2 - 1.5, 2.6):
                x, y = cx + k * c - row * s, cy + k * s + row * c
                self.line([(x - 2.5 * s, y + 2.5 * c), (x + 2.5 * s, y - 2.5 * c)], 0.3, paint)
                if self.rng.random() < fill:
                    tilt = self.rng.normal(0, 0.05)
                    self.car(x + 1.3 * c, y + 1.3 * s, angle + math.pi / 2 + tilt)

    def pool(self, cx, cy, length, width, angle):
        coping = self.surface(self.jitter(CONCRETE), noise=0.03, lookalike=POOL)
        self.quad(cx, cy, length + 1.6, width + 1.6, angle, coping)
        water = self.surface(
            self.jitter((0.32, 0.66, 0.74), 0.08), noise=0.03, blotch=0.08, lookalike=POOL
        )
        self.quad(cx, cy, length, width, angle, water)

    # ------------------------------------------------------------------ rendering
    def render(self) -> SyntheticTile:
        n, rng = self.size, self.rng
        labels = np.asarray(self.labels, dtype=np.int32)
        s = self.surfaces
        colour = np.array([x.colour for x in s], np.float32)
        height = np.array([x.height for x in s], np.float32)
        building = np.array([x.building for x in s])

        img = colour[labels]  # (n, n, 3)
        ground = np.array([x.ground for x in s])[labels]
        img[ground] = self._ground_texture()[ground]
        fine, blotch = _noise(rng, n, 1), _noise(rng, n, 12 * 0.3 / self.res)
        grain = np.array([x.noise for x in s], np.float32)[labels] * fine
        grain += np.array([x.blotch for x in s], np.float32)[labels] * blotch
        img *= (1 + grain)[..., None]

        amp = np.array([x.stripe for x in s], np.float32)[labels]
        if amp.any():
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            d = np.array([x.stripe_dir for x in s], np.float32)[labels]
            period = np.array([x.stripe_period for x in s], np.float32)[labels]
            phase = 2 * np.pi * (xx * d[..., 0] + yy * d[..., 1]) / period
            img *= (1 + amp * np.sin(phase))[..., None]

        roof = building[labels]
        edge = np.zeros_like(roof)  # eaves, ridges and the seams between buildings read as lines
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        img[edge & roof] *= 0.82

        # Trees: a dome per canopy, lit from the sun side, grainy, darker at the rim.
        kinds = np.asarray(self.trees, dtype=np.int32)
        soft = _blur((kinds > 0).astype(np.float32), 1.0)
        canopy = soft + 0.25 * _noise(rng, n, 1.5) * (soft > 0.05) > 0.5  # ragged rims
        dome = _blur((kinds > 0).astype(np.float32), 2.5 * 0.3 / self.res)
        gy, gx = np.gradient(dome)
        sx, sy = self.sun_dir
        shade = np.clip(1 - 6.0 * (gx * sx + gy * sy), 0.5, 1.5) * (0.6 + 0.4 * dome)
        shade *= 1 + 0.25 * _noise(rng, n, 1.2) + 0.15 * _noise(rng, n, 4)
        tree_colour = np.array([c for c, _ in self.tree_types], np.float32)
        img[canopy] = (tree_colour[kinds] * shade[..., None])[canopy]

        h = height[labels]
        tree_h = np.array([t for _, t in self.tree_types], np.float32)[kinds] * (0.5 + 0.5 * dome)
        h = np.where(canopy, np.maximum(h, tree_h), h)
        cast = _cast_shadow(h, self.sun_dir, math.tan(self.sun_elev) * self.res)
        shadow = _blur((cast > h + 0.3).astype(np.float32), 0.7)
        img *= 1 - shadow[..., None] * np.array([0.58, 0.56, 0.50], np.float32)

        if self.city == "alpine":  # hillshade of a smooth terrain, same sun
            img *= self._hillshade()[..., None]

        grey = img.mean(axis=2, keepdims=True)
        img = grey + 0.8 * (img - grey)  # aerial photos are less saturated than paint
        img = _blur(img, 0.5 * 0.3 / self.res)  # optics
        img = img * rng.uniform(0.92, 1.08) + rng.uniform(-0.02, 0.02)  # exposure per tile
        img += 0.012 * rng.standard_normal(img.shape, dtype=np.float32)  # sensor noise
        image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        instances = np.array([x.instance for x in s], np.uint32)[labels]
        distractors = np.array([x.lookalike for x in s], np.uint8)[labels]
        return SyntheticTile(image, roof.astype(np.uint8), _renumber(instances), distractors)

    def _ground_texture(self):
        n, rng = self.size, self.rng
        grass, dry, soil = (np.array(c, np.float32) for c in GROUND[self.city])
        k = 0.3 / self.res
        m1 = _smoothstep(0.4 * _noise(rng, n, 60 * k) + 0.25 * _noise(rng, n, 15 * k) + 0.5)
        m2 = _smoothstep(0.5 * _noise(rng, n, 25 * k) + 0.15 * _noise(rng, n, 5 * k) - 0.1)
        tex = grass * (1 - m1)[..., None] + dry * m1[..., None]
        tex = tex * (1 - m2)[..., None] + soil * m2[..., None]
        bright = (
            1
            + 0.10 * _noise(rng, n, 3 * k)
            + 0.07 * _noise(rng, n, 1)
            + 0.06 * _noise(rng, n, 30 * k)
        )
        return tex * bright[..., None]

    def _hillshade(self):
        k = 0.3 / self.res
        dem = 25.0 * _noise(self.rng, self.size, 400 * k)  # metres
        dem += 6.0 * _noise(self.rng, self.size, 120 * k)
        gy, gx = np.gradient(dem, self.res)
        sx, sy = self.sun_dir
        ce, se = math.cos(self.sun_elev), math.sin(self.sun_elev)
        lit = (-(gx * sx + gy * sy) * ce + se) / np.sqrt(1 + gx**2 + gy**2)
        return np.clip(lit / se, 0.75, 1.2).astype(np.float32)


def _renumber(instances):
    """Ids 1..K in drawing order for the K instances left visible (later roofs cover earlier ones)."""
    visible = np.unique(instances)
    lookup = np.zeros(int(visible[-1]) + 1, np.uint32)
    lookup[visible] = np.arange(len(visible), dtype=np.uint32) + (visible[0] != 0)
    return lookup[instances]


def _rect(cx, cy, length, width, angle):
    """Corners p00, p10, p11, p01 of a rectangle; p00 -> p10 runs along ``length`` at ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
    m = np.array([cx, cy])
    return [tuple(m - u - v), tuple(m + u - v), tuple(m + u + v), tuple(m - u + v)]


def _resample(pts, step):
    """Points every ``step`` metres along a polyline."""
    pts = np.asarray(pts, float)
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    t = np.arange(0, seg[-1], step)
    return list(zip(np.interp(t, seg, pts[:, 0]), np.interp(t, seg, pts[:, 1])))


def _noise(rng, n, cell):
    """Smooth zero-mean noise of about unit variance with features ``cell`` pixels wide."""
    if cell <= 1:
        return rng.standard_normal((n, n), dtype=np.float32)
    k = math.ceil(n / cell) + 3
    small = Image.fromarray(rng.standard_normal((k, k), dtype=np.float32), "F")
    big = np.asarray(small.resize((int(k * cell), int(k * cell)), Image.BICUBIC))
    out = big[:n, :n]
    return (out - out.mean()) / (out.std() + 1e-6)


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _box(a, r, axis):
    """Mean over a window of 2r+1 along one axis, edges repeated."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
    lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
    return (hi - lo) / (2 * r + 1)


def _blur(a, sigma):
    """Approximate Gaussian blur of the first two axes: three box filters each way."""
    r = round((math.sqrt(4 * sigma**2 + 1) - 1) / 2)  # three boxes of 2r+1 have variance ~ sigma^2
    if r < 1:  # small sigma: a 3-tap kernel (w, 1 - 2w, w) of variance 2w each way
        w = min(sigma**2 / 2, 1 / 3)
        for axis in (0, 1):
            p = np.pad(a, [(1, 1) if i == axis else (0, 0) for i in range(a.ndim)], mode="edge")
            m = a.shape[axis]
            a = (1 - 2 * w) * a + w * (
                np.take(p, range(m), axis) + np.take(p, range(2, m + 2), axis)
            )
        return a
    for axis in (0, 1):
        for _ in range(3):
            a = _box(a, r, axis)
    return a


def _cast_shadow(h, toward_sun, drop):
    """Height of the sun ray's shadow above each pixel: max over k of h(p + k d) - k drop."""
    n = h.shape[0]
    cast = h.copy()
    dx, dy = toward_sun
    steps = int(h.max() / drop) + 1
    for k in range(1, steps + 1):
        ox, oy = round(k * dx), round(k * dy)
        if abs(ox) >= n or abs(oy) >= n:
            break
        dst = cast[max(0, -oy) : n - max(0, oy), max(0, -ox) : n - max(0, ox)]
        src = h[max(0, oy) : n + min(0, oy), max(0, ox) : n + min(0, ox)]
        np.maximum(dst, src - k * drop, out=dst)
    return cast


# Distractor regions recorded in <stem>_distractors.tif: flat, open, man-made ground that a
# network seeing only a small window could take for a flat roof, and that only context (no
# shadow, cars, the block around it) tells apart. Left out on purpose: roads, driveways and
# tracks (long and thin, a different confusion), lawns and garden courts (no roof looks like
# grass) and farmland's fields (they are that city's background: most of its pixels, and
# counting them would drown every other kind).
PARKING, COURTYARD, YARD, POOL = 1, 2, 3, 4


LOOKALIKE_KINDS = {
    PARKING: "parking",  # asphalt lots with stall lines and parked cars, often beside big roofs
    COURTYARD: "courtyard",  # paved courtyards of perimeter and old-town blocks, old-town squares
    YARD: "yard",  # paved or gravel yards of farms and chalets, between and around buildings
    POOL: "pool",  # swimming pools with their concrete coping: small flat rectangles in gardens
}


@dataclass
class SyntheticTile:
    """One drawn tile: the image and mask that are written, and the lab labels behind them."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 in {0, 1}: building footprints
    instances: np.ndarray  # (H, W) uint32 building instance ids 1..K, 0 none; (instances > 0) == mask
    distractors: np.ndarray  # (H, W) uint8 LOOKALIKE_KINDS codes, 0 none; never on a building
