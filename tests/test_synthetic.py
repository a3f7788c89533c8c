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


# ----------------------------------------------------------------------------- lab labels
def test_lab_files_match_the_masks(sample):
    from rasterio.enums import Compression

    lab = sample / "train" / "lab"
    for image_path in sorted((sample / "train" / "images").glob("*.tif")):
        stem = image_path.stem
        with rasterio.open(image_path) as img, rasterio.open(lab / f"{stem}_instances.tif") as ins, \
                rasterio.open(lab / f"{stem}_distractors.tif") as dis:  # fmt: skip
            for f in (ins, dis):
                assert (f.crs, f.transform, f.shape) == (img.crs, img.transform, img.shape)
                assert f.compression == Compression.lzw and f.count == 1
            assert (ins.dtypes[0], dis.dtypes[0]) == ("uint32", "uint8")
            instances, distractors = ins.read(1), dis.read(1)
        mask = _read(sample / "train" / "gt" / image_path.name)[0]
        assert np.array_equal(instances > 0, mask == 255)  # the union of instances is the mask
        assert not distractors[mask == 255].any()  # a look-alike is never on a building
        ids = np.unique(instances[instances > 0])
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # 1..K, none empty
        rows = (lab / f"{stem}_instances.csv").read_text().splitlines()
        assert rows[0] == "id,area_px,area_m2" and len(rows) == len(ids) + 1
        if len(ids):
            i, area_px, area_m2 = rows[-1].split(",")
            assert int(area_px) == (instances == int(i)).sum()
            assert float(area_m2) == pytest.approx(int(area_px) * 0.09, abs=0.01)


@pytest.mark.parametrize("city", SYNTHETIC_CITIES)
def test_draw_tile_instances_union_is_the_mask(city):
    from plinknet.synthetic import LOOKALIKE_KINDS, draw_tile

    tile = draw_tile(city, seed=2, size=300)
    image, mask = generate_tile(city, seed=2, size=300)
    assert np.array_equal(tile.image, image) and np.array_equal(tile.mask, mask)
    assert tile.instances.dtype == np.uint32 and tile.distractors.dtype == np.uint8
    assert np.array_equal(tile.instances > 0, mask == 1)
    assert not tile.distractors[mask == 1].any()
    assert set(np.unique(tile.distractors).tolist()) <= {0, *LOOKALIKE_KINDS}
    assert len(np.unique(tile.instances)) > 3  # buildings are told apart, not one blob


def test_every_lookalike_kind_is_drawn():
    from plinknet.synthetic import LOOKALIKE_KINDS, draw_tile

    seen = set()
    for city in SYNTHETIC_CITIES:
        seen.update(np.unique(draw_tile(city, seed=2, size=700).distractors).tolist())
    assert seen == {0, *LOOKALIKE_KINDS}


def test_wings_and_rooftop_units_belong_to_their_building():
    from plinknet.synthetic import draw_tile

    # suburban houses keep apart, so any two touching pixels of different instances would
    # be a garage wing or a rooftop unit counted as a building of its own
    ins = draw_tile("suburbia", seed=0, size=600).instances
    across = (ins[:, 1:] != ins[:, :-1]) & (ins[:, 1:] > 0) & (ins[:, :-1] > 0)
    down = (ins[1:] != ins[:-1]) & (ins[1:] > 0) & (ins[:-1] > 0)
    assert across.sum() + down.sum() == 0


# ----------------------------------------------------------------------------- inria-scale
def _tiny_inria_config():
    from plinknet.synthetic import InriaScaleConfig

    # 7 tiles per city: validation 1-5 and training 6-7; 100 px tiles of 40 px patches, so
    # the last row and column of patches are cut
    return InriaScaleConfig(tile_size=100, tiles_per_city=7, patch_size=40, patches_per_city=2,
                            cities=("gridtown", "oldtown"))  # fmt: skip


@pytest.fixture(scope="module")
def inria_scale(tmp_path_factory):
    from plinknet.synthetic import generate_inria_scale

    out = tmp_path_factory.mktemp("rehearsal") / "inria-scale"
    return generate_inria_scale(out, seed=5, config=_tiny_inria_config(), progress=False)


