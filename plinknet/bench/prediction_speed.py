"""``plinknet bench predict``: speed and memory of ``plinknet predict``, each side a whole process.

Three figures, measured in one run:

1. speed ratio: ``plinknet predict`` (default options) against the plain loop a user would
   write first (:data:`PLAIN_LOOP`: eager PyTorch, non-overlapping windows, batch 1), both as
   whole processes (start-up, model loading, reading and writing included) on the same scene,
   alternated so that drift in machine load hits both alike; the median ratio is reported.
   ``plinknet predict`` runs once untimed before, as a user's first run does: it exports the
   ONNX model into the cache, and that first run's time is reported too.
2. seconds per 5000 x 5000 tile: one ``plinknet predict`` process on a scene of ``tile_size``
   px (extrapolated by pixel count, and labelled so, when it is not 5000).
3. memory: peak RSS of ``plinknet predict`` on a small and a large scene, each in its own
   process (``os.wait4`` gives that child's own peak), and their difference.

Scenes and the checkpoint are random (speed and memory do not depend on the weights).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from plinknet.files import save_torch as save_atomic
from plinknet.model import PLinkNet

# The obvious code: read the scene, loop over non-overlapping windows, write the mask.
PLAIN_LOOP = """
import sys
import numpy as np, rasterio, torch, torch.nn.functional as F
from plinknet.data import normalize
from plinknet.checkpoint import load_checkpoint
checkpoint, scene, output, device, window = sys.argv[1:6]
window = int(window)
model, _ = load_checkpoint(checkpoint, device)
with rasterio.open(scene) as src:
    image, profile = src.read().transpose(1, 2, 0), src.profile
height, width = image.shape[:2]
prob = np.zeros((height, width), np.float32)
with torch.no_grad():
    for r in range(0, height, window):
        for c in range(0, width, window):
            tile = image[r : r + window, c : c + window]
            h, w = tile.shape[:2]
            x = F.pad(normalize(tile)[None], (0, -w % 32, 0, -h % 32)).to(device)
            prob[r : r + h, c : c + w] = torch.sigmoid(model(x))[0, 0, :h, :w].cpu().numpy()
profile.update(count=1, dtype="uint8", compress="lzw")
with rasterio.open(output, "w", **profile) as dst:
    dst.write(((prob > 0.5) * 255).astype(np.uint8), 1)
