"""Training with the paper's recipe (Section 3.2), GPU-first, runs on CPU, scales with torchrun.

    plinknet train --data-dir data/inria --out-dir runs/plinknet           # one process
    torchrun --nproc_per_node=4 -m plinknet train --data-dir ... ...       # DDP, 4 GPUs

``batch_size`` is the recipe's global batch (the paper's 16): under torchrun each process takes
its share (refused when it does not divide), BatchNorm is synchronised across GPUs
(SyncBatchNorm), and the learning rate and the steps per epoch stay those of one GPU. How a
run was launched (processes, batch per process, BatchNorm, precision) is kept in the
checkpoints' ``launches``, the provenance and a comment in ``config.yaml``; a resume on
another number of GPUs keeps the global recipe.

A run folder holds ``config.yaml`` (the resolved config), ``history.csv`` (one line per
epoch), ``last.pt`` and ``best.pt``. Every checkpoint carries the config too. A run folder is
never silently overwritten (``overwrite=True`` to start again) and a resumed run refuses a
changed recipe. Checkpoints hold tensors and plain values only and load with
``torch.load(..., weights_only=True)``: opening one cannot run code.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from plinknet import distributed
from plinknet.config import ConfigError, check, coerce_fields, from_mapping, read_yaml_mapping
from plinknet.data import (
    DataConfig,
    InriaDataError,
    InriaDataset,
    build_cache,
    check_tiles,
    collate_crops,
    prepare_batch,
)
from plinknet.loss import DiceBCELoss
from plinknet.metrics import METRIC_NAMES, BinaryConfusion
from plinknet.model import ModelConfig, PLinkNet
from plinknet.provenance import provenance

SYNC_EVERY = 10  # training steps between looks at the loss (progress bar, NaN check): fewer GPU syncs
HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "val_loss", *METRIC_NAMES, "seconds", "images_per_s",
)  # fmt: skip
RUN_FILES = ("history.csv", "last.pt", "best.pt")  # what makes a folder a run (a config.yaml alone does not)
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


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (a run is there, or resume is impossible)."""


# --------------------------------------------------------------------------- device logic


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> the local CUDA device when there is one (the rank's under torchrun), else CPU.

    Raises:
        ValueError: a CUDA device is asked for and there is none.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ValueError(f"--device {name} under torchrun would put every process on GPU {device.index}; use "
                         f"--device cuda or auto: each process takes cuda:LOCAL_RANK")  # fmt: skip
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision(device: torch.device, amp: bool = True) -> str:
    """What autocast computes in: ``"bf16"`` on a GPU with bf16 (Ampere and later), ``"fp16"`` on older ones
    (Colab's T4, V100: bf16 is only emulated there, several times slower), ``"fp32"`` on the CPU or without amp."""
    if not amp or device.type != "cuda":
        return "fp32"
    return "bf16" if _bf16_supported(device.index) else "fp16"


@functools.cache
def _bf16_supported(index: int | None) -> bool:
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(device: torch.device, enabled: bool = True):
    """Autocast in :func:`precision`'s dtype on CUDA; a no-op context on the CPU (fp32 there)."""
    name = precision(device, enabled)
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(name), enabled=name != "fp32")


def grad_scaler(device: torch.device, amp: bool = True) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs (small gradients would underflow to 0); a disabled one, a no-op, otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision(device, amp) == "fp16")


