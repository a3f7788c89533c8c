"""How fast and lean the training loader is (``plinknet bench data``)."""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from plinknet.bench.memory import TreeMemory
from plinknet.data.cache import build_cache
from plinknet.data.dataset import InriaDataset
from plinknet.data.tiles import find_tiles


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
    from plinknet.data.dataset import collate_crops

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
    from plinknet.train.loop import make_loader

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



ONE_LOADER = """
import json, sys, time
from pathlib import Path
import torch
from plinknet.data.dataset import InriaDataset
from plinknet.data.tiles import find_tiles
from plinknet.train.loop import make_loader
data, workers, crop, batch, crops, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5]), Path(sys.argv[6])
torch.set_num_threads(1)
count = len(find_tiles(data, "train"))
dataset = InriaDataset(data, "train", crop, samples_per_tile=-(-(crops + 2 * batch) // count))
batches = iter(make_loader(dataset, batch, None, workers, torch.device("cpu"), drop_last=True))
next(batches)  # workers started, files opened
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
started, seen = time.perf_counter(), 0
while seen < crops:
    seen += len(next(batches)["tile"])
print(json.dumps({"crops": seen, "seconds": time.perf_counter() - started}), flush=True)
"""


def concurrent_loader_rates(data_dir: str | Path, processes: int, workers: int, crop_size: int = 512,
                            batch_size: int = 16, crops: int = 320) -> dict:  # fmt: skip
    """Crops/s of ``processes`` training loaders reading at once, each in its own process with ``workers`` workers.

    What ``make paper`` starts on a node: one loader per run, all sharing the node's CPU cores and page cache.
    Every loader starts its workers first; then all are timed together over ``crops`` crops each (random crops with
    the scale augmentation, as in training; nothing on a GPU).

    Returns:
        ``{"processes", "workers", "rates": [crops/s of each], "slowest", "total"}``.
    """
    import json
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        command = [sys.executable, "-c", ONE_LOADER, str(data_dir), str(workers), str(crop_size), str(batch_size),
                   str(crops), str(go)]  # fmt: skip
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(processes)]  # fmt: skip
        try:
            for child in children:
                line = child.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"a loader process did not start: {line} {child.stderr.read()[-1500:]}")
            go.touch()
            results = []
            for child in children:
                output, error = child.communicate(timeout=600)
                if child.returncode != 0:
                    raise RuntimeError(f"a loader process failed (exit {child.returncode}): {error[-1500:]}")
                results.append(json.loads(output.strip().splitlines()[-1]))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    rates = [r["crops"] / max(r["seconds"], 1e-9) for r in results]
    return {"processes": processes, "workers": workers, "crop_size": crop_size, "batch_size": batch_size,
            "rates": rates, "slowest": min(rates), "total": sum(rates)}  # fmt: skip
