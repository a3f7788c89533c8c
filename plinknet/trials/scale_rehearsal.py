"""A paper-scale dress rehearsal on CPU: does the GPU path work, before anyone pays for a GPU?

    make rehearsal    # or: python -m plinknet.trials.scale_rehearsal [--data-dir data/inria-scale]
                      #     [--out runs/rehearsal] [--recipe book/params/paper.yaml]

On the Inria-size synthetic data (``plinknet synth --inria-scale``: 180 tiles of 5000 x 5000,
written first when missing, about 18 GB), it runs every phase of a paper-scale run with the
recipe of ``book/params/paper.yaml``, as separate commands, the way a user would:

1. ``plinknet check-data``: every pixel of every tile read once (remembered afterwards);
2. ``torchrun --nproc_per_node=2 -m plinknet train`` with gloo on CPU: the paper's recipe
   (batch 16 per process, 512 crops, SGD 0.01, the pyramid) for one short epoch (one crop
   per training tile: a few steps) and one validation batch per process;
3. ``plinknet evaluate`` of one whole 5000 x 5000 tile with the trained checkpoint;
4. ``plinknet predict`` of another whole tile to a georeferenced mask.

What differs from the paper's run, and why: random encoder weights (ImageNet weights cannot
be downloaded offline), one epoch of a few steps, 2 workers per process (2 CPU cores), gloo
instead of NCCL. Each phase's wall time and the peak memory of its whole process tree are
printed as a Markdown table and written to ``<out>/rehearsal.json`` with the versions and
the commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from plinknet.bench.memory import TreeMemory
from plinknet.data.tiles import find_tiles
from plinknet.files import NotPlinknetsError, mark_folder, remove
from plinknet.provenance import provenance

RECIPE = ("epochs", "batch_size", "crop_size", "lr", "lr_milestones")  # taken from paper.yaml


def phase(name: str, cmd: list[str], log: Path) -> dict:
    """Run ``cmd``, its output to ``log``; wall time and peak memory of its process tree."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        with TreeMemory(proc.pid, interval=0.2) as memory:
            code = proc.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text().strip().splitlines()[-15:]
        sys.exit(f"rehearsal failed in phase {name!r} (exit {code}); last lines of {log}:\n" + "\n".join(tail))
    return {"phase": name, "seconds": round(seconds, 1), "peak_pss_mb": memory.peak_pss_mb,
            "peak_rss_mb": memory.peak_rss_mb, "processes": memory.peak_processes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data-dir", type=Path, default=Path("data/inria-scale"), help="Inria-size dataset")
    parser.add_argument("--out", type=Path, default=Path("runs/rehearsal"),
                        help="run folder: a new one, or one an earlier rehearsal made (replaced)")  # fmt: skip
    parser.add_argument("--recipe", type=Path, default=Path("book/params/paper.yaml"), help="make paper's recipe")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per training process")
    args = parser.parse_args()
    plinknet = [sys.executable, "-m", "plinknet"]
    try:
        remove(args.out)  # only a folder an earlier rehearsal made (it carries plinknet's mark)
    except NotPlinknetsError as error:
        sys.exit(f"rehearsal: {error}")
    mark_folder(args.out, "a scale rehearsal's runs and logs (replaced by the next rehearsal)")
    rows = []
    if not (args.data_dir / "AerialImageDataset").is_dir():
        synth = [*plinknet, "synth", "--out", str(args.data_dir), "--inria-scale"]
        rows.append(phase("write the Inria-size data", synth, args.out / "synth.log"))

    paper = yaml.safe_load(args.recipe.read_text())
    recipe = {key: paper[key] for key in RECIPE}
    config = {**recipe, "data_dir": str(args.data_dir), "out_dir": str(args.out / "run"), "encoder_weights": None,
              "epochs": 1, "lr_milestones": [], "samples_per_tile": 1, "val_samples_per_tile": 1,
              "workers": args.workers, "progress": False}  # fmt: skip
    (args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    first, second = find_tiles(args.data_dir, "val")[:2]  # validation tiles 1 and 2 of the first city
    scored, predicted = first.name, second.image_path

    rows.append(phase("check every tile", [*plinknet, "check-data", "--data-dir", str(args.data_dir), "--quiet"],
                      args.out / "check.log"))  # fmt: skip
    rows.append(phase("train: torchrun, 2 gloo processes", [sys.executable, "-m", "torch.distributed.run",
                      "--standalone", "--nproc_per_node=2", "-m", "plinknet", "train", "--config",
                      str(args.out / "config.yaml"), "--device", "cpu"], args.out / "train.log"))  # fmt: skip
    checkpoint = args.out / "run" / "best.pt"
    rows.append(phase(f"evaluate one whole tile ({scored})", [*plinknet, "evaluate", "--data-dir", str(args.data_dir),
                      "--checkpoint", str(checkpoint), "--tiles", scored, "--device", "cpu", "--quiet"],
                      args.out / "evaluate.log"))  # fmt: skip
    rows.append(phase(f"predict one whole tile ({predicted.stem})", [*plinknet, "predict", "--checkpoint",
                      str(checkpoint), str(predicted), str(args.out / f"{predicted.stem}_mask.tif"), "--device",
                      "cpu", "--quiet"], args.out / "predict.log"))  # fmt: skip

    history = (args.out / "run" / "history.csv").read_text().strip().splitlines()
    result = {"provenance": provenance("cpu"), "data": str(args.data_dir), "recipe_from_paper_yaml": recipe,
              "config": config, "phases": rows, "history": history}  # fmt: skip
    (args.out / "rehearsal.json").write_text(json.dumps(result, indent=2))
    print(f"\nrehearsal on {result['provenance']['cpu_cores']} CPU cores, {result['provenance']['date']}, "
          f"commit {result['provenance']['commit']}, torch {result['provenance']['torch']}")  # fmt: skip
    print("| phase | seconds | peak memory, PSS (MB) | peak RSS sum (MB) | processes |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['phase']} | {row['seconds']:.0f} | {row['peak_pss_mb']:.0f} | {row['peak_rss_mb']:.0f} "
              f"| {row['processes']} |")  # fmt: skip
    print(f"\nwritten to {args.out / 'rehearsal.json'}")


if __name__ == "__main__":
    main()
