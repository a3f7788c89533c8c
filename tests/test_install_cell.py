"""The notebooks' install cell (book/plinknet_book/install_cell.py): one cell, the same in every notebook, pinned to a
commit of this repository, and a notebook run alone as Colab runs it."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from plinknet_book.install_cell import find_install_cells, install_cell, pinned, write_install_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "book" / "intro.ipynb", *sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_opens_with_the_install_cell_hidden(path):
    cells = _cells(path)
    assert find_install_cells(cells) == [1], f"{path.name}: the install cell belongs right after the title cell"
    assert cells[1]["metadata"]["tags"] == ["remove-cell"] and not cells[1]["outputs"]  # off Colab it prints nothing


def test_the_install_cell_is_the_same_everywhere_and_pins_a_commit_of_this_repository():
    sources = {path.name: "".join(_cells(path)[1]["source"]) for path in NOTEBOOKS}
    repository, commit = pinned(sources["intro.ipynb"])
    assert repository == yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    assert all(source == install_cell(repository, commit) for source in sources.values())
    assert re.fullmatch(r"[0-9a-f]{40}", commit), f"pinned commit {commit!r} is not a full commit hash"
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode and _git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip(f"shallow clone: the pinned commit {commit[:12]} may lie before its history starts")
    assert not known.returncode, f"the install cell pins {commit[:12]}, which is not in this repository's history"
    assert not subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT).returncode


def test_writing_the_cell_again_changes_nothing_and_replaces_an_old_cell(tmp_path):
    copy = tmp_path / "intro.ipynb"
    shutil.copy(NOTEBOOKS[0], copy)
    repository, commit = pinned("".join(_cells(copy)[1]["source"]))
    assert not write_install_cell(copy, repository)  # make repo-url on an up-to-date notebook: no change
    nb = json.loads(copy.read_text())
    nb["cells"][1]["source"] = ["import sys\n", 'if "google.colab" in sys.modules:\n', "    %pip install plinknet"]
    copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    assert write_install_cell(copy, "https://example.org/fork", "0" * 40)
    cells = _cells(copy)
    assert len(cells) == len(nb["cells"]) and find_install_cells(cells) == [1]
    assert pinned("".join(cells[1]["source"])) == ("https://example.org/fork", "0" * 40)
    assert cells[2:] == nb["cells"][2:]  # the other cells, outputs included, as they were


def test_a_chapter_copied_alone_runs_as_on_colab(tmp_path):
    """Chapter 7 copied alone into an empty folder and executed with papermill, as Colab runs it: its install cell
    clones a local copy of this repository, checks out this commit, installs it and reads the archives in it.

    PLINKNET_INSTALL stands in for Colab. The kernel runs in a new virtual environment that sees the test's packages
    (a .pth line naming their folder) but not its plinknet (an editable install, whose hook that line does not run):
    the plinknet it imports is the one the cell installed. pip builds it offline, with the setuptools at hand."""
    pytest.importorskip("papermill")
    from plinknet_book.results import claims_ledger, load_summary

    origin = tmp_path / "origin"  # stands in for GitHub: a clone of this repository
    _git("clone", "--quiet", str(ROOT), str(origin), cwd=tmp_path)
    commit = _git("rev-parse", "HEAD")
    colab = tmp_path / "colab"
    colab.mkdir()
    chapter = colab / "07_conclusion.ipynb"
    nb = json.loads((ROOT / "book" / chapter.name).read_text())
    found = find_install_cells(nb["cells"])
    assert found, f"{chapter.name} has no install cell: on Colab it finds neither plinknet nor results/"
    source = "".join(nb["cells"][found[0]]["source"])
    assert pinned(source), f"{chapter.name}'s install cell pins no repository and commit"
    repository, pinned_commit = pinned(source)  # the chapter's own cell, pointed at the clone and this commit
    source = source.replace(f'"{repository}"', f'"{origin}"').replace(f'"{pinned_commit}"', f'"{commit}"')
    nb["cells"][found[0]]["source"] = source.splitlines(keepends=True)
    chapter.write_text(json.dumps(nb, indent=1, ensure_ascii=False))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site_packages / "test-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    kernel = tmp_path / "jupyter" / "kernels" / "colab"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f",
                                                             "{connection_file}"], "language": "python"}))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PLINKNET_CHECKOUT")}
    env |= {"PLINKNET_INSTALL": "1", "JUPYTER_PATH": str(tmp_path / "jupyter"), "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",  # sic: pip reads 0 as "no isolation", so no setuptools to download
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
    out = tmp_path / "out.ipynb"
    done = subprocess.run([python, "-m", "papermill", "--no-progress-bar", "-k", "colab", str(chapter), str(out)],
                          cwd=colab, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    cells = _cells(out)
    said = "".join("".join(o.get("text", "")) for o in cells[1]["outputs"])
    assert f"plinknet {commit[:12]} imported from {site_packages / 'plinknet'};" in said, said
    assert f"working in {colab / 'plinknet' / 'book'}" in said
    shown = {c["id"]: "".join(o["data"]["text/markdown"]) for c in cells for o in c.get("outputs", [])
             if "text/markdown" in o.get("data", {})}  # fmt: skip
    results = colab / "plinknet" / "results"
    ledger = claims_ledger(load_summary(results / "ablation-synthetic-cpu"), load_summary(results / "paper-inria-gpu"))
    assert ledger in shown.values() and claims_ledger(None, None) not in shown.values()  # the archive was read
    footer = "".join(shown.values()).split("How this page was made")[-1]
    assert f"from commit `{commit[:12]}`" in footer, footer  # the installed copy's commit, not "unknown"
