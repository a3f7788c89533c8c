"""Tests for plinknet/data.py on the tiny committed fixture, the real crops and a local server."""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from plinknet import data
from plinknet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InriaDataError,
    InriaDataset,
    find_tiles,
    grid_windows,
    normalize,
    read_image,
    read_mask,
)

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "inria"
REAL_CROPS = Path(__file__).resolve().parents[1].parent / "shared/data/inria-crops"

_spec = importlib.util.spec_from_file_location(
    "make_inria_fixture", HERE / "data/make_inria_fixture.py"
)
make_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixture)


@pytest.fixture(scope="session")
def root() -> Path:
    """The committed fixture (written again if someone deleted it)."""
    if not (FIXTURE / "AerialImageDataset/train/images/austin1.tif").exists():
        make_fixture.main(FIXTURE)
    return FIXTURE


@pytest.fixture
def copy(root, tmp_path) -> Path:
    """A scratch copy of the fixture's AerialImageDataset folder, free to break."""
    return Path(shutil.copytree(root / "AerialImageDataset", tmp_path / "AerialImageDataset"))


def pixels(image: torch.Tensor) -> np.ndarray:
    """Undo ImageNet normalisation: (3, H, W) float -> (H, W, 3) uint8."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def source(dataset: InriaDataset, sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 image and {0,1} mask pixels of a sample's source window."""
    tile = next(t for t in dataset.tiles if t.name == sample["tile"])
    row, col, height, width = sample["window"].tolist()
    window = (slice(row, row + height), slice(col, col + width))
    return read_image(tile.image_path)[window], read_mask(tile.mask_path)[window]


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
        np.testing.assert_array_equal(pixels(sample["image"]), image)
        np.testing.assert_array_equal(sample["mask"][0].numpy(), mask)
    assert all((count >= 1).all() for count in covered.values())


# ---------------------------------------------------------------------------- training crops


def test_train_samples(root):
    dataset = InriaDataset(root, "train", crop_size=32)
    assert len(dataset) == 2 * 6  # samples_per_tile defaults to the grid count
    assert len(InriaDataset(root, "train", crop_size=32, samples_per_tile=5)) == 10
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert sample["mask"].shape == (1, 32, 32) and sample["mask"].dtype == torch.float32
        assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}
        assert sample["tile"] == ("austin6" if index < 6 else "tyrol-w6")
        assert sample["city"] == sample["tile"][:-1]
        row, col, height, width = sample["window"].tolist()
        assert 0 <= row <= 64 - height and 0 <= col <= 80 - width
        assert 29 <= height == width <= 35  # round(32 * s), s in [0.9, 1.1]


def test_unaugmented_train_read_gives_back_pixels(root):
    dataset = InriaDataset(root, "train", crop_size=32, augment=False)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["window"][2:].tolist() == [32, 32]
        image, mask = source(dataset, sample)
        np.testing.assert_array_equal(pixels(sample["image"]), image)
        np.testing.assert_array_equal(sample["mask"][0].numpy(), mask)


def test_flips_and_rotations_move_mask_with_image(root):
    # fixture roofs are 140-239, ground 40-139: the mask must mark exactly the bright pixels
    dataset = InriaDataset(root, "train", crop_size=32, scale_range=(1.0, 1.0), samples_per_tile=20)
    flipped = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        bright = pixels(sample["image"]).min(axis=2) >= 140
        np.testing.assert_array_equal(bright, sample["mask"][0].numpy() == 1)
        image, _ = source(dataset, sample)
        flipped += not np.array_equal(pixels(sample["image"]), image)
    assert flipped > 10  # 3 in 4 crops are flipped or rotated


def test_scale_augmentation_resizes(root):
    dataset = InriaDataset(root, "train", crop_size=32, scale_range=(0.5, 0.5))
    sample = dataset[0]
    assert sample["window"][2:].tolist() == [16, 16]
    assert sample["image"].shape == (3, 32, 32)
    assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}


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


def test_small_tiles_are_padded(root):
    for split in ("train", "val"):
        dataset = InriaDataset(root, split, crop_size=128, augment=False)
        assert len(dataset) == 2
        sample = dataset[0]
        assert sample["window"].tolist() == [0, 0, 64, 80]
        image = pixels(sample["image"])
        assert image.shape == (128, 128, 3)
        np.testing.assert_array_equal(image[:64, :80], read_image(dataset.tiles[0].image_path))
        assert (image[64:] == 0).all() and (image[:, 80:] == 0).all()
        assert (sample["mask"][0, 64:] == 0).all() and (sample["mask"][0, :, 80:] == 0).all()
    augmented = InriaDataset(root, "train", crop_size=128)
    assert all(augmented[i]["image"].shape == (3, 128, 128) for i in range(len(augmented)))


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


def test_cache_gives_identical_samples(root):
    for split in ("train", "val"):
        on_disk = InriaDataset(root, split, crop_size=32)
        in_memory = InriaDataset(root, split, crop_size=32, cache=True)
        for index in range(len(on_disk)):
            a, b = on_disk[index], in_memory[index]
            assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "window"))
        assert len(in_memory._arrays) == 2


def test_normalize():
    image = np.array([[[0, 128, 255]]], np.uint8)
    out = normalize(image)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float32
    expected = (np.array([0, 128, 255]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError):
        normalize(image.astype(np.float32))


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
    for cache in (False, True):
        dataset = InriaDataset(copy, "train", crop_size=64, augment=False, cache=cache)
        with pytest.raises(InriaDataError, match="austin6.tif"):
            dataset[0]


def test_masks_holding_0_1_are_accepted(copy):
    original = read_mask(copy / "train/gt/austin6.tif")  # from the 0/255 file
    _rewrite(copy / "train/gt/austin6.tif", original)  # now stored as 0/1
    sample = InriaDataset(copy, "train", crop_size=128, augment=False)[0]  # whole tile
    np.testing.assert_array_equal(sample["mask"][0, :64, :80].numpy(), original)
    assert original.any()


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
    image = pixels(sample["image"])
    np.testing.assert_array_equal(image[:256, :256], read_image(val.tiles[0].image_path))
    assert (image[256:] == 0).all() and (image[:, 256:] == 0).all()
    train = InriaDataset(real_dataset, "train", crop_size=crop_size)
    for index in range(len(train)):
        sample = train[index]
        assert sample["image"].shape == (3, crop_size, crop_size)
        assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------------------- config, benchmark


def test_from_config(root):
    config = data.DataConfig(root=str(root), crop_size=32, samples_per_tile=3, seed=7)
    dataset = InriaDataset.from_config(config, "train")
    assert len(dataset) == 6 and dataset.seed == 7 and dataset.crop_size == 32
