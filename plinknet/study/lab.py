"""The synthetic sample as a controlled lab: recall by building size, false positives on look-alikes.

The paper credits pyramid pooling with global context: it should help most on large
buildings, whose inside is flat and featureless at the scale of a convolution, and on
look-alikes (parking lots, paved courtyards) that only context tells from a roof. Pixel IoU
cannot show either. The synthetic generator knows what it drew and writes it beside each
tile (see :mod:`plinknet.synthetic`)::

    <root>/AerialImageDataset/train/lab/<stem>_instances.tif    uint32 building instance ids, 0 none
    <root>/AerialImageDataset/train/lab/<stem>_distractors.tif  uint8 LOOKALIKE_KINDS codes, 0 none

From them and a predicted {0, 1} mask this module counts, per tile, the instances of each
size class that are detected and the look-alike pixels predicted as building. Counts are
plain integers, so tiles (and processes) add up by summing them; rates come last::

    counts = sum_counts(tile_lab_counts(predicted_mask(t), t.image_path) for t in tiles)
    print(format_lab_table({"P-LinkNet": lab_rates(counts)}))

**Real Inria has no such labels**: its masks are one cadastral raster per tile, with no
instances and nothing marked as a look-alike. These numbers exist for the synthetic sample
only and say nothing about the paper's data.

Choices made here (none is in the paper):
  * an instance is **detected** when at least half of its pixels are predicted building
    (``DETECTED_FRACTION``). A coverage rule, not an IoU match, because touching row houses
    are separate instances and a prediction that merges them into one blob has still found
    each of them;
  * sizes are the **visible footprint in the tile**, in m^2: a building cut by the tile edge
    or half covered by a later roof counts with what is left, which is what a network sees;
  * look-alike pixels within ``EDGE_MARGIN_PX`` of a building are left out, so the rate
    measures confusion with the look-alike rather than the blur of a neighbouring roof edge
    (courtyards and yards touch buildings all along their border): the true mask grown by
    2 px scores 7 % on the default sample without the margin, 0 % with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from plinknet.data.tiles import find_tiles
from plinknet.infer.evaluate import TileCounter, TileScores, evaluate_checkpoint
from plinknet.synthetic import LOOKALIKE_KINDS

# Visible footprint area in m^2, [low, high). Chosen from the generator's size distribution
# (default sample, seed 0: median 99 m^2, 90th percentile 220 m^2) so that every class is
# populated: about 1,860 small, 1,720 medium and 76 large instances in its 30 tiles.
# small: sheds, garages, wings and fragments, under ~33 px (10 m) across;
# medium: detached and row houses, chalets, block-front segments;
# large: warehouses, barns, halls, palaces, stores: 75 px (22 m) across and more, several
# cells of the encoder's 1/32-scale output; 2 % of the instances but 22 % of building pixels.
SIZE_CLASSES_M2 = {"small": (0.0, 100.0), "medium": (100.0, 500.0), "large": (500.0, math.inf)}
DETECTED_FRACTION = 0.5  # share of an instance's pixels predicted building to count it found
EDGE_MARGIN_PX = 2  # 0.6 m at 0.3 m: the usual blur of a predicted roof edge

# The keys of lab_counts() in a fixed order: np.array([c[k] for k in COUNT_KEYS]) is what to
# all-reduce across processes.
COUNT_KEYS = (
    *(f"{size}_{what}" for size in SIZE_CLASSES_M2 for what in ("detected", "total")),
    *(f"{kind}_{what}" for kind in ("distractor", *LOOKALIKE_KINDS.values()) for what in ("false_positives", "pixels")),
)  # fmt: skip


@dataclass
class TileLab:
    """The lab labels of one tile."""

    instances: np.ndarray  # (H, W) uint32 building instance ids, 0 none
    distractors: np.ndarray  # (H, W) uint8 LOOKALIKE_KINDS codes, 0 none
    pixel_area_m2: float  # from the GeoTIFF transform; 0.09 at Inria's 0.3 m


def lab_paths(image_path: str | os.PathLike) -> tuple[Path, Path]:
    """Where the lab labels of the tile ``.../train/images/<stem>.tif`` are: (instances, distractors)."""
    image_path = Path(image_path)
    lab = image_path.parent.parent / "lab"
    return lab / f"{image_path.stem}_instances.tif", lab / f"{image_path.stem}_distractors.tif"


def read_lab(image_path: str | os.PathLike) -> TileLab:
    """Read the lab labels that the synthetic generator wrote beside an image tile.

    Args:
        image_path: the tile's image, ``<root>/AerialImageDataset/train/images/<stem>.tif``.

    Raises:
        FileNotFoundError: the tile has no lab labels (real Inria never has; a synthetic
            sample written before they existed neither).
    """
    paths = lab_paths(image_path)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"no lab labels for {image_path}: {path} is missing; only the synthetic sample "
                f"has them (regenerate it with `plinknet synth`), real Inria has no instance labels"
            )
    with rasterio.open(paths[0]) as f:
        instances, (xres, yres) = f.read(1), f.res
    with rasterio.open(paths[1]) as f:
        distractors = f.read(1)
    if instances.shape != distractors.shape:
        raise ValueError(f"{paths[0]} is {instances.shape} px but {paths[1]} is {distractors.shape}")
    return TileLab(instances, distractors, abs(xres * yres))


def lab_counts(
    prediction: np.ndarray,
    instances: np.ndarray,
    distractors: np.ndarray,
    pixel_area_m2: float = 0.09,
    margin_px: int = EDGE_MARGIN_PX,
) -> dict[str, int]:
    """Detected and total instances per size class, false positives and pixels per look-alike kind.

    Args:
        prediction: (H, W) predicted building mask, {0, 1} or bool.
        instances: (H, W) instance ids, 0 none (``<stem>_instances.tif``).
        distractors: (H, W) LOOKALIKE_KINDS codes, 0 none (``<stem>_distractors.tif``).
        pixel_area_m2: ground area of one pixel, to put instances in ``SIZE_CLASSES_M2``.
        margin_px: look-alike pixels this close to a building (8-neighbourhood steps) are left out.

    Returns:
        Plain integers under ``COUNT_KEYS``; sum them over tiles, then call :func:`lab_rates`.
        ``distractor_*`` are all kinds together.
    """
    if not (prediction.shape == instances.shape == distractors.shape):
        raise ValueError(
            f"prediction {prediction.shape}, instances {instances.shape} and distractors "
            f"{distractors.shape} must have the same shape"
        )
    if prediction.dtype != bool and prediction.size and (prediction.min() < 0 or prediction.max() > 1):
        raise ValueError("prediction must be a {0, 1} mask; threshold the probabilities (or divide 0/255 by 255)")
    predicted = prediction.astype(bool)
    counts = {}

    ids = instances.ravel().astype(np.intp)
    area = np.bincount(ids)
    hits = np.bincount(ids[predicted.ravel()], minlength=len(area))
    area, hits = area[1:], hits[1:]  # id 0 is no building
    present = area > 0  # ids covered by later roofs leave no pixel
    detected = hits >= DETECTED_FRACTION * area
    area_m2 = area * pixel_area_m2
    for size, (low, high) in SIZE_CLASSES_M2.items():
        in_class = present & (area_m2 >= low) & (area_m2 < high)
        counts[f"{size}_detected"] = int((in_class & detected).sum())
        counts[f"{size}_total"] = int(in_class.sum())

    counted = (distractors > 0) & ~_dilate(instances > 0, margin_px)
    kinds = len(LOOKALIKE_KINDS) + 1
    pixels = np.bincount(distractors[counted], minlength=kinds)
    false_positives = np.bincount(distractors[counted & predicted], minlength=kinds)
    counts["distractor_false_positives"] = int(false_positives[1:].sum())
    counts["distractor_pixels"] = int(pixels[1:].sum())
    for code, kind in LOOKALIKE_KINDS.items():
        counts[f"{kind}_false_positives"] = int(false_positives[code])
        counts[f"{kind}_pixels"] = int(pixels[code])
    return {key: counts[key] for key in COUNT_KEYS}


def tile_lab_counts(prediction: np.ndarray, image_path: str | os.PathLike, margin_px: int = EDGE_MARGIN_PX):
    """:func:`lab_counts` of a predicted mask against the lab labels of the tile at ``image_path``."""
    lab = read_lab(image_path)
    return lab_counts(prediction, lab.instances, lab.distractors, lab.pixel_area_m2, margin_px)


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Add up the counts of several tiles (or processes)."""
    total = dict.fromkeys(COUNT_KEYS, 0)
    for c in counts:
        for key in COUNT_KEYS:
            total[key] += c[key]
    return total


