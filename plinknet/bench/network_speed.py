"""Forward/backward speed, parameters and FLOPs of both networks (``plinknet bench model``)."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from plinknet.device import autocast, device_label, prepare_model, resolve_device, synchronize
from plinknet.model import LinkNet34, PLinkNet, count_parameters


def gflops(model: torch.nn.Module, size: int = 512, batch: int = 1) -> float:
    """Forward GFLOPs (multiply and add counted as 2) of one (batch, 3, size, size) input."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(batch, 3, size, size))
    return counter.get_total_flops() / 1e9


def _timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def bench_model(device: str = "auto", size: int = 512, batch: int = 2, repeats: int | None = None) -> dict:
    """Parameters, GFLOPs and forward latency of P-LinkNet vs LinkNet34, timed in alternating pairs in one run.

    Parameters and FLOPs are exact; latency is an illustration: ``ratios["latency"]`` is the median of
    the ratios of ``repeats`` pairs (which network goes first alternates), ``latency_pair_ratios`` all of them.
    """
    dev = resolve_device(device)
    repeats = repeats or (20 if dev.type == "cuda" else 5)
    models = {"P-LinkNet": PLinkNet(), "LinkNet34": LinkNet34()}
    result = {"device": device_label(dev), "size": size, "batch": batch, "models": {}}
    for name, model in models.items():
        result["models"][name] = {"parameters": count_parameters(model), "gflops": gflops(model, size)}
    x = torch.randn(batch, 3, size, size, device=dev)
    latency, pair_ratios = {name: [] for name in models}, []
    with torch.no_grad():
        for name, model in models.items():
            models[name] = model.to(dev).eval()
            models[name](x)  # warm-up
        for k in range(repeats):  # pairs, the order swapped each time: drift in load and order hit both alike
            order = list(models) if k % 2 == 0 else list(models)[::-1]
            pair = {name: _timed(lambda m=models[name]: m(x), dev, 1)[0] for name in order}
            for name in models:
                latency[name].append(pair[name])
            pair_ratios.append(pair["P-LinkNet"] / pair["LinkNet34"])
    for name in models:
        result["models"][name]["latency_ms"] = 1000 * statistics.median(latency[name])
    p, b = result["models"]["P-LinkNet"], result["models"]["LinkNet34"]
    result["ratios"] = {
        "parameters": p["parameters"] / b["parameters"],
        "gflops": p["gflops"] / b["gflops"],
        "latency": statistics.median(pair_ratios),  # the median of the pairs' ratios, not a ratio of medians
    }
    result["latency_pair_ratios"] = pair_ratios
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
    q, pairs = r["ratios"], r["latency_pair_ratios"]
    print(f"ratio P-LinkNet/LinkNet34: parameters {q['parameters']:.3f}, GFLOPs {q['gflops']:.3f} (exact); "
          f"latency {q['latency']:.3f}, the median of {len(pairs)} alternating pairs, which ranged "
          f"{min(pairs):.3f} to {max(pairs):.3f} (it moves with the machine's load)")  # fmt: skip