def test_inria_scale_layout_and_files(inria_scale):
    from plinknet.data import find_tiles

    names = sorted(f"{c}{n}.tif" for c in ("gridtown", "oldtown") for n in range(1, 8))
    for folder in ("images", "gt"):
        assert sorted(p.name for p in (inria_scale / "train" / folder).iterdir()) == names
    assert not (inria_scale / "train" / "lab").exists()
    assert not inria_scale.parent.with_name("inria-scale.partial").exists()
    train = [t.name for t in find_tiles(inria_scale.parent, "train")]
    assert train == ["gridtown6", "gridtown7", "oldtown6", "oldtown7"]
    assert len(find_tiles(inria_scale.parent, "val")) == 10
    with rasterio.open(inria_scale / "train" / "images" / "oldtown7.tif") as img, \
            rasterio.open(inria_scale / "train" / "gt" / "oldtown7.tif") as gt:  # fmt: skip
        for f in (img, gt):
            assert (f.width, f.height) == (100, 100) and set(f.dtypes) == {"uint8"}
            assert f.compression is None and not f.profile.get("tiled")  # uncompressed, striped
            assert f.res == pytest.approx((0.3, 0.3)) and f.crs.is_projected
        assert img.count == 3 and gt.count == 1 and img.transform == gt.transform
        assert img.read().std() > 10
    values = set()
    for path in (inria_scale / "train" / "gt").iterdir():
        values.update(np.unique(_read(path)).tolist())
    assert values == {0, 255}


def test_inria_scale_is_seeded(inria_scale, tmp_path):
    from plinknet.synthetic import generate_inria_scale

    again = generate_inria_scale(tmp_path / "a", seed=5, config=_tiny_inria_config(), progress=False)
    other = generate_inria_scale(tmp_path / "b", seed=6, config=_tiny_inria_config(), progress=False)
    for name in ("images/gridtown1.tif", "gt/gridtown1.tif", "images/oldtown7.tif"):
        assert np.array_equal(_read(again / "train" / name), _read(inria_scale / "train" / name))
    assert not np.array_equal(_read(other / "train" / "images/gridtown1.tif"),
                              _read(inria_scale / "train" / "images/gridtown1.tif"))  # fmt: skip
    # tiles of a city differ: patches are picked, turned and flipped per tile
    assert not np.array_equal(_read(again / "train" / "images/gridtown1.tif"),
                              _read(again / "train" / "images/gridtown2.tif"))  # fmt: skip


def test_mosaic_is_made_of_turned_and_flipped_patches():
    from plinknet.synthetic.inria_scale import _mosaic

    rng = np.random.default_rng(0)
    patches = [(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), rng.integers(0, 2, (8, 8), dtype=np.uint8))
               for _ in range(3)]  # fmt: skip
    image, mask = _mosaic(patches, 20, np.random.default_rng(1))
    assert image.shape == (20, 20, 3) and mask.shape == (20, 20)

    def variants(a):
        turns = [np.rot90(a, k) for k in range(4)]
        return turns + [t[:, ::-1] for t in turns]

    for y in range(0, 20, 8):
        for x in range(0, 20, 8):
            block, block_mask = image[y : y + 8, x : x + 8], mask[y : y + 8, x : x + 8]
            h, w = block_mask.shape
            assert any(
                np.array_equal(block, vi[:h, :w]) and np.array_equal(block_mask, vm[:h, :w])
                for pi, pm in patches
                for vi, vm in zip(variants(pi), variants(pm))
            )


def test_inria_scale_refuses_without_disk_space_or_over_an_existing_set(inria_scale, tmp_path, monkeypatch):
    import shutil

    from plinknet.synthetic import InriaScaleConfig, generate_inria_scale

    assert InriaScaleConfig().bytes_needed() == 180 * 5000 * 5000 * 4  # the full set: 18 GB
    with pytest.raises(FileExistsError, match="exists already"):
        generate_inria_scale(inria_scale.parent, config=_tiny_inria_config(), progress=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**9, 10**9))
    with pytest.raises(OSError, match=r"needs 18\.0 GB and 1\.0 GB are free"):
        generate_inria_scale(tmp_path / "full", progress=False)
    assert not (tmp_path / "full").exists()


