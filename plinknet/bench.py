"""Benchmarks behind ``plinknet bench {model,data,train,predict}``: figures measured in one run, as ratios.

They measure; tests never assert timings.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning
from torch.utils.flop_counter import FlopCounterMode

from plinknet.data import InriaDataset, build_cache, find_tiles
from plinknet.loss import DiceBCELoss
from plinknet.model import LinkNet34, PLinkNet, count_parameters
from plinknet.train import autocast, grad_scaler, prepare_model, resolve_device, train_step


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
    from plinknet.data import prepare_batch
    from plinknet.train import default_workers, make_loader

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    batch = batch or (16 if cuda else 4)
    steps = steps or (50 if cuda else 3)
    workers = default_workers() if workers is None else workers
    fmt = torch.channels_last if cuda else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.8).float()
    loader = None
    if data_dir is not None:
        count = len(find_tiles(data_dir, "train"))
        dataset = InriaDataset(data_dir, "train", size, samples_per_tile=math.ceil(batch * (steps + 2) / count))
        loader = make_loader(dataset, batch, None, workers, dev, drop_last=True)
    result = {"device": device_name(dev), "size": size, "batch": batch, "steps": steps, "workers": workers,
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
            _sync(dev)
            start = time.perf_counter()
            for _ in range(steps):
                step(*prepare_batch(next(batches), dev, size, channels_last=True))
            _sync(dev)
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


def bench_predict(device: str = "auto", **sizes) -> dict:
    """``plinknet predict`` against a plain eager loop (whole processes), s per 5000x5000 tile, and peak memory.

    See :mod:`plinknet.predict_bench`; ``sizes`` (``speed_size``, ``tile_size``, ``memory_sizes``,
    ``repeats``...) shrink it for a test.
    """
    from plinknet.predict_bench import bench_prediction

    return bench_prediction(device, **sizes)


# --------------------------------------------------------------------------- memory of a process tree


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB from /proc/<pid>/smaps_rollup; (0, 0) if it is gone."""
    values = {"Pss:": 0, "Rss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, *rest = line.split()
            if key in values:
                values[key] = int(rest[0])
    except (OSError, ValueError, IndexError):
        pass
    return values["Pss:"], values["Rss:"]


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled in a background thread.

    PSS (proportional set size) splits each shared page among the processes that map it, so
    summing it over DataLoader workers that share memory-mapped tiles or forked pages counts
    them once; RSS would count them once per process. Linux only (``/proc``); elsewhere the
    peaks stay None.

    Example::

        with TreeMemory() as memory:   # this process and its children
            ...
        memory.peak_pss_mb
    """

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.available = Path(f"/proc/{self.pid}/smaps_rollup").exists()
        self.peak_pss_mb: float | None = None
        self.peak_rss_mb: float | None = None
        self.peak_processes = 0
        self._stop = threading.Event()

    def sample(self) -> None:
        pids, frontier = [], [self.pid]
        while frontier:
            pid = frontier.pop()
            pids.append(pid)
            frontier += _children(pid)
        pss, rss = map(sum, zip(*(_memory_kb(pid) for pid in pids)))
        self.peak_pss_mb = max(self.peak_pss_mb or 0.0, pss / 1024)
        self.peak_rss_mb = max(self.peak_rss_mb or 0.0, rss / 1024)
        self.peak_processes = max(self.peak_processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemory:
        if self.available:
            self.sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()


# --------------------------------------------------------------------------- the loader


def write_benchmark_tiles(folder: Path, count: int, size: int, compress: str | None = "lzw") -> Path:
    """``count`` random size x size GeoTIFF training tiles (and 0/255 masks) in the official layout.

    Blocky random texture: a loader's cost per crop follows the file layout, not the pixels. ``compress=None``
    writes uncompressed striped files, Inria's layout; LZW costs about twice as much per crop.
    """
    rng = np.random.default_rng(0)
    for number in range(6, 6 + count):  # numbers 6+: the training split
        coarse = rng.integers(0, 224, (3, size // 16 + 1, size // 16 + 1), dtype=np.uint8)
        image = coarse.repeat(16, 1).repeat(16, 2)[:, :size, :size]  # (3, size, size)
        image += rng.integers(0, 32, image.shape, dtype=np.uint8)  # texture, as in real imagery
        mask = (coarse[0].repeat(16, 0).repeat(16, 1)[:size, :size] > 160).astype(np.uint8) * 255
        for kind, array in (("images", image), ("gt", mask[None])):
            path = folder / "AerialImageDataset" / "train" / kind / f"bench{number}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = {"driver": "GTiff", "height": size, "width": size, "count": len(array), "dtype": "uint8",
                       **({"compress": compress} if compress else {})}  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(array)
    return folder


def loader_overhead(dataset: InriaDataset, indices: list[int], batch_size: int = 16) -> dict:
    """Per-crop time of ``dataset[i]`` against bare rasterio reads of the same windows, in one run.

    The bare read is what any loader must do: ``read(window=...)`` of the image and
    ``read(1, window=...)`` of the mask, with files opened once. Three sides are timed over the
    same windows, batch by batch, their order rotating from batch to batch so that changes in
    machine load hit all alike: the bare reads, ``dataset[i]``, and ``dataset[i]`` collated into
    a batch as the DataLoader does. GDAL's block cache is off (every crop decodes its blocks, as
    on a dataset far larger than any cache), and one pass of bare reads first brings the files
    into the page cache.

    Returns:
        ``{"bare_ms", "loader_ms", "collated_ms", "ratio", "collated_ratio"}``, times per crop.
    """
    from plinknet.data import collate_crops

    draws = {i: dataset.draw(i) for i in indices}
    handles: dict[Path, rasterio.io.DatasetReader] = {}

    def bare(batch: list[int]) -> None:
        for i in batch:
            d = draws[i]
            tile = dataset.tiles[d["tile"]]
            window = rasterio.windows.Window(d["col"], d["row"], d["width"], d["height"])
            for path, bands in ((tile.image_path, None), (tile.mask_path, 1)):
                if path not in handles:
                    handles[path] = rasterio.open(path)
                handles[path].read(bands, window=window)

    sides = {
        "bare": bare,
        "loader": lambda batch: [dataset[i] for i in batch],
        "collated": lambda batch: collate_crops([dataset[i] for i in batch]),
    }
    seconds = dict.fromkeys(sides, 0.0)
    batches = [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]
    with rasterio.Env(GDAL_CACHEMAX=0), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        bare(indices)  # the page cache, not the disk, for every side
        for k, batch in enumerate(batches):
            names = list(sides)[k % 3 :] + list(sides)[: k % 3]
            for name in names:
                start = time.perf_counter()
                sides[name](batch)
                seconds[name] += time.perf_counter() - start
    for handle in handles.values():
        handle.close()
    n = len(indices)
    return {"bare_ms": 1000 * seconds["bare"] / n, "loader_ms": 1000 * seconds["loader"] / n,
            "collated_ms": 1000 * seconds["collated"] / n, "ratio": seconds["loader"] / seconds["bare"],
            "collated_ratio": seconds["collated"] / seconds["bare"]}  # fmt: skip


def loader_throughput(dataset: InriaDataset, n: int, workers: int, batch_size: int = 16) -> dict:
    """Crops/s through the training DataLoader with ``workers`` processes, and peak memory of the tree.

    Crops are spread over every tile (the memory a loader needs grows with the tiles it has
    touched when tiles are cached per worker, so every tile must be touched).
    """
    from plinknet.train import make_loader

    step = max(1, len(dataset) // n)
    indices = list(range(0, len(dataset), step))[:n]
    batch_size = max(1, min(batch_size, len(indices) // 4))  # several batches, the first one untimed
    loader = make_loader(torch.utils.data.Subset(dataset, indices), batch_size, None, workers, torch.device("cpu"))
    with TreeMemory() as memory:
        batches = iter(loader)
        next(batches)  # start-up (workers forking) is not timed
        if memory.available:
            memory.sample()  # at least once with every worker alive, however short the run
        start, crops = time.perf_counter(), 0
        for batch in batches:
            crops += len(batch["tile"])
        seconds = time.perf_counter() - start
        del batches
    return {"workers": workers, "crops": crops, "crops_per_s": crops / max(seconds, 1e-9),
            "peak_pss_mb": memory.peak_pss_mb, "peak_rss_mb": memory.peak_rss_mb,
            "processes": memory.peak_processes}  # fmt: skip


def bench_data(
    data_dir: str | Path | None = None,
    *,
    crop_size: int = 512,
    n: int = 200,
    workers: int = 4,
    cache_dir: str | Path | None = None,
    throughput_crops: int | None = None,
    tiles: int = 4,
    tile_size: int = 2000,
    described: str | None = None,
) -> dict:
    """The training loader: per-crop cost against bare windowed reads, and crops/s and memory with workers.

    Args:
        data_dir: a dataset (e.g. ``plinknet synth --inria-scale``'s); None writes ``tiles``
            random ``tile_size`` px LZW GeoTIFFs into a temporary folder first.
        crop_size: side of the training crops (with the scale augmentation, as in training).
        n: crops timed for the overhead ratio.
        workers: DataLoader processes for the throughput and memory figures.
        cache_dir: also measure the memory-mapped tile cache (built there first; 100 MB per
            5000 px tile).
        throughput_crops: crops through the DataLoader (default: two per tile, at least 200).
        described: how to name the data in the printout (default: its folder).

    Returns:
        ``{"data", "crop_size", "overhead": loader_overhead(...), "throughput": [rows]}``.
    """
    if data_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return bench_data(write_benchmark_tiles(Path(tmp), tiles, tile_size), crop_size=crop_size, n=n,
                              workers=workers, cache_dir=cache_dir, throughput_crops=throughput_crops,
                              described=f"{tiles} random {tile_size}x{tile_size} LZW GeoTIFF tiles")  # fmt: skip
    count = len(find_tiles(data_dir, "train"))
    dataset = InriaDataset(data_dir, "train", crop_size, samples_per_tile=max(1, math.ceil(n / count)))
    step = max(1, len(dataset) // n)
    overhead = loader_overhead(dataset, list(range(0, len(dataset), step))[:n])
    throughput_crops = throughput_crops or max(200, 2 * count)
    rows = [{"source": "GeoTIFF windows", **loader_throughput(dataset, throughput_crops, workers)}]
    if cache_dir is not None:
        cached = InriaDataset(data_dir, "train", crop_size, samples_per_tile=dataset.samples_per_tile,
                              cache_dir=cache_dir)  # fmt: skip
        build_cache(cached.tiles, cache_dir)
        rows.append({"source": "memory-mapped cache", **loader_throughput(cached, throughput_crops, workers)})
    result = {"data": described or str(data_dir), "tiles": count, "crop_size": crop_size, "overhead": overhead,
              "throughput": rows, "cpu_cores": os.cpu_count()}  # fmt: skip
    _print_data(result)
    return result


def _print_data(r: dict) -> None:
    o = r["overhead"]
    print(f"{r['crop_size']}x{r['crop_size']} training crops (scale, flips, turns) from {r['data']}, "
          f"{r['cpu_cores']} CPU cores")  # fmt: skip
    print(f"per crop: bare rasterio reads {o['bare_ms']:.2f} ms, dataset[i] {o['loader_ms']:.2f} ms, "
          f"collated batch {o['collated_ms']:.2f} ms")  # fmt: skip
    print(f"ratio to the bare reads: dataset[i] {o['ratio']:.2f}x, collated {o['collated_ratio']:.2f}x (target <= 2)")
    print(f"{'source':<22}{'workers':>8}{'crops':>7}{'crops/s':>10}{'peak PSS MB':>13}{'peak RSS MB':>13}"
          f"{'processes':>10}")  # fmt: skip
    for row in r["throughput"]:
        pss = f"{row['peak_pss_mb']:13.0f}" if row["peak_pss_mb"] is not None else f"{'-':>13}"
        rss = f"{row['peak_rss_mb']:13.0f}" if row["peak_rss_mb"] is not None else f"{'-':>13}"
        print(f"{row['source']:<22}{row['workers']:>8}{row['crops']:>7}{row['crops_per_s']:10.1f}{pss}{rss}"
              f"{row['processes']:>10}")  # fmt: skip
    print("(peak memory of the whole process tree; PSS counts pages shared between processes once)")


def run(what: str, device: str = "auto", data_dir: str | Path | None = None, **options) -> dict:
    """Dispatch for the command line; ``options`` go to the benchmark (e.g. ``workers`` for data)."""
    if what == "model":
        return bench_model(device)
    if what == "train":
        return bench_train(device, data_dir=data_dir, **options)
    if what == "predict":
        return bench_predict(device, **options)
    if what == "data":
        return bench_data(data_dir, **options)
    raise ValueError(f"unknown benchmark {what!r}; choose model, data, train or predict")
