"""One set of facts: what the book states on several pages (the split, the archive's gap, spread and run counts
under each reading of the paper's 'IoU', the demo networks' whole-tile scores and their gap) has one value on
every page that states it, read from the executed notebooks as a reader sees them (prose with its glued values,
and the cells' outputs), and the archive's numbers are those of ``results/``."""

import html
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from plinknet.data.tiles import split_words

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "book" / "intro.ipynb", *sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))]
ARCHIVE = ROOT / "results" / "ablation-synthetic-cpu" / "summary.json"
GLUE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::[^`]*)?`")
RECORD = "application/papermill.record/"  # papermill's prefix on glued outputs
READING = {"building IoU": "iou", "IoU": "iou", "mIoU": "miou", "F1": "f1"}


def page_text(path: Path) -> str:
    """What a reader of the built page reads: markdown with ``{glue:text}`` filled in, then every shown output."""
    glued, shown = {}, []
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        for out in cell.get("outputs", []):
            data = {k.removeprefix(RECORD): v for k, v in out.get("data", {}).items()}
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                text = "".join(data.get("text/plain", ""))
                glued[name] = text[1:-1] if text[:1] in "'\"" and text[:1] == text[-1:] else text
            elif tags & {"remove-output", "remove-cell"}:
                continue
            elif out["output_type"] == "stream":
                shown.append("".join(out["text"]))
            elif "text/markdown" in data:
                shown.append("".join(data["text/markdown"]))
            elif "text/html" in data:
                shown.append(html.unescape(re.sub(r"<[^>]+>", " ", "".join(data["text/html"]))))
            elif "text/plain" in data:
                shown.append("".join(data["text/plain"]))
    prose = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    return "\n".join([GLUE.sub(lambda m: glued.get(m.group(1), m.group(0)), s) for s in prose] + shown)


def tables(text: str):
    """Markdown tables as (header cells, rows of cells)."""
    for block in re.findall(r"(?:^\|.*\|[ \t]*\n?)+", text, flags=re.M):
        lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
        if len(lines) > 2 and set("".join(lines[1])) <= set("-: "):
            yield lines[0], lines[2:]


NUMBER = r"[+-]?\d[\d,]*\.?\d*"
TRIPLE = re.compile(r"([+-]\d+\.\d\d) \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\]")
SPLIT_PHRASE = re.compile(r"tiles? \d+(?:-\d+)?(?:, \d+(?:-\d+)?)* of each city")
ROLE = re.compile(r"\b(validation|selection|training)\b")


def statements(page: str, text: str) -> list[tuple[str, str, str]]:
    """(fact, key, value) for each statement of a shared fact on one page."""
    found = []
    roles = {"validation": "val", "selection": "select", "training": "train"}
    for m in SPLIT_PHRASE.finditer(text):  # the split: the role named nearest to the tiles
        near = [(abs(r.start() - m.end()) if r.start() >= m.end() else m.start() - r.end(), r.group(1))
                for r in ROLE.finditer(text, max(0, m.start() - 60), m.end() + 60)]  # fmt: skip
        found.append(("split", roles[min(near)[1]] if near else "unnamed", m.group(0)))
    for m in TRIPLE.finditer(text):  # the archive's gap and its interval, named by the reading after it
        after = re.match(r"\s*(?:points\s*)?in (building IoU|mIoU|F1)\b", text[m.end():])
        if after:
            reading = READING[after.group(1)]
            found.append(("archive gap", reading, m.group(0)))
            found.append(("archive gap mean", reading, m.group(1)))
            found.append(("archive gap interval", reading, f"[{m.group(2)}, {m.group(3)}]"))
            status = re.match(r"\s*(?:points\s*)?in (?:building IoU|mIoU|F1) \((\w+)\)", text[m.end():])
            if status:
                found.append(("archive status", reading, status.group(1)))
    for m in re.finditer(r"σ of the (IoU|mIoU) gap (\d+\.\d\d)", text):
        found.append(("archive σ", READING[m.group(1)], m.group(2)))
    for m in re.finditer(r"σ of the paired (IoU|mIoU) gap is (\d+\.\d\d)", text):
        found.append(("archive σ", READING[m.group(1)], m.group(2)))
    for m in re.finditer(r"(\d[\d,]*)(?:\*\*)?(?: runs of each network(?:\*\*)?)? read as (building IoU|mIoU)", text):
        found.append(("archive runs", READING[m.group(2)], m.group(1)))
    for header, rows in tables(text):
        columns = {i: READING[h.removeprefix("read as ")] for i, h in enumerate(header)
                   if h.removeprefix("read as ") in READING}  # fmt: skip
        for row in rows:
            label = row[0]
            for i, reading in columns.items():
                cell = row[i] if i < len(row) else ""
                if label == "gap, 95 % CI" and TRIPLE.fullmatch(cell):
                    found.append(("archive gap", reading, cell))
                elif label == "gap, P-LinkNet − LinkNet34":
                    found.append(("archive gap mean", reading, cell.split()[0]))
                elif label.startswith("95 % interval (paired t"):
                    found.append(("archive gap interval", reading, cell))
                elif "**status**" in label:
                    found.append(("archive status", reading, cell.strip("*")))
                elif label.startswith("seed-to-seed spread of the gap: σ"):
                    found.append(("archive σ", reading, cell.split()[0]))
                elif label.startswith("runs of each network to detect"):
                    found.append(("archive runs", reading, cell.split()[0]))
        if header[:2] == ["network", "IoU"]:  # the demo networks on the whole validation tiles, or the archive's
            for row in rows:  # means ± σ over seeds
                found += [("archive mean" if "±" in row[i] else "demo whole-tile", f"{row[0]} {header[i]}", row[i])
                          for i in range(1, len(header))]  # fmt: skip
        if header[:2] == ["convention", "IoU"]:  # chapter 6: the same predictions under each convention
            for network, row in zip(("P-LinkNet", "LinkNet34"), [r for r in rows if r[0].startswith("counts")]):
                found += [("demo whole-tile", f"{network} {header[i]}", row[i]) for i in range(1, 6)]
    return found


def expected_from_archive() -> dict[tuple[str, str], str]:
    """The archive's headline numbers, read from its summary, in the form the pages print them."""
    summary = json.loads(ARCHIVE.read_text())
    facts = {}
    for reading in ("iou", "miou"):
        low, high = summary[f"gap_{reading}_ci95"]
        facts["archive gap", reading] = f"{summary[f'gap_{reading}_mean']:+.2f} [{low:+.2f}, {high:+.2f}]"
        facts["archive gap mean", reading] = f"{summary[f'gap_{reading}_mean']:+.2f}"
        facts["archive gap interval", reading] = f"[{low:+.2f}, {high:+.2f}]"
        facts["archive status", reading] = summary["readings"][reading]["verdict"]
        facts["archive σ", reading] = f"{summary[f'sigma_{reading}']:.2f}"
        facts["archive runs", reading] = f"{summary['readings'][reading]['runs_needed']:,}"
    for network, scores in summary["models"].items():
        for metric in ("iou", "miou", "f1", "precision"):
            name = {"iou": "IoU", "miou": "mIoU", "f1": "F1"}.get(metric, metric)
            mean, std = scores[f"{metric}_mean"], scores[f"{metric}_std"]
            facts["archive mean", f"{network} {name}"] = f"{mean:.2f} ± {std:.2f}"
    return facts


@pytest.fixture(scope="module")
def stated():
    by_fact = defaultdict(lambda: defaultdict(set))  # (fact, key) -> value -> pages
    for path in PAGES:
        for fact, key, value in statements(path.stem, page_text(path)):
            by_fact[fact, key][value].add(path.stem)
    return by_fact


def test_every_shared_fact_has_one_value_on_every_page(stated):
    split = split_words()
    expected = {("split", role): phrase for role, phrase in split.items()} | expected_from_archive()
    wrong = []
    for (fact, key), values in sorted(stated.items()):
        if len(values) > 1:
            wrong.append(f"{fact} ({key}): " + "; ".join(f"{v} on {sorted(p)}" for v, p in values.items()))
        elif (fact, key) in expected and set(values) != {expected[fact, key]}:
            wrong.append(f"{fact} ({key}): {set(values)} on {sorted(set().union(*values.values()))}, "
                         f"the source says {expected[fact, key]}")  # fmt: skip
        elif fact == "split" and key not in split:
            wrong.append(f"split: {set(values)} named next to no role (validation, selection, training)")
    assert not wrong, "pages disagree:\n" + "\n".join(wrong)


def test_the_facts_are_found_where_the_book_states_them(stated):
    """The extraction reads what it should: a statement it stops finding is a failure, not a silent pass."""

    def pages(fact, key):
        return set().union(*stated[fact, key].values()) if (fact, key) in stated else set()

    assert {"intro", "04_ablation", "07_conclusion"} <= pages("archive gap", "iou")
    assert {"intro", "04_ablation"} <= pages("archive gap", "miou")
    assert {"intro", "04_ablation", "07_conclusion"} <= pages("archive σ", "miou")
    assert {"intro", "04_ablation"} <= pages("archive runs", "iou")
    assert {"intro", "04_ablation"} <= pages("archive status", "miou")
    assert {"intro", "04_ablation"} <= pages("archive gap interval", "iou")
    assert {"02_data", "03_training", "04_ablation", "07_conclusion"} <= pages("split", "select")
    assert {"02_data", "03_training", "04_ablation", "07_conclusion"} <= pages("split", "val")
    assert {"05_results", "06_protocol"} <= pages("demo whole-tile", "P-LinkNet IoU")
    assert {"04_ablation", "05_results"} <= pages("demo whole-tile", "LinkNet34 mIoU")


def test_chapter_6_gap_under_whole_counts_is_chapter_5s_difference():
    """Chapter 6's gap (P-LinkNet minus LinkNet34) under the benchmark's convention is the difference of the two
    networks' whole-tile scores chapter 5 prints, metric by metric (to rounding)."""
    five = {row[0]: row for header, rows in tables(page_text(PAGES[5])) if header[:2] == ["network", "IoU"]
            for row in rows}  # fmt: skip
    header5 = next(h for h, _ in tables(page_text(PAGES[5])) if h[:2] == ["network", "IoU"])
    gaps = next((h, rows) for h, rows in tables(page_text(PAGES[6])) if h[0].startswith("P-LinkNet − LinkNet34"))
    row = next(r for r in gaps[1] if r[0].startswith("counts"))
    for i, metric in enumerate(gaps[0][1:], start=1):
        j = header5.index(metric)
        difference = float(five["P-LinkNet"][j]) - float(five["LinkNet34"][j])
        assert abs(float(row[i]) - difference) <= 0.011, (metric, row[i], difference)


def test_no_page_types_the_split():
    """Tile numbers of the split come from `split_words` (glued into the prose), never typed into it."""
    typed = re.compile(r"\btiles? \(?\d|\(\d+(?:-\d+)? of each city\)|\bTiles \d")
    found = [(p.stem, m.group(0)) for p in PAGES for c in json.loads(p.read_text())["cells"]
             if c["cell_type"] == "markdown" for m in typed.finditer("".join(c["source"]))]  # fmt: skip
    assert not found, found
