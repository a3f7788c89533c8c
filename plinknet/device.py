"""Where the work runs and in what precision: the one module of plinknet that calls ``torch.cuda``.

Every CUDA-only call of the package is here, each on an indexed device (``cuda:N``; torch refuses
``set_device("cuda")``): the device and the GPUs a process was given, the precision choice, streams
and events, memory statistics and NCCL; and the CPU cores a process may use, from which the
DataLoader workers and threads are sized. A test fails when ``torch.cuda`` appears anywhere else in
``plinknet`` (``tests/test_device.py``), and the tests replace the ``torch.cuda`` functions called
here with recording fakes (``tests/simgpu.py``), so that the CUDA path runs in ``make test`` on a CPU.

Counting GPUs (:func:`gpu_count`, :func:`assigned_gpus`) opens no CUDA context: a process that only
hands GPUs to its workers holds no memory on any of them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping

import torch

# --------------------------------------------------------------------------- which device


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (opens no CUDA context)."""
    return torch.cuda.is_available()


def gpu_count() -> int:
    """The CUDA GPUs this process sees (its ``CUDA_VISIBLE_DEVICES``); 0 without CUDA. Opens no CUDA context."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> the local CUDA device when there is one, else the CPU; ``"cuda"`` -> ``cuda:LOCAL_RANK``.

    A CUDA device always comes back with its index (the rank's GPU under torchrun, else 0).

    Raises:
        ValueError: a CUDA device is asked for and there is none, or ``cuda:N`` under torchrun.
    """
    name = str(name)
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not cuda_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu or auto")
    if device.index is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ValueError(f"--device {name} under torchrun would put every process on GPU {device.index}; use "
                         f"--device cuda or auto: each process takes cuda:LOCAL_RANK")  # fmt: skip
    return indexed(device)


def indexed(device: str | torch.device) -> torch.device:
    """``cuda`` -> ``cuda:LOCAL_RANK`` (0 outside torchrun); any other device as it is."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def use_gpu(device: torch.device) -> None:
    """Make ``device`` this process's current GPU (its context, streams and events); nothing on the CPU."""
    device = indexed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)


def device_label(device: str | torch.device = "cpu") -> str:
    """``"NVIDIA H100 80GB HBM3"`` for a CUDA device, ``"cpu (2 threads)"`` otherwise."""
    device = indexed(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings); nothing on the CPU."""
    device = indexed(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_event(device: torch.device):
    """An event recorded on ``device``'s current stream, after the copies queued there: ``.synchronize()`` waits."""
    device = indexed(device)
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def total_memory_mib(device: torch.device) -> float:
    return torch.cuda.get_device_properties(indexed(device)).total_memory / 2**20


@contextlib.contextmanager
def memory_peak(device: torch.device):
    """Yields a dict filled at the end with the peak MiB torch allocated and reserved on ``device`` in the block."""
    device = indexed(device)
    found: dict[str, float] = {}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        yield found
    finally:
        torch.cuda.synchronize(device)
        found["allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        found["reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20


# --------------------------------------------------------------------------- precision


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_LABELS = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a loss scaler", "fp32": "fp32"}


def precision(device: torch.device, amp: bool = True) -> str:
    """What autocast computes in: ``"bf16"`` on GPUs of compute capability 8.0 and later (A100, H100), ``"fp16"``
    on older ones (Colab's T4, V100: bf16 is only emulated there, several times slower), ``"fp32"`` on the CPU or
    without amp.

    Read from the capability, not from ``torch.cuda.is_bf16_supported``: before torch 2.4 that has no
    ``including_emulation`` keyword and answers True on a T4 (emulation), after it the default does too.
    """
    device = indexed(device)
    if not amp or device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp16"


def precision_label(device: torch.device, amp: bool = True) -> str:
    """:func:`precision` in words: ``"bf16 autocast"``, ``"fp16 autocast with a loss scaler"`` or ``"fp32"``."""
    return PRECISION_LABELS[precision(device, amp)]


def autocast(device: torch.device, enabled: bool = True):
    """Autocast in :func:`precision`'s dtype on CUDA; a no-op context on the CPU (fp32 there)."""
    name = precision(device, enabled)
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(name), enabled=name != "fp32")


def grad_scaler(device: torch.device, amp: bool = True) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs (small gradients would underflow to 0); a disabled one, a no-op, otherwise."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision(device, amp) == "fp16")