def lab_rates(counts: dict[str, int]) -> dict[str, float | None]:
    """Recall per size class and false-positive rate on look-alike pixels, overall and per kind.

    Returns:
        ``recall_<size>`` (detected / total instances) for each of ``SIZE_CLASSES_M2``,
        ``fp_rate`` (predicted-building look-alike pixels / look-alike pixels, all kinds) and
        ``fp_rate_<kind>`` for each of ``LOOKALIKE_KINDS``; None where there is nothing to count.
    """

    def ratio(a, b):
        return counts[a] / counts[b] if counts[b] else None

    rates = {f"recall_{size}": ratio(f"{size}_detected", f"{size}_total") for size in SIZE_CLASSES_M2}
    rates["fp_rate"] = ratio("distractor_false_positives", "distractor_pixels")
    for kind in LOOKALIKE_KINDS.values():
        rates[f"fp_rate_{kind}"] = ratio(f"{kind}_false_positives", f"{kind}_pixels")
    return rates


def format_lab_table(rates_by_model: dict[str, dict], counts: dict[str, int] | None = None) -> str:
    """A plain-text table, one row per model, of :func:`lab_rates` in %.

    Args:
        rates_by_model: ``{model name: lab_rates(...)}``.
        counts: the counts of one of them, to print how many instances and pixels each
            column rests on (the same tiles give the same totals for every model).
    """
    names = [*(f"recall_{s}" for s in SIZE_CLASSES_M2), "fp_rate", *(f"fp_rate_{k}" for k in LOOKALIKE_KINDS.values())]
    heads = [n.replace("recall_", "rec ").replace("fp_rate_", "fp ").replace("fp_rate", "fp all") for n in names]
    lines = [f"{'':14s}" + "".join(f"{h:>13s}" for h in heads)]
    for model, rates in rates_by_model.items():
        cells = ("-" if rates[n] is None else f"{100 * rates[n]:.2f}" for n in names)
        lines.append(f"{model:14s}" + "".join(f"{c:>13s}" for c in cells))
    if counts is not None:
        totals = [counts[f"{s}_total"] for s in SIZE_CLASSES_M2]
        totals += [counts[f"{k}_pixels"] for k in ("distractor", *LOOKALIKE_KINDS.values())]
        lines.append(f"{'(n)':14s}" + "".join(f"{t:>13d}" for t in totals))
    low, high = SIZE_CLASSES_M2["medium"]
    lines.append(
        f"(recall: instances with >= {DETECTED_FRACTION:.0%} of their pixels predicted, small < {low:g} m^2 "
        f"<= medium < {high:g} m^2 <= large; fp: look-alike pixels predicted building, those within "
        f"{EDGE_MARGIN_PX} px of a building left out; synthetic sample only, real Inria has no such labels)"
    )
    return "\n".join(lines)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1) x (2r+1) square, with shifted ORs."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for k in range(1, r + 1):
            a = [slice(None)] * 2
            b = [slice(None)] * 2
            a[axis], b[axis] = slice(k, None), slice(None, -k)
            out[tuple(a)] |= src[tuple(b)]
            out[tuple(b)] |= src[tuple(a)]
    return out


