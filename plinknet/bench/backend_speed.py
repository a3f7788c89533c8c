"""Side by side: the ways to run P-LinkNet on the CPU that ``plinknet predict`` could use.

    .venv/bin/python -m plinknet.bench.backend_speed [--rounds 5] [--json out.json]

Per-window latency of a 512 x 512 window (the paper's ResNet34 P-LinkNet, random weights),
every candidate timed in turn within each round so that machine load hits all alike, the
median over rounds reported; the largest probability difference from eager fp32 says whether
a candidate may be the default (it must stay within 1e-3). OpenVINO is measured when
installed (``pip install openvino``), as is ONNX Runtime (``pip install 'plinknet[predict]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from plinknet.data.transforms import normalize
from plinknet.infer.backends import WindowNetwork, export_onnx
from plinknet.model import PLinkNet


def candidates(model: torch.nn.Module, window: int, work: Path) -> dict:
    """name -> (prepare seconds, run(batch uint8 (b, w, w, 3)) -> logits (b, w, w) numpy)."""
    found = {}

    def eager(net, fmt):
        def run(windows):
            x = torch.stack([normalize(w) for w in windows]).contiguous(memory_format=fmt)
            with torch.no_grad():
                return net(x)[:, 0].numpy()

        return run

    found["eager fp32 (the plain loop)"] = (0.0, eager(model, torch.contiguous_format))
    cl = PLinkNet.from_config(model.config.to_dict()).eval()
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    found["eager fp32 channels_last"] = (0.0, eager(cl, torch.channels_last))
    started = time.perf_counter()
    compiled = torch.compile(cl)
    run = eager(compiled, torch.channels_last)
    run(np.zeros((1, window, window, 3), np.uint8))
    found["torch.compile (inductor) channels_last"] = (time.perf_counter() - started, run)
    try:
        import onnxruntime

        started = time.perf_counter()
        path = export_onnx(model, window, work / "model.onnx")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        found["ONNX Runtime fp32 (plinknet default)"] = (
            time.perf_counter() - started, lambda w: session.run(None, {"windows": w})[0])  # fmt: skip
    except ImportError:
        pass
    try:
        import openvino

        core = openvino.Core()
        started = time.perf_counter()
        ov_model = openvino.convert_model(WindowNetwork(model), example_input=torch.zeros(1, window, window, 3,
                                                                                        dtype=torch.uint8))  # fmt: skip
        prepare = time.perf_counter() - started
        for precision in ("f32", "bf16"):
            compiled_ov = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
            request = compiled_ov.create_infer_request()
            found[f"OpenVINO {precision}"] = (prepare, lambda w, r=request: r.infer([w])[0].copy())
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = PLinkNet().eval()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, args.window, args.window, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        runs = candidates(model, args.window, Path(tmp))
        reference = torch.sigmoid(torch.from_numpy(runs["eager fp32 (the plain loop)"][1](batch[:1]))).numpy()
        rows = {name: {"prepare_s": prep, "batch1": [], "batch2": []} for name, (prep, _) in runs.items()}
        for name, (_, run) in runs.items():
            p = torch.sigmoid(torch.from_numpy(run(batch[:1]))).numpy()
            rows[name]["max_probability_difference"] = float(np.abs(p - reference).max())
        for _ in range(args.rounds):
            for name, (_, run) in runs.items():
                for size in (1, 2):
                    started = time.perf_counter()
                    run(batch[:size])
                    rows[name][f"batch{size}"].append((time.perf_counter() - started) / size)
    base = statistics.median(rows["eager fp32 (the plain loop)"]["batch1"])
    print(f"P-LinkNet (ResNet34) {args.window}x{args.window}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} alternated rounds")  # fmt: skip
    print(f"{'candidate':42s}{'s/window b1':>12s}{'b2':>8s}{'speed-up':>10s}{'max |dp|':>11s}{'prepare s':>11s}")
    for name, row in rows.items():
        b1, b2 = statistics.median(row["batch1"]), statistics.median(row["batch2"])
        row.update(median_batch1_s=b1, median_batch2_s=b2, speedup=base / min(b1, b2))
        print(f"{name:42s}{b1:12.3f}{b2:8.3f}{row['speedup']:9.2f}x{row['max_probability_difference']:11.1e}"
              f"{row['prepare_s']:11.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