def autotune_convolutions(device: torch.device) -> None:
    """cuDNN times its convolution algorithms once per input shape and keeps the fastest (CUDA only)."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move to ``device``; channels_last memory format on CUDA (faster convolutions with bf16).

    cuDNN's autotuner is switched on for CUDA. TF32 matrix products are not switched on: that flag would hold for the
    whole process (the augmentation's ``affine_grid`` too), and under autocast the network's matrix products run in
    bf16 or fp16 anyway; cuDNN's convolutions use TF32 by torch's own default.
    """
    device = indexed(device)
    autotune_convolutions(device)
    if device.type == "cuda":
        if channels_last:
            return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


# --------------------------------------------------------------------------- the GPUs of a job


def _expand(ids: str) -> list[str]:
    """SLURM's GPU list, ``"4,6"`` or ``"4-7,9"``, as ``["4", "6"]``."""
    found: list[str] = []
    for part in filter(None, (p.strip() for p in ids.split(","))):
        low, _, high = part.partition("-")
        found += [str(i) for i in range(int(low), int(high) + 1)] if high else [part]
    return found


def assigned_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process was given, in order, each as a worker's ``CUDA_VISIBLE_DEVICES`` must name it.

    From ``CUDA_VISIBLE_DEVICES`` when it is set (its entries as written: numbers or ``GPU-``/``MIG-`` UUIDs), so a
    job given GPUs 4 and 6 puts its workers on 4 and 6, not 0 and 1. Else from SLURM's ``SLURM_STEP_GPUS`` or
    ``SLURM_JOB_GPUS``: their ids when this process sees more GPUs than the allocation (no cgroup constraint), and
    ``0..n-1`` when it sees only the allocation (SLURM's device constraint numbers the job's GPUs from 0). Else
    every GPU torch sees. Counts GPUs only: no CUDA context is opened.
    """
    env = os.environ if environ is None else environ
    count = gpu_count()
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [entry.strip() for entry in visible.split(",") if entry.strip()][:count]
    allocation = _expand(env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or "")
    if allocation and count > len(allocation):
        return allocation
    return [str(i) for i in range(count)]


def gpu_environment(gpu: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process that must see one GPU only: ``gpu``, an entry of :func:`assigned_gpus`."""
    env = dict(os.environ if environ is None else environ)
    env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def join_nccl(device: torch.device) -> None:
    """Join torchrun's process group over NCCL, this rank on ``device`` (its GPU made current first)."""
    import torch.distributed as dist

    use_gpu(device)
    dist.init_process_group("nccl")


def current_gpu() -> torch.device:
    """This process's current GPU, indexed (where NCCL's tensors live)."""
    return torch.device("cuda", torch.cuda.current_device())


def is_gpu_error(error: BaseException) -> bool:
    """A CUDA or NCCL failure (out of memory, a lost device, a collective that failed), as opposed to a user error."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"DistError", "DistBackendError", "AcceleratorError"}:
        return True
    text = str(error)
    return any(word in text for word in ("CUDA", "NCCL", "cuDNN", "CUBLAS", "cuda runtime"))


# --------------------------------------------------------------------------- CPU cores


def usable_cpus() -> int:
    """The CPU cores this process may use: its affinity (SLURM's and taskset's cpusets), capped by a cgroup quota
    (``docker --cpus``), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def core_shares(processes: int) -> list[list[int]]:
    """This process's CPU cores split into ``processes`` disjoint shares (the leftover cores to the first shares); every
    share holds all of them when there are fewer cores than processes."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < processes:
        return [cores] * processes
    size, extra = divmod(len(cores), processes)
    bounds = [k * size + min(k, extra) for k in range(processes + 1)]
    return [cores[bounds[k] : bounds[k + 1]] for k in range(processes)]


def cpus_per_process(processes: int | None = None) -> int:
    """This process's share of :func:`usable_cpus` among ``processes`` (default: torchrun's on this machine)."""
    processes = processes or int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, usable_cpus() // max(1, processes))


def loader_workers(processes: int | None = None) -> int:
    """DataLoader workers for a training process: its share of the CPU cores less one (for itself), at most 8.

    Workers only read and flip uint8 crops (the rest happens on the device), so a few per GPU suffice.
    """
    return max(0, min(8, cpus_per_process(processes) - 1))