def test_cli_inria_scale_excludes_the_sample_sizes(tmp_path, capsys):
    from plinknet.cli import main

    assert main(["synth", "--out", str(tmp_path / "x"), "--inria-scale", "--tile-size", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--inria-scale" in err and "--tile-size" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_synth_never_mixes_two_samples_in_one_folder(tmp_path, capsys):
    from plinknet.cli import main

    out = tmp_path / "sample"
    small = ["synth", "--out", str(out), "--tile-size", "64", "--train-tiles", "1", "--val-tiles", "1"]
    assert main(small) == 0
    images = out / "AerialImageDataset/train/images"
    first = {p.name: p.stat().st_mtime_ns for p in images.iterdir()}
    assert main(small) == 0 and "already holds this sample" in capsys.readouterr().out  # complete: left alone
    other = ["synth", "--out", str(out), "--tile-size", "96", "--train-tiles", "2", "--val-tiles", "1"]
    assert main(other) == 1
    err = capsys.readouterr().err
    assert "tile_size 64 (asked 96)" in err and "train_tiles 1 (asked 2)" in err and "--overwrite" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in images.iterdir()} == first  # nothing written
    next(iter(sorted(images.iterdir()))).unlink()  # an altered sample is not complete
    assert main(small) == 1 and "an incomplete sample (1 file(s) missing" in capsys.readouterr().err
    assert main([*other, "--overwrite"]) == 0  # replaced whole: only the new sample's files
    names = sorted(p.name for p in images.iterdir())
    assert names == sorted(f"{c}{n}.tif" for c in SYNTHETIC_CITIES for n in (1, 6, 7))
    with rasterio.open(images / names[0]) as src:
        assert src.width == 96
    assert not list(tmp_path.glob("*.partial")) and not list(out.glob(".*"))


def test_synth_overwrites_only_what_it_wrote(tmp_path, capsys):
    """A download (no manifest) and a user's file inside a sample are refused even with --overwrite, and named."""
    from plinknet.cli import main

    small = ["synth", "--tile-size", "64", "--train-tiles", "1", "--val-tiles", "1", "--overwrite"]
    download = tmp_path / "inria" / "AerialImageDataset" / "train" / "images"
    download.mkdir(parents=True)
    (download / "austin1.tif").write_bytes(b"the real tile")
    assert main([*small, "--out", str(tmp_path / "inria")]) == 1
    err = capsys.readouterr().err
    assert "plinknet did not write" in err and "--overwrite" not in err, err
    assert (download / "austin1.tif").read_bytes() == b"the real tile"

    sample = ["synth", "--out", str(tmp_path / "sample"), "--tile-size", "64", "--train-tiles", "1", "--val-tiles", "1"]
    assert main(sample) == 0
    notes = tmp_path / "sample" / "AerialImageDataset" / "train" / "my-notes.txt"
    notes.write_text("mine")
    for args in (sample, [*sample, "--seed", "1", "--overwrite"]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "train/my-notes.txt" in err and "--overwrite" not in err, err
    assert notes.read_text() == "mine"
    capsys.readouterr()
    (tmp_path / "sample" / "AerialImageDataset" / "plinknet-synth.json").write_text('{"seed": 0, "con')  # cut
    assert main([*sample, "--overwrite"]) == 1 and "cannot be read" in capsys.readouterr().err
    assert notes.read_text() == "mine"


def test_synth_refuses_a_folder_with_other_files(tmp_path, capsys):
    from plinknet.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    assert main(["synth", "--out", str(tmp_path / "data"), "--tile-size", "64", "--train-tiles", "1"]) == 1
    assert "notes.txt" in capsys.readouterr().err and sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "notes.txt"]


def test_ensure_sample_refuses_a_folder_that_is_not_a_sample(tmp_path):
    from plinknet.synthetic import ensure_sample

    other = tmp_path / "sample" / "AerialImageDataset"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="holds no train/images"):
        ensure_sample(tmp_path / "sample", seed=3, config=SyntheticConfig(tile_size=64, train_tiles=1, val_tiles=1))
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in (tmp_path / "sample").iterdir()) == ["AerialImageDataset"]  # no temporary left
