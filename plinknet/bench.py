"""Benchmarks behind ``plinknet bench {model,data,train,predict}``: figures measured in one run, as ratios.

They measure; tests never assert timings.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from plinknet.loss import DiceBCELoss
from plinknet.model import LinkNet34, PLinkNet, count_parameters
from plinknet.train import autocast, prepare_model, resolve_device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gflops(model: torch.nn.Module, size: int = 512, batch: int = 1) -> float:
    """Forward GFLOPs (multiply and add counted as 2) of one (batch, 3, size, size) input."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(batch, 3, size, size))
    return counter.get_total_flops() / 1e9


def _timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def bench_model(device: str = "auto", size: int = 512, batch: int = 2, repeats: int | None = None) -> dict:
    """Parameters, GFLOPs and forward latency of P-LinkNet vs LinkNet34, timed alternately in one run."""
    dev = resolve_device(device)
    repeats = repeats or (20 if dev.type == "cuda" else 5)
    models = {"P-LinkNet": PLinkNet(), "LinkNet34": LinkNet34()}
    result = {"device": device_name(dev), "size": size, "batch": batch, "models": {}}
    for name, model in models.items():
        result["models"][name] = {"parameters": count_parameters(model), "gflops": gflops(model, size)}
    x = torch.randn(batch, 3, size, size, device=dev)
    latency = {name: [] for name in models}
    with torch.no_grad():
        for name, model in models.items():
            models[name] = model.to(dev).eval()
            models[name](x)  # warm-up
        for _ in range(repeats):  # alternate, so drift in machine load hits both alike
            for name, model in models.items():
                latency[name] += _timed(lambda m=model: m(x), dev, 1)
    for name in models:
        result["models"][name]["latency_ms"] = 1000 * statistics.median(latency[name])
    p, b = result["models"]["P-LinkNet"], result["models"]["LinkNet34"]
    result["ratios"] = {
        "parameters": p["parameters"] / b["parameters"],
        "gflops": p["gflops"] / b["gflops"],
        "latency": p["latency_ms"] / b["latency_ms"],
    }
    if dev.type == "cuda":  # bf16 + channels_last inference throughput
        n = 16
        xb = torch.randn(n, 3, size, size, device=dev).to(memory_format=torch.channels_last)
        for name, model in models.items():
            model = prepare_model(model, dev, channels_last=True)
            with torch.no_grad(), autocast(dev):
                model(xb)
                t = statistics.median(_timed(lambda m=model: m(xb), dev, 10))
            result["models"][name]["bf16_images_per_s"] = n / t
    _print_model(result)
    return result


def _print_model(r: dict) -> None:
    print(f"P-LinkNet vs LinkNet34, {r['size']}x{r['size']}, batch {r['batch']}, on {r['device']}")
    print(f"{'':12s}{'parameters':>14s}{'GFLOPs':>10s}{'latency ms':>12s}{'bf16 img/s':>12s}")
    for name, m in r["models"].items():
        ips = f"{m['bf16_images_per_s']:12.1f}" if "bf16_images_per_s" in m else f"{'-':>12s}"
        print(f"{name:12s}{m['parameters']:14,d}{m['gflops']:10.2f}{m['latency_ms']:12.1f}{ips}")
    q = r["ratios"]
    print(f"ratio P-LinkNet/LinkNet34: parameters {q['parameters']:.3f}, GFLOPs {q['gflops']:.3f}, "
          f"latency {q['latency']:.3f} (target <= 1.10)")  # fmt: skip


def bench_train(device: str = "auto", size: int = 512, batch: int | None = None, steps: int | None = None) -> dict:
    """Training images/s of P-LinkNet (SGD step with Dice+BCE; bf16 + channels_last on CUDA) on random data."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    batch = batch or (16 if cuda else 4)
    steps = steps or (20 if cuda else 3)
    model = prepare_model(PLinkNet(), dev, channels_last=True).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = DiceBCELoss()
    fmt = torch.channels_last if cuda else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.8).float()

    def step():
        with autocast(dev):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (cudnn autotuning)
    seconds = sum(_timed(step, dev, steps))
    result = {"device": device_name(dev), "size": size, "batch": batch, "steps": steps,
              "images_per_s": batch * steps / seconds}  # fmt: skip
    print(f"training P-LinkNet {size}x{size}, batch {batch}, {steps} steps on {result['device']}: "
          f"{result['images_per_s']:.1f} images/s (model only, random data)")  # fmt: skip
    return result


def bench_predict(device: str = "auto", size: int | None = None) -> dict:
    """Seconds to predict a 5000x5000 tile with the sliding-window predictor (extrapolated on CPU)."""
    import numpy as np

    from plinknet.predict import PredictConfig, predict_scene

    dev = resolve_device(device)
    size = size or (5000 if dev.type == "cuda" else 1024)
    scene = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    model = prepare_model(PLinkNet(), dev, channels_last=True)
    config = PredictConfig(batch_size=16 if dev.type == "cuda" else 4)
    predict_scene(model, scene[:512, :512], config, device=dev, progress=False)  # warm-up
    _sync(dev)
    t = time.perf_counter()
    predict_scene(model, scene, config, device=dev, progress=False)
    _sync(dev)
    seconds = time.perf_counter() - t
    per_tile = seconds * (5000 * 5000) / (size * size)
    result = {"device": device_name(dev), "scene": size, "seconds": seconds,
              "seconds_per_5000_tile": per_tile, "extrapolated": size != 5000}  # fmt: skip
    note = f" (extrapolated from {size}x{size} by pixel count)" if size != 5000 else ""
    print(f"prediction on {result['device']}: {per_tile:.1f} s per 5000x5000 tile{note}; "
          f"window {config.window}, overlap {config.overlap}")  # fmt: skip
    return result


def bench_data(data_dir: str | Path | None = None) -> dict:
    """512x512 training crops/s from GeoTIFF (0 and 2 workers) against in-memory cropping."""
    from plinknet.data import benchmark_crops

    if data_dir is not None:
        return benchmark_crops(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return benchmark_crops(None, scratch=Path(tmp))


def run(what: str, device: str = "auto", data_dir: str | Path | None = None) -> dict:
    """Dispatch for the command line."""
    if what == "model":
        return bench_model(device)
    if what == "train":
        return bench_train(device)
    if what == "predict":
        return bench_predict(device)
    if what == "data":
        return bench_data(data_dir)
    raise ValueError(f"unknown benchmark {what!r}; choose model, data, train or predict")