def train_step(model, optimizer, scaler, loss_fn, image, target, valid=None, amp=True) -> torch.Tensor:
    """One SGD step on a batch already on the device; returns the loss, detached, without a GPU sync.

    The forward pass runs under :func:`autocast`; the loss is computed in fp32 outside it (the Dice sums
    over a batch overflow fp16); with fp16 the scaler scales the loss and skips steps with inf gradients.
    """
    # image: (B, 3, c, c) normalised; target, valid: (B, 1, c, c)
    with autocast(image.device, amp):
        logits = model(image)  # (B, 1, c, c)
    loss = loss_fn(logits, target, valid)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


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


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move to ``device``; channels_last memory format on CUDA (faster convolutions with bf16)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if channels_last:
            return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def default_workers() -> int:
    """DataLoader workers per process: the CPU cores this process may use, less one, at most 8.

    Workers only read and flip uint8 crops (the rest happens on the device), so a few per
    GPU suffice; one core is left for the training process itself.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _, local_size = distributed.local_rank_and_size()
    return max(0, min(8, cores // max(1, local_size) - 1))


# --------------------------------------------------------------------------- data plumbing


class _EpochIndexed(Dataset):
    """Index ``epoch * n + i`` -> sample ``i`` of epoch ``epoch``, so persistent workers see the epoch."""

    def __init__(self, dataset: InriaDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int):
        n = len(self.dataset)
        self.dataset.set_epoch(k // n)
        return self.dataset[k % n]


class _EpochSampler(Sampler):
    """A DistributedSampler (one shuffled shard per process, seeded by seed + epoch) over epoch-indexed items."""

    def __init__(self, n: int, world_size: int, rank: int, seed: int):
        self.n = n
        self.inner = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self):
        return (self.epoch * self.n + i for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def make_loader(dataset, batch_size, sampler, workers, device, drop_last=False) -> DataLoader:
    """A DataLoader of uint8 crops: pinned memory and persistent workers on CUDA."""
    cuda = device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=cuda and workers > 0,
        drop_last=drop_last,
        collate_fn=collate_crops,
        prefetch_factor=4 if workers > 0 else None,
    )


def _every_nth_tile_window(dataset: InriaDataset, per_tile: int) -> torch.utils.data.Subset:
    """At most ``per_tile`` evenly spread grid crops of each validation tile (a quicker validation)."""
    by_tile: dict[int, list[int]] = {}
    for i, (tile_index, _) in enumerate(dataset.windows):
        by_tile.setdefault(tile_index, []).append(i)
    keep = []
    for indices in by_tile.values():
        step = max(1, len(indices) // per_tile)
        keep += indices[::step][:per_tile]
    return torch.utils.data.Subset(dataset, keep)


def _worker_error(error: Exception) -> Exception:
    """A DataLoader worker's error as the user should read it: the original message, file name first.

    DataLoader re-raises a worker's exception as "Caught X in DataLoader worker process N."
    followed by the worker's traceback; the last line holds the original message.
    """
    text = str(error)
    if "in DataLoader worker process" not in text:
        return error
    last = text.strip().splitlines()[-1]
    return InriaDataError(last.split(": ", 1)[1] if ": " in last else last)


def check_data(config: TrainConfig, rank: int, world_size: int) -> None:
    """Read every tile fully (shared among ranks; sound tiles remembered) and refuse bad data at once."""
    problems = check_tiles(config.data_dir, progress=config.progress and rank == 0, shard=(rank, world_size))
    gathered = [p for shard in distributed.all_gather_objects(problems) for p in shard]
    problems = list(dict.fromkeys(gathered))  # naming problems are found by every rank
    if problems:
        listing = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InriaDataError(f"{len(problems)} problem(s) in {config.data_dir} (run `plinknet check-data "
                             f"{config.data_dir}` for the list): {listing}")  # fmt: skip


# --------------------------------------------------------------------------- checkpoints


def save_atomic(obj, path: Path) -> None:
    """torch.save to ``path.tmp`` then rename: a kill while saving never leaves a broken file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict:
    """Load a plinknet checkpoint safely (``weights_only=True``: tensors and plain values only).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable checkpoint, or one holding objects that could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise ValueError(f"{path} holds Python objects beyond tensors and plain values; refusing to load "
                             f"it, as unpickling them could run code (plinknet checkpoints never do)") from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a plinknet checkpoint (it has no 'model_config'); "
                         f"train one with `plinknet train`")  # fmt: skip
    return state


def write_json(value, path: str | Path) -> Path:
    """Write ``value`` as indented JSON (creating the folder), under a temporary name renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(value, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _rng_state() -> dict:
    """Generators' states as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position,
            has_gauss, gauss], "python": random.getstate()}  # fmt: skip


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def launch_comment(launch: dict) -> str:
    """A run's launch as a YAML comment line for ``config.yaml`` (a comment, so the file stays a --config)."""
    return (f"# launched at epoch {launch['from_epoch']}: {launch['world_size']} process(es) x "
            f"{launch['batch_per_process']} images = global batch {launch['global_batch']}, "
            f"{launch['steps_per_epoch']} steps per epoch; {launch['batchnorm']}; {launch['precision']}\n")  # fmt: skip


def read_history(run_dir: str | Path) -> list[dict]:
    """Rows of ``history.csv`` as dicts of floats (epoch as int)."""
    path = Path(run_dir) / "history.csv"
    with path.open() as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in HISTORY_COLUMNS})
    os.replace(tmp, path)


