"""Training with the paper's recipe (Section 3.2), GPU-first, runs on CPU, scales with torchrun.

    plinknet train --data-dir data/inria --out-dir runs/plinknet           # one process
    torchrun --nproc_per_node=4 -m plinknet train --data-dir ... ...       # DDP, 4 GPUs

A run folder holds ``config.yaml`` (the resolved config), ``history.csv`` (one line per
epoch), ``last.pt`` and ``best.pt``. Every checkpoint carries the config too.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from plinknet.data import DataConfig, InriaDataset
from plinknet.loss import DiceBCELoss
from plinknet.metrics import METRIC_NAMES, BinaryConfusion
from plinknet.model import ModelConfig, PLinkNet

SYNC_EVERY = 10  # training steps between looks at the loss (progress bar, NaN check): fewer GPU syncs
HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "val_loss", *METRIC_NAMES, "seconds", "images_per_s",
)  # fmt: skip


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
    crop_size: int = 512  # the paper's training crops
    samples_per_tile: int | None = None  # crops per tile per epoch; None: the grid count (100 for 5000/512)
    val_samples_per_tile: int | None = None  # None: every grid crop of every validation tile
    cache: bool = False  # keep decoded tiles in RAM (about 75 MB per Inria tile)
    workers: int = 4  # DataLoader processes
    # optimisation
    epochs: int = 30  # "about 30 epochs for our network to converge"
    batch_size: int = 16  # per process; the paper's, limited by GPU memory
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
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU, which trains in fp32)
    channels_last: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model (CUDA; first epoch slower)
    progress: bool = True  # tqdm bars

    def __post_init__(self):
        self.pyramid_bins = tuple(int(b) for b in self.pyramid_bins or ())
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones or ())
        if self.encoder_weights in ("", "none", "None"):
            self.encoder_weights = None

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(self.encoder_name, self.encoder_weights, self.pyramid_bins, classes=1)

    @property
    def data_config(self) -> DataConfig:
        return DataConfig(self.data_dir, self.crop_size, self.samples_per_tile, cache=self.cache, seed=self.seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (YAML, notebook parameters); unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """Read a YAML file of fields; ``overrides`` (e.g. from the command line) win."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
        values.update(overrides)
        return cls.from_dict(values)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- device logic


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> the local CUDA device when there is one (the rank's under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op context on CPU (fp32 there)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move to ``device``; channels_last memory format on CUDA (faster convolutions with bf16)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if channels_last:
            return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    non_blocking = device.type == "cuda"
    fmt = torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    image = batch["image"].to(device, non_blocking=non_blocking, memory_format=fmt)  # (B, 3, c, c)
    mask = batch["mask"].to(device, non_blocking=non_blocking)  # (B, 1, c, c)
    return image, mask


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


def _loader(dataset, batch_size, sampler, workers, device, drop_last) -> DataLoader:
    cuda = device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=cuda and workers > 0,
        drop_last=drop_last,
    )


# --------------------------------------------------------------------------- distributed


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        backend_device = t.device if dist.get_backend() != "gloo" else torch.device("cpu")
        moved = t.to(backend_device)
        dist.all_reduce(moved)
        return moved.to(t.device)
    return t


# --------------------------------------------------------------------------- checkpoints


