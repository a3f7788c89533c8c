"""Lab metrics: recall by building size and false positives on look-alikes, on the synthetic sample."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from plinknet.data import find_tiles, read_mask
from plinknet.study.lab import (
    COUNT_KEYS,
    SIZE_CLASSES_M2,
    format_lab_table,
    lab_counts,
    lab_rates,
    read_lab,
    sum_counts,
    tile_lab_counts,
)
from plinknet.synthetic import LOOKALIKE_KINDS, PARKING, POOL, SyntheticConfig, generate


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    config = SyntheticConfig(tile_size=300, val_tiles=1, train_tiles=1)  # 90 m tiles, 10 of them
    root = generate(tmp_path_factory.mktemp("lab"), seed=0, config=config, progress=False)
    return find_tiles(root, "all")


def _total(tiles, predict):
    return sum_counts(tile_lab_counts(predict(read_mask(t.mask_path), t), t.image_path) for t in tiles)


def test_perfect_prediction(tiles):
    counts = _total(tiles, lambda mask, t: mask)
    rates = lab_rates(counts)
    populated = [s for s in SIZE_CLASSES_M2 if counts[f"{s}_total"]]
    assert {"small", "medium"} <= set(populated)
    assert all(rates[f"recall_{s}"] == 1.0 for s in populated)
    assert counts["distractor_pixels"] > 0 and rates["fp_rate"] == 0.0
    assert all(rates[f"fp_rate_{k}"] in (0.0, None) for k in LOOKALIKE_KINDS.values())


def test_predicting_everything(tiles):
    counts = _total(tiles, lambda mask, t: np.ones_like(mask))
    rates = lab_rates(counts)
    assert rates["fp_rate"] == 1.0
    assert all(rates[f"fp_rate_{k}"] in (1.0, None) for k in LOOKALIKE_KINDS.values())
    assert counts["distractor_pixels"] == sum(counts[f"{k}_pixels"] for k in LOOKALIKE_KINDS.values())


def test_predicting_nothing(tiles):
    rates = lab_rates(_total(tiles, lambda mask, t: np.zeros_like(mask)))
    assert all(rates[f"recall_{s}"] in (0.0, None) for s in SIZE_CLASSES_M2)
    assert rates["fp_rate"] == 0.0


def test_one_known_instance(tiles):
    tile = next(t for t in tiles if t.city == "farmland")
    lab = read_lab(tile.image_path)
    assert lab.pixel_area_m2 == pytest.approx(0.09)
    areas = np.bincount(lab.instances.ravel())
    target = int(np.argmax(areas[1:])) + 1  # the largest building of the tile
    size = next(s for s, (lo, hi) in SIZE_CLASSES_M2.items() if lo <= areas[target] * 0.09 < hi)
    counts = lab_counts(lab.instances == target, lab.instances, lab.distractors)
    for s in SIZE_CLASSES_M2:
        in_class = [a * 0.09 for a in areas[1:] if SIZE_CLASSES_M2[s][0] <= a * 0.09 < SIZE_CLASSES_M2[s][1]]
        assert counts[f"{s}_total"] == len(in_class)
        assert counts[f"{s}_detected"] == (1 if s == size else 0)
    assert counts["distractor_false_positives"] == 0


def _toy():
    """A 20 x 30 tile at 1 m^2 per pixel: a 10 x 10 (100 m^2, medium) and a 3 x 3 (small) building,
    a parking lot apart from them and a pool touching the big one."""
    instances = np.zeros((20, 30), np.uint32)
    distractors = np.zeros((20, 30), np.uint8)
    instances[0:10, 0:10] = 1
    instances[15:18, 0:3] = 2
    distractors[0:10, 20:30] = PARKING  # 100 px, far from both
    distractors[0:10, 10:12] = POOL  # 20 px, touching building 1
    return instances, distractors


def test_detection_rule_and_size_thresholds():
    instances, distractors = _toy()
    half = np.zeros_like(instances, np.uint8)
    half[0:5, 0:10] = 1  # exactly 50 % of building 1
    counts = lab_counts(half, instances, distractors, pixel_area_m2=1.0)
    assert (counts["medium_detected"], counts["medium_total"]) == (1, 1)  # 100 m^2 is medium, not small
    assert (counts["small_detected"], counts["small_total"]) == (0, 1)
    assert counts["large_total"] == 0 and lab_rates(counts)["recall_large"] is None
    half[4, 9] = 0  # 49 %
    assert lab_counts(half, instances, distractors, pixel_area_m2=1.0)["medium_detected"] == 0


def test_false_positives_per_kind_and_edge_margin():
    instances, distractors = _toy()
    prediction = np.zeros_like(instances, np.uint8)
    prediction[0:5, 20:30] = 1  # half the parking lot
    prediction[0:10, 10:11] = 1  # the pool's column next to the building: edge blur
    counts = lab_counts(prediction, instances, distractors, pixel_area_m2=1.0)
    assert (counts["parking_false_positives"], counts["parking_pixels"]) == (50, 100)
    assert (counts["pool_false_positives"], counts["pool_pixels"]) == (0, 0)  # within 2 px of a roof
    assert lab_rates(counts)["fp_rate"] == 0.5 and lab_rates(counts)["fp_rate_pool"] is None
    counts = lab_counts(prediction, instances, distractors, pixel_area_m2=1.0, margin_px=0)
    assert (counts["pool_false_positives"], counts["pool_pixels"]) == (10, 20)
    assert (counts["distractor_false_positives"], counts["distractor_pixels"]) == (60, 120)


def test_counts_add_up_over_tiles():
    instances, distractors = _toy()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 20, 30), dtype=np.uint8)
    gap = np.zeros((20, 5), np.uint8)  # keeps the edge margin of one tile off the other
    joined = lab_counts(
        np.hstack([a, gap, b]),
        np.hstack([instances, gap, np.where(instances > 0, instances + 2, 0)]),
        np.hstack([distractors, gap, distractors]),
        pixel_area_m2=1.0,
    )
    summed = sum_counts([lab_counts(p, instances, distractors, pixel_area_m2=1.0) for p in (a, b)])
    assert summed == joined and list(summed) == list(COUNT_KEYS)


def test_prediction_must_be_a_binary_mask_of_the_same_shape():
    instances, distractors = _toy()
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        lab_counts(np.full(instances.shape, 255, np.uint8), instances, distractors)
    with pytest.raises(ValueError, match="same shape"):
        lab_counts(np.zeros((5, 5), np.uint8), instances, distractors)


def test_missing_lab_files_say_so(tiles, tmp_path):
    image = tmp_path / "AerialImageDataset" / "train" / "images" / "austin1.tif"
    image.parent.mkdir(parents=True)
    image.touch()
    with pytest.raises(FileNotFoundError, match="austin1_instances.tif.*real Inria has no instance labels"):
        read_lab(image)
    tile = tiles[0]  # a synthetic tile whose distractors file got lost
    shutil.copy(tile.image_path, image)
    (tmp_path / "AerialImageDataset" / "train" / "lab").mkdir()
    shutil.copy(tile.image_path.parent.parent / "lab" / f"{tile.name}_instances.tif",
                tmp_path / "AerialImageDataset" / "train" / "lab" / "austin1_instances.tif")  # fmt: skip
    with pytest.raises(FileNotFoundError, match="austin1_distractors.tif"):
        tile_lab_counts(read_mask(tile.mask_path), image)


def test_format_lab_table():
    instances, distractors = _toy()
    counts = lab_counts(instances > 0, instances, distractors, pixel_area_m2=1.0)
    table = format_lab_table({"P-LinkNet": lab_rates(counts), "LinkNet34": lab_rates(counts)}, counts)
    lines = table.splitlines()
    assert lines[1].startswith("P-LinkNet") and lines[2].startswith("LinkNet34")
    assert "100.00" in lines[1] and "-" in lines[1].split()  # no large building: no rate
    assert "real Inria has no such labels" in lines[-1]
