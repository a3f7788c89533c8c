"""Every benchmark in one place: ``plinknet bench {model,data,train,predict}``, the device check and the rehearsal.

- :mod:`~plinknet.bench.model`: forward/backward speed, parameters and FLOPs of both networks;
- :mod:`~plinknet.bench.data`: the training loader's overhead, throughput and memory;
- :mod:`~plinknet.bench.train`: training images/s in memory and through the loader;
- :mod:`~plinknet.bench.predict`: ``plinknet predict`` against a plain loop, seconds per tile, memory;
- :mod:`~plinknet.bench.backends`: ONNX Runtime against eager PyTorch for prediction;
- :mod:`~plinknet.bench.gpu_check`: every GPU measurement in one short call (``make gpu-check``);
- :mod:`~plinknet.bench.rehearsal`: paper-scale data through every phase on the CPU (``make rehearsal``);
- :mod:`~plinknet.bench.memory`: peak memory of a process tree;
- :mod:`~plinknet.bench.stability`: how far the live demo's trained numbers move between runs and
  thread counts (``make stability``).

They measure, as ratios taken in one run; tests never assert timings. The figures measured so far
are in ``results/benchmarks.md``.
"""

from __future__ import annotations

from pathlib import Path


def run(what: str, device: str = "auto", data_dir: str | Path | None = None, **options) -> dict:
    """Dispatch for the command line; ``options`` go to the benchmark (e.g. ``workers`` for data)."""
    if what == "model":
        from plinknet.bench.model import bench_model

        return bench_model(device)
    if what == "train":
        from plinknet.bench.train import bench_train

        return bench_train(device, data_dir=data_dir, **options)
    if what == "predict":
        from plinknet.bench.predict import bench_prediction

        return bench_prediction(device, **options)
    if what == "data":
        from plinknet.bench.data import bench_data

        return bench_data(data_dir, **options)
    raise ValueError(f"unknown benchmark {what!r}; choose model, data, train or predict")
