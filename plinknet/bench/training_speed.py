"""Training images/s in memory and through the real loader (``plinknet bench train``)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from plinknet.bench.network_speed import _timed
from plinknet.data.dataset import InriaDataset
from plinknet.data.tiles import find_tiles
from plinknet.device import (
    device_label,
    grad_scaler,
    loader_workers,
    precision_label,
    prepare_model,
    resolve_device,
    synchronize,
)
from plinknet.loss import DiceBCELoss
from plinknet.model import PLinkNet
from plinknet.train.loop import train_step


def bench_train(
    device: str = "auto",
    size: int = 512,
    batch: int | None = None,
    steps: int | None = None,
    data_dir: str | Path | None = None,
    workers: int | None = None,
    compile: bool = False,
) -> dict:
    """Training images/s of P-LinkNet (training's SGD step, Dice + BCE; bf16 or fp16 + channels_last on CUDA).

    Always on random data already on the device (the model's own speed); with ``data_dir``
    also through the real loader (workers reading GeoTIFF windows, :func:`prepare_batch` on
    the device), and the ratio of the two: 1.0 means the loader keeps up, below 1 the
    training is data-bound. With ``compile`` every setting is timed with and without
    ``torch.compile``.
    """
    from plinknet.data.transforms import prepare_batch
    from plinknet.train.loop import make_loader

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    batch = batch or (16 if cuda else 4)
    steps = steps or (50 if cuda else 3)
    workers = loader_workers() if workers is None else workers
    fmt = torch.channels_last if cuda else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.8).float()
    loader = None
    if data_dir is not None:
        count = len(find_tiles(data_dir, "train"))
        dataset = InriaDataset(data_dir, "train", size, samples_per_tile=math.ceil(batch * (steps + 2) / count))
        loader = make_loader(dataset, batch, None, workers, dev, drop_last=True)
    result = {"device": device_label(dev), "size": size, "batch": batch, "steps": steps, "workers": workers,
              "precision": precision_label(dev) + (", channels_last" if cuda else ""),
              "data": None if data_dir is None else str(data_dir), "rows": []}  # fmt: skip
    for compiled in (False, True) if compile else (False,):
        torch.manual_seed(0)
        model = prepare_model(PLinkNet(), dev, channels_last=True).train()
        step_model = torch.compile(model) if compiled else model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = DiceBCELoss()

        scaler = grad_scaler(dev)

        def step(image, target, valid=None, step_model=step_model, optimizer=optimizer, scaler=scaler,
                 loss_fn=loss_fn):
            train_step(step_model, optimizer, scaler, loss_fn, image, target, valid)  # training's own step

        step(x, y)  # warm-up: cudnn autotuning, compilation
        seconds = sum(_timed(lambda step=step: step(x, y), dev, steps))
        row = {"compile": compiled, "model_only_images_per_s": batch * steps / seconds}
        if loader is not None:
            batches = iter(loader)
            step(*prepare_batch(next(batches), dev, size, channels_last=True))  # workers start
            synchronize(dev)
            start = time.perf_counter()
            for _ in range(steps):
                step(*prepare_batch(next(batches), dev, size, channels_last=True))
            synchronize(dev)
            row["loader_images_per_s"] = batch * steps / (time.perf_counter() - start)
            row["loader_ratio"] = row["loader_images_per_s"] / row["model_only_images_per_s"]
            del batches
        result["rows"].append(row)
    print(f"training P-LinkNet {size}x{size}, batch {batch}, {steps} steps on {result['device']}"
          + (f", loader: {workers} workers over {data_dir}" if loader is not None else ""))  # fmt: skip
    for row in result["rows"]:
        line = (f"  compile {'on ' if row['compile'] else 'off'}: {row['model_only_images_per_s']:.1f} images/s "
                "on data already on the device")  # fmt: skip
        if "loader_images_per_s" in row:
            line += f"; {row['loader_images_per_s']:.1f} through the loader (ratio {row['loader_ratio']:.2f})"
        print(line)
    return result