"""


def write_scene(path: Path, size: int, seed: int = 0) -> Path:
    """A size x size RGB GeoTIFF (tiled, LZW) of blocky random texture, as aerial imagery compresses."""
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8", "compress": "lzw",
               "tiled": size >= 256, "crs": "EPSG:32616", "transform": rasterio.Affine(0.3, 0, 6e5, 0, -0.3, 3e6)}
    if size >= 256:
        profile.update(blockxsize=256, blockysize=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            for row in range(0, size, 1024):
                h = min(1024, size - row)
                coarse = rng.integers(0, 224, (3, h // 16 + 1, size // 16 + 1), dtype=np.uint8)
                block = coarse.repeat(16, 1).repeat(16, 2)[:, :h, :size]
                block += rng.integers(0, 32, block.shape, dtype=np.uint8)
                dst.write(block, window=rasterio.windows.Window(0, row, size, h))
    return path


def _run(cmd: list[str], env: dict) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one child process, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} failed: {stderr.decode()[-2000:]}")
    return seconds, usage.ru_maxrss // 1024  # Linux: kB


def bench_prediction(
    device: str = "auto",
    speed_size: int = 3072,
    tile_size: int | None = None,
    memory_sizes: tuple[int, int] = (2000, 8000),
    repeats: int = 3,
    encoder_name: str = "resnet34",
    crop_size: int = 512,
    workdir: str | os.PathLike | None = None,
) -> dict:
    """Measure the three figures (see the module docstring); returns them and prints a summary.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``: where both sides run.
        speed_size: side of the scene of the speed comparison.
        tile_size: side of the scene timed for seconds per 5000 x 5000 tile (default 5000).
        memory_sizes: the small and the large scene of the memory comparison.
        repeats: alternated timings of each side.
        encoder_name, crop_size: the random network (the paper's ResNet34 and 512 px crop).
        workdir: where scenes, outputs and the ONNX cache go (default: a temporary folder).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return bench_prediction(device, speed_size, tile_size, memory_sizes, repeats, encoder_name, crop_size, tmp)
    from plinknet.device import device_label, resolve_device

    dev = resolve_device(device)
    tile_size = tile_size or 5000
    work = Path(workdir)
    env = {**os.environ, "PLINKNET_CACHE": str(work / "cache")}
    torch.manual_seed(0)
    net = PLinkNet(encoder_name=encoder_name)
    checkpoint = work / "random.pt"
    save_atomic({"model": net.state_dict(), "model_config": net.config.to_dict(),
                 "config": {"crop_size": crop_size}}, checkpoint)  # fmt: skip
    predict = [sys.executable, "-m", "plinknet", "predict", "--checkpoint", str(checkpoint), "--quiet",
               "--device", str(dev)]  # fmt: skip
    loop = [sys.executable, "-c", PLAIN_LOOP, str(checkpoint)]

    scene = write_scene(work / "speed.tif", speed_size)
    first, _ = _run([*predict, str(scene), str(work / "first.tif")], env)  # exports the ONNX model to the cache
    _run([*loop, str(scene), str(work / "loop.tif"), str(dev), str(crop_size)], env)  # warms the file cache
    ours, plain = [], []
    for _ in range(repeats):
        plain.append(_run([*loop, str(scene), str(work / "loop.tif"), str(dev), str(crop_size)], env)[0])
        ours.append(_run([*predict, str(scene), str(work / "ours.tif")], env)[0])
    ratios = [p / o for p, o in zip(plain, ours)]

    if tile_size == speed_size:
        tile_seconds = statistics.median(ours)
    else:
        tile = write_scene(work / "tile.tif", tile_size, seed=1)
        tile_seconds = _run([*predict, str(tile), str(work / "tile_mask.tif")], env)[0]
    per_tile = tile_seconds * 5000**2 / tile_size**2

    peaks = {}
    for size in memory_sizes:
        path = write_scene(work / f"memory{size}.tif", size, seed=2)
        peaks[size] = _run([*predict, str(path), str(work / f"memory{size}_mask.tif")], env)[1]
    small, large = memory_sizes
    result = {
        "device": str(dev) if dev.type == "cpu" else device_label(dev),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "speed_scene": speed_size,
        "plain_loop_s": plain,
        "predict_s": ours,
        "predict_first_run_s": first,
        "speed_ratio_median": statistics.median(ratios),
        "speed_ratios": ratios,
        "tile_size": tile_size,
        "seconds_per_5000_tile": per_tile,
        "extrapolated": tile_size != 5000,
        "peak_rss_mb": {str(k): v for k, v in peaks.items()},
        "peak_rss_difference_mb": peaks[large] - peaks[small],
        "peak_rss_ratio": peaks[large] / peaks[small],
    }
    _print(result, memory_sizes)
    return result


def _print(r: dict, memory_sizes: tuple[int, int]) -> None:
    s, big = memory_sizes
    print(f"plinknet predict on {r['device']} ({r['cpu_cores']} CPU cores), torch {r['torch']}, whole processes")
    print(f"  {r['speed_scene']}x{r['speed_scene']} scene: plain eager loop (batch 1, no overlap) "
          f"{statistics.median(r['plain_loop_s']):.1f} s, plinknet predict {statistics.median(r['predict_s']):.1f} s "
          f"(first run, ONNX export included: {r['predict_first_run_s']:.1f} s)")  # fmt: skip
    print(f"  speed ratio plain loop / plinknet predict: {r['speed_ratio_median']:.2f}x median of "
          f"{', '.join(f'{x:.2f}' for x in r['speed_ratios'])} (target >= 1.5)")  # fmt: skip
    note = f", extrapolated by pixel count from {r['tile_size']}x{r['tile_size']}" if r["extrapolated"] else ""
    print(f"  {r['seconds_per_5000_tile']:.1f} s per 5000x5000 tile (whole process{note})")
    print(f"  peak RSS: {s}x{s} {r['peak_rss_mb'][str(s)]} MB, {big}x{big} {r['peak_rss_mb'][str(big)]} MB: "
          f"difference {r['peak_rss_difference_mb']} MB (target <= 300), ratio {r['peak_rss_ratio']:.2f} for "
          f"{(big / s) ** 2:.0f}x the pixels")  # fmt: skip
