"""Run by tests/test_train.py under ``torchrun --nproc_per_node=2`` with gloo on CPU.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py MODE DATA OUT

MODE ``validate``: every rank validates its shard of the validation crops with the same
seeded model; rank 0 writes the summed confusion counts to OUT/counts.json (on GPUs with NCCL
when PLINKNET_TEST_DEVICE=cuda).
MODE ``nan``: training in which rank 1 alone gets a NaN loss on the last step of epoch 2;
each rank writes the name of the exception it ended with to OUT/rank<k>.txt.
MODE ``collectives`` (run with 3 processes): training whose validation has 2 windows, so one
rank has none; each rank writes the sequence of collectives it issued to OUT/rank<k>.json,
and rank 0 the validation counts of the last epoch to OUT/counts.json.
"""

import json
import sys
from pathlib import Path

import torch

import plinknet.train.loop as train_module
from plinknet import distributed
from plinknet.data import InriaDataset
from plinknet.loss import DiceBCELoss
from plinknet.model import PLinkNet
from plinknet.train import TrainConfig
from plinknet.train.loop import make_loader, validate


def tiny(data: str, out: str, **overrides) -> TrainConfig:
    values = dict(data_dir=data, out_dir=out, encoder_name="resnet18", encoder_weights=None, crop_size=64,
                  batch_size=2, samples_per_tile=4, epochs=3, lr_milestones=(2,), workers=0, progress=False,
                  device="cpu")  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def run_validate(data: str, out: Path) -> None:
    """On the CPU with gloo; with PLINKNET_TEST_DEVICE=cuda on one GPU per rank with NCCL (fp32)."""
    import os

    cuda = os.environ.get("PLINKNET_TEST_DEVICE") == "cuda"
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    config = tiny(data, str(out / "run"), amp=False)
    rank, world_size = distributed.init(device)
    torch.manual_seed(0)
    model = PLinkNet.from_config(config.model_config).to(device)
    val_set = InriaDataset.from_config(config.data_config, "val")
    loader = make_loader(val_set, 3, list(range(rank, len(val_set), world_size)), 0, device)
    metrics = validate(model, loader, DiceBCELoss(), device, config)
    if rank == 0:
        (out / "counts.json").write_text(json.dumps({k: metrics[k] for k in ("tp", "fp", "fn", "tn")}))


class NanOnRankOne(DiceBCELoss):
    """Rank 1's fourth training loss (the last step of epoch 2 here) is NaN.

    Its gradients stay finite, so rank 0's loss and weights stay finite: only a check shared
    by the ranks stops rank 0 too.
    """

    calls = 0

    def forward(self, logits, target, valid=None):
        loss = super().forward(logits, target, valid)
        if logits.requires_grad:
            NanOnRankOne.calls += 1
            if distributed.rank_and_size()[0] == 1 and NanOnRankOne.calls == 4:
                return loss + float("nan") * loss.detach()  # a NaN loss, finite gradients
        return loss


def run_nan(data: str, out: Path) -> None:
    train_module.DiceBCELoss = NanOnRankOne
    config = tiny(data, str(out / "run"), batch_size=4)  # the global batch: 2 images per process
    rank = int(__import__("os").environ["RANK"])
    outcome = "finished"
    try:
        train_module.train(config)
    except Exception as error:  # noqa: BLE001 - the test reads which one
        outcome = type(error).__name__
    (out / f"rank{rank}.txt").write_text(outcome)


COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_object", "broadcast_object_list", "barrier",
               "_broadcast_coalesced", "reduce_scatter", "gather", "scatter")


def run_collectives(data: str, out: Path) -> None:
    import torch.distributed as dist

    calls = []
    for name in COLLECTIVES:  # every Python-level collective, DDP's buffer broadcast (_broadcast_coalesced) too
        original = getattr(dist, name)

        def recorded(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(dist, name, recorded)
    counts = {}
    real_validate = train_module.validate

    def validate_and_keep(*args, **kwargs):
        metrics = real_validate(*args, **kwargs)
        counts.update({k: metrics[k] for k in ("tp", "fp", "fn", "tn")})
        return metrics

    train_module.validate = validate_and_keep
    config = tiny(data, str(out / "run"), epochs=2, val_samples_per_tile=1, batch_size=3, samples_per_tile=3)
    train_module.train(config)
    rank = distributed.rank_and_size()[0]
    (out / f"rank{rank}.json").write_text(json.dumps(calls))
    if rank == 0:
        (out / "counts.json").write_text(json.dumps(counts))


if __name__ == "__main__":
    mode, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    {"validate": run_validate, "nan": run_nan, "collectives": run_collectives}[mode](data, out)
    distributed.shutdown()
