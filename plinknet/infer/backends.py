"""What runs the network on a batch of windows: eager PyTorch, or ONNX Runtime on the CPU.

Both take the raw windows, (b, w, w, 3) uint8 as read from the scene, and return building
logits (b, w, w) float32; ImageNet normalisation happens inside, so the two cannot drift apart.

On 2 CPU cores ONNX Runtime runs P-LinkNet about twice as fast as eager PyTorch at the same
fp32 precision (probabilities equal within 1e-6; see ``results/benchmarks.md``), so ``"auto"``
picks it on the CPU when ``onnxruntime`` is installed (``pip install 'plinknet[predict]'``) and
falls back to PyTorch, saying so once, when it is not. On CUDA, PyTorch runs with bf16
autocast and channels_last, and its logits stay on the device, where the windows are blended.

The ONNX model is exported once per (weights, window) and cached in
``<default_cache_root()>/onnx`` (about 90 MB for ResNet34), so later runs skip the export
(~4 s) and do not even rebuild the PyTorch network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from plinknet.data.transforms import IMAGENET_MEAN, normalize_batch
from plinknet.device import (
    AUTOCAST_DTYPES,
    autotune_convolutions,
    copy_event,
    cpus_per_process,
    indexed,
    precision,
    use_gpu,
)
from plinknet.files import (
    default_cache_root,  # the training's arithmetic
    file_key,
    write_bytes,
    write_json,
)

BACKENDS = ("auto", "onnx", "torch")
MEAN_RGB = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)  # fills padding and nodata: ~0 once normalised
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class WindowNetwork(torch.nn.Module):
    """uint8 windows (b, h, w, 3) in, building logits (b, h, w) out: what gets exported to ONNX."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = normalize_batch(windows.permute(0, 3, 1, 2).float())  # (b, 3, h, w)
        return self.model(x)[:, 0]  # (b, h, w)


class TorchBackend:
    """Eager PyTorch: fp32 channels_last on the CPU; bf16 (fp16 without bf16) autocast + channels_last on CUDA.

    On CUDA the windows go through two pinned host buffers in turn, copied asynchronously, so the
    host prepares the next batch while the GPU still computes on this one.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = indexed(device)  # cuda -> cuda:N: the GPU whose context, streams and events this uses
        self.cuda = self.device.type == "cuda"
        use_gpu(self.device)  # before anything reaches the GPU
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self._pinned: list[torch.Tensor] = []
        self._copied: list = [None, None]  # per pinned buffer: the event of its last copy to the GPU
        self._turn = 0
        self._dtype = AUTOCAST_DTYPES.get(precision(self.device), torch.bfloat16)  # T4, V100: fp16
        autotune_convolutions(self.device)
        if not self.cuda and "LOCAL_WORLD_SIZE" in os.environ:
            torch.set_num_threads(cpus_per_process())

    def _upload(self, windows: np.ndarray) -> torch.Tensor:
        """(b, w, w, 3) uint8 on the GPU, through a pinned buffer that is not in flight."""
        fits = self._pinned and self._pinned[0].shape[0] >= len(windows)
        if not fits or self._pinned[0].shape[1:] != windows.shape[1:]:
            for event in filter(None, self._copied):
                event.synchronize()
            self._pinned = [torch.empty(windows.shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
            self._copied = [None, None]
        k, self._turn = self._turn, 1 - self._turn
        if self._copied[k] is not None:
            self._copied[k].synchronize()  # its previous copy to the GPU is done
        buffer = self._pinned[k][: len(windows)]
        buffer.copy_(torch.from_numpy(windows))
        on_gpu = buffer.to(self.device, non_blocking=True)
        self._copied[k] = copy_event(self.device)  # on the stream the copy was queued on, on the data's GPU
        return on_gpu

    @torch.no_grad()
    def __call__(self, windows: np.ndarray) -> np.ndarray | torch.Tensor:  # (b, w, w, 3) uint8 -> (b, w, w)
        x = self._upload(windows) if self.cuda else torch.from_numpy(windows)
        with torch.autocast("cuda", dtype=self._dtype, enabled=self.cuda):
            x = normalize_batch(x.permute(0, 3, 1, 2).float()).contiguous(memory_format=torch.channels_last)
            logits = self.model(x)[:, 0].float()  # (b, w, w)
        return logits if self.cuda else logits.numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU (fp32, all graph optimisations) running an exported :class:`WindowNetwork`."""

    name = "onnx"
    device = torch.device("cpu")

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpus_per_process()
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, windows: np.ndarray) -> np.ndarray:  # (b, w, w, 3) uint8 -> (b, w, w) float32
        return self.session.run(None, {"windows": np.ascontiguousarray(windows)})[0]


# --------------------------------------------------------------------------- ONNX export and its cache


def onnx_cache_dir() -> Path:
    return default_cache_root() / "onnx"


