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

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from plinknet import distributed
from plinknet.data.cache import build_cache
from plinknet.data.checks import check_tiles, data_listing, listing_changes
from plinknet.data.dataset import InriaDataset, collate_crops
from plinknet.data.tiles import InriaDataError
from plinknet.data.transforms import prepare_batch
from plinknet.device import autocast, grad_scaler, loader_workers, precision_label, prepare_model, resolve_device
from plinknet.files import RUN_OWN_FILES, remove, save_torch, write_text
from plinknet.loss import DiceBCELoss
from plinknet.metrics import METRIC_NAMES, BinaryConfusion
from plinknet.model import PLinkNet
from plinknet.provenance import provenance
from plinknet.train.config import TrainConfig, batch_per_process, recipe_changes
from plinknet.train.run import (
    RUN_FILES,
    RunFolderError,
    _open_run,
    _rng_state,
    _set_rng_state,
    _write_history,
    best_of,
    complete_epoch,
    launch_comment,
    seed_everything,
)

SYNC_EVERY = 10  # training steps between looks at the loss (progress bar, NaN check): fewer GPU syncs


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


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


def default_workers() -> int:
    """DataLoader workers per training process (:func:`plinknet.device.loader_workers`): its share of the CPU cores
    it may use (torchrun's processes on this machine share them), less one, at most 8."""
    _, local_size = distributed.local_rank_and_size()
    return loader_workers(local_size)


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


def make_loader(dataset, batch_size, sampler, workers, device, drop_last=False, persistent=True) -> DataLoader:
    """A DataLoader of uint8 crops: pinned memory on CUDA, and there persistent workers unless ``persistent`` is False
    (the validation loader: its workers would sit idle through every training epoch)."""
    cuda = device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=persistent and cuda and workers > 0,
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
        raise InriaDataError(f"{len(problems)} problem(s) in {config.data_dir} (run `plinknet check-data --data-dir "
                             f"{config.data_dir}` for the list): {listing}")  # fmt: skip


def _finite_weights(model: torch.nn.Module) -> torch.Tensor:
    """A 0-dim bool tensor, on the model's device: every floating parameter and buffer is finite."""
    values = [v for v in model.state_dict().values() if v.is_floating_point()]
    return torch.stack([v.isfinite().all() for v in values]).all()


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
        state = complete_epoch(out)  # a kill between an epoch's saves: best.pt and history.csv written from last.pt
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
    data = data_listing(config.data_dir)  # into every checkpoint: a resume on other data is refused
    if state is not None and state.get("data_files") is not None:
        changed = listing_changes(state["data_files"], data)
        if changed:
            raise RunFolderError(f"{out} was trained on other data than {config.data_dir} holds now "
                                 f"({'; '.join(changed)}); resume it on the data it was trained on, or train a new "
                                 f"run in another folder")  # fmt: skip
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
    with distributed.rank_zero_first():  # one download of the encoder weights; the other ranks read its cache
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
            remove(*(out / name for name in RUN_OWN_FILES))  # checked together: refused unless out holds a run
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
    val_loader = make_loader(val_set, rank_batch, val_indices, workers, device, persistent=False)
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
        "precision": precision_label(device, config.amp),
    }  # fmt: skip
    launches = [*launches, launch]
    record["launch"] = launch
    if is_main:
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
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
                    "data_files": data,
                }
                save_torch(checkpoint, out / "last.pt")  # the epoch's commit point: complete_epoch() redoes the rest
                if improved:
                    save_torch(best_of(checkpoint), out / "best.pt")
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

