"""The training recipe (TrainConfig) and which of its fields are the recipe, which only how it runs."""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch

from plinknet.checkpoint import load_state
from plinknet.config import ConfigError, check, coerce_fields, from_mapping, read_yaml_mapping
from plinknet.data.dataset import DataConfig
from plinknet.model import ModelConfig

# How a run is executed, not what it computes: these may differ between a run and its resume, and between an archived
# record and a rerun. Every other field of TrainConfig is the recipe (see RECIPE_FIELDS and recipe_changes); a test
# checks that each field is in exactly one of the two lists, so a new field needs a decision.
RUN_OPTIONS = ("out_dir", "workers", "progress", "device", "cache_dir", "check_data", "channels_last", "compile")


SAFE_ON_RESUME = ("epochs", *RUN_OPTIONS)  # a resume may also train longer


@dataclass
class TrainConfig:
    """The paper's recipe as defaults. CLI options, ``--config`` YAML and notebook parameters map onto these fields."""

    data_dir: str = "data/inria"  # holds AerialImageDataset/train/{images,gt}
    out_dir: str = "runs/plinknet"  # run folder: config.yaml, history.csv, last.pt, best.pt
    # model
    encoder_name: str = "resnet34"  # the paper's encoder
    encoder_weights: str | None = "imagenet"  # the paper starts from ImageNet; None or a local .pth offline
    pyramid_bins: tuple[int, ...] = (1, 2, 3, 6)  # the paper's four levels; () trains LinkNet34
    # data
    crop_size: int = 512  # the paper's training crops; a multiple of 32
    samples_per_tile: int | None = None  # crops per tile per epoch; None: the grid count (100 for 5000/512)
    val_samples_per_tile: int | None = None  # None: every grid crop of every validation tile
    select_tiles: tuple[int, ...] = ()  # tiles held out to pick best.pt on; () picks it on the val tiles 1-5
    cache_dir: str | None = None  # decode tiles once to memory-mapped uint8 .npy here (shared by workers)
    workers: int | None = None  # DataLoader processes; None: CPU cores per process - 1, at most 8
    check_data: bool = True  # read every tile fully once before training (remembered per file)
    # optimisation
    epochs: int = 30  # "about 30 epochs for our network to converge"
    batch_size: int = 16  # the global batch (the paper's), divided among torchrun's processes
    lr: float = 0.01  # the paper's initial learning rate (SGD)
    momentum: float = 0.9  # not stated in the paper; the usual SGD value
    weight_decay: float = 1e-4  # not stated in the paper; the usual value for ResNets
    lr_milestones: tuple[int, ...] = (20, 25)  # MultiStepLR epochs; the paper does not give them
    lr_gamma: float = 0.1  # MultiStepLR factor
    bce_weight: float = 1.0  # Dice + BCE, equal weights
    dice_weight: float = 1.0
    threshold: float = 0.5  # the paper's binarisation threshold
    # machinery
    seed: int = 0  # seeds weights, crops, augmentation and order
    device: str = "auto"  # "auto": cuda when available, else cpu
    amp: bool = True  # CUDA: bf16 autocast, fp16 + GradScaler on GPUs without bf16 (T4, V100); CPU trains in fp32
    channels_last: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model (CUDA; first epoch slower)
    progress: bool = True  # tqdm bars

    def __post_init__(self):
        if self.encoder_weights in ("", "none", "None"):
            self.encoder_weights = None
        coerce_fields(self)
        self.validate()

    def validate(self) -> None:
        """Check every value's range; raises :class:`ConfigError` naming the first bad option."""
        check(bool(self.data_dir), "data_dir", "a folder", self.data_dir)
        check(bool(self.out_dir), "out_dir", "a folder", self.out_dir)
        known = smp_encoder_names()
        check(self.encoder_name in known, "encoder_name", f"a segmentation-models-pytorch encoder such as "
              f"resnet34 or resnet18 ({len(known)} known)", self.encoder_name)  # fmt: skip
        weights = self.encoder_weights
        check(weights in (None, "imagenet") or Path(weights).is_file(), "encoder_weights",
              "imagenet, none, or the path of a local .pth/.safetensors file", weights)  # fmt: skip
        check(all(b >= 1 for b in self.pyramid_bins), "pyramid_bins", "bin sizes of at least 1 (none for LinkNet34)",
              list(self.pyramid_bins))  # fmt: skip
        bins, crop = list(self.pyramid_bins), self.crop_size
        check(len(set(bins)) == len(bins), "pyramid_bins", "distinct", bins)
        check(crop >= 32 and crop % 32 == 0, "crop_size", "a positive multiple of 32", crop)
        for name in ("samples_per_tile", "val_samples_per_tile"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, "at least 1 (or none)", value)
        check(all(n >= 6 for n in self.select_tiles), "select_tiles", "tile numbers of 6 and up (1-5 are validation)",
              list(self.select_tiles))  # fmt: skip
        check(self.workers is None or self.workers >= 0, "workers", "0 or more (or none: automatic)", self.workers)
        check(self.epochs >= 1, "epochs", "at least 1", self.epochs)
        check(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        check(self.lr > 0, "lr", "positive", self.lr)
        check(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        check(self.weight_decay >= 0, "weight_decay", "0 or more", self.weight_decay)
        check(all(m >= 1 for m in self.lr_milestones) and list(self.lr_milestones) == sorted(set(self.lr_milestones)),
              "lr_milestones", "increasing epoch numbers of at least 1", list(self.lr_milestones))  # fmt: skip
        check(0 < self.lr_gamma <= 1, "lr_gamma", "in (0, 1]", self.lr_gamma)
        check(self.bce_weight >= 0 and self.dice_weight >= 0 and self.bce_weight + self.dice_weight > 0,
              "bce_weight", "0 or more, as dice_weight, not both 0", (self.bce_weight, self.dice_weight))  # fmt: skip
        check(0 < self.threshold < 1, "threshold", "strictly between 0 and 1", self.threshold)
        check(self.seed >= 0, "seed", "0 or more", self.seed)
        try:
            if self.device != "auto":
                torch.device(self.device)
        except RuntimeError:
            raise ConfigError(f"device (--device) must be auto, cpu, cuda or cuda:N, got {self.device!r}") from None

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(self.encoder_name, self.encoder_weights, self.pyramid_bins, classes=1)

    @property
    def data_config(self) -> DataConfig:
        return DataConfig(self.data_dir, self.crop_size, self.samples_per_tile, select_tiles=self.select_tiles,
                          cache_dir=self.cache_dir, seed=self.seed)  # fmt: skip

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (YAML, notebook parameters); unknown keys are an error naming them."""
        return from_mapping(cls, values)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """Read a YAML file of fields; ``overrides`` (e.g. from the command line) win."""
        values = read_yaml_mapping(path)
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def from_run(cls, out_dir: str | Path, **overrides) -> TrainConfig:
        """The config saved in a run folder's ``last.pt``, with ``overrides`` applied (for ``--resume``)."""
        path = Path(out_dir) / "last.pt"
        if not path.is_file():
            raise RunFolderError(f"cannot resume: {path} does not exist (train without --resume to start)")
        values = dict(load_state(path)["config"])
        values.update(overrides)
        values["out_dir"] = str(out_dir)
        return cls.from_dict(values)


def smp_encoder_names() -> list[str]:
    """The encoder names segmentation-models-pytorch knows."""
    from plinknet.model import import_smp

    return import_smp().encoders.get_encoder_names()


def batch_per_process(batch_size: int, world_size: int) -> int:
    """The share of the global ``batch_size`` each of ``world_size`` processes takes.

    Raises:
        ConfigError: the batch does not divide evenly, naming both numbers and the nearest batches that do.
    """
    if batch_size % world_size:
        below = batch_size - batch_size % world_size
        nearest = " or ".join(str(b) for b in (below, below + world_size) if b > 0)
        raise ConfigError(f"batch_size (--batch-size) {batch_size} is the global batch and does not divide among "
                          f"{world_size} processes; give a multiple of {world_size} ({nearest}) or run on a "
                          f"number of GPUs that divides it")  # fmt: skip
    return batch_size // world_size


RECIPE_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in SAFE_ON_RESUME)  # what a run computes


def _same_value(name: str, saved, given) -> bool:
    if name == "data_dir":  # the same folder, however it is written
        return os.path.realpath(str(saved)) == os.path.realpath(str(given))
    return saved == given


def recipe_changes(saved: dict, given: dict, names: tuple[str, ...] = RECIPE_FIELDS) -> list[str]:
    """The recipe fields in which a saved config (a dict) differs from a given one, as ``"name: saved X, given Y"``.

    A field missing from ``saved`` (a run made before the field existed) counts as its default value, so adding a
    field to :class:`TrainConfig` never turns older runs into "another recipe".
    """
    defaults = TrainConfig.__dataclass_fields__
    changed = []
    for name in names:
        field = defaults[name]
        default = field.default if field.default is not MISSING else None
        default = list(default) if isinstance(default, tuple) else default
        old, new = saved.get(name, default), given.get(name, default)
        if not _same_value(name, old, new):
            changed.append(f"{name}: saved {old!r}, given {new!r}")
    return changed


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (a run is there, or resume is impossible)."""
