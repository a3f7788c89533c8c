"""What the book's chapters share: the data and device they ran on, in words, the demo runs,
and the provenance footer of every page.

Every sentence of the book that depends on the data or the device is made here from the
chapter's parameters, so that a chapter rerun on Inria with a GPU (``-f book/params/paper.yaml``)
reads right without an edit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from plinknet.data.checks import dataset_checksum
from plinknet.device import device_label
from plinknet.provenance import git_commit, versions


@dataclass
class Context:
    """The data and device a chapter runs on, and how to say so.

    Args:
        data_dir: the dataset folder (Inria layout).
        synthetic: True when it is the synthetic sample (generated here when missing).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    data_dir: str
    synthetic: bool
    device: str = "auto"

    def __post_init__(self):
        from plinknet.device import resolve_device

        self.torch_device = resolve_device(self.device)
        if self.synthetic:
            from plinknet.synthetic import ensure_sample

            ensure_sample(self.data_dir, seed=0)

    @property
    def data_label(self) -> str:
        """``"the synthetic sample"`` or ``"Inria"``: for headers and captions."""
        return "the synthetic sample" if self.synthetic else "Inria"

    @property
    def short_data_label(self) -> str:
        return "synthetic" if self.synthetic else "Inria"

    @property
    def device_label(self) -> str:
        """``"cpu (2 threads)"`` or the GPU's name."""
        return device_label(self.torch_device)

    @property
    def on_gpu(self) -> bool:
        return self.torch_device.type == "cuda"

    def where(self) -> str:
        """``"the synthetic sample, cpu (2 threads)"``: the data and device of a result, in one breath."""
        return f"{self.data_label}, {self.device_label}"

    def caveat(self) -> str:
        """The sentence a result on this data needs: what it can and cannot say about the paper."""
        if self.synthetic:
            return ("These numbers come from the synthetic sample: they show that the code runs and how the "
                    "method behaves on drawn cities, and say nothing about the paper's results on Inria.")
        return "These numbers come from the real Inria data and can be set beside the paper's."


def describe_run(config, context: Context) -> str:
    """One sentence saying how a run was trained, from its :class:`plinknet.train.TrainConfig`."""
    weights = {"imagenet": "an ImageNet-pretrained encoder", None: "random weights"}.get(
        config.encoder_weights, f"encoder weights from {config.encoder_weights}"
    )
    crops = "every grid crop" if config.samples_per_tile is None else f"{config.samples_per_tile} crops"
    network = "P-LinkNet" if config.pyramid_bins else "LinkNet34"
    return (f"{network} trained for {config.epochs} epoch(s) of {crops} per training tile "
            f"({config.crop_size}x{config.crop_size} px, batch {config.batch_size}, SGD lr {config.lr:g}) from "
            f"{weights}, on {context.data_label} with {context.device_label}")  # fmt: skip


def demo_runs(configs: dict) -> dict[str, Path]:
    """Run folders for ``{name: TrainConfig}``: reused when finished with the same recipe, else trained.

    So every chapter can stand alone (on a fresh Colab runtime it trains what it needs) and
    chapters run in order share the runs (see :func:`plinknet.train.train_or_reuse`).
    """
    from plinknet.train.loop import train_or_reuse

    runs = {}
    for name, config in configs.items():
        print(f"{name}: {config.out_dir}")
        runs[name] = train_or_reuse(config)
    return runs


def pair_configs(config) -> dict:
    """``{"P-LinkNet": config, "LinkNet34": the same without the pyramid}``, in sibling run folders."""
    base = Path(config.out_dir).parent
    return {
        "P-LinkNet": dataclasses.replace(config, pyramid_bins=config.pyramid_bins or (1, 2, 3, 6),
                                         out_dir=str(base / "plinknet")),  # fmt: skip
        "LinkNet34": dataclasses.replace(config, pyramid_bins=(), out_dir=str(base / "linknet34")),
    }


def footer(context: Context | None) -> str:
    """The provenance footer of a page (Markdown): commit, versions, device, date, data and its checksum.

    ``None``: a page that reads archives only (their own provenance is in them).
    """
    from datetime import datetime, timezone

    v = versions()
    if context is None:
        ran = "Executed"
        data = "Data: none; the figures above come from the archives in `results/`, each with its provenance."
    else:
        gpu = f", CUDA {torch.version.cuda}" if context.on_gpu else ""
        ran = f"Executed on **{context.device_label}**{gpu}"
        data = (f"Data: {context.data_label} in `{context.data_dir}`, SHA-256 "
                f"`{dataset_checksum(context.data_dir)[:16]}`.")  # fmt: skip
    return (
        "```{admonition} How this page was made\n:class: dropdown note\n"
        f"{ran} on {datetime.now(timezone.utc):%Y-%m-%d}, from commit {_short(git_commit())} with plinknet "
        f"{v['plinknet']}, torch {v['torch']}, segmentation-models-pytorch {v['segmentation_models_pytorch']}, "
        f"rasterio {v['rasterio']} (Python {v['python']}). {data} Exact versions for a rerun: "
        f"`requirements-lock.txt` (`pip install -r requirements-lock.txt`).\n```"
    )


def _short(commit: str) -> str:
    """Markdown for a commit: ``"`598125f9549b`"``, plus a note when the code had uncommitted changes."""
    base, _, changed = commit.partition("+")
    return f"`{base[:12]}`" + (" plus uncommitted changes" if changed else "")


SMALLEST_TEXT_KEY = "plinknet:smallest-text-px"  # the saved image's metadata: its smallest text, in its own pixels
LEGIBLE_CSS_PX = 9  # the smallest text a phone reader reads without zooming (tests/test_plots.py, tests/browser)


