"""plinknet.device: the one module that calls torch.cuda, run here against a simulated GPU (tests/simgpu.py)."""

import ast
import os
from pathlib import Path

import pytest
import torch
from simgpu import simulated_gpus

import plinknet
from plinknet import device as devices

PACKAGE = Path(plinknet.__file__).parent
CUDA_ONLY = ("torch.cuda", "torch.backends.cuda", "torch.backends.cudnn")  # what only the device module may touch


def _dotted(node: ast.AST) -> str | None:
    """``torch.cuda.set_device`` for an attribute chain, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def cuda_uses(path: Path) -> list[str]:
    """Every place in a file that reaches torch.cuda (or cuDNN's and CUDA's backend flags), by its syntax tree."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Attribute):
            names.append(_dotted(node))
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in filter(None, names):
            if any(name == prefix or name.startswith(prefix + ".") for prefix in CUDA_ONLY):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    return found


def test_torch_cuda_is_called_in_the_device_module_only():
    outside = [use for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "device.py"
               for use in cuda_uses(path)]  # fmt: skip
    assert outside == []
    assert cuda_uses(PACKAGE / "device.py"), "the scan finds nothing at all: it is broken"


def test_the_scan_sees_every_way_of_reaching_torch_cuda(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nimport torch.cuda\nfrom torch import cuda\nfrom torch.cuda import Event\n"
                      "x = torch.cuda.device_count()\ntorch.backends.cudnn.benchmark = True\n"
                      "s = 'torch.cuda.set_device'  # a string is no call\n")  # fmt: skip
    (tmp_path / "plinknet").mkdir()
    moved = tmp_path / "plinknet" / "sample.py"
    sample.rename(moved)
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "plinknet"
    try:
        found = [line.split(": ", 1)[1] for line in cuda_uses(moved)]
    finally:
        PACKAGE = saved
    assert sorted(set(found)) == ["torch.backends.cudnn", "torch.backends.cudnn.benchmark", "torch.cuda",
                                  "torch.cuda.Event", "torch.cuda.device_count"]  # fmt: skip


@pytest.mark.parametrize(
    "model, old_torch, expected",
    [("T4", False, "fp16"), ("V100", False, "fp16"), ("A100", False, "bf16"), ("H100", False, "bf16"),
     ("T4", True, "fp16"), ("H100", True, "bf16")],  # old torch: is_bf16_supported() without its keyword
)  # fmt: skip
def test_precision_follows_the_gpu(model, old_torch, expected):
    with simulated_gpus(1, model, old_torch=old_torch):
        gpu = torch.device("cuda:0")
        assert devices.precision(gpu) == expected
        assert devices.grad_scaler(gpu).is_enabled() == (expected == "fp16")  # fp16 needs the loss scaler
        assert devices.precision(gpu, amp=False) == "fp32" and not devices.grad_scaler(gpu, amp=False).is_enabled()
        assert devices.precision_label(gpu) == {"fp16": "fp16 autocast with a loss scaler",
                                                "bf16": "bf16 autocast"}[expected]  # fmt: skip
    assert devices.precision(torch.device("cpu")) == "fp32"


def test_a_cuda_device_always_comes_back_indexed(monkeypatch):
    with simulated_gpus(2, "H100") as machine:
        assert devices.resolve_device("auto") == torch.device("cuda:0")
        assert devices.resolve_device("cuda") == torch.device("cuda:0")
        assert devices.indexed(torch.device("cuda")) == torch.device("cuda:0")
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert devices.resolve_device("cuda") == torch.device("cuda:1")
        devices.use_gpu(torch.device("cuda"))  # torch itself refuses set_device(cuda) without an index
        assert ("set_device", (1,)) in machine.calls
    with pytest.raises(ValueError, match="no CUDA device"):
        devices.resolve_device("cuda")


def test_events_and_memory_are_read_on_the_device_asked_for():
    with simulated_gpus(2, "H100") as machine:
        event = devices.copy_event(torch.device("cuda:1"))
        assert event.device_index == 1
        with devices.memory_peak(torch.device("cuda:1")) as peak:
            torch.zeros(2**20, dtype=torch.uint8, device="cuda:1")
        assert peak["allocated_mib"] == pytest.approx(1.0)
        assert devices.total_memory_mib(torch.device("cuda:1")) == 80 * 1024
    assert [a for n, a in machine.calls if n == "reset_peak_memory_stats"] == [(1,)]
    assert [a for n, a in machine.calls if n == "current_stream"] == [(1,)]


@pytest.mark.parametrize(
    "physical, environment, expected",
    [
        (8, {"CUDA_VISIBLE_DEVICES": "4,6"}, ["4", "6"]),  # a scheduler gave this job GPUs 4 and 6
        (8, {"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, []),  # UUIDs the simulated runtime cannot match
        (8, {"SLURM_STEP_GPUS": "4,6"}, ["4", "6"]),  # SLURM without cgroups: the node's numbering
        (8, {"SLURM_JOB_GPUS": "4-5"}, ["4", "5"]),
        (2, {"SLURM_JOB_GPUS": "4,6"}, ["0", "1"]),  # SLURM's cgroup: the job sees only its 2, numbered from 0
        (8, {"SLURM_STEP_GPUS": "2", "SLURM_JOB_GPUS": "2,3"}, ["2"]),  # the step's own, then the job's
        (3, {}, ["0", "1", "2"]),
    ],
)
def test_the_gpus_a_process_was_given(monkeypatch, physical, environment, expected):
    for key in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        monkeypatch.delenv(key, raising=False)
    with simulated_gpus(physical, "H100", visible=environment.get("CUDA_VISIBLE_DEVICES")) as machine:
        for key, value in environment.items():
            if key != "CUDA_VISIBLE_DEVICES":  # the simulated machine sets (and restores) that one
                monkeypatch.setenv(key, value)
        assert devices.assigned_gpus() == expected
        assert devices.gpu_environment(expected[0])["CUDA_VISIBLE_DEVICES"] == expected[0] if expected else True
    assert machine.context_calls() == []  # counting GPUs opens no CUDA context


def test_no_gpu_without_cuda():
    assert devices.gpu_count() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    with simulated_gpus(0, "H100"):
        assert devices.assigned_gpus() == [] and not devices.cuda_available()


def test_loader_workers_share_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(devices, "usable_cpus", lambda: 16)
    assert devices.loader_workers(1) == 8  # at most 8
    assert devices.loader_workers(8) == 1  # 8 runs on 16 cores: one worker each beside the training process
    assert devices.loader_workers(16) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert devices.cpus_per_process() == 4 and devices.loader_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.undo()
    assert 1 <= devices.usable_cpus() <= (os.cpu_count() or 1)


def test_gpu_errors_are_told_from_user_errors():
    assert devices.is_gpu_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert devices.is_gpu_error(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error"))
    assert not devices.is_gpu_error(ValueError("crop_size must be a multiple of 32"))


def test_prepare_model_leaves_tf32_matrix_products_off():
    before = torch.backends.cuda.matmul.allow_tf32
    with simulated_gpus(1, "H100"):
        model = devices.prepare_model(torch.nn.Conv2d(3, 4, 3), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 == before  # the whole process would have computed in TF32
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
