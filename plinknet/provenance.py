"""Where a number came from: commit, library versions, device, date, and a checksum of the data.

The same commit and seed give different trained numbers under another torch build, so every
result plinknet keeps (ablation archives, benchmark figures, book pages) carries this record.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from plinknet.device import device_label, usable_cpus

REPOSITORY = Path(__file__).resolve().parents[1]


COMPUTING_PATHS = ("plinknet", "pyproject.toml", "book/params")  # changes here change the numbers


def git_commit(repository: str | os.PathLike = REPOSITORY) -> str:
    """The checked-out commit, with ``+changes`` when the code differs from it; ``unknown`` outside git.

    Only ``COMPUTING_PATHS`` count: executing the book rewrites its notebooks, which is no change
    of the code that made the numbers.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *COMPUTING_PATHS],
                               cwd=repository, capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        # installed, not run from a clone: the notebooks' install cell (Colab) names the checkout it installed
        checkout = os.environ.get("PLINKNET_CHECKOUT")
        if checkout and Path(checkout).resolve() != Path(repository).resolve():
            return git_commit(checkout)
        return "unknown"
    return commit + ("+changes" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of plinknet and of the libraries that change its numbers."""
    import rasterio

    import plinknet
    from plinknet.model import import_smp

    smp = import_smp()

    found = {"plinknet": plinknet.__version__, "torch": torch.__version__,
             "segmentation_models_pytorch": smp.__version__, "rasterio": rasterio.__version__,
             "numpy": np.__version__, "python": platform.python_version()}  # fmt: skip
    return {name: str(version) for name, version in found.items()}  # plain str: torch's is a subclass


def provenance(device: str | torch.device = "cpu", data_dir: str | os.PathLike | None = None) -> dict:
    """Commit, versions, device, CPU counts (the machine's, this process's), date and (with ``data_dir``) the data's
    checksum (remembered: :func:`plinknet.data.checks.dataset_checksum`)."""
    record = {"commit": git_commit(), **versions(), "device": device_label(device), "cpu_cores": os.cpu_count(),
              "cpu_cores_usable": usable_cpus(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
    if data_dir is not None:
        from plinknet.data.checks import dataset_checksum

        record["data_sha256"] = dataset_checksum(data_dir)
    return record
