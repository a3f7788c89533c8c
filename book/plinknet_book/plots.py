"""The book's figures. Each function returns a matplotlib Figure and leaves showing or saving to the caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch, Patch

from plinknet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

# Okabe and Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design")
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}  # fmt: skip
# error maps: bright yellow, dark vermillion and blue stay apart under deuteranopia, protanopia and
# tritanopia alike (differ in lightness as well as hue); true negatives stay the dimmed grey image
ERROR_COLOURS = {"true positive": OKABE_ITO["yellow"], "false positive": OKABE_ITO["vermillion"],
                 "false negative": OKABE_ITO["blue"]}  # fmt: skip
MODEL_COLOURS = {"P-LinkNet": OKABE_ITO["blue"], "LinkNet34": OKABE_ITO["orange"]}


# Every figure must read on a phone: shown 342 CSS px wide there (a 390 px screen), a figure W inches wide at 100 dpi
# needs text of 1.9 W points for 9 CSS px. So figures are at most about 5.5 inches wide, with 11 pt text, and stack
# their panels rather than set them side by side (tests/test_plots.py measures each one).
PHONE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 11, "ytick.labelsize": 11,
         "legend.fontsize": 11, "figure.titlesize": 12}  # fmt: skip

METRIC_LABELS = {"iou": "IoU", "miou": "mIoU", "f1": "F1", "precision": "precision", "recall": "recall",
                 "accuracy": "accuracy"}  # fmt: skip


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)], np.float32)


def model_colour(name: str, index: int) -> str:
    return MODEL_COLOURS.get(name, list(OKABE_ITO.values())[index % 8])


def denormalize(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) ImageNet-normalised tensor -> (H, W, 3) uint8 for display."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = (image.detach().cpu().float() * std + mean).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


def overlay(image: np.ndarray, mask: np.ndarray, colour=(1.0, 0.2, 0.6), alpha: float = 0.45) -> np.ndarray:
    """Image (H, W, 3) uint8 with a {0,1} mask (H, W) tinted on top; float RGB in [0, 1]."""
    out = image.astype(np.float32) / 255
    m = mask.astype(bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour)
    return out


def error_map(prediction: np.ndarray, truth: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """RGB map of true positives, false positives and false negatives over a dimmed grey image."""
    pred, true = prediction.astype(bool), truth.astype(bool)
    if image is None:
        out = np.full((*pred.shape, 3), 0.15, np.float32)
    else:
        grey = image.astype(np.float32).mean(-1, keepdims=True) / 255
        out = np.repeat(0.15 + 0.35 * grey, 3, axis=-1)
    for colour, where in zip(ERROR_COLOURS.values(), (pred & true, pred & ~true, ~pred & true)):
        out[where] = _rgb(colour)
    return out


def _legend(fig, **kwargs) -> None:
    handles = [Patch(color=c, label=n) for n, c in ERROR_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=11, handlelength=1,
               columnspacing=1, **kwargs)  # fmt: skip


def show_samples(samples: Sequence[Mapping], ncols: int = 4, title: str | None = None,
                 crop_size: int | None = None) -> plt.Figure:  # fmt: skip
    """Dataset items as the network sees them, the building mask tinted and padding greyed.

    Items of :class:`plinknet.data.InriaDataset` (uint8 buffers) go through
    :func:`plinknet.data.prepare_batch` first, resized to ``crop_size`` (default: each
    buffer's own size).
    """
    from torch.utils.data import default_collate

    from plinknet.data.transforms import prepare_batch

    n = len(samples)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.65 * ncols, 1.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, samples):
        one = {k: v for k, v in s.items() if k in ("image", "mask", "side")}
        image, target, valid = prepare_batch(default_collate([one]), torch.device("cpu"),
                                             crop_size or s["image"].shape[-1])  # fmt: skip
        shown = overlay(denormalize(image[0]), target[0, 0].numpy())
        shown[~valid[0, 0].numpy()] = 0.75  # outside the tile
        ax.imshow(shown)
        ax.set_title(s.get("tile", ""), fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], titles: Sequence[str],
               ncols: int = 4) -> plt.Figure:  # fmt: skip
    """Rows of (image, image with mask) for uint8 images and {0,1} masks; a title breaks after its colon.

    Panels 1.4 inches wide, titles 11 pt: four columns read on a phone.
    """
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.4 * ncols, 3.15 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, mask, title) in enumerate(zip(images, masks, titles)):
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].imshow(image)
        axes[r, c].set_title(title.replace(": ", ":\n"), fontsize=11)
        axes[r + 1, c].imshow(overlay(image, mask))
    fig.tight_layout()
    return fig


def plot_history(histories: Mapping[str, Sequence[Mapping]], title: str = "",
                 held_out: str = "selection") -> plt.Figure:  # fmt: skip
    """Loss and IoU/mIoU per epoch for one or more runs (rows of ``history.csv``); ``held_out`` names the tiles the
    epochs were scored on (``selection`` with the recipes' ``select_tiles``, ``validation`` without). The two panels
    are stacked, legends below each: legible on a phone."""
    with plt.rc_context(PHONE):
        fig, (ax_loss, ax_iou) = plt.subplots(2, 1, figsize=(5.0, 7.0))
    for i, (name, rows) in enumerate(histories.items()):
        colour = model_colour(name, i)
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "-o", color=colour, label=f"{name} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in rows], "--s", color=colour, label=f"{name} {held_out}")
        ax_iou.plot(epochs, [100 * r["iou"] for r in rows], "-o", color=colour, label=f"{name} IoU")
        ax_iou.plot(epochs, [100 * r["miou"] for r in rows], "--s", color=colour, label=f"{name} mIoU")
    ax_loss.set(xlabel="epoch", ylabel="Dice + BCE loss", title="loss")
    ax_iou.set(xlabel="epoch", ylabel="%", title=f"{held_out} IoU (building) and mIoU (2-class mean)")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)  # off the data
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_predictions(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    titles: Sequence[str] | None = None,
) -> plt.Figure:
    """The paper's Figure 5 with error maps: image, ground truth, then each model's mask and its errors.

    ``predictions`` maps a model name to binary masks, one per image.
    """
    names = list(predictions)
    ncols = 2 + 2 * len(names)
    side = 0.9  # inches a panel: six columns and 11 pt headers read on a phone
    fig, axes = plt.subplots(len(images), ncols, figsize=(side * ncols + 0.3, side * len(images) + 1.3), squeeze=False)
    headers = ["image", "ground\ntruth"] + [h for n in names for h in (n, f"{n}\nerrors")]
    for row, (image, truth) in enumerate(zip(images, truths)):
        panels = [image, truth]
        for n in names:
            pred = predictions[n][row]
            panels += [pred, error_map(pred, truth, image)]
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(headers[col], fontsize=11)
        if titles:
            axes[row, 0].set_ylabel(titles[row], fontsize=11)
    _legend(fig)
    fig.tight_layout(rect=(0, 0.07, 1, 1), h_pad=0.2, w_pad=0.2)
    return fig


def plot_city_bars(reports: Mapping[str, Mapping], metric: str = "iou", title: str = "") -> plt.Figure:
    """Grouped bars of one metric per city and overall, one bar per model (``evaluation_report`` dicts).

    The bars lie on their side, a city a row, each with its value at its end: legible on a phone.
    """
    names = list(reports)
    cities = list(next(iter(reports.values()))["per_city"]) + ["overall"]
    width = 0.8 / len(names)
    with plt.rc_context(PHONE):
        fig, ax = plt.subplots(figsize=(5.2, 0.75 * len(cities) + 1.4))
        y = np.arange(len(cities))
        for i, name in enumerate(names):
            values = [100 * reports[name]["per_city"][c][metric] for c in cities[:-1]]
            values.append(100 * reports[name]["overall"][metric])
            bars = ax.barh(y + (i - (len(names) - 1) / 2) * width, values, width, label=name,
                           color=model_colour(name, i))  # fmt: skip
            ax.bar_label(bars, fmt="%.1f", padding=2)
        ax.set_yticks(y, cities)
        ax.invert_yaxis()  # the first city on top, overall last
        ax.set_xlim(0, 1.15 * ax.get_xlim()[1])  # room for the values
        ax.set_xlabel(f"{METRIC_LABELS.get(metric, metric)} (%)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(names), frameon=False)  # off the data
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title)
        fig.tight_layout()
    return fig


DISAGREEMENT_COLOURS = {"only P-LinkNet right": OKABE_ITO["bluish green"],
                        "only LinkNet34 right": OKABE_ITO["reddish purple"]}  # fmt: skip


def disagreement(first: np.ndarray, second: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Where two {0,1} masks differ, split by which of them agrees with the truth (boolean maps)."""
    first, second, truth = first.astype(bool), second.astype(bool), truth.astype(bool)
    differ = first != second
    return {"only P-LinkNet right": differ & (first == truth), "only LinkNet34 right": differ & (second == truth)}


def plot_disagreement(image: np.ndarray, first: np.ndarray, second: np.ndarray, truth: np.ndarray,
                      title: str = "") -> plt.Figure:  # fmt: skip
    """Where P-LinkNet (``first``) and LinkNet34 (``second``) disagree on a scene, coloured by who is right.

    Pixels where both agree show the dimmed grey image; the legend counts the pixels of each kind.
    """
    grey = image.astype(np.float32).mean(-1, keepdims=True) / 255
    out = np.repeat(0.15 + 0.35 * grey, 3, axis=-1)
    parts = disagreement(first, second, truth)
    for where, colour in zip(parts.values(), DISAGREEMENT_COLOURS.values()):
        out[where] = _rgb(colour)
    fig, ax = plt.subplots(figsize=(5.2, 5.7))  # narrow: legible on a phone
    ax.imshow(out)
    ax.set_xticks([])
    ax.set_yticks([])
    handles = [Patch(color=c, label=f"{n}: {int(parts[n].sum()):,d} px") for n, c in DISAGREEMENT_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=1, frameon=False, fontsize=11)
    if title:
        ax.set_title(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def plot_city_seeds(per_city: Mapping[str, Mapping[str, Sequence[float]]], live: Mapping[str, Mapping] | None = None,
                    metric: str = "iou") -> plt.Figure:  # fmt: skip
    """Per-city scores over seeds: each seed a dot, the mean a bar, per network; the live demo as a cross.

    Args:
        per_city: ``{model: {city: [score per seed, in points]}}`` (:func:`plinknet_book.results.city_scores`).
        live: the live demo's ``evaluation_report`` per model (drawn as crosses), or None.
    """
    models = list(per_city)
    cities = list(next(iter(per_city.values())))
    width = 0.8 / len(models)
    with plt.rc_context(PHONE):  # narrow: legible on a phone
        fig, ax = plt.subplots(figsize=(5.2, 4.6))
    x = np.arange(len(cities))
    for i, name in enumerate(models):
        offset = x + (i - (len(models) - 1) / 2) * width
        values = [per_city[name][c] for c in cities]
        colour = model_colour(name, i)
        ax.bar(offset, [np.mean(v) for v in values], width, color=colour, alpha=0.35,
               label=f"{name}: mean over {len(values[0])} seeds")  # fmt: skip
        for k, v in enumerate(values):
            ax.plot(np.full(len(v), offset[k]), v, "o", color=colour, ms=4)
        if live and name in live:
            demo = [100 * live[name]["per_city"][c][metric] if c in live[name]["per_city"] else np.nan for c in cities]
            ax.plot(offset, demo, "x", color=colour, ms=8, mew=2, label=f"{name}: live demo")  # each its own colour
    ax.set_xticks(x, cities, fontsize=11)
    ax.tick_params(labelsize=11)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (%)", fontsize=11)
    ax.legend(fontsize=11, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, frameon=False)  # off the data
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_polygons(polygons: Mapping, title: str, colour: str = "#D55E00") -> plt.Figure:
    """The polygons of a GeoJSON FeatureCollection in longitude and latitude, drawn without a basemap: what the
    interactive map (:func:`plinknet_book.maps.polygon_map`) shows, offline and legible on a phone."""
    from matplotlib.patches import Polygon

    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    lats = []
    for feature in polygons["features"]:
        outer, *holes = feature["geometry"]["coordinates"]
        ax.add_patch(Polygon(outer, closed=True, facecolor=colour, alpha=0.45, edgecolor=colour, lw=0.6))
        for hole in holes:
            ax.add_patch(Polygon(hole, closed=True, facecolor="white", edgecolor=colour, lw=0.6))
        lats += [lat for _, lat in outer]
    ax.autoscale_view()
    ax.set_aspect(1 / np.cos(np.radians(np.mean(lats))))  # a degree of longitude is shorter than one of latitude
    ax.set_xlabel("longitude (°)", fontsize=11)
    ax.set_ylabel("latitude (°)", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.ticklabel_format(useOffset=False)
    ax.locator_params(nbins=4)
    ax.set_title(f"{title}: {len(polygons['features'])} polygons", fontsize=12)
    fig.tight_layout()
    return fig


def plot_scene(image: np.ndarray, probability: np.ndarray, truth: np.ndarray | None = None,
               threshold: float = 0.5, title: str = "") -> plt.Figure:  # fmt: skip
    """A whole scene: image, predicted probability, and the error map (or the mask) of the prediction; two panels
    a row, the legend in the fourth place (legible on a phone)."""
    with plt.rc_context(PHONE):
        fig, grid = plt.subplots(2, 2, figsize=(5.4, 5.6))
    axes, key = grid.flat[:3], grid.flat[3]
    key.axis("off")
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=11)
    shown = axes[1].imshow(probability, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title("building probability", fontsize=11)
    bar = fig.colorbar(shown, cax=axes[1].inset_axes([1.03, 0, 0.05, 1]))  # beside the panel, not out of it
    bar.ax.tick_params(labelsize=11)
    pred = probability > threshold
    if truth is not None:
        axes[2].imshow(error_map(pred, truth, image))
        axes[2].set_title(f"errors at threshold {threshold}", fontsize=11)
        key.legend(handles=[Patch(color=c, label=n) for n, c in ERROR_COLOURS.items()], loc="center", frameon=False,
                   fontsize=11)  # fmt: skip
    else:
        axes[2].imshow(overlay(image, pred))
        axes[2].set_title(f"mask at threshold {threshold}", fontsize=11)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@plt.rc_context(PHONE)
def plot_pyramid_bins(image: np.ndarray, bins: Sequence[int] = (1, 2, 3, 6)) -> plt.Figure:
    """What each pyramid level averages over: the image cut into b x b regions, one panel per bin, two a row."""
    nrows = -(-len(bins) // 2)
    fig, axes = plt.subplots(nrows, 2, figsize=(5.2, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(bins):]:
        ax.axis("off")
    h, w = image.shape[:2]
    for ax, b in zip(axes.flat, bins):
        ax.imshow(image)
        for k in range(1, b):
            ax.axhline(k * h / b, color="yellow", lw=1.5)
            ax.axvline(k * w / b, color="yellow", lw=1.5)
        side = h / b * 0.3  # metres, at Inria's 0.3 m pixels
        ax.set_title(f"bin {b}: {b * b} region{'s' if b > 1 else ''}\n(each ~{side:.0f} m at 0.3 m/px)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _inch_canvas(width: float, height: float) -> tuple[plt.Figure, plt.Axes]:
    """A figure ``width`` x ``height`` inches whose one axes, turned off, fills it in inches: for diagrams."""
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _box(ax, x: float, y: float, text: str, colour: str, width: float, height: float = 0.62) -> None:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.03", fc=colour,
                                ec="k", lw=0.8))  # fmt: skip
    ax.text(x, y, text, ha="center", va="center")


def _arrow(ax, start, end, **style) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.0, **style})


@plt.rc_context(PHONE)
def architecture_diagram(shapes: Sequence[tuple[str, tuple[int, ...]]], title: str = "P-LinkNet") -> plt.Figure:
    """A block diagram of the U-shape: encoder stages down the left, the pyramid centre at the bottom, decoder
    stages up the right (5 inches wide, legible on a phone).

    ``shapes`` is ``plinknet.model.stage_shapes`` output: (stage name, (B, C, H, W)). Boxes on
    one row share a resolution; dashed arrows are LinkNet's skips, added to the decoder output.
    """
    shape_of = dict(shapes)
    # (name, level): level 0 is full resolution, each level down halves it
    encoder = [("input", 0), ("stem", 1), ("layer1", 2), ("layer2", 3), ("layer3", 4), ("layer4", 5)]
    decoder = [("final", 0), ("decoder1", 1), ("decoder2", 2), ("decoder3", 3), ("decoder4", 4)]
    step, w, h, width = 0.85, 1.6, 0.62, 5.0  # row spacing, box width and height, figure width: inches
    x_encoder, x_middle, x_decoder = w / 2 + 0.05, width / 2, width - w / 2 - 0.05
    rows = 7 if "centre" in shape_of else 6
    fig, ax = _inch_canvas(width, rows * step + 0.7)

    def y(level):  # the centre is level 6
        return (rows - 0.5 - level) * step

    def box(x, level, name, colour, label=None):
        _, c, hh, ww = shape_of[name]
        _box(ax, x, y(level), f"{label or name}\n{c} x {hh} x {ww}", colour, w, h)

    for name, level in encoder:
        box(x_encoder, level, name, "#eeeeee" if name == "input" else "#a6d5a0")
    for name, level in decoder:
        box(x_decoder, level, name, "#9cc3e6", label="final: logits" if name == "final" else None)
    flow = {"color": "k", "lw": 1.2}  # the data's path: down the encoder, through the centre, up the decoder
    for level in range(5):
        _arrow(ax, (x_encoder, y(level) - h / 2), (x_encoder, y(level + 1) + h / 2), **flow)
    for level in range(4, 0, -1):
        _arrow(ax, (x_decoder, y(level) + h / 2), (x_decoder, y(level - 1) - h / 2), **flow)
    if "centre" in shape_of:  # below the two columns, between them
        box(x_middle, 6, "centre", "#f6c28b", label="pyramid pooling")
        _arrow(ax, (x_encoder, y(5) - h / 2), (x_middle - w / 2, y(6)), **flow)
        _arrow(ax, (x_middle + w / 2, y(6)), (x_decoder, y(4) - h / 2), **flow)
    else:  # LinkNet34: the encoder's last map goes straight to the decoder
        _arrow(ax, (x_encoder + w / 2, y(5)), (x_decoder, y(4) - h / 2), **flow)
        ax.text(x_middle, y(5) - 0.2, "no centre\n(LinkNet34)", ha="center", va="center")
    for level in (2, 3, 4):  # encoder stage added to the decoder block output of the same size
        _arrow(ax, (x_encoder + w / 2, y(level)), (x_decoder - w / 2, y(level)), color="grey", ls="--")
        ax.text(x_middle, y(level) + 0.06, "+ skip", ha="center", va="bottom", color="dimgrey")
    ax.text(x_middle, y(0) + h / 2 + 0.25, title, ha="center", va="bottom", fontsize=12)
    return fig


@plt.rc_context(PHONE)
def pyramid_diagram(shapes: Mapping) -> plt.Figure:
    """The paper's Figure 2 from ``plinknet.model.pyramid_shapes``, top to bottom: the centre map, one column per
    pyramid level (pool, 1x1 conv, upsample), the concatenation with the input itself, the fuse (5.3 inches wide,
    legible on a phone)."""
    levels, n = shapes["levels"], len(shapes["levels"])
    w, h, gap, side = 1.12, 0.8, 0.08, 0.45  # level box width and height, between columns, right margin: inches
    width = 0.06 + n * w + (n - 1) * gap + side
    middle = 0.06 + (width - 0.06 - side) / 2
    fig, ax = _inch_canvas(width, 6.6)

    def shape(s):
        return f"{s[1]}×{s[2]}×{s[3]}"

    rows = {"input": 5.55, "pooled": 4.35, "reduced": 3.35, "upsampled": 2.35, "concatenated": 1.25, "output": 0.35}
    _box(ax, middle, rows["input"], f"centre map in\n{shape(shapes['input'])}", "#a6d5a0", 2.2, 0.62)
    for column, level in enumerate(levels):
        x = 0.06 + w / 2 + column * (w + gap)
        b = level["bin"]
        _box(ax, x, rows["pooled"], f"average\npool {b}x{b}\n{shape(level['pooled'])}", "#fde0c5", w, h)
        _box(ax, x, rows["reduced"], f"1x1 conv,\nReLU\n{shape(level['reduced'])}", "#f6c28b", w, h)
        _box(ax, x, rows["upsampled"], f"bilinear\nupsample\n{shape(level['upsampled'])}", "#f6c28b", w, h)
        _arrow(ax, (middle, rows["input"] - 0.31), (x, rows["pooled"] + h / 2))
        _arrow(ax, (x, rows["pooled"] - h / 2), (x, rows["reduced"] + h / 2))
        _arrow(ax, (x, rows["reduced"] - h / 2), (x, rows["upsampled"] + h / 2))
        _arrow(ax, (x, rows["upsampled"] - h / 2), (middle, rows["concatenated"] + 0.31))
    x_side = width - 0.12  # the input itself goes round the levels into the concatenation
    ax.plot([middle + 1.1, x_side, x_side], [rows["input"], rows["input"], rows["concatenated"]], color="grey",
            ls="--", lw=1.0)  # fmt: skip
    _arrow(ax, (x_side, rows["concatenated"]), (middle + 1.13, rows["concatenated"]), color="grey", ls="--")
    ax.text(x_side - 0.04, rows["reduced"], "the input itself", rotation=90, ha="right", va="center",
            color="dimgrey")  # fmt: skip
    _box(ax, middle, rows["concatenated"], f"concatenate\n{shape(shapes['concatenated'])}", "#eeeeee", 2.2, 0.62)
    _box(ax, middle, rows["output"], f"1x1 conv, BN, ReLU\n{shape(shapes['output'])}", "#9cc3e6", 2.2, 0.62)
    _arrow(ax, (middle, rows["concatenated"] - 0.31), (middle, rows["output"] + 0.31))
    size = shapes["input"][2]
    bins = ", ".join(str(level["bin"]) for level in levels)
    ax.text(middle, 6.05, f"Pyramid pooling, bins {bins},\non a {size} x {size} centre map", ha="center",
            va="bottom", fontsize=12)  # fmt: skip
    return fig


def plot_grid(image: np.ndarray, mask: np.ndarray, crop_size: int, title: str = "") -> plt.Figure:
    """A tile with its buildings tinted and the validation grid of ``crop_size`` crops drawn on it."""
    from matplotlib.patches import Rectangle

    from plinknet.data.dataset import grid_windows

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(overlay(image, mask))
    for row, col in grid_windows(*mask.shape, crop_size):
        ax.add_patch(Rectangle((col, row), crop_size, crop_size, fill=False, ec=OKABE_ITO["yellow"], lw=1.5))
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    return fig


def plot_ablation(summary: Mapping, metrics: Sequence[str] = ("iou", "miou", "f1")) -> plt.Figure:
    """An archived ablation (``summary.json``): each seed's score per network, and the paired gap.

    Top panels: one point per seed and network, the mean as a line. Bottom panel: the per-seed
    gaps (P-LinkNet minus LinkNet34), their mean with the 95 % intervals, and the paper's +0.22.
    """
    with plt.rc_context(PHONE):  # the metrics side by side above, the gaps below: legible on a phone
        fig = plt.figure(figsize=(5.4, 7.4))
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.15])
        axes = top.subplots(1, len(metrics))
        rng = np.random.default_rng(0)
        for ax, metric in zip(axes, metrics):
            for i, (name, m) in enumerate(summary["models"].items()):
                values = m[f"{metric}_per_seed"]
                ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, color=model_colour(name, i), zorder=3,
                           s=22, label=name)  # fmt: skip
                ax.hlines(m[f"{metric}_mean"], i - 0.28, i + 0.28, color=model_colour(name, i), lw=2)
            ax.set_xticks([])  # the networks by colour (legend): their names do not fit under a third of a phone
            ax.set_xlim(-0.6, len(summary["models"]) - 0.4)
            ax.set_title(METRIC_LABELS.get(metric, metric))
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("points, per seed")
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        top.legend(unique.values(), unique.keys(), loc="lower center", ncol=len(unique), frameon=False)
        top.subplots_adjust(left=0.15, right=0.97, top=0.9, bottom=0.16, wspace=0.6)
        ax = bottom.subplots()
        draw_gaps(ax, summary, metrics, rng)
        bottom.subplots_adjust(left=0.15, right=0.97, top=0.88, bottom=0.32)
    return fig


