"""Binder's environment: the versions that executed the book, from ``requirements-lock.txt``.

repo2docker (Binder) reads the ``binder/`` folder in preference to the repository's root, so
``binder/requirements.txt`` and ``binder/runtime.txt`` pin Binder to what ``make notebooks`` ran with,
while ``environment.yml`` and ``pyproject.toml`` stay unpinned for people installing plinknet.
Binder has no GPU: torch and torchvision are pinned to their CPU builds, and the CUDA libraries that
torch's Linux wheels pull in are left out.

    python -m plinknet_book.binder_lock    # make binder-lock (make notebooks runs it)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_BUILDS = ("torch", "torchvision")  # pinned as <version>+cpu, from CPU_INDEX
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")  # torch's CUDA libraries: not on the CPU builds
HEADER = f"""\
# Binder's environment (repo2docker reads binder/ before the root): the versions that executed the book,
# written by make binder-lock from requirements-lock.txt; do not edit. torch and torchvision are their CPU
# builds (Binder has no GPU). To install plinknet yourself, use pyproject.toml or environment.yml.
--extra-index-url {CPU_INDEX}
"""


def normalized(name: str) -> str:
    """A package name as pip compares them (PEP 503): ``PyYAML`` and ``pyyaml``, ``a_b`` and ``a-b`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def binder_requirements(lock: str) -> str:
    """``binder/requirements.txt`` for the ``pip freeze`` in ``lock`` (comments and editable lines are skipped)."""
    lines = [HEADER.rstrip("\n")]
    for line in lock.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"requirements-lock.txt: {line!r} is not pinned with ==; make notebooks writes it again")
        if CUDA_ONLY.match(normalized(name)):
            continue
        if normalized(name) in CPU_BUILDS:
            version = version.split("+")[0] + "+cpu"
        lines.append(f"{name}=={version}")
    lines.append("-e .[book]  # plinknet itself, from this checkout")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the repository (default: here)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    binder = root / "binder"
    binder.mkdir(exist_ok=True)
    (binder / "requirements.txt").write_text(binder_requirements((root / "requirements-lock.txt").read_text()))
    # the Python that executed the book (this one: make runs it with the venv's)
    (binder / "runtime.txt").write_text(f"python-{sys.version_info.major}.{sys.version_info.minor}\n")
    print(f"binder/requirements.txt and binder/runtime.txt written from requirements-lock.txt "
          f"(Python {sys.version_info.major}.{sys.version_info.minor})")  # fmt: skip


if __name__ == "__main__":
    main()
