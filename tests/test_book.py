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
    from plinknet_book.results import power_text, status_line, verdict_markdown

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
    assert low < lab["readings"]["miou"]["runs_needed"] < high
    assert f"(95 % confidence interval {low:,} to {high:,})" in text
    assert "reduces** the spread" in power_text(lab)
    (tmp_path / "paper-inria-gpu").mkdir()
    for (low, high), word in (((0.1, 0.3), "supported"), ((-0.5, 0.1), "refuted"), ((-0.5, 0.9), "inconclusive")):
        (tmp_path / "paper-inria-gpu" / "summary.json").write_text(json.dumps(_summary(low, high)))
        assert f"Status of the claim: {word} read as building IoU, inconclusive read as mIoU" in verdict_markdown(
            tmp_path)  # fmt: skip
        assert (f"**{word}** read as building IoU" if word != "inconclusive" else "**inconclusive** under both "
                "readings") in status_line(tmp_path)  # fmt: skip


def test_page_one_opens_with_its_status_from_the_archives(tmp_path):
    from plinknet_book.results import status_line

    assert status_line(tmp_path) == ("**Status.** Does pyramid pooling improve LinkNet34 by the paper's +0.22 "
                                     "points? On Inria at paper scale: **not run**.")  # fmt: skip
    (tmp_path / "ablation-synthetic-cpu").mkdir()
    (tmp_path / "ablation-synthetic-cpu" / "summary.json").write_text(json.dumps(_summary(-1.0, 2.0)))
    assert status_line(tmp_path).endswith("On the synthetic lab (not Inria; 3 seeds, cpu (2 threads)): "
                                          "**inconclusive** under both readings.")  # fmt: skip
    rehearsal = {**_summary(0.5, 0.9), "data_kind": "synthetic"}
    (tmp_path / "paper-inria-gpu").mkdir()
    (tmp_path / "paper-inria-gpu" / "summary.json").write_text(json.dumps(rehearsal))
    assert "at paper scale: **not run** (the archive read here is a rehearsal" in status_line(tmp_path)
    import nbformat

    page_one = nbformat.read(ROOT / "book" / "intro.ipynb", as_version=4).cells
    shown = [c for c in page_one if "remove-cell" not in c.metadata.get("tags", [])]  # install cell, parameters
    assert shown[0].source.startswith("# ") and "\n" not in shown[0].source.strip()  # the title alone
    assert "status_line" in shown[1].source  # then the status: the first thing a reader sees under the title


def test_ledger_and_register_are_tables():
    from plinknet_book.results import claims_ledger, open_choices

    ledger = claims_ledger(_summary(-1.0, 2.0), None)
    assert ledger.count("\n| ") >= 7 and "**not tested at paper scale**" in ledger
    assert "precision or recall" in ledger  # chapter 6's arithmetic, not typed
    register = open_choices(_summary(-1.0, 2.0))
    assert "1.50 points from seed to seed" in register and "momentum" in register


def test_every_tested_claim_links_to_its_reproduce_box():
    import re

    from plinknet_book.results import claims_ledger, reproduce_boxes

    archive = {**_summary(-1.0, 2.0), "compute_seconds": 7200.0, "provenance": {"device": "cpu (2 threads)"}}
    ledger, boxes = claims_ledger(archive, None), reproduce_boxes(archive, None)
    links = re.findall(r"\{ref\}`reproduce <([a-z-]+)>`", ledger)
    labels = re.findall(r"^\(([a-z-]+)\)=$", boxes, flags=re.M)
    assert len(links) >= 4 and sorted(links) == sorted(labels)
    assert boxes.count("**Command.**") == boxes.count("**Expected.**") == boxes.count("**Tolerance.**") == len(labels)
    assert "`make ablation` (about 2.0 hours on cpu (2 threads)" in boxes
    assert "15,000 training and 2,500 validation crops" in boxes  # 150 and 25 tiles of 100 crops
    assert "{doc}`chapter 4 <04_ablation>`" in ledger and "| chapter" not in ledger


def test_city_scores_sum_each_citys_tiles_per_seed(tmp_path):
    from plinknet_book.results import city_scores

    rows = ["seed,model,tile,city,tp,fp,fn,tn", "0,P-LinkNet,a1,a,1,1,0,5", "0,P-LinkNet,a2,a,1,0,1,5",
            "1,P-LinkNet,a1,a,3,1,0,5", "0,P-LinkNet,b1,b,0,0,0,9"]
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    scores = city_scores(tmp_path / "results.csv")
    assert scores == {"P-LinkNet": {"a": [50.0, 75.0], "b": [100.0]}}  # 2/(2+1+1); 3/4; no building: perfect


