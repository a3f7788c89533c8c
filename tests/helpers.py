"""What several test modules share: the committed fixture, a tiny network, and subprocesses that cannot hang."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from plinknet.files import save_torch as save_atomic
from plinknet.model import PLinkNet

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "inria"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

_spec = importlib.util.spec_from_file_location("make_inria_fixture", HERE / "data" / "make_inria_fixture.py")
make_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixture)


def fixture_root() -> Path:
    """The committed tiny Inria fixture (written again if someone deleted it)."""
    if not (FIXTURE / "AerialImageDataset/train/images/austin1.tif").exists():
        make_fixture.main(FIXTURE)
    return FIXTURE


def sharp_model() -> PLinkNet:
    """A seeded ResNet18 P-LinkNet in eval mode whose random head is sharpened: outputs with both classes."""
    torch.manual_seed(0)
    net = PLinkNet(encoder_name="resnet18").eval()
    with torch.no_grad():
        net.decoder.classifier.weight.mul_(20)
    return net


def write_checkpoint(net: PLinkNet, path: Path, crop_size: int = 64) -> Path:
    """A plinknet checkpoint of ``net``, as if trained on ``crop_size`` crops."""
    save_atomic({"model": net.state_dict(), "model_config": net.config.to_dict(), "config": {"crop_size": crop_size}},
                path)  # fmt: skip
    return path


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), wherever its session: torchrun puts each worker in its own."""
    from plinknet.bench.memory import process_tree

    return process_tree(pid)[1:]


def run_killable(cmd: list[str], timeout: float = 240, env: dict | None = None) -> tuple[int, str, str]:
    """Run ``cmd``; on a hang kill it and every process below it (torchrun's workers too): (code, stdout, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(proc.pid), proc.pid]:  # the workers hold the pipes: a survivor blocks forever
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate(timeout=30)
        raise
    return proc.returncode, stdout, stderr


def fingerprint(folder) -> dict:
    """Every file under ``folder``: its SHA-256 and modification time (ns); equal fingerprints, untouched files."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}  # fmt: skip


def stop_after_first_epoch(train, config) -> None:
    """Train ``config`` and interrupt it after its first epoch, as a kernel death or Ctrl-C would."""
    import pytest

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, on_epoch_end=interrupt)