def save_atomic(obj, path: Path) -> None:
    """torch.save to ``path.tmp`` then rename: a kill while saving never leaves a broken file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


# --------------------------------------------------------------------------- the loop


@torch.no_grad()
def validate(model, loader, loss_fn, device, config: TrainConfig) -> dict:
    """Loss and metrics on the validation crops; counts are summed over processes."""
    model.eval()
    confusion = BinaryConfusion(config.threshold)
    loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of batch losses * batch size, images
    for batch in loader:
        image, mask = to_device(batch, device, config.channels_last)
        with autocast(device, config.amp):
            logits = model(image)
        loss_sum += torch.tensor([loss_fn(logits, mask).item() * len(image), len(image)], dtype=torch.float64)
        confusion.update(logits, mask)
    counts = _all_reduce(confusion.counts.clone())
    loss_sum = _all_reduce(loss_sum)
    confusion.counts = counts
    return {"val_loss": (loss_sum[0] / loss_sum[1].clamp_min(1)).item(), **confusion.compute()}


def train(
    config: TrainConfig,
    resume: bool = False,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> Path:
    """Train P-LinkNet (or LinkNet34 with ``pyramid_bins=()``) and return the run folder.

    Args:
        config: the recipe; saved to ``<out_dir>/config.yaml`` and into each checkpoint.
        resume: continue from ``<out_dir>/last.pt`` (weights, optimizer, scheduler, RNG, epoch).
        on_epoch_end: called on rank 0 with each epoch's history row (e.g. to plot live).

    Raises:
        TrainingDiverged: the loss became NaN/inf; ``last.pt`` still holds the last good epoch.
    """
    device = resolve_device(config.device)
    rank, world_size = _init_distributed(device)
    is_main = rank == 0
    out = Path(config.out_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    seed_everything(config.seed)

    train_set = InriaDataset.from_config(config.data_config, "train")
    val_set = InriaDataset.from_config(config.data_config, "val")  # the grid of every tile, no augmentation
    if config.val_samples_per_tile:
        val_set = _every_nth_tile_window(val_set, config.val_samples_per_tile)
    sampler = _EpochSampler(len(train_set), world_size, rank, config.seed)
    train_loader = _loader(_EpochIndexed(train_set), config.batch_size, sampler, config.workers, device,
                           drop_last=len(sampler) >= config.batch_size)  # fmt: skip
    val_indices = list(range(rank, len(val_set), world_size))  # a shard per process, no padding
    val_loader = _loader(val_set, config.batch_size, val_indices, config.workers, device, drop_last=False)

    model = prepare_model(PLinkNet.from_config(config.model_config), device, config.channels_last)
    if world_size > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if world_size > 1 else model
    step_model = torch.compile(model) if config.compile else model
    loss_fn = DiceBCELoss(config.bce_weight, config.dice_weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)

    start_epoch, history, best_iou = 0, [], -math.inf
    if resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, history, best_iou = state["epoch"] + 1, state["history"], state["best_iou"]

    for epoch in range(start_epoch, config.epochs):
        model.train()
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss_total = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
        seen, started = 0, time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not (config.progress and is_main), leave=False)  # fmt: skip
        for step, batch in enumerate(bar, 1):
            image, mask = to_device(batch, device, config.channels_last)
            with autocast(device, config.amp):
                logits = step_model(image)  # (B, 1, c, c)
            loss = loss_fn(logits, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_total += loss.detach().double() * len(image)
            seen += len(image)
            if step % SYNC_EVERY == 0 or step == len(train_loader):  # the host looks at the loss
                mean_loss = loss_total.item() / seen
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"loss became {mean_loss} in epoch {epoch + 1} (by step {step}); stopped. "
                        f"{out / 'last.pt'} keeps the last good epoch. Lower the learning rate (lr={config.lr}) "
                        f"or check the data."
                    )
                bar.set_postfix(loss=f"{mean_loss:.4f}",
                                img_s=f"{seen * world_size / (time.perf_counter() - started):.1f}")  # fmt: skip
        train_seconds = time.perf_counter() - started
        scheduler.step()
        loss_sum = _all_reduce(torch.tensor([loss_total.item(), seen], dtype=torch.float64))
        metrics = validate(model, val_loader, loss_fn, device, config)
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
                "epoch": epoch,
                "history": history,
                "best_iou": best_iou,
            }
            save_atomic(checkpoint, out / "last.pt")
            if improved:  # weights and configs only: half the size, all that prediction needs
                best = {k: v for k, v in checkpoint.items() if k not in ("optimizer", "scheduler", "rng")}
                save_atomic(best, out / "best.pt")
            _write_history(out / "history.csv", history)
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}  loss {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
                f"IoU {row['iou']:.4f}  mIoU {row['miou']:.4f}  {row['images_per_s']:.1f} img/s"
            )
            if on_epoch_end is not None:
                on_epoch_end(row)
    if dist.is_initialized():
        dist.barrier()
    return out


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


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[PLinkNet, dict]:
    """Rebuild the network stored in a plinknet checkpoint; returns (model in eval mode, checkpoint).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a plinknet checkpoint, or its weights do not fit its architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from err
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ValueError(
            f"{path} is not a plinknet checkpoint (it has no 'model_config'); train one with `plinknet train`"
        )
    # the encoder weights are in the state dict: do not download them again
    model = PLinkNet.from_config(state["model_config"], encoder_weights=None)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"{path}: weights do not fit architecture {state['model_config']}: {first}") from err
    model.config.encoder_weights = state["model_config"].get("encoder_weights")
    return model.to(resolve_device(str(device))).eval(), state
