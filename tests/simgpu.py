"""A simulated CUDA machine for the tests: recording fakes of the ``torch.cuda`` calls, every tensor on the CPU.

    with simulated_gpus(2, "H100") as machine:      # this process sees 2 H100s (fewer under CUDA_VISIBLE_DEVICES)
        ...                                          # plinknet runs its CUDA path; tensors stay on the CPU
    machine.calls                                    # [("is_available", ()), ("set_device", (1,)), ...]

Child processes (the device check's pytest and ``plinknet predict``, the workers of ``ablate --processes``) see
the same machine: :func:`simulated_gpus` puts ``tests/simgpu_site`` on ``PYTHONPATH``, whose ``sitecustomize.py``
installs it at start-up from ``PLINKNET_SIMULATED_GPUS``, and every process appends its calls to a JSON-lines log.
Production code never knows: nothing in ``plinknet`` reads these variables.

Simulated as the CUDA runtime does it: which GPUs a process sees (``CUDA_VISIBLE_DEVICES`` over the machine's
physical GPUs, read once at start-up; an entry that names no GPU ends the list), device indices (``set_device``
refuses a device without an index, as torch does; an index past the last visible GPU is an invalid ordinal), the
current device, streams and events per device, names, capability and bf16 support (with or without torch's
``including_emulation`` keyword), and a CUDA context, opened by any call but ``is_available`` and ``device_count``.

Not simulated: arithmetic (every tensor stays on the CPU; autocast leaves CPU tensors in fp32), NCCL (gloo takes its
place; DistributedDataParallel's ``device_ids`` are recorded, then dropped), SyncBatchNorm (left as BatchNorm, its
kernels are CUDA-only), pinned memory (``Tensor.pin_memory`` returns the tensor; the DataLoader of torch 2.6 and
later does not pin, as without an accelerator), and memory, which counts the bytes of the tensors
placed on a GPU since the last reset, never freed (a peak that cannot be lower than the truth).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.overrides import TorchFunctionMode

HERE = Path(__file__).resolve().parent
SITE = HERE / "simgpu_site"  # its sitecustomize.py installs the machine in child processes
ENV_MACHINE = "PLINKNET_SIMULATED_GPUS"  # "<physical GPUs>:<model>[:old-torch]"
ENV_LOG = "PLINKNET_SIMULATED_GPU_LOG"  # JSON lines, one per call, from every process
NO_CONTEXT = ("is_available", "device_count", "is_initialized")  # all the others open a CUDA context


@dataclass(frozen=True)
class Model:
    name: str
    capability: tuple[int, int]
    memory: int  # bytes


MODELS = {
    "T4": Model("Tesla T4", (7, 5), 15 * 2**30),  # Colab's: no bf16 (emulated only)
    "V100": Model("Tesla V100-SXM2-32GB", (7, 0), 32 * 2**30),
    "A100": Model("NVIDIA A100-SXM4-80GB", (8, 0), 80 * 2**30),
    "H100": Model("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30),
}


def visible_gpus(physical: int, variable: str | None) -> list[int]:
    """The physical GPUs a process sees, in its order, as the CUDA runtime reads ``CUDA_VISIBLE_DEVICES``."""
    if variable is None:
        return list(range(physical))
    seen = []
    for entry in variable.split(","):
        entry = entry.strip()
        if not entry.isdigit() or int(entry) >= physical or int(entry) in seen:
            break  # CUDA stops at the first entry that names no device
        seen.append(int(entry))
    return seen


class Machine:
    """One process's view of a simulated machine, and a record of every CUDA call it made."""

    def __init__(self, physical: int, model: str = "H100", old_torch: bool = False, log: str | None = None):
        self.physical, self.model, self.old_torch, self.log = physical, MODELS[model], old_torch, log
        self.visible = visible_gpus(physical, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.calls: list[tuple[str, tuple]] = []
        self.placed: list[int] = []  # the device index of every tensor placed on a GPU
        self.allocated: dict[int, int] = {}  # bytes placed since the last reset, per device
        self.current = 0
        self.lock = threading.Lock()

    # --------------------------------------------------------------- bookkeeping

    def record(self, name: str, *args) -> None:
        with self.lock:
            self.calls.append((name, args))
            if self.log:
                line = {"pid": os.getpid(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "slurm": os.environ.get("SLURM_STEP_GPUS") or os.environ.get("SLURM_JOB_GPUS"),
                        "call": name, "args": [str(a) for a in args]}  # fmt: skip
                with open(self.log, "a") as file:
                    file.write(json.dumps(line) + "\n")

    def context_calls(self) -> list[str]:
        """The calls that would have opened a CUDA context (and held memory on a GPU)."""
        return [name for name, _ in self.calls if name not in NO_CONTEXT]

    def index(self, device=None, optional: bool = True) -> int:
        """The index a torch.cuda function acts on, checked as torch checks it."""
        if device is None or (isinstance(device, (str, torch.device)) and torch.device(device).index is None):
            if not optional:
                torch.cuda._utils._get_device_index(torch.device("cuda"), optional=False)  # torch's own ValueError
            index = self.current
        elif isinstance(device, int):
            index = device
        else:
            device = torch.device(device)
            if device.type != "cuda":
                raise ValueError(f"Expected a cuda device, but got: {device}")
            index = device.index
        if not 0 <= index < len(self.visible):
            raise RuntimeError("CUDA error: invalid device ordinal")
        return index

    # --------------------------------------------------------------- the fakes of torch.cuda

    def is_available(self) -> bool:
        self.record("is_available")
        return bool(self.visible)

    def device_count(self) -> int:
        self.record("device_count")
        return len(self.visible)

    def is_initialized(self) -> bool:
        return bool(self.context_calls())

    def set_device(self, device) -> None:
        index = self.index(device, optional=False)
        self.record("set_device", index)
        self.current = index

    def current_device(self) -> int:
        self.record("current_device")
        return self.current

    def get_device_name(self, device=None) -> str:
        self.record("get_device_name", self.index(device))
        return self.model.name

    def get_device_capability(self, device=None) -> tuple[int, int]:
        self.record("get_device_capability", self.index(device))
        return self.model.capability

    def get_device_properties(self, device=None):
        self.record("get_device_properties", self.index(device))
        major, minor = self.model.capability
        return SimpleNamespace(name=self.model.name, major=major, minor=minor, total_memory=self.model.memory,
                               multi_processor_count=132)  # fmt: skip

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        self.record("is_bf16_supported", including_emulation)
        return self.model.capability >= (8, 0) or including_emulation  # every GPU can emulate it

    def is_bf16_supported_old(self) -> bool:
        """torch before 2.4: no keyword, and True where bf16 is only emulated (T4, V100)."""
        self.record("is_bf16_supported")
        return True

    def synchronize(self, device=None) -> None:
        self.record("synchronize", self.index(device))

    def empty_cache(self) -> None:
        self.record("empty_cache")

    def reset_peak_memory_stats(self, device=None) -> None:
        index = self.index(device)
        self.record("reset_peak_memory_stats", index)
        self.allocated[index] = 0

    def max_memory_allocated(self, device=None) -> int:
        index = self.index(device)
        self.record("max_memory_allocated", index)
        return self.allocated.get(index, 0)

    def max_memory_reserved(self, device=None) -> int:
        index = self.index(device)
        self.record("max_memory_reserved", index)
        return self.allocated.get(index, 0)

    def current_stream(self, device=None) -> SimpleNamespace:
        index = self.index(device)
        self.record("current_stream", index)
        return SimpleNamespace(device=torch.device("cuda", index), device_index=index)

    def device_class(self):
        machine = self

        class device:  # torch.cuda.device(index): the current device within the block (a class: torch isinstance()s it)
            def __init__(self, device):
                self.idx = machine.index(device)

            def __enter__(self):
                self.saved, machine.current = machine.current, self.idx
                machine.record("device", self.idx)

            def __exit__(self, *exc):
                machine.current = self.saved

        return device

    def event_class(self):
        machine = self

        class Event(torch.cuda.Event):  # torch's own class (torch 2.5's dynamo insists), its CUDA calls replaced
            def __init__(self, *args, **kwargs):
                machine.record("Event")
                self.device_index: int | None = None

            def record(self, stream=None) -> None:
                stream = stream or machine.current_stream()
                self.device_index = stream.device_index
                machine.record("Event.record", self.device_index)

            def synchronize(self) -> None:
                machine.record("Event.synchronize", self.device_index)

            def query(self) -> bool:
                return True

        return Event

    # --------------------------------------------------------------- installation

    def patches(self) -> list[tuple[object, str, object]]:
        """Every (owner, attribute, fake) that :func:`install` sets."""
        cuda = torch.cuda
        names = ("is_available", "device_count", "is_initialized", "set_device", "current_device", "get_device_name",
                 "get_device_capability", "get_device_properties", "synchronize", "empty_cache",
                 "reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved",
                 "current_stream")  # fmt: skip
        found = [(cuda, name, getattr(self, name)) for name in names]
        bf16 = self.is_bf16_supported_old if self.old_torch else self.is_bf16_supported
        found.append((cuda, "is_bf16_supported", bf16))
        found.append((cuda, "Event", self.event_class()))
        found.append((cuda, "device", self.device_class()))
        original = torch.distributed.init_process_group

        def init_process_group(backend=None, *args, **kwargs):
            self.record("init_process_group", backend)
            return original("gloo" if backend in (None, "nccl") else backend, *args, **kwargs)

        found.append((torch.distributed, "init_process_group", init_process_group))
        convert = torch.nn.SyncBatchNorm.convert_sync_batchnorm

        def convert_sync_batchnorm(module, process_group=None):
            self.record("convert_sync_batchnorm")
            return module

        found.append((torch.nn.SyncBatchNorm, "convert_sync_batchnorm", staticmethod(convert_sync_batchnorm)))
        del convert
        ddp = torch.nn.parallel.DistributedDataParallel
        ddp_init = ddp.__init__

        def ddp_on_the_cpu(module_self, module, device_ids=None, *args, **kwargs):
            self.record("DistributedDataParallel", *(device_ids or ()))
            ddp_init(module_self, module, None, *args, **kwargs)  # its parameters are on the CPU

        found.append((ddp, "__init__", ddp_on_the_cpu))
        if hasattr(torch, "accelerator"):  # DataLoader pins through torch.accelerator (torch 2.6+): no pinning here
            found.append((torch.accelerator, "is_available", lambda: False))
        found.append((torch.Tensor, "pin_memory", lambda tensor, device=None: tensor))  # torch 2.5 pins in a thread
        found.append((torch.Tensor, "is_pinned", lambda tensor, device=None: False))
        return found


class OnTheCpu(TorchFunctionMode):
    """Every tensor asked for on ``cuda[:N]`` is made on the CPU; the machine records N and the bytes."""

    def __init__(self, machine: Machine):
        super().__init__()
        self.machine = machine

    def _cpu(self, value, placed: list[int]):
        on_gpu = isinstance(value, torch.device) and value.type == "cuda"
        if on_gpu or isinstance(value, str) and value.startswith("cuda"):
            index = self.machine.index(value)
            placed.append(index)
            return torch.device("cpu") if isinstance(value, torch.device) else "cpu"
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.device:  # a device is only a name: cuda:1 stays cuda:1; the tensors made on it do not
            return func(*args, **kwargs)
        if func in (torch.Tensor.pin_memory, torch.Tensor.record_stream):
            return args[0] if func is torch.Tensor.pin_memory else None
        if func is torch.Tensor.cuda:
            device = args[1] if len(args) > 1 else kwargs.get("device")
            func, args, kwargs = torch.Tensor.to, (args[0], torch.device("cuda", self.machine.index(device))), {}
        placed: list[int] = []
        args = tuple(self._cpu(a, placed) for a in args)
        kwargs = {k: self._cpu(v, placed) for k, v in kwargs.items()}
        result = func(*args, **kwargs)
        if placed:
            with self.machine.lock:
                self.machine.placed.extend(placed)
                if isinstance(result, torch.Tensor):
                    self.machine.allocated[placed[0]] = self.machine.allocated.get(placed[0], 0) + result.nbytes
        return result


def install(machine: Machine, setattr_=setattr) -> OnTheCpu:
    """Put ``machine``'s fakes in place (``setattr_``: a MonkeyPatch's, to undo them) and start the CPU mode."""
    for owner, name, fake in machine.patches():
        setattr_(owner, name, fake)
    mode = OnTheCpu(machine)
    mode.__enter__()
    return mode


def install_from_environment() -> Machine | None:
    """In a child process (``sitecustomize``): the machine that ``PLINKNET_SIMULATED_GPUS`` describes."""
    spec = os.environ.get(ENV_MACHINE)
    if not spec:
        return None
    physical, model, *flags = spec.split(":")
    machine = Machine(int(physical), model, old_torch="old-torch" in flags, log=os.environ.get(ENV_LOG))
    install(machine)
    return machine


def read_log(path: str | os.PathLike) -> list[dict]:
    """Every call logged by the child processes, one dict each (pid, visible, slurm, call, args)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@contextlib.contextmanager
def simulated_gpus(physical: int = 1, model: str = "H100", old_torch: bool = False,
                   log: str | os.PathLike | None = None, visible: str | None = None):  # fmt: skip
    """This process and its children on a simulated machine of ``physical`` GPUs (``visible``: CUDA_VISIBLE_DEVICES).

    Yields the :class:`Machine` of this process; the children's calls go to ``log`` (JSON lines).
    """
    with pytest_monkeypatch() as mp:
        if visible is not None:
            mp.setenv("CUDA_VISIBLE_DEVICES", visible)
        spec = f"{physical}:{model}" + (":old-torch" if old_torch else "")
        mp.setenv(ENV_MACHINE, spec)
        if log is not None:
            mp.setenv(ENV_LOG, str(log))
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])))
        machine = Machine(physical, model, old_torch=old_torch)
        mode = install(machine, mp.setattr)
        try:
            yield machine
        finally:
            mode.__exit__(None, None, None)


def pytest_monkeypatch():
    import pytest

    return pytest.MonkeyPatch.context()
