"""The book's figures (``book/plinknet_book/plots.py``): every one legible on a phone.

Each figure is drawn as its notebook draws it, from small made-up inputs of the book's sizes (five cities,
1000 px tiles, two networks), saved as ``glue_figure`` saves it, and the smallest text written into the image
is scaled to the width at which a phone shows the image.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# CSS px: how wide a figure is shown on a 390 x 844 phone. Measured in Chromium (Playwright) on the built site:
# clientWidth of every `.bd-article figure img` at that viewport, full-width figures and `:figwidth:` ones alike.
PHONE_FIGURE_WIDTH = 342
CITIES = ["alpine", "farmland", "gridtown", "oldtown", "suburbia"]


def _image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)


def _mask(size: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((size, size)) > 0.7).astype(np.uint8)


def _summary() -> dict:
    from plinknet_book.results import load_summary

    return load_summary(ROOT / "results" / "ablation-synthetic-cpu")


def _reports() -> dict:
    return {name: {"per_city": {c: {"iou": 0.5 + 0.01 * i} for i, c in enumerate(CITIES)}, "overall": {"iou": 0.55}}
            for name in ("P-LinkNet", "LinkNet34")}  # fmt: skip


def architecture():
    from plinknet_book.plots import architecture_diagram

    shapes = [("input", (1, 3, 512, 512)), ("stem", (1, 64, 256, 256)), ("layer1", (1, 64, 128, 128)),
              ("layer2", (1, 128, 64, 64)), ("layer3", (1, 256, 32, 32)), ("layer4", (1, 512, 16, 16)),
              ("centre", (1, 512, 16, 16)), ("decoder4", (1, 256, 32, 32)), ("decoder3", (1, 128, 64, 64)),
              ("decoder2", (1, 64, 128, 128)), ("decoder1", (1, 64, 256, 256)),
              ("final", (1, 1, 512, 512))]  # fmt: skip
    return architecture_diagram(shapes, title="P-LinkNet on a 512x512 crop")


def pyramid():
    from plinknet.model import PyramidPooling, pyramid_shapes
    from plinknet_book.plots import pyramid_diagram

    return pyramid_diagram(pyramid_shapes(PyramidPooling(512), 16))


def bins():
    from plinknet_book.plots import plot_pyramid_bins

    return plot_pyramid_bins(_image(512))


def grid():
    from plinknet_book.plots import plot_grid

    return plot_grid(_image(1000), _mask(1000), 512)


def crops(root):
    from plinknet.data import InriaDataset
    from plinknet_book.plots import show_samples

    train_set = InriaDataset(root, "train", crop_size=64, samples_per_tile=6)
    samples = [dict(train_set[i], tile=f"{train_set[i]['tile']}, epoch {i % 4}") for i in range(12)]
    return show_samples(samples, ncols=3, crop_size=64)


def lab():
    from plinknet_book.plots import plot_lab_tile

    rng = np.random.default_rng(0)
    return plot_lab_tile(_image(1000), rng.integers(0, 50, (1000, 1000)), rng.integers(0, 5, (1000, 1000)), 0.09)


def real():
    from plinknet_book.plots import show_pairs

    titles = [f"synthetic: {c}" for c in CITIES[:4]] + [f"Inria (real): {n}" for n in
              ["austin1_12.tif", "austin1_4.tif", "chicago1_11.tif", "chicago1_3.tif"]]  # fmt: skip
    return show_pairs([_image(256, i) for i in range(8)], [_mask(256, i) for i in range(8)], titles)


def history():
    from plinknet_book.plots import plot_history

    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "iou": 0.2 * e, "miou": 0.3 * e} for e in (1, 2, 3)]
    return plot_history({"P-LinkNet": rows})


def ablation():
    from plinknet_book.plots import plot_ablation

    return plot_ablation(_summary())


def lab_metrics():
    from plinknet_book.plots import plot_lab

    return plot_lab(_summary())


def panel():
    from plinknet_book.plots import plot_predictions

    networks = ("P-LinkNet", "LinkNet34")
    predictions = {name: [_mask(256, 10 * k + i) for i in range(5)] for k, name in enumerate(networks)}
    return plot_predictions([_image(256, i) for i in range(5)], [_mask(256, i) for i in range(5)], predictions,
                            [f"{c}1" for c in CITIES])  # fmt: skip


def cities():
    from plinknet_book.plots import plot_city_bars

    return plot_city_bars(_reports(), "iou")


def city_seeds():
    from plinknet_book.plots import plot_city_seeds
    from plinknet_book.results import city_scores

    return plot_city_seeds(city_scores(ROOT / "results" / "ablation-synthetic-cpu" / "results.csv"), _reports())


def scene():
    from plinknet_book.plots import plot_scene

    return plot_scene(_image(1000), np.random.default_rng(0).random((1000, 1000)), _mask(1000))


def disagree():
    from plinknet_book.plots import plot_disagreement

    return plot_disagreement(_image(1000), _mask(1000, 1), _mask(1000, 2), _mask(1000, 3))


def polygons():
    from plinknet_book.plots import plot_polygons

    squares = [[[[x, y], [x + 1e-4, y], [x + 1e-4, y + 1e-4], [x, y + 1e-4], [x, y]]]
               for x in np.linspace(2.35, 2.353, 6) for y in np.linspace(48.85, 48.853, 6)]  # fmt: skip
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": s}} for s in squares]
    return plot_polygons({"type": "FeatureCollection", "features": features}, "P-LinkNet buildings, oldtown2")


def verdict():
    from plinknet_book.plots import plot_verdict

    return plot_verdict(_summary(), "the synthetic lab sample, not Inria", paper_scale_run=False)


# name in the book -> (how its notebook draws it, JPEG like the notebook's photo figures)
FIGURES = {"fig-architecture": (architecture, False), "fig-pyramid": (pyramid, False), "fig-bins": (bins, False),
           "fig-grid": (grid, True), "fig-crops": (crops, True), "fig-lab": (lab, True), "fig-real": (real, True),
           "fig-history": (history, False), "fig-ablation": (ablation, False),
           "fig-lab-metrics": (lab_metrics, False), "fig-panel": (panel, True), "fig-cities": (cities, True),
           "fig-city-seeds": (city_seeds, True), "fig-scene": (scene, True), "fig-disagree": (disagree, True),
           "fig-polygons": (polygons, True), "fig-verdict": (verdict, False)}  # fmt: skip


def draw(name: str, root) -> bytes:
    """The figure ``name`` saved as ``glue_figure`` saves it."""
    from plinknet_book.context import figure_image

    make, photo = FIGURES[name]
    return figure_image(make(root) if name == "fig-crops" else make(), photo)


def phone_text_px(image: bytes) -> float:
    """The smallest text of a saved figure in CSS px on the phone: shown at half its pixels (a 2x image), at most
    as wide as the phone's column."""
    from plinknet_book.context import read_smallest_text_px

    smallest = read_smallest_text_px(io.BytesIO(image))
    assert smallest is not None, "the image carries no smallest-text metadata"
    width = Image.open(io.BytesIO(image)).width
    return smallest * min(width / 2, PHONE_FIGURE_WIDTH) / width


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_legible_on_a_phone(name, root):
    from plinknet_book.context import LEGIBLE_CSS_PX as LEGIBLE

    size = phone_text_px(draw(name, root))
    assert size >= LEGIBLE, f"{name}: smallest text {size:.1f} CSS px on a 390 px phone, under {LEGIBLE}"