def _count_tile(prediction: np.ndarray, tile) -> dict[str, int]:
    return tile_lab_counts(prediction, tile.image_path)


LAB_COUNTER = TileCounter(COUNT_KEYS, _count_tile)  # lab counts per tile, for plinknet.infer.evaluate


def lab_counter(data_dir: str | os.PathLike) -> TileCounter | None:
    """:data:`LAB_COUNTER` when every tile of ``data_dir`` has lab labels (a synthetic sample), else None."""
    tiles = find_tiles(data_dir, "all")
    return LAB_COUNTER if tiles and all(p.is_file() for t in tiles for p in lab_paths(t.image_path)) else None


def add_lab(report: dict, scores: TileScores) -> None:
    """Add ``report["lab"]``: the lab counts summed over tiles, their :func:`lab_rates` and the counts per tile."""
    total = sum_counts(scores.counted.values())
    report["lab"] = {"counts": total, "rates": lab_rates(total), "per_tile": scores.counted}


def evaluate_with_lab(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, **options) -> dict:
    """:func:`plinknet.infer.evaluate_checkpoint`, plus ``report["lab"]`` when the tiles have lab labels."""
    counter = lab_counter(data_dir)
    return evaluate_checkpoint(checkpoint, data_dir, counter=counter, extend=add_lab if counter else None, **options)
