"""Reading plinknet checkpoints safely (``weights_only=True``) and rebuilding their network."""

from __future__ import annotations

from pathlib import Path

import torch

from plinknet.device import resolve_device
from plinknet.model import PLinkNet


def load_state(path: str | Path) -> dict:
    """Load a plinknet checkpoint safely (``weights_only=True``: tensors and plain values only).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable checkpoint, or one holding objects that could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise ValueError(f"{path} holds Python objects beyond tensors and plain values; refusing to load "
                             f"it, as unpickling them could run code (plinknet checkpoints never do)") from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a plinknet checkpoint (it has no 'model_config'); "
                         f"train one with `plinknet train`")  # fmt: skip
    return state


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[PLinkNet, dict]:
    """Rebuild the network stored in a plinknet checkpoint; returns (model in eval mode, checkpoint).

    The file is read with ``weights_only=True`` (see :func:`load_state`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a plinknet checkpoint, holds more than tensors and plain
            values, or its weights do not fit its architecture.
    """
    path = Path(path)
    state = load_state(path)
    # the encoder weights are in the state dict: do not download them again
    model = PLinkNet.from_config(state["model_config"], encoder_weights=None)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"{path}: weights do not fit architecture {state['model_config']}: {first}") from err
    model.config.encoder_weights = state["model_config"].get("encoder_weights")
    return model.to(resolve_device(str(device))).eval(), state