def test_the_smallest_text_is_measured_from_what_is_drawn():
    import matplotlib.pyplot as plt

    from plinknet_book.context import figure_image, read_smallest_text_px, smallest_text_px

    fig, (left, right) = plt.subplots(1, 2, figsize=(4, 2), dpi=100)
    left.set_title("title", fontsize=12)
    left.tick_params(labelsize=9)
    right.axis("off")
    right.tick_params(labelsize=4)  # not drawn: the axes is off
    right.text(0.5, 0.5, "", fontsize=2)  # empty: nothing drawn
    assert smallest_text_px(fig, 200) == pytest.approx(9 * 200 / 72)
    png = figure_image(fig)
    assert read_smallest_text_px(io.BytesIO(png)) == pytest.approx(25.0)
    fig, ax = plt.subplots(dpi=100)
    ax.axis("off")
    jpeg = figure_image(fig, photo=True)
    assert read_smallest_text_px(io.BytesIO(jpeg)) == float("inf")
    plain = io.BytesIO()
    Image.new("RGB", (4, 4)).save(plain, format="PNG")
    assert read_smallest_text_px(plain) is None


if __name__ == "__main__":  # python tests/test_plots.py: each figure's smallest text on the phone, as JSON
    from helpers import fixture_root

    print(json.dumps({name: round(phone_text_px(draw(name, fixture_root())), 1) for name in FIGURES}, indent=1))
