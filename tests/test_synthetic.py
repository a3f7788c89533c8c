"""The synthetic sample: Inria layout and georeferencing, determinism, and what the tiles hold."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Compression

from plinknet.synthetic import SYNTHETIC_CITIES, SyntheticConfig, generate, generate_tile

TINY = SyntheticConfig(tile_size=96, val_tiles=2, train_tiles=2)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), seed=0, config=TINY, progress=False)


def _read(path):
    with rasterio.open(path) as f:
        return f.read()


def test_inria_layout_and_names(sample):
    assert sample.name == "AerialImageDataset"
    expected = sorted(f"{c}{n}.tif" for c in SYNTHETIC_CITIES for n in (1, 2, 6, 7))
    for folder in ("images", "gt"):
        assert sorted(p.name for p in (sample / "train" / folder).iterdir()) == expected
    assert TINY.tile_numbers() == [1, 2, 6, 7]  # validation 1.., training 6..


def test_geotiffs_are_georeferenced_rgb_and_binary(sample):
    seen = set()
    for image_path in sorted((sample / "train" / "images").glob("*.tif")):
        gt_path = sample / "train" / "gt" / image_path.name
        with rasterio.open(image_path) as img, rasterio.open(gt_path) as gt:
            for f in (img, gt):
                assert f.crs is not None and f.crs.is_projected
                assert f.res == pytest.approx((0.3, 0.3))
                assert f.transform.b == 0 and f.transform.d == 0 and f.transform.e < 0  # north-up
                assert f.compression == Compression.lzw
                assert (f.width, f.height) == (96, 96)
                assert set(f.dtypes) == {"uint8"}
            assert img.count == 3
            assert img.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            assert gt.count == 1
            assert img.transform == gt.transform and img.crs == gt.crs
            values = np.unique(gt.read(1))
            assert set(values.tolist()) <= {0, 255}
            seen.update(values.tolist())
            assert img.read().std() > 5  # not a blank image
    assert seen == {0, 255}


def test_files_hold_generate_tile_output(sample):
    image, mask = generate_tile("suburbia", seed=6, size=96)  # seed * 10_000 + tile number
    written = _read(sample / "train" / "images" / "suburbia6.tif")
    assert np.array_equal(written.transpose(1, 2, 0), image)
    assert np.array_equal(_read(sample / "train" / "gt" / "suburbia6.tif")[0], mask * 255)


def test_generate_is_deterministic(sample, tmp_path):
    config = SyntheticConfig(tile_size=96, val_tiles=1, train_tiles=1, cities=("oldtown",))
    again = generate(tmp_path / "a", seed=0, config=config, progress=False)
    for name in ("images/oldtown1.tif", "gt/oldtown1.tif", "images/oldtown6.tif"):
        assert np.array_equal(_read(again / "train" / name), _read(sample / "train" / name))


@pytest.mark.parametrize("city", SYNTHETIC_CITIES)
def test_generate_tile_same_seed_same_pixels(city):
    a, b = generate_tile(city, seed=3, size=128), generate_tile(city, seed=3, size=128)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = generate_tile(city, seed=4, size=128)[0]
    assert np.abs(a[0].astype(int) - other).mean() > 5


@pytest.mark.parametrize("city", SYNTHETIC_CITIES)
def test_every_city_has_buildings_and_background(city):
    image, mask = generate_tile(city, seed=0, size=400)  # 120 m on a side
    assert image.shape == (400, 400, 3) and image.dtype == np.uint8
    assert mask.shape == (400, 400) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert 0.01 < mask.mean() < 0.6
    assert image.std() > 20  # contrast like an aerial photo, not a flat fill


def test_cities_look_different():
    tiles = [generate_tile(c, seed=0, size=200)[0] for c in SYNTHETIC_CITIES]
    means = np.array([t.reshape(-1, 3).mean(0) for t in tiles])
    gaps = np.abs(means[:, None] - means[None]).sum(-1)[np.triu_indices(len(SYNTHETIC_CITIES), 1)]
    assert gaps.min() > 3


def _component_areas(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the 4-connected components of a binary mask (runs joined row to row)."""
    parent: list[int] = []

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous, size = [], []
    for row in mask.astype(np.int8):
        edges = np.flatnonzero(np.diff(np.r_[0, row, 0]))
        runs = []
        for start, stop in zip(edges[0::2], edges[1::2]):
            parent.append(len(parent))
            size.append(stop - start)
            me = len(parent) - 1
            for p_start, p_stop, p in previous:
                if p_start < stop and start < p_stop:
                    a, b = root(p), root(me)
                    if a != b:
                        parent[b] = a
                        size[a] += size[b]
            runs.append((start, stop, me))
        previous = runs
    return np.array([size[i] for i in range(len(parent)) if root(i) == i])


def test_component_areas_helper():
    mask = np.zeros((6, 8), np.uint8)
    mask[0:2, 0:2] = 1  # 4 px
    mask[3:6, 3:8] = 1  # 15 px
    mask[2, 7] = 1  # joins the second one: 16
    mask[0, 5] = 1  # 1 px
    assert sorted(_component_areas(mask).tolist()) == [1, 4, 16]


def test_buildings_span_sheds_to_warehouses():
    # 4 m sheds to 90 m barns: what pyramid pooling is for. Areas in m^2 at 0.3 m pixels.
    masks = [generate_tile(city, seed=1, size=700)[1] for city in ("farmland", "suburbia")]
    areas = np.concatenate([_component_areas(m) for m in masks]) * 0.3**2
    assert areas.min() < 40  # a shed
    assert areas.max() > 1000  # a barn, warehouse or school
    assert np.mean(areas > 300) > 0.05 and np.mean(areas < 100) > 0.05


def test_config_rejects_what_breaks_the_split():
    with pytest.raises(ValueError, match="val_tiles"):
        SyntheticConfig(val_tiles=6)
    with pytest.raises(ValueError, match="unknown"):
        SyntheticConfig(cities=("atlantis",))
    with pytest.raises(ValueError, match="unknown city"):
        generate_tile("atlantis", seed=0, size=64)


def test_ensure_sample_generates_once(tmp_path):
    from plinknet.synthetic import ensure_sample

    config = SyntheticConfig(tile_size=64, val_tiles=1, train_tiles=1, cities=("gridtown",))
    root = ensure_sample(tmp_path / "sample", seed=3, config=config)
    image = root / "train" / "images" / "gridtown1.tif"
    assert image.is_file() and not (tmp_path / "sample.partial").exists()
    stamp = image.stat().st_mtime_ns
    assert ensure_sample(tmp_path / "sample", seed=3, config=config) == root
    assert image.stat().st_mtime_ns == stamp
