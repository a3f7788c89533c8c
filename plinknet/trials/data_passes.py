"""How many times ``make paper`` reads its data before the first training step (``make data-passes``).

    make data-passes    # python -m plinknet.trials.data_passes --data-dir data/inria-scale --out runs/data-passes

Runs ``plinknet ablate`` as ``make paper`` does (its recipe, ``--processes`` workers, here on the CPU with random
encoder weights), with a fresh plinknet cache so that nothing is remembered from an earlier run, and samples the
bytes that every process of its tree has read (``/proc/<pid>/io``: ``rchar``, which counts reads served by the
page cache too). It stops the tree once every worker's first run has reached its training loop (the run's
``config.yaml`` is written just before the first step) and reports the bytes read in units of the dataset's size:
the full reads of the data before training. Python's own imports add a few tens of MB per process, noise beside
an 18 GB dataset. Linux only. Writes ``<out>/data-passes.json`` with the provenance.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plinknet.bench.memory import process_tree


def _bytes_read(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def dataset_bytes(data_dir: Path) -> int:
    base = data_dir / "AerialImageDataset" if (data_dir / "AerialImageDataset").is_dir() else data_dir
    return sum(p.stat().st_size for p in (base / "train").rglob("*") if p.is_file())


def measure(data_dir: Path, recipe: Path, processes: int, out: Path, timeout_s: float = 3600) -> dict:
    """Bytes read by ``plinknet ablate --processes N`` until each worker's first run starts training."""
    with tempfile.TemporaryDirectory(dir=out) as work:
        work = Path(work)
        env = {**os.environ, "PLINKNET_CACHE": str(work / "cache")}  # nothing remembered: a first run
        command = [sys.executable, "-m", "plinknet", "ablate", "--config", str(recipe), "--data-dir", str(data_dir),
                   "--seeds", "0", "1", "--device", "cpu", "--processes", str(processes), "--encoder-weights", "none",
                   "--out", str(work / "archive"), "--runs-dir", str(work / "runs")]  # fmt: skip
        started = time.perf_counter()
        with (out / "ablate.log").open("w") as log:
            ablate = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        read: dict[int, int] = {}
        try:
            while time.perf_counter() - started < timeout_s:
                for pid in process_tree(ablate.pid):
                    value = _bytes_read(pid)
                    if value is not None:
                        read[pid] = max(read.get(pid, 0), value)
                started_runs = list((work / "runs").glob("seed*/*/config.yaml"))
                if len(started_runs) >= processes or ablate.poll() is not None:
                    break
                time.sleep(0.2)
            else:
                raise TimeoutError(f"no training step within {timeout_s:.0f} s (log: {out / 'ablate.log'})")
            seconds = time.perf_counter() - started
        finally:
            for pid in reversed(process_tree(ablate.pid)):  # the workers too, wherever their process group
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ablate.wait()
        if len(started_runs) < processes:
            raise RuntimeError(f"ablate ended before its runs trained (exit {ablate.returncode}; log: "
                               f"{out / 'ablate.log'})")  # fmt: skip
    size = dataset_bytes(data_dir)
    total = sum(read.values())
    return {"data_dir": str(data_dir), "dataset_bytes": size, "processes": processes, "bytes_read": total,
            "passes": total / size, "per_process_bytes": sorted(read.values(), reverse=True),
            "seconds_to_first_steps": round(seconds, 1), "command": " ".join(command[1:])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data-dir", type=Path, default=Path("data/inria-scale"), help="the Inria-size set")
    parser.add_argument("--recipe", type=Path, default=Path("book/params/paper.yaml"), help="make paper's recipe")
    parser.add_argument("--processes", type=int, default=2, help="ablate's worker processes (make paper: one per GPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/data-passes"), help="where the figures go")
    args = parser.parse_args(argv)
    if not (args.data_dir / "AerialImageDataset").is_dir():
        raise SystemExit(f"{args.data_dir} holds no AerialImageDataset: write it with `plinknet synth --out "
                         f"{args.data_dir} --inria-scale` (18 GB) or `make rehearsal`")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    from plinknet.provenance import provenance

    result = {**measure(args.data_dir, args.recipe, args.processes, args.out), "provenance": provenance("cpu")}
    path = args.out / f"data-passes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"{result['passes']:.2f} full reads of {args.data_dir} ({result['dataset_bytes'] / 1e9:.1f} GB) before "
          f"the first training step of {args.processes} worker(s), in {result['seconds_to_first_steps']:.0f} s; "
          f"{path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