def _finite_weights(model: torch.nn.Module) -> torch.Tensor:
    """A 0-dim bool tensor, on the model's device: every floating parameter and buffer is finite."""
    values = [v for v in model.state_dict().values() if v.is_floating_point()]
    return torch.stack([v.isfinite().all() for v in values]).all()


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


def train_or_reuse(config: TrainConfig) -> Path:
    """The run folder of ``config`` trained to its last epoch: reused when finished, resumed when stopped.

    This is how the book's chapters and ``plinknet ablate`` share runs; it never deletes anything.

    Raises:
        RunFolderError: the folder holds something else (another recipe, a run of more epochs, run files without a
            readable ``last.pt``); the message names the folder and what differs.
    """
    out = Path(config.out_dir)
    if not (out / "last.pt").is_file():
        present = [name for name in RUN_FILES if (out / name).exists()]
        if present:
            raise RunFolderError(f"{out} holds {', '.join(present)} but no last.pt to resume from; move it away or "
                                 f"choose another folder (plinknet never deletes a run)")  # fmt: skip
        return train(config)
    try:
        state = load_state(out / "last.pt")
    except ValueError as error:
        raise RunFolderError(f"{out}: {error}; move it away or choose another folder") from None
    changed = recipe_changes(state["config"], config.to_dict())
    if changed:
        raise RunFolderError(f"{out} holds a run of another recipe ({'; '.join(changed)}); move it away or choose "
                             f"another folder (plinknet never trains over a run)")  # fmt: skip
    done = state["epoch"] + 1
    if done > config.epochs:
        raise RunFolderError(f"{out} holds a run of {done} epochs, asked for {config.epochs}; ask for {done} "
                             f"epochs or choose another folder (plinknet never trains over a run)")  # fmt: skip
    if done == config.epochs and (out / "best.pt").is_file():
        return out
    return train(config, resume=True)


def _open_run(config: TrainConfig, resume: bool, overwrite: bool) -> dict | None:
    """Check the run folder before any work; returns the state to resume from (or None).

    Raises:
        RunFolderError: resume without ``last.pt``, a changed recipe on resume, nothing left
            to train, or a run already in the folder without ``overwrite``.
    """
    out = Path(config.out_dir)
    if resume and overwrite:
        raise RunFolderError("choose --resume or --overwrite, not both")
    if resume:
        if not (out / "last.pt").is_file():
            raise RunFolderError(f"cannot resume: {out / 'last.pt'} does not exist (train without --resume to start)")
        state = load_state(out / "last.pt")
        saved, given = state["config"], config.to_dict()
        changed = recipe_changes(saved, given)
        if changed:
            raise RunFolderError(f"cannot resume {out} with a different recipe ({'; '.join(changed)}); only "
                                 f"{', '.join(SAFE_ON_RESUME)} may change on resume. Use another --out-dir "
                                 f"for a new recipe")  # fmt: skip
        done = state["epoch"] + 1
        if config.epochs <= done:
            raise RunFolderError(f"{out} has already trained {done} of {config.epochs} epoch(s); "
                                 f"pass a larger --epochs to continue it")  # fmt: skip
        return state
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not overwrite:
        raise RunFolderError(f"{out} already holds a run ({', '.join(present)}); use --resume to continue it, "
                             f"--overwrite to replace it, or another --out-dir")  # fmt: skip
    return None


# --------------------------------------------------------------------------- the loop


@torch.no_grad()
def validate(model, loader, loss_fn, device, config: TrainConfig) -> dict:
    """Loss and metrics on the validation crops, padding excluded; counts are summed over processes."""
    model.eval()
    confusion = BinaryConfusion(config.threshold)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # sum of batch losses * batch size, images
    for batch in loader:
        image, target, valid = prepare_batch(batch, device, config.crop_size, config.channels_last)
        with autocast(device, config.amp):
            logits = model(image)
        loss_sum += torch.stack([loss_fn(logits, target, valid).double() * len(image),
                                 torch.tensor(len(image), dtype=torch.float64, device=device)])  # fmt: skip
        confusion.update(logits, target, valid=valid)
    confusion.counts = distributed.all_reduce(confusion.counts)
    loss_sum = distributed.all_reduce(loss_sum)
    return {"val_loss": (loss_sum[0] / loss_sum[1].clamp_min(1)).item(), **confusion.compute()}


