"""How far the live demo's numbers move: the same run twice at one thread count and once at another.

    make stability    # or: python -m plinknet.trials.demo_stability [--out results/demo-stability]

Trains chapter 3's demo (P-LinkNet, 3 epochs of 192 px crops on the synthetic sample, seed 0) in
fresh processes: twice with 2 torch threads, once with 1. Each run is scored on the whole
validation tiles. Writes ``summary.json`` (provenance, each run's scores, whether the two runs at
2 threads gave bitwise-equal weights, the largest difference between runs) into ``--out``;
checkpoints stay under ``runs/stability/``. About 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from plinknet.files import write_json
from plinknet.provenance import provenance

DEMO = {"encoder_weights": None, "epochs": 3, "batch_size": 8, "crop_size": 192, "samples_per_tile": 20,
        "val_samples_per_tile": 4, "select_tiles": [6], "lr": 0.05, "lr_milestones": [], "workers": 0, "seed": 0,
        "device": "cpu", "progress": False}  # chapter 3's parameters  # fmt: skip
RUNS = (("threads2-a", 2), ("threads2-b", 2), ("threads1", 1))

ONE_RUN = """
import json, sys, hashlib, torch
from plinknet.infer.evaluate import evaluate_checkpoint
from plinknet.train import TrainConfig, train
threads, config = int(sys.argv[1]), json.loads(sys.argv[2])
torch.set_num_threads(threads)
run = train(TrainConfig(**config))
report = evaluate_checkpoint(f"{run}/best.pt", config["data_dir"], progress=False, device="cpu")
state = torch.load(f"{run}/last.pt", weights_only=True)["model"]
digest = hashlib.sha256(b"".join(v.cpu().numpy().tobytes() for v in state.values())).hexdigest()
print(json.dumps({"threads": threads, "overall": report["overall"], "weights_sha256": digest}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data-dir", type=Path, default=Path("data/synthetic"), help="the synthetic sample")
    parser.add_argument("--out", type=Path, default=Path("results/demo-stability"), help="where summary.json goes")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/stability"), help="the three runs' folders")
    args = parser.parse_args(argv)
    if (args.out / "summary.json").exists():
        raise SystemExit(f"{args.out / 'summary.json'} exists: choose another --out (results are never replaced)")
    runs = {}
    for name, threads in RUNS:
        config = {**DEMO, "data_dir": str(args.data_dir), "out_dir": str(args.runs_dir / name)}
        if (args.runs_dir / name).exists():
            raise SystemExit(f"{args.runs_dir / name} exists: remove it or choose another --runs-dir")
        print(f"training {name} ({threads} thread(s))", flush=True)
        done = subprocess.run([sys.executable, "-c", ONE_RUN, str(threads), json.dumps(config)], check=True,
                              capture_output=True, text=True)  # fmt: skip
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    scores = ("iou", "miou", "precision", "recall", "f1")
    spread = {k: 100 * (max(r["overall"][k] for r in runs.values()) - min(r["overall"][k] for r in runs.values()))
              for k in scores}  # fmt: skip
    summary = {
        "what": "chapter 3's demo trained three times: twice with 2 torch threads, once with 1",
        "config": DEMO, "runs": runs,
        "same_threads_bitwise_equal": runs["threads2-a"]["weights_sha256"] == runs["threads2-b"]["weights_sha256"],
        "threads_bitwise_equal": runs["threads2-a"]["weights_sha256"] == runs["threads1"]["weights_sha256"],
        "largest_difference_points": spread,
        "provenance": provenance("cpu"),
    }  # fmt: skip
    write_json(summary, args.out / "summary.json")
    print(json.dumps({k: summary[k] for k in ("same_threads_bitwise_equal", "threads_bitwise_equal",
                                               "largest_difference_points")}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
