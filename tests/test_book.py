"""The book's notebooks: their skeleton, and chapter 5 running alone in an empty run folder."""

import json
from pathlib import Path

import pytest
import yaml
from helpers import stop_after_first_epoch

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
SHOWN_LINE = 95  # code shown on a page wraps at about 90 characters


def cells(path):
    return json.loads(path.read_text())["cells"]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", [ROOT / "book" / "intro.ipynb", *CHAPTERS], ids=lambda p: p.stem)
def test_every_page_has_parameters_and_a_provenance_footer(path):
    nb = cells(path)
    assert nb[0]["cell_type"] == "markdown" and "".join(nb[0]["source"]).startswith("# ")
    assert sum("parameters" in tags(c) for c in nb) == 1
    assert "footer(" in "".join(nb[-1]["source"]) and "remove-input" in tags(nb[-1])
    for cell in nb:
        if cell["cell_type"] == "code" and not {"remove-cell", "remove-input"} & set(tags(cell)):
            long = [line for line in "".join(cell["source"]).splitlines() if len(line) > SHOWN_LINE]
            assert not long, f"{path.name}: shown code lines over {SHOWN_LINE} characters: {long}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_install_cell_is_kept_but_not_rendered(path):
    install = [c for c in cells(path) if "google.colab" in "".join(c["source"])]
    if path.stem != "07_conclusion":  # reads archives only
        assert len(install) == 1 and "remove-cell" in tags(install[0])


def test_citation_file():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["title"] and citation["authors"]
    assert citation["references"][0]["doi"] == "10.5194/isprs-archives-XLIII-B3-2020-35-2020"