def smallest_text_px(fig, dpi: float) -> float | None:
    """The height of the smallest text drawn on ``fig`` (font size) in pixels of an image saved at ``dpi``.

    Every visible, non-empty text counts (titles, labels, tick labels, legends, annotations), but not the axis
    texts of an axes turned off, which are not drawn; None when the figure has no text. The browser check
    (``tests/browser/test_pages.py``) turns it into CSS pixels on the page: a phone reader needs 9 at least.
    """
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels get their text when drawn

    def drawn(artist):
        if not artist.get_visible():
            return
        if isinstance(artist, Text) and artist.get_text().strip():
            yield artist
        for child in artist.get_children():
            if not (isinstance(artist, Axes) and not artist.axison and isinstance(child, Axis)):
                yield from drawn(child)

    sizes = [text.get_fontsize() for text in drawn(fig)]
    return min(sizes) * dpi / 72 if sizes else None


def figure_image(fig, photo: bool = False) -> bytes:
    """``fig`` saved as the book shows it: at twice its resolution, cut to its content, PNG or (``photo``) JPEG,
    its smallest text (:func:`smallest_text_px`) in the image's metadata under :data:`SMALLEST_TEXT_KEY` (a PNG
    text chunk; a JPEG comment ``key=value``), for the browser check. Closes the figure."""
    import io

    import matplotlib.pyplot as plt

    dpi = 2 * fig.dpi
    smallest = smallest_text_px(fig, dpi)
    smallest = "inf" if smallest is None else f"{smallest:.1f}"  # inf: no text to read
    buffer = io.BytesIO()
    if photo:
        fig.savefig(buffer, format="jpeg", dpi=dpi, bbox_inches="tight",
                    pil_kwargs={"quality": 85, "comment": f"{SMALLEST_TEXT_KEY}={smallest}"})  # fmt: skip
    else:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={SMALLEST_TEXT_KEY: smallest})
    plt.close(fig)
    return buffer.getvalue()


def glue_figure(name: str, fig, photo: bool | None = None) -> None:
    """Hand a figure to MyST-NB under ``name`` (for a numbered ``{glue:figure}`` with a caption), not shown here.

    The image is rendered at twice the figure's resolution and marked as such (sharp on high-DPI
    screens and when a phone reader opens it at full size): PNG, or JPEG for ``photo`` figures
    (aerial images; by default when the notebook asked for JPEG figures, as chapter 5 does). It
    carries its smallest text size (:func:`figure_image`).
    """
    from IPython.display import Image
    from myst_nb import glue

    if photo is None:
        from matplotlib_inline.backend_inline import InlineBackend

        photo = "jpeg" in {f.lower() for f in InlineBackend.instance().figure_formats}
    data = figure_image(fig, photo)
    glue(name, Image(data=data, format="jpeg" if photo else "png", retina=True), display=False)


def read_smallest_text_px(path) -> float | None:
    """The smallest text size that :func:`glue_figure` wrote into an image file's metadata (pixels of the image;
    ``inf``: the figure has no text); None for an image without it."""
    from PIL import Image as PILImage

    with PILImage.open(path) as image:
        if image.format == "PNG":
            value = image.info.get(SMALLEST_TEXT_KEY)
        else:
            key, _, value = image.info.get("comment", b"").decode("latin-1").partition("=")
            value = value if key == SMALLEST_TEXT_KEY else None
    return float(value) if value else None


def glue_text(name: str, value) -> None:
    """A value for ``{glue:text}`` in the page's prose and captions, not shown here."""
    from myst_nb import glue

    glue(name, value, display=False)


def glue_split(select_tiles) -> None:
    """The split in words (:func:`plinknet.data.tiles.split_words`) for the prose: ``{glue:text}`split-val```,
    ``split-select`` and ``split-train``, so that no page types a tile number."""
    from plinknet.data.tiles import split_words

    for split, text in split_words(tuple(select_tiles)).items():
        glue_text(f"split-{split}", text)


def _recipe_fields() -> list[str]:
    """The recipe (:data:`plinknet.train.RECIPE_FIELDS`) less the data folder, which the pages show on their own."""
    from plinknet.train.config import RECIPE_FIELDS

    return [name for name in RECIPE_FIELDS if name != "data_dir"]


def recipe_table(config, device=None) -> str:
    """Markdown: the paper's recipe (``TrainConfig`` defaults) beside ``config``, departures in bold; with the
    ``device`` the run used, the ``amp`` row says what it computed in there (on a CPU amp changes nothing: fp32)."""
    from plinknet.device import precision_label
    from plinknet.train.config import TrainConfig

    def show(value) -> str:
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return "(" + ", ".join(map(str, value)) + ")" if value else "()"
        return f"{value:g}" if isinstance(value, float) else str(value)

    paper = TrainConfig()
    rows = ["| option | paper | this run |", "|---|---|---|"]
    for name in _recipe_fields():
        a, b = getattr(paper, name), getattr(config, name)
        shown = show(b) if a == b else f"**{show(b)}**"
        if name == "amp" and device is not None:
            shown += f" (here: {precision_label(device, b)})"
        rows.append(f"| `{name}` | {show(a)} | {shown} |")
    return "\n".join(rows)


def departures(config) -> list[str]:
    """The recipe options (not machinery) in which ``config`` differs from the paper's recipe."""
    from plinknet.train.config import TrainConfig

    paper = TrainConfig()
    return [name for name in _recipe_fields() if getattr(paper, name) != getattr(config, name)]

