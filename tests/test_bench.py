"""The benchmarks run and report what they claim to measure (never their timings)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from plinknet.bench.loader_speed import bench_data
from plinknet.bench.memory import TreeMemory
from plinknet.bench.training_speed import bench_train

FIXTURE = Path(__file__).parent / "data" / "inria"
LINUX = Path("/proc/self/smaps_rollup").exists()


@pytest.mark.skipif(not LINUX, reason="process-tree memory is read from /proc")
def test_tree_memory_sees_a_child_process():
    code = "import numpy, time; a = numpy.ones(200 * 2**20 // 8); time.sleep(1.5)"
    with TreeMemory(interval=0.05) as memory:
        child = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.2)
        baseline = memory.peak_pss_mb
        child.wait()
    assert memory.peak_processes >= 2
    assert memory.peak_pss_mb >= 150 and memory.peak_rss_mb >= memory.peak_pss_mb * 0.5
    assert baseline is not None


def test_bench_data_on_tiny_tiles(tmp_path):
    result = bench_data(crop_size=32, n=8, workers=1, throughput_crops=16, tiles=2, tile_size=96,
                              cache_dir=tmp_path / "cache")  # fmt: skip
    overhead = result["overhead"]
    assert overhead["bare_ms"] > 0 and overhead["ratio"] > 0 and overhead["collated_ratio"] > 0
    assert [row["source"] for row in result["throughput"]] == ["GeoTIFF windows", "memory-mapped cache"]
    for row in result["throughput"]:
        assert row["workers"] == 1 and row["crops"] > 0 and row["crops_per_s"] > 0
        if LINUX:
            assert row["processes"] >= 2 and row["peak_pss_mb"] > 0  # the main process and its worker
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_bench_train_with_the_loader(capsys):
    result = bench_train("cpu", size=64, batch=2, steps=1, data_dir=FIXTURE, workers=0)
    (row,) = result["rows"]
    assert row["model_only_images_per_s"] > 0 and row["loader_images_per_s"] > 0 and row["loader_ratio"] > 0
    assert "through the loader" in capsys.readouterr().out


def test_latency_is_the_median_of_alternating_pairs(monkeypatch, capsys):
    from plinknet.bench import network_speed as bench_model_module

    calls, times = [], iter([2.0, 1.0, 2.0, 3.0, 6.0, 2.0])  # P, L | L, P | P, L: pair ratios 2, 1.5, 3

    def fake_timed(fn, device, repeats):
        calls.append(fn.__defaults__[0].config.pyramid_bins != ())  # True: P-LinkNet
        return [next(times)]

    monkeypatch.setattr(bench_model_module, "_timed", fake_timed)
    result = bench_model_module.bench_model("cpu", size=64, batch=1, repeats=3)
    assert calls == [True, False, False, True, True, False]  # who goes first alternates
    assert result["latency_pair_ratios"] == [2.0, 1.5, 3.0]
    assert result["ratios"]["latency"] == 2.0  # the ratio of the medians (3 / 2) would hide the pairing
    assert "ranged 1.500 to 3.000" in capsys.readouterr().out