def train(
    config: TrainConfig,
    resume: bool = False,
    on_epoch_end: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train P-LinkNet (or LinkNet34 with ``pyramid_bins=()``) and return the run folder.

    Before any training: the run folder is checked (see ``resume`` and ``overwrite``), then
    every tile is read once in full (``check_data``; remembered per file, so reruns start at
    once) and, with ``cache_dir``, decoded into the shared cache.

    Best checkpoint: ``best.pt`` is the epoch of highest IoU on the ``select_tiles`` when
    given (never reported: the validation tiles 1-5 then play no part in training), else on
    the validation tiles.

    Args:
        config: the recipe; saved to ``<out_dir>/config.yaml`` and into each checkpoint.
        resume: continue from ``<out_dir>/last.pt`` (weights, optimizer, scheduler, RNG,
            epoch); refused when a field outside ``SAFE_ON_RESUME`` differs from the saved run.
        on_epoch_end: called on rank 0 with each epoch's history row (e.g. to plot live).
        overwrite: start afresh in a folder that holds a run (its run files are deleted).

    Raises:
        RunFolderError: see :func:`_open_run`; nothing is written then.
        InriaDataError: bad tiles, all listed, before training.
        TrainingDiverged: the loss or weights became NaN/inf (on any rank: all stop together);
            ``last.pt`` still holds the last good epoch.
    """
    device = resolve_device(config.device)
    rank, world_size = distributed.init(device)
    is_main = rank == 0
    out = Path(config.out_dir)
    rank_batch = batch_per_process(config.batch_size, world_size)  # the recipe's batch is the global one
    state = _open_run(config, resume, overwrite)
    if config.check_data:
        check_data(config, rank, world_size)
    seed_everything(config.seed)
    workers = default_workers() if config.workers is None else config.workers
    record = provenance(device) if is_main else {}  # commit, versions, device: into every checkpoint

    val_split = "select" if config.select_tiles else "val"
    train_set = InriaDataset.from_config(config.data_config, "train")
    val_set = InriaDataset.from_config(config.data_config, val_split)  # the grid of every tile, no augmentation
    # a resume loads every weight from last.pt: building the encoder without its download lets an offline node resume
    fresh_weights = {} if state is None else {"encoder_weights": None}
    model = PLinkNet.from_config(config.model_config, **fresh_weights)
    sync_batchnorm = world_size > 1 and device.type == "cuda"  # statistics over the global batch, as on one GPU
    if sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the same state dict keys
    model = prepare_model(model, device, config.channels_last)
    if world_size > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # everything that can fail on the user's input has run: now the folder changes
    distributed.barrier()  # every rank has looked at the folder before rank 0 changes it
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in (*RUN_FILES, "config.yaml", "metrics.json"):
                (out / name).unlink(missing_ok=True)
    if config.cache_dir is not None:  # each local rank decodes its share, then all use all
        local_rank, local_size = distributed.local_rank_and_size()
        tiles = train_set.tiles + val_set.tiles
        build_cache(tiles[local_rank::local_size], config.cache_dir, progress=config.progress and is_main)
        distributed.barrier()
    if config.val_samples_per_tile:
        val_set = _every_nth_tile_window(val_set, config.val_samples_per_tile)
    sampler = _EpochSampler(len(train_set), world_size, rank, config.seed)
    train_loader = make_loader(_EpochIndexed(train_set), rank_batch, sampler, workers, device,
                               drop_last=len(sampler) >= rank_batch)  # fmt: skip
    val_indices = list(range(rank, len(val_set), world_size))  # a shard per process, no padding
    val_loader = make_loader(val_set, rank_batch, val_indices, workers, device)
    core = model.module if world_size > 1 else model
    step_model = torch.compile(model) if config.compile else model
    loss_fn = DiceBCELoss(config.bce_weight, config.dice_weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)
    scaler = grad_scaler(device, config.amp)

    start_epoch, history, best_iou, launches = 0, [], -math.inf, []
    if state is not None:
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch, history, best_iou = state["epoch"] + 1, state["history"], state["best_iou"]
        launches = state.get("launches", [])
    # how this stretch of epochs ran: a resume may use another number of processes, never another global batch
    launch = {
        "from_epoch": start_epoch + 1,
        "world_size": world_size,
        "batch_per_process": rank_batch,
        "global_batch": config.batch_size,
        "steps_per_epoch": len(train_loader),
        "batchnorm": "SyncBatchNorm (statistics over the global batch)" if sync_batchnorm else "BatchNorm" if
        world_size == 1 else "BatchNorm per process (SyncBatchNorm is CUDA-only): statistics over each share",
        "precision": precision(device, config.amp),
    }  # fmt: skip
    launches = [*launches, launch]
    record["launch"] = launch
    if is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False)
                                       + "".join(launch_comment(each) for each in launches))  # fmt: skip
        if world_size > 1 or device.type == "cuda":
            tqdm.write(launch_comment(launch).lstrip("# ").rstrip())

    def diverged(what: str, epoch: int) -> TrainingDiverged:
        return TrainingDiverged(
            f"{what} in epoch {epoch + 1}; stopped on every rank. {out / 'last.pt'} keeps the last good "
            f"epoch. Lower the learning rate (lr={config.lr}) or check the data."
        )

    try:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            loss_total = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per step
            seen, started = 0, time.perf_counter()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                       disable=not (config.progress and is_main), leave=False)  # fmt: skip
            for step, batch in enumerate(bar, 1):
                image, target, valid = prepare_batch(batch, device, config.crop_size, config.channels_last)
                loss = train_step(step_model, optimizer, scaler, loss_fn, image, target, valid, config.amp)
                loss_total += loss.double() * len(image)
                seen += len(image)
                if step % SYNC_EVERY == 0 or step == len(train_loader):  # every rank looks at the same steps
                    if distributed.any_rank(~torch.isfinite(loss_total)):
                        raise diverged(f"the loss became NaN or infinite (by step {step})", epoch)
                    bar.set_postfix(loss=f"{loss_total.item() / seen:.4f}",
                                    img_s=f"{seen * world_size / (time.perf_counter() - started):.1f}")  # fmt: skip
            train_seconds = time.perf_counter() - started
            scheduler.step()
            if distributed.any_rank(~_finite_weights(core)):
                raise diverged("the weights became NaN or infinite", epoch)
            loss_sum = distributed.all_reduce(torch.tensor([loss_total.item(), seen], dtype=torch.float64))
            # The unwrapped model on every rank, its BatchNorm buffers made rank 0's first: the same collectives in
            # the same order whatever a rank's share of the validation windows (DDP's own buffer broadcast runs only
            # in a forward pass, which a rank with no window never makes: unmatched collectives hang NCCL).
            distributed.broadcast_buffers(core)
            metrics = validate(core, val_loader, loss_fn, device, config)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": (loss_sum[0] / loss_sum[1].clamp_min(1)).item(),
                **{k: metrics[k] for k in ("val_loss", *METRIC_NAMES)},
                "seconds": time.perf_counter() - started,
                "images_per_s": loss_sum[1].item() / max(train_seconds, 1e-9),
            }
            history.append(row)
            if is_main:
                improved = row["iou"] > best_iou
                best_iou = max(best_iou, row["iou"])
                checkpoint = {
                    "model": core.state_dict(),
                    "model_config": config.model_config.to_dict(),
                    "config": config.to_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                    "scaler": scaler.state_dict(),  # {} unless fp16
                    "launches": launches,
                    "epoch": epoch,
                    "history": history,
                    "best_iou": best_iou,
                    "best_on": val_split,
                    "provenance": record,
                }
                save_atomic(checkpoint, out / "last.pt")
                if improved:  # weights and configs only: half the size, all that prediction needs
                    best = {k: v for k, v in checkpoint.items() if k not in ("optimizer", "scheduler", "rng", "scaler")}
                    save_atomic(best, out / "best.pt")
                _write_history(out / "history.csv", history)
                tqdm.write(
                    f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
                    f"IoU {row['iou']:.4f}  mIoU {row['miou']:.4f}  {row['images_per_s']:.1f} img/s"
                )
                if on_epoch_end is not None:
                    on_epoch_end(row)
    except Exception as error:
        raise _worker_error(error) from None
    distributed.barrier()
    return out


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[PLinkNet, dict]:
    """Rebuild the network stored in a plinknet checkpoint; returns (model in eval mode, checkpoint).

    The file is read with ``weights_only=True`` (see :func:`load_state`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a plinknet checkpoint, holds more than tensors and plain
            values, or its weights do not fit its architecture.
    """
    path = Path(path)
    state = load_state(path)
    # the encoder weights are in the state dict: do not download them again
    model = PLinkNet.from_config(state["model_config"], encoder_weights=None)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"{path}: weights do not fit architecture {state['model_config']}: {first}") from err
    model.config.encoder_weights = state["model_config"].get("encoder_weights")
    return model.to(resolve_device(str(device))).eval(), state