def test_disagreement_says_who_is_right():
    import numpy as np

    from plinknet_book.plots import disagreement

    truth = np.array([1, 1, 0, 0, 1])
    first = np.array([1, 0, 1, 0, 1])
    second = np.array([0, 1, 0, 0, 1])
    parts = disagreement(first, second, truth)
    assert parts["only P-LinkNet right"].tolist() == [True, False, False, False, False]
    assert parts["only LinkNet34 right"].tolist() == [False, True, True, False, False]


def test_chapter_5_summary_follows_the_numbers():
    import numpy as np

    from plinknet_book.results import results_summary

    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 1
    shifted = np.roll(truth, 1, axis=1)  # wrong only along two edges
    invented = truth.copy()
    invented[30:38, 30:38] = 1  # a whole building where there is none
    report = {"overall": {"iou": 0.3, "precision": 0.43, "recall": 0.47, "fp": 100, "tn": 900},
              "lab": {"rates": {"fp_rate": 0.3}}}
    text = results_summary(report, "t1", shifted, truth, truth, None)
    assert "too weak to stand for the paper's network" in text and "errors gather at building edges" in text
    assert "look-alikes fool it 3.0 times as often" in text  # 30 % against 100 / 1000
    assert "disagree on 1.2 % of t1's pixels; P-LinkNet is the one that is right on 0 %" in text  # 20 of 1600 px
    text = results_summary({**report, "overall": {**report["overall"], "iou": 0.8}}, "t1", invented, truth,
                           truth, None)
    assert "a reasonable stand-in" in text and "away from building edges" in text


def _ext(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_script_once_per_page():
    from sphinx.builders.html._assets import _JavaScript

    body = 'const THEBE_JS_URL = "x"'
    context = {"script_files": [_JavaScript(None, body=body), _JavaScript("a.js"), _JavaScript("", body=body),
                                _JavaScript("a.js", **{"async": "async"}), _JavaScript("a.js")]}
    _ext("dedupe_scripts")._dedupe(None, "page", "page.html", context, None)
    assert [(s.filename or "", s.attributes) for s in context["script_files"]] == [
        ("", {"body": body}), ("a.js", {}), ("a.js", {"async": "async"})]


def test_reference_labels_are_the_citations():
    from pybtex.database import parse_file

    labels = _ext("author_year_labels").AuthorYearStyle().format_bibliography(
        parse_file(Path(__file__).parents[1] / "references.bib"))
    found = {entry.key: entry.label for entry in labels}
    assert found["ding2020plinknet"] == "Ding et al., 2020"
    assert found["okabe2008cud"] == "Okabe and Ito, 2008" and found["he2016resnet"] == "He et al., 2016"


def test_stability_is_stated_from_the_measurement():
    from plinknet_book.results import stability_markdown

    run = {"overall": {"iou": 0.30, "precision": 0.4, "recall": 0.5}}
    summary = {"provenance": {"device": "cpu (2 threads)", "commit": "0123456789abcdef", "torch": "2.14.1"},
               "same_threads_bitwise_equal": True, "threads_bitwise_equal": False,
               "largest_difference_points": {"iou": 1.5, "f1": 2.0, "precision": 3.25, "recall": 4.0},
               "runs": {"threads2-a": run, "threads2-b": run, "threads1": {"overall": {"iou": 0.315}}}}
    text = stability_markdown(summary)
    assert "twice with 2 threads, which gave bitwise-equal weights" in text and "which gave other weights" in text
    assert "IoU moved by 1.50, F1 by 2.00, precision by 3.25 and recall by 4.00 points" in text
    assert "30.00, 30.00, 31.50" in text and "trades precision against recall" not in text
    dirty = {**summary, "provenance": {**summary["provenance"], "commit": "0123456789abcdef+changes"}}
    assert "`0123456789ab` plus uncommitted changes" in stability_markdown(dirty)
    moved = {**summary, "largest_difference_points": {"iou": 0.9, "f1": 1.1, "precision": 9.3, "recall": 15.1}}
    assert "trades precision against recall" in stability_markdown(moved)
    assert "not** give bitwise" in stability_markdown({**summary, "same_threads_bitwise_equal": False})
    assert "`make stability` measures it" in stability_markdown(None)


def test_verdict_headline_gives_the_power_as_a_range(tmp_path):
    from plinknet_book.results import verdict_headline

    (tmp_path / "ablation-synthetic-cpu").mkdir()
    lab = _summary(-1.0, 2.0)
    (tmp_path / "ablation-synthetic-cpu" / "summary.json").write_text(json.dumps(lab))
    text = verdict_headline(tmp_path)
    miou = lab["readings"]["miou"]
    assert "not tested at paper scale" in text and "(not Inria)" in text and "[-1.00, +2.00]" in text
    low, high = miou["runs_needed_ci95"]  # the point estimate first, at the lab's spread, then its interval
    assert (f"At this spread, telling the paper's +0.22 apart with 80 % power would take {miou['runs_needed']:,} runs "
            f"of each network read as mIoU (95 % confidence interval {low:,} to {high:,})") in text  # fmt: skip
