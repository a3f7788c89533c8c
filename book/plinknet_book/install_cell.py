"""The install cell that every notebook opens with (hidden on the site): on Colab it installs plinknet.

Off Colab the cell does nothing. On Colab it clones the repository beside the notebook, checks out the
commit the book was executed from, installs that checkout with the ``book`` extra and moves into its
``book/`` folder, so that the chapters find ``../results`` (the archives) as they do here, and run the
code that made the outputs the reader sees. The repository comes from ``repository.url`` in
``_config.yml``; the commit is written by ``make notebooks`` before it executes them.

    python -m plinknet_book.install_cell          # the URL of _config.yml into every notebook (make repo-url)
    python -m plinknet_book.install_cell --pin    # and the checked-out commit (make notebooks)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

# The cell's logic is written out in it: it runs before plinknet is installed. {{ }} are braces of the cell.
CELL = """\
# On Colab: plinknet at the commit this book was executed from, with its archived results (results/)
import os
import sys

REPOSITORY = "{repository}"  # repository.url of _config.yml
COMMIT = "{commit}"  # written by make notebooks

if "google.colab" in sys.modules or os.environ.get("PLINKNET_INSTALL"):  # GPU: Runtime > Change runtime type
    import importlib
    import subprocess

    checkout = os.environ.setdefault("PLINKNET_CHECKOUT", os.path.abspath("plinknet"))  # beside this notebook

    def run(*command, fix=""):
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError(f"{{command[0]}} is not installed. {{fix}}") from None
        if done.returncode:
            raise RuntimeError(f"{{' '.join(command)}} failed: {{done.stderr.strip()[-1000:]}}\\n{{fix}}")

    if not os.path.isdir(os.path.join(checkout, ".git")):
        run("git", "clone", "--quiet", REPOSITORY, checkout, fix="Install git, or check REPOSITORY.")
    run("git", "-C", checkout, "checkout", "--quiet", COMMIT,
        fix=f'COMMIT must be a commit of {{REPOSITORY}}, or "origin/main" for its latest code.')
    run(sys.executable, "-m", "pip", "install", "--quiet", f"{{checkout}}[book]")
    os.chdir(os.path.join(checkout, "book"))  # the chapters read ../results, ../data and ../runs
    importlib.invalidate_caches()
    import plinknet

    print(f"plinknet {{COMMIT[:12]}} imported from {{os.path.dirname(plinknet.__file__)}};",
          f"working in {{os.getcwd()}}")"""

_MARK = 'if "google.colab" in sys.modules'  # how an install cell, old or new, is recognised
_PINNED = re.compile(r'^REPOSITORY = "(?P<repository>[^"]*)".*\nCOMMIT = "(?P<commit>[^"]*)"', re.MULTILINE)
# what the code a Colab reader installs is made of: uncommitted changes here are not in the pinned commit
INSTALLED_PATHS = ("plinknet", "book/plinknet_book", "book/params", "pyproject.toml", "results")


def install_cell(repository: str, commit: str) -> str:
    """The source of the install cell for ``repository`` (a git URL or path) at ``commit``."""
    return CELL.format(repository=repository, commit=commit)


def pinned(source: str) -> tuple[str, str] | None:
    """``(repository, commit)`` written in an install cell's source, or None for a cell without them."""
    found = _PINNED.search(source)
    return (found["repository"], found["commit"]) if found else None


def find_install_cells(cells: list[dict]) -> list[int]:
    """Indices of the install cells among a notebook's cells (every notebook should have one, at index 1)."""
    return [i for i, cell in enumerate(cells) if cell["cell_type"] == "code" and _MARK in "".join(cell["source"])]


def write_install_cell(notebook: str | Path, repository: str, commit: str | None = None) -> bool:
    """Write the install cell into ``notebook``, right after its title cell (replacing the one there).

    ``commit`` None keeps the commit the cell pins now. Returns whether the file changed; the other cells,
    outputs included, are left as they are.
    """
    path = Path(notebook)
    text = path.read_text()
    nb = json.loads(text)
    found = find_install_cells(nb["cells"])
    old = nb["cells"][found[0]] if found else {"id": "install", "metadata": {}}
    if commit is None:
        commit = (pinned("".join(old.get("source", ""))) or ("", "unpinned"))[1]
    cell = {"cell_type": "code", "execution_count": None, "id": old["id"],
            "metadata": {**old["metadata"], "tags": ["remove-cell"]}, "outputs": [],
            "source": install_cell(repository, commit).splitlines(keepends=True)}  # fmt: skip
    if found == [1] and {**old, "execution_count": None, "outputs": []} == cell:
        return False
    for i in reversed(found):
        del nb["cells"][i]
    nb["cells"].insert(1, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + ("\n" if text.endswith("\n") else ""))
    return True


def head_commit(root: str | Path) -> str:
    """The commit checked out in ``root``; warns on stderr when what a Colab reader installs has uncommitted
    changes (they are not in that commit)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    changed = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", *INSTALLED_PATHS], cwd=root,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    if changed:
        print(f"warning: uncommitted changes in {', '.join(changed)}: "
              f"the install cell pins {commit[:12]}, which lacks them; Colab readers will run that commit's code. "
              "Commit first, then make notebooks.", file=sys.stderr)  # fmt: skip
    return commit


def main(argv: list[str] | None = None) -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the repository (default: here)")
    parser.add_argument("--pin", action="store_true", help="pin the checked-out commit (git rev-parse HEAD)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    repository = yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    commit = head_commit(root) if args.pin else None
    notebooks = sorted((root / "book").glob("*.ipynb"))
    for notebook in notebooks:
        if write_install_cell(notebook, repository, commit):
            _, now = pinned("".join(json.loads(notebook.read_text())["cells"][1]["source"]))
            print(f"{notebook.name}: the install cell installs {repository} at {now[:12]}")


if __name__ == "__main__":
    main()