def model_key(model: torch.nn.Module) -> str:
    """A content hash of a network's weights and buffers (and class): the cache key of an in-memory model."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def onnx_path(key: str, window: int) -> Path:
    import onnxruntime

    return onnx_cache_dir() / f"{key}-w{window}-ort{onnxruntime.__version__}.onnx"


def export_onnx(model: torch.nn.Module, window: int, path: Path) -> Path:
    """Export ``WindowNetwork(model)`` for (batch, window, window, 3) uint8 input, batch dynamic.

    Written under a temporary name and renamed, so processes exporting at once (torchrun
    ranks) never read half a file.
    """
    network = WindowNetwork(model.cpu().eval())
    example = torch.zeros(2, window, window, 3, dtype=torch.uint8)  # not 1: export would specialise on it
    batch = torch.export.Dim("batch", min=1, max=1024)
    quiet = logging.getLogger("torch")
    level = quiet.level
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.CRITICAL)  # the exporter logs its attempts as errors
        try:
            program = torch.onnx.export(network, (example,), None, input_names=["windows"], output_names=["logits"],
                                        dynamic_shapes={"windows": {0: batch}}, external_data=False,
                                        dynamo=True)  # torch 2.5-2.8 default to the TorchScript exporter  # fmt: skip
        finally:
            quiet.setLevel(level)
        data = program.model_proto.SerializeToString()
    write_bytes(path, data)
    return path


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _wants_onnx(backend: str, device: torch.device) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if device.type != "cpu":
        if backend == "onnx":
            raise ValueError(f"backend 'onnx' runs on the CPU only; use --backend torch on {device}")
        return False
    if _onnx_available():
        return backend in ("auto", "onnx")
    if backend == "onnx":
        raise ValueError("backend 'onnx' needs onnxruntime: pip install 'plinknet[predict]'")
    _warn_once("onnxruntime is not installed: predicting with eager PyTorch, about 2x slower on the CPU "
               "(pip install 'plinknet[predict]')")  # fmt: skip
    return False


class Network:
    """A checkpoint file or an in-memory network, handing out a backend per window size (built once each).

    For a checkpoint with ONNX Runtime and a cached export, the file is only hashed, never
    loaded: its training crop comes from the cache too.

    Args:
        checkpoint: a plinknet checkpoint (or None with ``model``).
        model: an in-memory network (``predict_scene``).
        device: where to run.
        backend: ``"auto"``, ``"onnx"`` or ``"torch"`` (see the module docstring).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, model: torch.nn.Module | None = None,
                 device: torch.device | None = None, backend: str = "auto"):  # fmt: skip
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {self.checkpoint} does not exist")
        self.model, self.device = model, indexed(device or "cpu")
        self.onnx = _wants_onnx(backend, self.device)
        self.facts: dict | None = None if model is None else {"crop_size": None}
        self._key: str | None = None
        self._backends: dict[int, object] = {}

    def _load(self) -> torch.nn.Module:
        if self.model is None:
            from plinknet.checkpoint import load_checkpoint

            self.model, state = load_checkpoint(self.checkpoint)
            recipe = state.get("config") or {}
            self.facts = {"crop_size": int(recipe.get("crop_size") or 512), "model_config": state["model_config"],
                          "threshold": recipe.get("threshold")}  # fmt: skip
        return self.model

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = file_key(self.checkpoint, content=True) if self.model is None else model_key(self.model)
        return self._key

    @property
    def crop_size(self) -> int | None:
        """The training crop stored in the checkpoint (None for an in-memory network)."""
        return self._facts()["crop_size"]

    @property
    def threshold(self) -> float | None:
        """The recipe's threshold stored in the checkpoint (None for an in-memory network or an older cache)."""
        return self._facts().get("threshold")

    def _facts(self) -> dict:
        if self.facts is None or (self.model is None and "threshold" not in self.facts):
            facts_path = onnx_cache_dir() / f"{self.key}.json"
            if self.onnx and facts_path.is_file():
                self.facts = json.loads(facts_path.read_text())
            else:
                self._load()
                if self.onnx:
                    write_json(self.facts, facts_path)
        return self.facts

    def backend(self, window: int):
        """The backend for windows of ``window`` px: ONNX Runtime (exported and cached when new) or PyTorch."""
        if window not in self._backends:
            self._backends[window] = self._make(window)
        return self._backends[window]

    def _make(self, window: int):
        if not self.onnx:
            return TorchBackend(self._load(), self.device)
        path = onnx_path(self.key, window)
        if not path.is_file():
            try:
                export_onnx(self._load(), window, path)
            except Exception as err:  # an exporter gap must not stop a prediction that PyTorch can do
                _warn_once(f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                           f"predicting with eager PyTorch")  # fmt: skip
                self.onnx = False
                return TorchBackend(self._load(), self.device)
        return OnnxBackend(path)


