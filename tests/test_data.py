"""Tests for plinknet/data/ on the tiny committed fixture, the real crops and a local server."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from helpers import make_fixture

from plinknet import data
from plinknet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MASK_PADDING,
    InriaDataError,
    InriaDataset,
    checks,
    find_tiles,
    grid_windows,
    normalize,
    normalize_batch,
    prepare_batch,
    read_image,
    read_mask,
)
from plinknet.data.tiles import GDAL_CACHE_BYTES
from plinknet.files import MARK

REAL_CROPS = Path(__file__).resolve().parents[1].parent / "shared/data/inria-crops"


@pytest.fixture
def copy(root, tmp_path) -> Path:
    """A scratch copy of the fixture's AerialImageDataset folder, free to break."""
    return Path(shutil.copytree(root / "AerialImageDataset", tmp_path / "AerialImageDataset"))


def hwc(sample: dict) -> np.ndarray:
    """A sample's uint8 image as (H, W, 3)."""
    return sample["image"].permute(1, 2, 0).numpy()


def source(dataset: InriaDataset, sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 image and {0,1} mask pixels of a sample's source window."""
    tile = next(t for t in dataset.tiles if t.name == sample["tile"])
    row, col, height, width = sample["window"].tolist()
    window = (slice(row, row + height), slice(col, col + width))
    return read_image(tile.image_path)[window], read_mask(tile.mask_path)[window]


def collate(dataset: InriaDataset, indices) -> dict:
    return torch.utils.data.default_collate([dataset[i] for i in indices])


# ---------------------------------------------------------------------------- layout and split


def test_fixture_layout_and_split(root):
    every = find_tiles(root, "all")
    assert [t.name for t in every] == ["austin1", "austin6", "tyrol-w1", "tyrol-w6"]
    assert [t.city for t in every] == ["austin", "austin", "tyrol-w", "tyrol-w"]
    assert all((t.height, t.width) == (64, 80) for t in every)
    assert [t.number for t in find_tiles(root, "val")] == [1, 1]
    assert [t.number for t in find_tiles(root, "train")] == [6, 6]
    direct = find_tiles(root / "AerialImageDataset", "train")  # root is the dataset itself
    assert [t.image_path for t in direct] == [t.image_path for t in find_tiles(root, "train")]


def test_split_rule_and_other_city_names(tmp_path):
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    for number in (12, 1, 5, 6, 2):
        for folder, array in (("images", image), ("gt", mask)):
            make_fixture.write(tmp_path / f"train/{folder}/gridtown{number}.tif", array, False)
    assert [t.number for t in find_tiles(tmp_path, "val")] == [1, 2, 5]
    assert [t.number for t in find_tiles(tmp_path, "train")] == [6, 12]
    assert {t.city for t in find_tiles(tmp_path, "all")} == {"gridtown"}


# ---------------------------------------------------------------------------- grid


@pytest.mark.parametrize(
    ("length", "starts"), [(5000, None), (1000, [0, 488]), (200, [0]), (512, [0]), (513, [0, 1])]
)
def test_grid_windows(length, starts):
    windows = grid_windows(length, length, 512)
    rows = sorted({row for row, _ in windows})
    assert len(windows) == len(rows) ** 2 == max(1, -(-length // 512)) ** 2
    if starts is not None:
        assert rows == starts
    covered = np.zeros(length, bool)
    for row in rows:
        assert 0 <= row and (row + 512 <= length or length < 512)
        covered[row : row + 512] = True
    assert covered.all()


def test_grid_windows_5000_gives_paper_counts():
    assert len(grid_windows(5000, 5000, 512)) == 100  # 155 tiles -> 15,500, 25 -> 2,500
    assert grid_windows(5000, 5000, 512)[-1] == (4488, 4488)


def test_val_grid_covers_every_pixel(root):
    dataset = InriaDataset(root, "val", crop_size=32)
    assert len(dataset) == 2 * 2 * 3  # 2 tiles x ceil(64/32) x ceil(80/32)
    covered = {t.name: np.zeros((64, 80), int) for t in dataset.tiles}
    for index in range(len(dataset)):
        sample = dataset[index]
        row, col, height, width = sample["window"].tolist()
        assert (height, width) == (32, 32)
        covered[sample["tile"]][row : row + height, col : col + width] += 1
        image, mask = source(dataset, sample)
        np.testing.assert_array_equal(hwc(sample), image)
        np.testing.assert_array_equal(sample["mask"][0].numpy(), mask)
    assert all((count >= 1).all() for count in covered.values())


# ---------------------------------------------------------------------------- training crops


def test_train_samples(root):
    dataset = InriaDataset(root, "train", crop_size=32)
    assert len(dataset) == 2 * 6  # samples_per_tile defaults to the grid count
    assert len(InriaDataset(root, "train", crop_size=32, samples_per_tile=5)) == 10
    assert dataset.read_size == 36  # ceil(32 * 1.1): room for the largest scale
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (3, 36, 36) and sample["image"].dtype == torch.uint8
        assert sample["mask"].shape == (1, 36, 36) and sample["mask"].dtype == torch.uint8
        assert set(sample["mask"].unique().tolist()) <= {0, 1, MASK_PADDING}
        assert sample["tile"] == ("austin6" if index < 6 else "tyrol-w6")
        assert sample["city"] == sample["tile"][:-1]
        row, col, height, width = sample["window"].tolist()
        assert 0 <= row <= 64 - height and 0 <= col <= 80 - width
        assert 29 <= height == width == sample["side"].item() <= 35  # round(32 * s), s in [0.9, 1.1]
        side = height
        assert (sample["mask"][0, side:] == MASK_PADDING).all() and (sample["mask"][0, :, side:] == MASK_PADDING).all()


def test_unaugmented_train_read_gives_back_pixels(root):
    dataset = InriaDataset(root, "train", crop_size=32, augment=False)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["window"][2:].tolist() == [32, 32]
        image, mask = source(dataset, sample)
        np.testing.assert_array_equal(hwc(sample), image)
        np.testing.assert_array_equal(sample["mask"][0].numpy(), mask)


def test_flips_and_rotations_move_mask_with_image(root):
    # fixture roofs are 140-239, ground 40-139: the mask must mark exactly the bright pixels
    dataset = InriaDataset(root, "train", crop_size=32, scale_range=(1.0, 1.0), samples_per_tile=20)
    assert dataset.read_size == 32
    flipped = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        bright = hwc(sample).min(axis=2) >= 140
        np.testing.assert_array_equal(bright, sample["mask"][0].numpy() == 1)
        image, _ = source(dataset, sample)
        flipped += not np.array_equal(hwc(sample), image)
    assert flipped > 10  # 3 in 4 crops are flipped or rotated


def _reference(dataset: InriaDataset, index: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``index`` made the plain way: read, flip and turn, then resize with F.interpolate."""
    d = dataset.draw(index)
    sample = dataset[index]
    image, mask = source(dataset, sample)
    image = torch.from_numpy(image).permute(2, 0, 1).float()[None]  # (1, 3, h, w)
    mask = torch.from_numpy(mask)[None, None].float()  # (1, 1, h, w)
    for flip, dim in ((d["flip_h"], -1), (d["flip_v"], -2)):
        if flip:
            image, mask = image.flip(dim), mask.flip(dim)
    image, mask = image.rot90(d["quarter_turns"], (-2, -1)), mask.rot90(d["quarter_turns"], (-2, -1))
    image = F.interpolate(image, (crop, crop), mode="bilinear", align_corners=False)
    mask = F.interpolate(mask, (crop, crop), mode="nearest-exact")
    return normalize_batch(image), mask


def test_scale_augmentation_keeps_masks_aligned_with_images(root):
    # every crop equals the plain pipeline's: a mask one pixel (or half a pixel) off fails
    crop = 32
    dataset = InriaDataset(root, "train", crop_size=crop, scale_range=(0.6, 1.4), samples_per_tile=24)
    sides = {dataset.draw(i)["side"] for i in range(len(dataset))}
    assert min(sides) < crop < max(sides)  # both shrinking and enlarging are exercised
    image, target, valid = prepare_batch(collate(dataset, range(len(dataset))), torch.device("cpu"), crop)
    assert image.shape == (48, 3, crop, crop) and target.shape == valid.shape == (48, 1, crop, crop)
    assert valid.all()  # the fixture tiles are larger than any crop
    drifted = 0
    for i in range(len(dataset)):
        expected_image, expected_mask = _reference(dataset, i, crop)
        torch.testing.assert_close(image[i : i + 1], expected_image, atol=2e-3, rtol=0)
        assert torch.equal(target[i : i + 1], expected_mask), f"crop {i}: mask not aligned with its image"
        plain_nearest = F.interpolate(torch.from_numpy(source(dataset, dataset[i])[1])[None, None].float(),
                                      (crop, crop), mode="nearest")  # fmt: skip
        d = dataset.draw(i)
        drifted += d["side"] != crop and not d["flip_h"] and not d["flip_v"] and d["quarter_turns"] == 0 and not \
            torch.equal(plain_nearest, expected_mask)  # fmt: skip
    assert drifted > 0  # the old "nearest" resize would have failed this test


def test_prepare_batch_normalises_like_normalize(root):
    dataset = InriaDataset(root, "val", crop_size=32)
    batch = collate(dataset, [0, 1])
    image, target, valid = prepare_batch(batch, torch.device("cpu"), 32)
    assert image.dtype == torch.float32 and target.dtype == torch.float32 and valid.dtype == torch.bool
    torch.testing.assert_close(image[0], normalize(hwc(dataset[0])))
    assert torch.equal(target[0, 0], dataset[0]["mask"][0].float())


def test_crops_depend_only_on_seed_epoch_index(root):
    first = InriaDataset(root, "train", crop_size=32)
    second = InriaDataset(root, "train", crop_size=32)
    backwards = [second[i] for i in reversed(range(len(second)))][::-1]
    for index in range(len(first)):
        assert torch.equal(first[index]["image"], backwards[index]["image"])
        assert torch.equal(first[index]["window"], backwards[index]["window"])
    before = [first[i]["window"] for i in range(len(first))]
    first.set_epoch(1)
    after = [first[i]["window"] for i in range(len(first))]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    first.set_epoch(0)
    assert all(torch.equal(first[i]["window"], before[i]) for i in range(len(first)))
    other_seed = InriaDataset(root, "train", crop_size=32, seed=1)
    assert any(not torch.equal(other_seed[i]["window"], before[i]) for i in range(len(first)))


def test_small_tiles_are_padded_and_the_padding_is_not_valid(root):
    for split in ("train", "val"):
        dataset = InriaDataset(root, split, crop_size=128, augment=False)
        assert len(dataset) == 2
        sample = dataset[0]
        assert sample["window"].tolist() == [0, 0, 64, 80]
        image = hwc(sample)
        assert image.shape == (128, 128, 3)
        np.testing.assert_array_equal(image[:64, :80], read_image(dataset.tiles[0].image_path))
        assert (image[64:] == 0).all() and (image[:, 80:] == 0).all()
        assert (sample["mask"][0, 64:] == MASK_PADDING).all() and (sample["mask"][0, :, 80:] == MASK_PADDING).all()
        _, target, valid = prepare_batch(collate(dataset, [0]), torch.device("cpu"), 128)
        assert valid[0, 0, :64, :80].all() and not valid[0, 0, 64:].any() and not valid[0, 0, :, 80:].any()
        assert not target[0, 0, 64:].any()
    augmented = InriaDataset(root, "train", crop_size=128)
    image, target, valid = prepare_batch(collate(augmented, range(len(augmented))), torch.device("cpu"), 128)
    assert image.shape == (len(augmented), 3, 128, 128) and 0 < valid.float().mean() < 1


def test_geotiffs_without_crs(root):
    tile = find_tiles(root, "val")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(tile.image_path) as src:
            assert tile.city == "tyrol-w" and src.crs is None and src.transform.is_identity
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NotGeoreferencedWarning leaks to the user
        assert read_image(tile.image_path).shape == (64, 80, 3)
        dataset = InriaDataset(root, "val", crop_size=32)
        assert dataset[len(dataset) - 1]["tile"] == "tyrol-w1"


def test_cache_gives_identical_samples_from_shared_memory_maps(root, tmp_path):
    cache = tmp_path / "cache"
    for split in ("train", "val"):
        on_disk = InriaDataset(root, split, crop_size=32)
        cached = InriaDataset(root, split, crop_size=32, cache_dir=cache)
        for index in range(len(on_disk)):
            a, b = on_disk[index], cached[index]
            assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "window", "side"))
        assert len(cached._arrays) == 2
        assert all(isinstance(image, np.memmap) for image, _ in cached._arrays.values())
    files = sorted(p.name for p in cache.iterdir() if p.name != MARK)
    assert len(files) == 8 and all(name.endswith((".image.npy", ".mask.npy")) for name in files)
    mtimes = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    data.build_cache(find_tiles(root, "all"), cache, progress=False)  # nothing to do: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes


def test_cache_follows_an_edited_tile(copy, tmp_path):
    cache = tmp_path / "cache"
    tiles = find_tiles(copy, "train")
    data.build_cache(tiles, cache, progress=False)
    before = sorted(p.name for p in cache.glob("austin6-*"))
    mask = read_mask(copy / "train/gt/austin6.tif")
    mask[:5] = 1 - mask[:5]
    _rewrite(copy / "train/gt/austin6.tif", mask * 255)
    image, cached_mask = data.cached_tile(find_tiles(copy, "train")[0], cache)
    np.testing.assert_array_equal(cached_mask[0], mask)
    after = sorted(p.name for p in cache.glob("austin6-*"))
    assert len(after) == 2 and not set(before) & set(after)  # the stale files are gone


def test_cache_deletes_nothing_in_a_folder_it_did_not_make(copy, tmp_path):
    cache = tmp_path / "mine"
    cache.mkdir()
    stale_looking = cache / "austin6-0123456789abcdef01234567.mask.npy"  # named like a cache entry, but the user's
    stale_looking.write_bytes(b"the user's")
    data.build_cache(find_tiles(copy, "train"), cache, progress=False)
    assert stale_looking.read_bytes() == b"the user's" and not (cache / MARK).exists()
    assert len(list(cache.glob("austin6-*"))) == 3  # the tile's two entries beside it


def test_worker_init_bounds_gdal_cache():
    data.worker_init(0)
    assert int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")) == GDAL_CACHE_BYTES


def test_normalize():
    image = np.array([[[0, 128, 255]]], np.uint8)
    out = normalize(image)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float32
    expected = (np.array([0, 128, 255]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError):
        normalize(image.astype(np.float32))
    # one arithmetic: the single-image path and the batched path agree bit for bit
    crop = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    batched = normalize_batch(torch.from_numpy(crop).permute(2, 0, 1)[None])[0]
    assert torch.equal(normalize(crop), batched)


def test_dataloader_workers_match_main_process(root):
    dataset = InriaDataset(root, "train", crop_size=32)
    dataset[0]  # open files in the parent first: workers must not reuse its handles

    def batches(workers):
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=workers)
        return list(loader)

    for a, b in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["tile"] == b["tile"]


# ---------------------------------------------------------------------------- bad inputs


def _rewrite(path: Path, array: np.ndarray) -> None:
    path.unlink()
    make_fixture.write(path, array, georeferenced=False)


BREAKAGES = {
    "missing gt folder": (lambda d: shutil.rmtree(d / "train/gt"), "train/gt"),
    "image without mask": (lambda d: (d / "train/gt/austin6.tif").unlink(), "austin6.tif"),
    "mask without image": (lambda d: (d / "train/images/austin6.tif").unlink(), "austin6.tif"),
    "size mismatch": (
        lambda d: _rewrite(d / "train/gt/austin6.tif", np.zeros((32, 80), np.uint8)),
        "gt/austin6.tif",
    ),
    "unreadable file": (
        lambda d: (d / "train/images/austin6.tif").write_bytes(b"not a tiff" * 50),
        "images/austin6.tif",
    ),
    "one-band image": (
        lambda d: _rewrite(d / "train/images/austin6.tif", np.zeros((64, 80), np.uint8)),
        "images/austin6.tif",
    ),
    "three-band mask": (
        lambda d: _rewrite(d / "train/gt/austin6.tif", np.zeros((64, 80, 3), np.uint8)),
        "gt/austin6.tif",
    ),
    "bad file name": (
        lambda d: shutil.copy(d / "train/images/austin6.tif", d / "train/images/austin6_3.tif"),
        "austin6_3.tif",
    ),
    "no training tile": (
        lambda d: [p.unlink() for p in d.glob("train/*/*6.tif")],
        "numbered 6 and up",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_inputs_fail_at_construction(copy, breakage):
    damage, expected = BREAKAGES[breakage]
    damage(copy)
    with pytest.raises(InriaDataError, match=expected):
        InriaDataset(copy, "train")


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(InriaDataError, match="AerialImageDataset/train"):
        find_tiles(tmp_path, "train")


def test_mask_value_128_fails_at_read(copy):
    mask = read_mask(copy / "train/gt/austin6.tif") * 255
    mask[10:20, 10:20] = 128
    _rewrite(copy / "train/gt/austin6.tif", mask)
    with pytest.raises(InriaDataError, match=r"austin6\.tif holds value\(s\) \[128\]"):
        read_mask(copy / "train/gt/austin6.tif")
    for cache_dir in (None, copy.parent / "cache"):
        dataset = InriaDataset(copy, "train", crop_size=64, augment=False, cache_dir=cache_dir)
        with pytest.raises(InriaDataError, match="austin6.tif"):
            dataset[0]


def test_masks_holding_0_1_are_accepted(copy):
    original = read_mask(copy / "train/gt/austin6.tif")  # from the 0/255 file
    _rewrite(copy / "train/gt/austin6.tif", original)  # now stored as 0/1
    sample = InriaDataset(copy, "train", crop_size=128, augment=False)[0]  # whole tile
    np.testing.assert_array_equal(sample["mask"][0, :64, :80].numpy(), original)
    assert original.any()


def test_check_tiles_reports_every_problem_at_once_and_remembers_sound_tiles(copy, tmp_path, monkeypatch):
    memo = tmp_path / "memo"
    assert data.check_tiles(copy, progress=False, memo_dir=memo) == []
    mask = read_mask(copy / "train/gt/austin6.tif") * 255
    mask[40:42, 3] = 77
    _rewrite(copy / "train/gt/austin6.tif", mask)  # a bad value deep in the tile, not in its header
    truncated = copy / "train/images/tyrol-w1.tif"
    truncated.write_bytes(truncated.read_bytes()[:-300])
    (copy / "train/gt/vienna3.tif").write_bytes((copy / "train/gt/austin1.tif").read_bytes())  # no image
    checked = []
    real = checks.check_pair
    monkeypatch.setattr(checks, "check_pair", lambda image, mask: checked.append(image.name) or real(image, mask))
    problems = data.check_tiles(copy, progress=False, memo_dir=memo)
    assert sorted(checked) == ["austin6.tif", "tyrol-w1.tif"]  # the others were remembered as sound
    text = "\n".join(problems)
    assert len(problems) == 3, text
    assert "austin6.tif holds value(s) [77]" in text and "tyrol-w1.tif" in text and "vienna3.tif" in text


def test_one_pass_checks_and_hashes_as_the_two_passes_do(copy, tmp_path, monkeypatch):
    """check_and_hash finds what check_tiles finds and gives data_checksum's value, reading each file once; what it
    remembers makes a second call read nothing."""
    monkeypatch.setenv("PLINKNET_CACHE", str(tmp_path / "cache"))
    files = sorted(str(p) for p in (copy / "train").rglob("*") if p.is_file())
    reads = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(str(self)) or read_bytes(self))
    assert checks.check_and_hash(copy, progress=False) == ([], checks.data_checksum(copy))
    assert sorted(reads) == files
    reads.clear()
    assert checks.check_and_hash(copy, progress=False)[1] == checks.data_checksum(copy) and reads == []
    assert checks.dataset_checksum(copy) == checks.data_checksum(copy) and reads == []  # the book's footer too

    mask = read_mask(copy / "train/gt/austin6.tif") * 255
    mask[40:42, 3] = 77  # deep in the tile, not in its header
    _rewrite(copy / "train/gt/austin6.tif", mask)
    truncated = copy / "train/images/tyrol-w1.tif"
    truncated.write_bytes(truncated.read_bytes()[:-300])
    reads.clear()
    problems, checksum = checks.check_and_hash(copy, progress=False)
    expected = data.check_tiles(copy, progress=False, memo_dir=tmp_path / "fresh")
    assert sorted(problems) == sorted(expected) and len(problems) == 2, problems
    assert checksum == checks.data_checksum(copy)  # the files changed: hashed again, not remembered
    assert sorted(reads) == sorted({*files})  # again one read each: the changed files, and the rest for the hash


@pytest.mark.parametrize("rows", [8, 4096])  # the two halves in different blocks of the check, or in one
def test_a_mask_mixing_1_and_255_is_refused_whatever_the_blocks(copy, tmp_path, monkeypatch, rows):
    mask = read_mask(copy / "train/gt/austin6.tif")  # {0, 1}, 64 rows
    assert mask[:32].any() and mask[32:].any()
    mixed = mask.copy()
    mixed[32:] *= 255  # 0/1 above, 0/255 below
    _rewrite(copy / "train/gt/austin6.tif", mixed)
    monkeypatch.setattr(checks, "CHECK_ROWS", rows)
    problems = data.check_tiles(copy, progress=False, memo_dir=tmp_path / f"memo{rows}")
    assert len(problems) == 1 and "austin6.tif holds both 1 and 255" in problems[0], problems


def test_an_empty_dataset_is_not_called_sound(tmp_path):
    for kind in ("images", "gt"):
        (tmp_path / "AerialImageDataset" / "train" / kind).mkdir(parents=True)
    problems = data.check_tiles(tmp_path, progress=False, memo_dir=tmp_path / "memo")
    assert len(problems) == 1 and problems[0].startswith("no tile in"), problems
    assert data.count_tiles(tmp_path) == 0


def test_whole_tile_reads_name_a_damaged_file(copy):
    for path, read in ((copy / "train/images/tyrol-w1.tif", read_image), (copy / "train/gt/tyrol-w1.tif", read_mask)):
        path.write_bytes(path.read_bytes()[:-300])
        with pytest.raises(InriaDataError, match=str(path)):
            read(path)


# ---------------------------------------------------------------------------- real crops


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory) -> Path:
    """The real 256 x 256 crops, symlinked into the official layout."""
    if not REAL_CROPS.is_dir():
        pytest.skip(f"real Inria crops not found at {REAL_CROPS}")
    root = tmp_path_factory.mktemp("real") / "AerialImageDataset"
    for folder, first_number in (("val_data", 1), ("train_data", 6)):
        for city in ("austin", "chicago"):
            crops = sorted((REAL_CROPS / folder / "images").glob(f"{city}1_*.tif"))[:3]
            for number, crop in enumerate(crops, start=first_number):
                for kind in ("images", "gt"):
                    link = root / "train" / kind / f"{city}{number}.tif"
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(REAL_CROPS / folder / kind / crop.name)
    return root


def test_real_crops_read(real_dataset):
    image = read_image(real_dataset / "train/images/austin1.tif")
    mask = read_mask(real_dataset / "train/gt/austin1.tif")
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 1}
    masks = [read_mask(p) for p in sorted(real_dataset.glob("train/gt/*.tif"))]
    assert any(m.any() for m in masks) and all(set(np.unique(m)) <= {0, 1} for m in masks)


@pytest.mark.parametrize("crop_size", [256, 512])
def test_real_crops_dataset(real_dataset, crop_size):
    assert len(find_tiles(real_dataset, "val")) == len(find_tiles(real_dataset, "train")) == 6
    val = InriaDataset(real_dataset, "val", crop_size=crop_size)
    assert len(val) == 6
    sample = val[0]
    assert sample["window"].tolist() == [0, 0, 256, 256]
    image = hwc(sample)
    np.testing.assert_array_equal(image[:256, :256], read_image(val.tiles[0].image_path))
    assert (image[256:] == 0).all() and (image[:, 256:] == 0).all()
    train = InriaDataset(real_dataset, "train", crop_size=crop_size)
    image, target, valid = prepare_batch(collate(train, range(len(train))), torch.device("cpu"), crop_size)
    assert image.shape == (len(train), 3, crop_size, crop_size) and set(target.unique().tolist()) <= {0.0, 1.0}
    assert valid.any()


# ---------------------------------------------------------------------------- config, benchmark


def test_from_config(root):
    config = data.DataConfig(root=str(root), crop_size=32, samples_per_tile=3, seed=7)
    dataset = InriaDataset.from_config(config, "train")
    assert len(dataset) == 6 and dataset.seed == 7 and dataset.crop_size == 32


def test_collate_crops_equals_default_collate(root):
    dataset = InriaDataset(root, "train", crop_size=32)
    items = [dataset[i] for i in range(5)]
    ours, theirs = data.collate_crops(items), torch.utils.data.default_collate(items)
    assert ours.keys() == theirs.keys()
    for key in ("image", "mask", "window", "side"):
        assert torch.equal(ours[key], theirs[key]) and ours[key].dtype == theirs[key].dtype
    assert ours["tile"] == theirs["tile"] and ours["city"] == theirs["city"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prepare_batch_on_cuda_equals_cpu(root):
    dataset = InriaDataset(root, "train", crop_size=32, scale_range=(0.6, 1.4), samples_per_tile=8)
    batch = data.collate_crops([dataset[i] for i in range(len(dataset))])
    on_cpu = prepare_batch(batch, torch.device("cpu"), 32)
    on_gpu = prepare_batch({k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()},
                           torch.device("cuda"), 32, channels_last=True)  # fmt: skip
    torch.testing.assert_close(on_gpu[0].cpu(), on_cpu[0], atol=1e-4, rtol=0)
    assert torch.equal(on_gpu[1].cpu(), on_cpu[1]) and torch.equal(on_gpu[2].cpu(), on_cpu[2])
