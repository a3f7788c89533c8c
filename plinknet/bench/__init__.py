"""The benchmarks: ``plinknet bench {model,data,train,predict}``, each a speed or a cost measured as a ratio in one run.

- :mod:`~plinknet.bench.network_speed`: forward speed, parameters and FLOPs of both networks;
- :mod:`~plinknet.bench.loader_speed`: the training loader's overhead, throughput and memory, alone and with
  several loaders at once;
- :mod:`~plinknet.bench.training_speed`: training images/s in memory and through the loader;
- :mod:`~plinknet.bench.prediction_speed`: ``plinknet predict`` against a plain loop, seconds per tile, memory;
- :mod:`~plinknet.bench.backend_speed`: ONNX Runtime against eager PyTorch for prediction;
- :mod:`~plinknet.bench.memory`: peak memory of a process tree.

Whole commands run end to end (the device check, the rehearsals, the stability check) are in
:mod:`plinknet.trials`. Tests never assert timings. The figures measured so far are in
``results/benchmarks.md``.
"""

from __future__ import annotations

from pathlib import Path


def run(what: str, device: str = "auto", data_dir: str | Path | None = None, **options) -> dict:
    """Dispatch for the command line; ``options`` go to the benchmark (e.g. ``workers`` for data)."""
    if what == "model":
        from plinknet.bench.network_speed import bench_model

        return bench_model(device)
    if what == "train":
        from plinknet.bench.training_speed import bench_train

        return bench_train(device, data_dir=data_dir, **options)
    if what == "predict":
        from plinknet.bench.prediction_speed import bench_prediction

        return bench_prediction(device, **options)
    if what == "data":
        from plinknet.bench.loader_speed import bench_data

        return bench_data(data_dir, **options)
    raise ValueError(f"unknown benchmark {what!r}; choose model, data, train or predict")
