"""Benchmarks behind ``plinknet bench {model,data,train,predict}``: figures measured in one run, as ratios.

They measure; tests never assert timings.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from torch.utils.flop_counter import FlopCounterMode

from plinknet.data import InriaDataset, find_tiles
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
    if data_dir is not None:
        return benchmark_crops(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return benchmark_crops(None, scratch=Path(tmp))


def _write_benchmark_tiles(folder: Path, count: int, size: int) -> Path:
    """``count`` random size x size LZW GeoTIFF tiles (and 0/255 masks) in the official layout."""
    rng = np.random.default_rng(0)
    for number in range(6, 6 + count):  # numbers 6+: the training split
        coarse = rng.integers(0, 224, (3, size // 16 + 1, size // 16 + 1), dtype=np.uint8)
        image = coarse.repeat(16, 1).repeat(16, 2)[:, :size, :size]  # (3, size, size)
        image += rng.integers(0, 32, image.shape, dtype=np.uint8)  # texture, as in real imagery
        mask = (coarse[0].repeat(16, 0).repeat(16, 1)[:size, :size] > 160).astype(np.uint8) * 255
        for kind, array in (("images", image), ("gt", mask[None])):
            path = folder / "AerialImageDataset" / "train" / kind / f"bench{number}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = {"driver": "GTiff", "height": size, "width": size, "count": len(array),
                       "dtype": "uint8", "compress": "lzw"}  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(array)
    return folder


def _no_block_cache(worker_id: int | None = None) -> None:
    """Turn off GDAL's block cache in this process (a DataLoader worker), so reads are cold."""
    rasterio.env.set_gdal_config("GDAL_CACHEMAX", 0)


def _crops_per_second(dataset: InriaDataset, n: int, workers: int, cold: bool) -> float:
    """Training crops/s through a DataLoader, timed from the first batch (start-up excluded).

    ``cold`` turns off GDAL's block cache, so every crop decodes its strips again, as it does
    on the full dataset (155 tiles x 75 MB, far more than the cache) but not on a small one.
    """
    subset = torch.utils.data.Subset(dataset, range(min(n, len(dataset))))
    init = _no_block_cache if cold and workers else None
    loader = torch.utils.data.DataLoader(subset, 8, num_workers=workers, worker_init_fn=init)
    with rasterio.Env(**({"GDAL_CACHEMAX": 0} if cold else {})):
        batches = iter(loader)
        next(batches)
        start, crops = time.perf_counter(), 0
        for batch in batches:
            crops += len(batch["tile"])
        return crops / (time.perf_counter() - start)


def benchmark_crops(
    data_dir: str | os.PathLike | None = None,
    *,
    scratch: str | os.PathLike | None = None,
    crop_size: int = 512,
    n: int = 200,
    tiles: int = 4,
    tile_size: int = 2000,
    verbose: bool = True,
) -> dict:
    """Training crops/s read from GeoTIFF (0 and 2 workers) against cropping in-memory arrays.

    Args:
        data_dir: a dataset (see :func:`find_tiles`); None writes ``tiles`` random
            ``tile_size`` px LZW GeoTIFFs into ``scratch`` (or a temporary folder) first.
        scratch: where to write the random tiles when ``data_dir`` is None.
        crop_size: side of the crops.
        n: crops timed per setting.
        tiles, tile_size: the random dataset.
        verbose: print the table.

    Returns:
        ``{"data", "crop_size", "n", "rows": [{"source", "workers", "crops_per_s", "ratio"}]}``
        where ``ratio`` is relative to the in-memory row.
    """
    if data_dir is None:
        if scratch is None:
            with tempfile.TemporaryDirectory() as tmp:
                return benchmark_crops(None, scratch=tmp, crop_size=crop_size, n=n, tiles=tiles,
                                       tile_size=tile_size, verbose=verbose)  # fmt: skip
        data_dir = _write_benchmark_tiles(Path(scratch), tiles, tile_size)
        described = f"{tiles} random {tile_size}x{tile_size} LZW GeoTIFF tiles"
    else:
        described = str(data_dir)
    per_tile = math.ceil(n / len(find_tiles(data_dir, "train")))

    def dataset(cache: bool) -> InriaDataset:
        return InriaDataset(data_dir, "train", crop_size, per_tile, cache=cache)

    in_memory = dataset(cache=True)
    for t in range(len(in_memory.tiles)):  # decode every tile once, outside the timing
        in_memory[t * per_tile]
    settings = [  # (source, workers, dataset, cold GDAL block cache)
        ("GeoTIFF, cold reads", 0, dataset(cache=False), True),
        ("GeoTIFF, cold reads", 2, dataset(cache=False), True),
        ("GeoTIFF, GDAL cache warm", 0, dataset(cache=False), False),
        ("in-memory uint8 (cache=True)", 0, in_memory, False),
    ]
    rows = [
        {
            "source": source,
            "workers": workers,
            "crops_per_s": _crops_per_second(ds, n, workers, cold),
        }
        for source, workers, ds, cold in settings
    ]
    for row in rows:
        row["ratio"] = row["crops_per_s"] / rows[-1]["crops_per_s"]
    if verbose:
        print(f"{crop_size}x{crop_size} training crops (augmented) from {described}, {n} per row, "
              f"{os.cpu_count()} CPU cores")  # fmt: skip
        print(f"{'source':<30} {'workers':>7} {'crops/s':>9} {'vs in-memory':>13}")
        for row in rows:
            print(f"{row['source']:<30} {row['workers']:>7} {row['crops_per_s']:>9.1f} "
                  f"{row['ratio']:>12.2f}x")  # fmt: skip
    return {"data": described, "crop_size": crop_size, "n": n, "rows": rows}


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
