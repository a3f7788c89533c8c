"""Point the notebooks' Colab install cell at the repository URL of _config.yml (`make repo-url`)."""

import re
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[1]
url = yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"].rstrip("/")
for notebook in sorted((root / "book").glob("*.ipynb")):
    text = notebook.read_text()
    new = re.sub(r"git\+https?://[^\"\\ ]+", "git+" + url, text)
    if new != text:
        notebook.write_text(new)
        print(f"{notebook.name}: install cell now uses {url}")