def draw_gaps(ax, summary: Mapping, metrics=("iou", "miou", "f1"), rng=None) -> None:
    """One row per metric: the per-seed gaps (points), their mean with the 95 % paired t-interval (black) and the
    bootstrap over seeds and tiles (grey, thinner, a sensitivity check); 0 and the paper's +0.22 as lines. Text
    sizes come from the caller's rc (:data:`PHONE`)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    for row, metric in enumerate(metrics):
        gaps = summary[f"gap_{metric}_per_seed"]
        low, high = summary[f"gap_{metric}_ci95"]
        mean = summary[f"gap_{metric}_mean"]
        ax.scatter(gaps, [row - 0.12 + rng.uniform(-0.05, 0.05) for _ in gaps], color=OKABE_ITO["sky blue"], s=18,
                   zorder=3, label="one seed" if row == 0 else None)  # fmt: skip
        ax.errorbar(mean, row + 0.1, xerr=[[mean - low], [high - mean]], fmt="o", color="black", capsize=4, zorder=4,
                    label="mean, 95 % t-interval" if row == 0 else None)  # fmt: skip
        if f"gap_{metric}_ci95_bootstrap" in summary:
            b_low, b_high = summary[f"gap_{metric}_ci95_bootstrap"]
            ax.hlines(row + 0.25, b_low, b_high, color="grey", lw=2.5, label="bootstrap (check)" if row == 0 else None)
    ax.axvline(0, color="grey", lw=1)
    ax.axvline(summary.get("paper_gap", 0.22), color=OKABE_ITO["vermillion"], ls="--", lw=1.2, label="paper: +0.22")
    ax.set_yticks(range(len(metrics)), [METRIC_LABELS.get(m, m) for m in metrics])
    ax.set_ylim(-0.6, len(metrics) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("P-LinkNet minus LinkNet34 (points)")
    ax.set_title("gap: seeds, mean, 95 % interval")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, handlelength=1.5,
              columnspacing=1)  # off the data  # fmt: skip
    ax.grid(axis="x", alpha=0.3)


def plot_verdict(summary: Mapping, label: str, paper_scale_run: bool = True) -> plt.Figure:
    """Page one at a glance: the gap per seed and its interval, read as building IoU and as mIoU, +0.22 marked, each
    row labelled with its outcome (:func:`plinknet.study.stats.verdict`); without a paper-scale archive
    (``paper_scale_run`` False) a last row says that Inria at paper scale was not run."""
    from plinknet.study.stats import verdict

    metrics = ("iou", "miou")
    with plt.rc_context(PHONE):  # narrow: legible on a phone
        fig, ax = plt.subplots(figsize=(5.4, 4.8 if not paper_scale_run else 4.2))
        draw_gaps(ax, summary, metrics)
    rows = [f"{METRIC_LABELS.get(m, m)}:\n{verdict(summary, m)}" for m in metrics]
    if not paper_scale_run:
        rows.append("Inria, paper\nscale: not run")
        ax.set_ylim(len(rows) - 0.4, -0.6)
        ax.text(float(np.mean(ax.get_xlim())), len(rows) - 1, "no archive yet (make paper)", ha="center",
                va="center", fontsize=11, color="dimgrey")  # fmt: skip
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(f"P-LinkNet minus LinkNet34, {len(summary['seeds'])} seeds:\n{label}", fontsize=12)
    fig.tight_layout()
    return fig


def plot_lab(summary: Mapping) -> plt.Figure:
    """The lab metrics of an archived ablation: recall by building size and false positives on look-alikes.

    One point per seed, the mean as a bar, per network; ``summary["lab"]`` must exist (the
    synthetic sample's labels).
    """
    lab = summary["lab"]
    sizes = [f"recall_{size}" for size in lab["size_classes_m2"]]
    kinds = ["fp_rate"] + [k for k in next(iter(lab["models"].values())) if k.startswith("fp_rate_")]
    with plt.rc_context(PHONE):  # stacked: legible on a phone
        fig, axes = plt.subplots(2, 1, figsize=(5.2, 6.6))
    rng = np.random.default_rng(0)
    names = list(lab["models"])
    width = 0.8 / len(names)
    for ax, rates, label in ((axes[0], sizes, "recall (%)"), (axes[1], kinds, "false-positive rate (%)")):
        for i, name in enumerate(names):
            x = np.arange(len(rates)) + (i - (len(names) - 1) / 2) * width
            means = [lab["models"][name][r]["mean"] for r in rates]
            ax.bar(x, [m if m is not None else 0 for m in means], width, color=model_colour(name, i), alpha=0.35,
                   label=name)  # fmt: skip
            for xi, r in zip(x, rates):
                points = [v for v in lab["models"][name][r]["per_seed"] if v is not None]
                ax.scatter(xi + rng.uniform(-width / 5, width / 5, len(points)), points, s=14,
                           color=model_colour(name, i), zorder=3)  # fmt: skip
        ax.set_xticks(range(len(rates)), [r.replace("recall_", "").replace("fp_rate_", "").replace("fp_rate", "all")
                                          for r in rates])  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    low, high = lab["size_classes_m2"]["medium"]
    axes[0].set_title(f"buildings found, by size (medium: {low:g}-{high:g} m²)", fontsize=11)
    axes[1].set_title("look-alike pixels predicted as building", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=11)  # off the data
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_lab_tile(image: np.ndarray, instances: np.ndarray, distractors: np.ndarray, pixel_area_m2: float = 0.09,
                  title: str = "") -> plt.Figure:  # fmt: skip
    """A synthetic tile and its lab labels: buildings coloured by size class, look-alikes by kind."""
    from plinknet.study.lab import SIZE_CLASSES_M2
    from plinknet.synthetic import LOOKALIKE_KINDS

    grey = image.astype(np.float32).mean(-1, keepdims=True) / 255
    labels = np.repeat(0.2 + 0.5 * grey, 3, axis=-1)
    areas = np.bincount(instances.ravel()) * pixel_area_m2  # m^2 per instance id
    size_colours = dict(zip(SIZE_CLASSES_M2, (OKABE_ITO["sky blue"], OKABE_ITO["blue"], OKABE_ITO["reddish purple"])))
    handles = []
    for size, (low, high) in SIZE_CLASSES_M2.items():
        ids = np.flatnonzero((areas >= low) & (areas < high))
        labels[np.isin(instances, ids[ids > 0])] = _rgb(size_colours[size])
        handles.append(Patch(color=size_colours[size], label=f"{size} building ({low:g}-{high:g} m²)"))
    kind_colours = (OKABE_ITO["orange"], OKABE_ITO["yellow"], OKABE_ITO["bluish green"], OKABE_ITO["vermillion"])
    for (code, kind), colour in zip(LOOKALIKE_KINDS.items(), kind_colours):
        labels[distractors == code] = _rgb(colour)
        handles.append(Patch(color=colour, label=f"look-alike: {kind}"))
    with plt.rc_context(PHONE):
        fig, axes = plt.subplots(1, 2, figsize=(5.4, 3.9))
        axes[0].imshow(image)
        axes[0].set_title("image")
        axes[1].imshow(labels)
        axes[1].set_title("lab labels")
        for ax in axes:
            ax.axis("off")
        fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, handlelength=1, columnspacing=1)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.26, 1, 1))
    return fig