def test_chapter_5_runs_alone_and_resumes_an_interrupted_run(tmp_path):
    """Chapter 5 in a run folder holding only the P-LinkNet run it needs, stopped after its first epoch (as a kernel
    death would leave it): the chapter resumes that run, never restarts it, and trains LinkNet34 itself."""
    papermill = pytest.importorskip("papermill")
    from plinknet.synthetic import SyntheticConfig, generate
    from plinknet.train import TrainConfig, read_history, train

    generate(tmp_path / "sample", seed=1, config=SyntheticConfig(tile_size=256, val_tiles=1, train_tiles=2),
             progress=False)  # fmt: skip
    runs = tmp_path / "runs"
    params = {"run_dir": str(runs), "data_dir": str(tmp_path / "sample"), "synthetic": True, "epochs": 2,
              "samples_per_tile": 2, "val_samples_per_tile": 1, "batch_size": 4, "lr_milestones": [],
              "device": "cpu"}  # fmt: skip
    chapter = {k: v for k, v in params.items() if k not in ("run_dir", "synthetic")}
    interrupted = TrainConfig(**chapter, out_dir=str(runs / "plinknet"), encoder_weights=None, crop_size=192,
                              select_tiles=(6,), lr=0.05, workers=0, seed=0, progress=False)  # fmt: skip
    stop_after_first_epoch(train, interrupted)  # as a kernel death would leave it
    first_epoch = read_history(runs / "plinknet")
    papermill.execute_notebook(
        str(ROOT / "book" / "05_results.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(ROOT / "book"),
        kernel_name="python3", progress_bar=False, parameters={**params, "examples": 2, "example_size": 192},
    )  # fmt: skip
    resumed = read_history(runs / "plinknet")
    assert [r["epoch"] for r in resumed] == [1, 2] and resumed[0] == first_epoch[0]  # resumed, not restarted
    assert (runs / "plinknet" / "best.pt").is_file() and (runs / "linknet34" / "metrics.json").is_file()
    assert list((runs / "scene").glob("*_buildings.geojson"))


def _summary(gap_low, gap_high):
    from plinknet.study.stats import reading

    models = {m: {f"{k}_{s}": 50.0 for k in ("iou", "miou", "f1", "precision") for s in ("mean", "std")}
              for m in ("P-LinkNet", "LinkNet34")}  # fmt: skip
    summary = {"seeds": [0, 1, 2], "tiles": ["a1"], "split": "val", "window": 192, "data_dir": "data/x",
               "data_sha256": "0" * 64, "models": models, "paper": {"P-LinkNet": {"iou": 84.48, "second": 91.5},
               "LinkNet34": {"iou": 84.26, "second": 91.04}}, "gap_iou_mean": (gap_low + gap_high) / 2,
               "gap_iou_ci95": [gap_low, gap_high], "gap_iou_ci95_bootstrap": [gap_low / 2, gap_high / 2],
               "gap_miou_mean": 0.0, "gap_miou_ci95": [-1, 1], "gap_miou_ci95_bootstrap": [-0.5, 0.5],
               "gap_f1_mean": 0.0, "gap_f1_ci95": [-1, 1], "sigma_iou": 1.5, "sigma_miou": 1.0, "paper_gap": 0.22,
               "compute_seconds": 3600, "pairing": {m: {"sigma_paired_gap": 1.5, "sigma_one_network": 2.0,
                                                        "sqrt2_sigma_one_network": 2.83} for m in ("iou", "miou")},
               "runs_provenance": {"commit": ["abc"], "train_commit": ["def"], "torch": ["2.14"],
                                   "device": ["cpu (2 threads)"], "date": ["d"]}}  # fmt: skip
    summary["readings"] = {m: {**reading(summary, m), "runs_needed_unpaired": 700} for m in ("iou", "miou")}
    return summary


def test_verdict_is_filled_from_the_archives(tmp_path):
    from plinknet_book.results import power_text, verdict_markdown

    (tmp_path / "ablation-synthetic-cpu").mkdir()
    text = verdict_markdown(tmp_path)
    assert "Status of the claim: not tested at paper scale" in text and "make paper" in text
    lab = _summary(-1.0, 2.0)
    (tmp_path / "ablation-synthetic-cpu" / "summary.json").write_text(json.dumps(lab))
    text = verdict_markdown(tmp_path)
    assert "| gap, P-LinkNet − LinkNet34 | +0.50 points | +0.00 points |" in text
    assert "| 95 % interval (paired t, over seeds) | [-1.00, +2.00] | [-1.00, +1.00] |" in text
    assert "| sensitivity: bootstrap over seeds and tiles | [-0.50, +1.00] | [-0.50, +0.50] |" in text
    assert "no difference detected" in text and "{doc}`chapter 6 <06_protocol>`" in text
    low, high = lab["readings"]["miou"]["runs_needed_ci95"]
    assert low < lab["readings"]["miou"]["runs_needed"] < high and f"(95 % range {low:,} to {high:,})" in text
    assert "reduces** the spread" in power_text(lab)
    (tmp_path / "paper-inria-gpu").mkdir()
    (tmp_path / "paper-inria-gpu" / "summary.json").write_text(json.dumps(_summary(0.1, 0.3)))
    assert "Status of the claim: reproduced read as building IoU, inconclusive read as mIoU" in verdict_markdown(
        tmp_path)
    (tmp_path / "paper-inria-gpu" / "summary.json").write_text(json.dumps(_summary(-0.5, 0.1)))
    assert "Status of the claim: not reproduced read as building IoU" in verdict_markdown(tmp_path)
    (tmp_path / "paper-inria-gpu" / "summary.json").write_text(json.dumps(_summary(-0.5, 0.9)))
    assert "Status of the claim: inconclusive read as building IoU" in verdict_markdown(tmp_path)


def test_ledger_and_register_are_tables():
    from plinknet_book.results import claims_ledger, open_choices

    ledger = claims_ledger(_summary(-1.0, 2.0), None)
    assert ledger.count("\n| ") >= 7 and "**not tested at paper scale**" in ledger
    assert "precision or recall" in ledger  # chapter 6's arithmetic, not typed
    register = open_choices(_summary(-1.0, 2.0))
    assert "1.50 points from seed to seed" in register and "momentum" in register
