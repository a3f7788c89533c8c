"""The book's tables and sentences about results, each made from an archive or a report, never typed."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from plinknet_book.context import Context, _short


def load_summary(folder: str | os.PathLike, scoring: str | None = None) -> dict | None:
    """An archive's ``summary.json`` (its first scoring, or ``scores/<scoring>/``), or None when there is none.

    The summary of an ablation archive (a folder with ``runs/``) is checked against its own checksum
    (:func:`plinknet.study.ablation.read_summary`): a page never prints numbers from an edited or cut summary.
    """
    from plinknet.study.ablation import read_summary

    if (Path(folder) / "runs").is_dir():
        return read_summary(folder, scoring)
    path = Path(folder) / ("scores/" + scoring if scoring else "") / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def paper_archive(results_dir: str | os.PathLike, paper_dir: str | os.PathLike | None = None) -> Path:
    """The paper-scale archive a page reads: ``paper_dir`` when given (a rehearsal's), else
    ``results/paper-inria-gpu``."""
    return Path(paper_dir) if paper_dir is not None else Path(results_dir) / "paper-inria-gpu"


def is_rehearsal(summary: dict | None) -> bool:
    """True for an archive computed on plinknet's synthetic data (``make paper-rehearsal``): never a result on Inria."""
    return bool(summary) and summary.get("data_kind") == "synthetic"


def archive_label(summary: dict) -> str:
    """How a page names the data of a paper-scale archive: ``"Inria"``, or the rehearsal it is."""
    return "a rehearsal on synthetic data, not Inria" if is_rehearsal(summary) else "Inria"


CHAPTER_6 = "{doc}`chapter 6 <06_protocol>`"  # where the book argues which reading of the paper's metric is likelier


def city_scores(results_csv: str | os.PathLike, metric: str = "iou") -> dict[str, dict[str, list[float]]]:
    """``{model: {city: [score per seed]}}`` in points, each seed scored from the summed counts of the city's tiles.

    Args:
        results_csv: an archive's ``results.csv`` (one row per seed, model and tile, with tp, fp, fn, tn).
    """
    import csv
    from collections import defaultdict

    import numpy as np

    from plinknet.metrics import count_metrics

    counts: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: np.zeros(4))))
    with open(results_csv, newline="") as file:
        for row in csv.DictReader(file):
            counts[row["model"]][row["city"]][int(row["seed"])] += [int(row[k]) for k in ("tp", "fp", "fn", "tn")]
    return {model: {city: [float(100 * count_metrics(c)[metric]) for _, c in sorted(seeds.items())]
                    for city, seeds in sorted(cities.items())} for model, cities in counts.items()}  # fmt: skip


def _gap_sentence(summary: dict) -> str:
    p, b = summary["models"]["P-LinkNet"], summary["models"]["LinkNet34"]
    return (f"P-LinkNet IoU {p['iou_mean']:.2f} ± {p['iou_std']:.2f}, LinkNet34 {b['iou_mean']:.2f} ± "
            f"{b['iou_std']:.2f} (mean ± standard deviation over {len(summary['seeds'])} seeds)")  # fmt: skip


def _range(values, fmt: str = "{:,}") -> str:
    return f"{fmt.format(values[0])} to {fmt.format(values[1])}"


def readings_table(summary: dict) -> str:
    """Markdown: the paper's +0.22 read as building IoU and as mIoU, side by side: gap, intervals, verdict, power."""
    from plinknet.study.paper import READINGS
    from plinknet.study.stats import verdict

    heads = [f"read as {READINGS[m]}" for m in summary["readings"]]
    rows = ["| | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]

    def row(label: str, cell) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(m, r) for m, r in summary["readings"].items()) + " |")

    row("gap, P-LinkNet − LinkNet34", lambda m, r: f"{summary[f'gap_{m}_mean']:+.2f} points")
    row("95 % interval (paired t, over seeds)", lambda m, r: "[{:+.2f}, {:+.2f}]".format(*summary[f"gap_{m}_ci95"]))
    row("sensitivity: bootstrap over seeds and tiles",
        lambda m, r: "[{:+.2f}, {:+.2f}]".format(*summary[f"gap_{m}_ci95_bootstrap"]))
    row("the paper's +0.22 inside the interval", lambda m, r: "yes" if r["paper_gap_inside_ci95"] else "**no**")
    row("0 inside the interval", lambda m, r: "yes" if r["zero_inside_ci95"] else "**no**")
    row("**status** (the decision rule, chapter 7)", lambda m, r: f"**{verdict(summary, m)}**")
    row("seed-to-seed spread of the gap: σ (95 % confidence interval)",
        lambda m, r: f"{r['sigma']:.2f} ({_range(r['sigma_ci95'], '{:.2f}')}) points")
    row("runs of each network to detect +0.22 (80 % power)",
        lambda m, r: f"{r['runs_needed']:,} (95 % confidence interval {_range(r['runs_needed_ci95'])})")
    row(f"smallest gap {summary['readings']['iou']['seeds_planned']} seeds detect (80 % power)",
        lambda m, r: f"{r['detectable_gap']:.2f} ({_range(r['detectable_gap_ci95'], '{:.2f}')}) points")
    return "\n".join(rows)


def lab_direction(summary: dict, metric: str = "iou") -> str:
    """What the interval of a gap says on the data it was measured on."""
    low, high = summary[f"gap_{metric}_ci95"]
    if low > 0:
        return "P-LinkNet better"
    if high < 0:
        return "LinkNet34 better"
    return "no difference detected"


def verdict_markdown(results_dir: str | os.PathLike, paper_dir: str | os.PathLike | None = None) -> str:
    """The book's first page: the paper's claim, what was measured, and its status, from ``results/``.

    ``paper_dir``: the paper-scale archive to read instead of ``results/paper-inria-gpu`` (a rehearsal's).
    """
    from plinknet.study.paper import PAPER_GAP
    from plinknet.study.stats import verdict

    results_dir = Path(results_dir)
    paper = load_summary(paper_archive(results_dir, paper_dir))
    lab = load_summary(results_dir / "ablation-synthetic-cpu")
    lines = [
        f"**The paper's claim.** The pyramid pooling centre improves LinkNet34 on Inria: 84.48 against "
        f"84.26 (+{PAPER_GAP} points) for what it calls IoU, and 91.50 against 91.04 for its second metric, from "
        f"one run of each network (Table 1). Its 'IoU' may be the building IoU or the mean of building and "
        f"background IoU (mIoU); {CHAPTER_6} argues that mIoU is the likelier, so the status is given for both.",
        "",
    ]
    if paper is None:
        lines += [
            f"**Status of the claim: {verdict(None)}**, under either reading. `results/paper-inria-gpu/` is empty: "
            "nobody has yet run `make paper` (the paper's recipe on the real Inria data, five seeds, on GPUs), the "
            "one test that can confirm or refute the claim. Until then the book can only say how large an ablation "
            "must be to tell.",
        ]  # fmt: skip
    elif is_rehearsal(paper):
        runs = paper["runs_provenance"]
        lines += [
            f"**Status of the claim: {verdict(None)}.** The archive read here, computed on `{paper['data_dir']}`, is "
            f"a rehearsal of `make paper` on synthetic data, not Inria ({', '.join(runs['device'])}, seeds "
            f"{paper['seeds']}): "
            f"it shows that the paper-scale path runs from data to verdict, and says nothing about the paper's "
            f"claim. Its numbers, for the record: {_gap_sentence(paper)}.",
        ]  # fmt: skip
    else:
        runs = paper["runs_provenance"]
        words = {m: verdict(paper, m) for m in paper["readings"]}
        lines += [
            f"**Status of the claim: {words['iou']} read as building IoU, {words['miou']} read as mIoU.** "
            f"On Inria ({', '.join(runs['device'])}, torch {', '.join(runs['torch'])}, seeds {paper['seeds']}): "
            f"{_gap_sentence(paper)}.",
            "",
            readings_table(paper),
        ]
    if lab is not None:
        runs = lab["runs_provenance"]
        lines += [
            "",
            f"**What this book measured** on its synthetic lab sample (not Inria; "
            f"{', '.join(runs['device'])}, torch {', '.join(runs['torch'])}, trained at commit "
            f"{', '.join(c[:10] for c in runs.get('train_commit', runs['commit']))}, seeds "
            f"{lab['seeds']}, whole validation tiles): {_gap_sentence(lab)}. On these drawn cities: "
            f"**{lab_direction(lab)}** in building IoU, **{lab_direction(lab, 'miou')}** in mIoU. The same "
            f"statistics as a paper-scale run would get:",
            "",
            readings_table(lab),
            "",
            "The interval is a paired t-interval over the per-seed gaps (the tiles held fixed, as the paper's "
            "question is); the bootstrap line also resamples the tiles within each city and is given as a check. "
            "That spread comes from short CPU runs from random weights; converged, ImageNet-initialised networks on "
            "Inria may vary less from seed to seed, which only `make paper` can measure. The lab tests the code and "
            "the statistics, not the paper.",
        ]
        if "lab" in lab:
            rates = lab["lab"]
            names = {"recall_large": "recall of large buildings (over 500 m²)",
                     "fp_rate": "false positives on look-alikes"}  # fmt: skip
            parts = [f"{names[rate]} {rates[f'gap_{rate}_mean']:+.2f} points, 95 % interval "
                     f"[{rates[f'gap_{rate}_ci95'][0]:+.2f}, {rates[f'gap_{rate}_ci95'][1]:+.2f}]"
                     for rate in names if rates.get(f"gap_{rate}_ci95") is not None]  # fmt: skip
            lines += ["", f"The mechanism the paper invokes, on the lab's labels (P-LinkNet minus LinkNet34): "
                          f"{'; '.join(parts)}. {{doc}}`Chapter 4 <04_ablation>` has the details."]  # fmt: skip
    return "\n".join(lines)


def archive_provenance(summary: dict, config: dict | None = None) -> str:
    """Markdown: how an archived ablation was made (data, device, versions, commits, seeds, time)."""
    runs = summary["runs_provenance"]
    hours = summary.get("compute_seconds", 0) / 3600
    text = (f"{len(summary['seeds'])} seeds ({', '.join(map(str, summary['seeds']))}) x 2 networks, trained on "
            f"{', '.join(runs['device'])} with torch {', '.join(runs['torch'])} at commit "
            f"{', '.join(f'`{c[:10]}`' for c in runs.get('train_commit', runs['commit']))}, scored at "
            f"{', '.join(f'`{c[:10]}`' for c in runs['commit'])} on the {len(summary['tiles'])} "
            f"{summary['split']} tiles of `{summary['data_dir']}` (SHA-256 `{summary['data_sha256'][:16]}`), "
            f"whole tiles with a {summary['window']} px window; {hours:.1f} hours of computing.")  # fmt: skip
    best = {name: m.get("best_epochs") for name, m in summary["models"].items()}
    if all(best.values()):
        epochs = (config or {}).get("epochs")
        last = sum(e == epochs for b in best.values() for e in b) if epochs else None
        text += (f" Best epoch per seed (picked on the selection tiles): "
                 f"{'; '.join(f'{name} {list(b)}' for name, b in best.items())}"
                 + (f", the last epoch in {last} of {sum(map(len, best.values()))} runs." if last is not None else "."))
    if config is not None:
        text += (f" Recipe: {config['epochs']} epochs of {config['samples_per_tile']} crops of "
                 f"{config['crop_size']} px per training tile, batch {config['batch_size']}, lr {config['lr']}, "
                 f"encoder weights {config['encoder_weights'] or 'random'}, best epoch picked on tiles "
                 f"{config['select_tiles'] or 'none'}.")  # fmt: skip
    return text


def ablation_table(summary: dict) -> str:
    """Markdown: each network's scores over seeds and the paired gaps with their 95 % intervals."""
    metrics = ("iou", "miou", "f1", "precision")
    rows = ["| network | IoU | mIoU | F1 | precision |", "|---|---:|---:|---:|---:|"]
    for name, m in summary["models"].items():
        rows.append(f"| {name} | " + " | ".join(f"{m[f'{k}_mean']:.2f} ± {m[f'{k}_std']:.2f}" for k in metrics) + " |")
    gaps = []
    for k in ("iou", "miou", "f1"):
        low, high = summary[f"gap_{k}_ci95"]
        gaps.append(f"{summary[f'gap_{k}_mean']:+.2f} [{low:+.2f}, {high:+.2f}]")
    rows.append("| gap, 95 % CI | " + " | ".join(gaps) + " | |")
    paper = summary["paper"]
    rows.append(f"| *paper: P-LinkNet, LinkNet34* | *{paper['P-LinkNet']['iou']}, {paper['LinkNet34']['iou']}* "
                f"| | | *{paper['P-LinkNet']['second']}, {paper['LinkNet34']['second']}* |")  # fmt: skip
    rows.append("\nPoints; mean ± standard deviation over seeds, each seed scored from the counts of all its "
                "tiles. The paper's two numbers are placed where their names put them (its 'IoU' may be "
                f"mIoU, its second number precision or recall: {CHAPTER_6}).")  # fmt: skip
    return "\n".join(rows)


def power_text(summary: dict) -> str:
    """Markdown: what the seed-to-seed spread means for detecting the paper's gap, under both readings, as ranges."""
    iou, miou = summary["readings"]["iou"], summary["readings"]["miou"]
    pairing = summary["pairing"]["iou"]
    paired = pairing["sigma_paired_gap"] < pairing["sqrt2_sigma_one_network"]
    return (
        f"The IoU gap varies by **{iou['sigma']:.2f} points** from one seed to the next (standard deviation over "
        f"{len(summary['seeds'])} seeds; 95 % confidence interval {_range(iou['sigma_ci95'], '{:.2f}')}), the "
        f"mIoU gap by {miou['sigma']:.2f} (95 % confidence interval {_range(miou['sigma_ci95'], '{:.2f}')}). At "
        f"this spread, telling a true gap of +{summary['paper_gap']} points from none, in a paired two-sided "
        f"t-test at 5 % with 80 % power, takes **{iou['runs_needed']:,} runs of each network** read as building IoU "
        f"(95 % confidence interval {_range(iou['runs_needed_ci95'])}) and **{miou['runs_needed']:,}** read as mIoU "
        f"({_range(miou['runs_needed_ci95'])}); trained independently, as one run of each in a paper effectively "
        f"is, {iou['runs_needed_unpaired']:,} and {miou['runs_needed_unpaired']:,}. The paper had one of each. At "
        f"this spread the {iou['seeds_planned']} seeds of `make paper` detect a gap of {iou['detectable_gap']:.2f} "
        f"points of IoU ({miou['detectable_gap']:.2f} of mIoU) with 80 % power."
        f"\n\nPairing: the σ of the paired IoU gap is {pairing['sigma_paired_gap']:.2f} points against "
        f"{pairing['sqrt2_sigma_one_network']:.2f} (√2 × σ of one network) for unpaired runs: sharing the seed "
        + ("**reduces** the spread." if paired else "does **not** reduce the spread here.")
    )  # fmt: skip


def lab_table(summary: dict) -> str:
    """Markdown: the lab rates per network (mean over seeds) and the paired gaps with 95 % intervals."""
    lab = summary["lab"]
    rates = [*(f"recall_{s}" for s in lab["size_classes_m2"]), "fp_rate"]
    heads = [r.replace("recall_", "recall ").replace("fp_rate", "look-alike FP") for r in rates]
    totals = lab["totals"]
    sizes = ", ".join(f"{totals[f'{s}_total']:,d} {s}" for s in lab["size_classes_m2"])
    low, high = lab["size_classes_m2"]["medium"]
    rows = [f"Rates in %, mean over seeds. Buildings: {sizes} (small < {low:g} m² <= medium < {high:g} m² <= "
            f"large); a building counts as found when half its pixels are predicted. Look-alike FP: the share "
            f"of {totals['distractor_pixels']:,d} look-alike pixels predicted as building.", "",
            "| network | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(rates)]  # fmt: skip
    for name, m in lab["models"].items():
        cells = ["–" if m[r]["mean"] is None else f"{m[r]['mean']:.1f}" for r in rates]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for r in rates:
        ci = lab.get(f"gap_{r}_ci95")
        cells.append("–" if ci is None else f"{lab[f'gap_{r}_mean']:+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}]")
    rows.append("| gap, 95 % CI | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def lab_rates_table(reports: dict) -> str:
    """Markdown: the lab rates of several evaluation reports, one column per network, one row per rate."""
    from plinknet.study.lab import DETECTED_FRACTION, EDGE_MARGIN_PX, SIZE_CLASSES_M2

    names = list(reports)
    first = next(iter(reports.values()))["lab"]
    rates = list(first["rates"])
    low, high = SIZE_CLASSES_M2["medium"]
    rows = [f"Rates in % on the synthetic lab's labels (Inria has none): recall, buildings with at least "
            f"{DETECTED_FRACTION:.0%} of their pixels predicted (small < {low:g} m² <= medium < {high:g} m² <= "
            f"large); FP, look-alike pixels predicted as building, those within {EDGE_MARGIN_PX} px of a building "
            f"left out.", "", "| rate | " + " | ".join(names) + " | counted |",
            "|---|" + "---:|" * (len(names) + 1)]  # fmt: skip
    counts = first["counts"]
    for rate in rates:
        kind = rate.removeprefix("recall_").removeprefix("fp_rate_") if rate != "fp_rate" else "distractor"
        n = counts.get(f"{kind}_total", counts.get(f"{kind}_pixels"))
        label = rate.replace("recall_", "recall, ").replace("fp_rate_", "FP, ").replace("fp_rate", "FP, all")
        cells = ["–" if reports[m]["lab"]["rates"][rate] is None else f"{100 * reports[m]['lab']['rates'][rate]:.1f}"
                 for m in names]  # fmt: skip
        unit = "buildings" if rate.startswith("recall") else "pixels"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {n:,d} {unit} |")
    return "\n".join(rows)


def evaluation_table(reports: dict, context: Context) -> str:
    """Markdown: whole-tile scores of several checkpoints (``evaluate_checkpoint`` reports), F1 included."""
    names = ("iou", "miou", "precision", "recall", "f1", "accuracy")
    first = next(iter(reports.values()))
    rows = [f"Scores in %, from the counts of every pixel of the {len(first['per_tile'])} {first['split']} tiles, "
            f"window {first['window']} px; {context.where()}.", "",
            "| network | IoU | mIoU | precision | recall | F1 | accuracy |",
            "|---|" + "---:|" * len(names)]  # fmt: skip
    for model, report in reports.items():
        rows.append(f"| {model} | " + " | ".join(f"{100 * report['overall'][n]:.2f}" for n in names) + " |")
    return "\n".join(rows)


def _interval(summary: dict, key: str) -> str:
    low, high = summary[f"gap_{key}_ci95"]
    return f"{summary[f'gap_{key}_mean']:+.2f} [{low:+.2f}, {high:+.2f}]"


CHAPTERS = {n: f"{{doc}}`chapter {n} <{stem}>`" for n, stem in
            {1: "01_architecture", 2: "02_data", 4: "04_ablation", 5: "05_results", 6: "06_protocol"}.items()}


def _box(label: str) -> str:
    return f"{{ref}}`reproduce <{label}>`"


@functools.lru_cache(maxsize=1)
def _fixed_figures() -> dict:
    """What the claims state that no archive changes (cost, crops, the metric's readings), computed once per kernel."""
    from plinknet import LinkNet34, PLinkNet
    from plinknet.bench.network_speed import gflops
    from plinknet.data import grid_windows
    from plinknet.model import count_parameters
    from plinknet.study.protocol import reading_table

    p_net, l_net = PLinkNet(), LinkNet34()
    per_tile = len(grid_windows(5000, 5000, 512))
    return {
        "params": 100 * (count_parameters(p_net) / count_parameters(l_net) - 1),
        "flops": 100 * (gflops(p_net, 512) / gflops(l_net, 512) - 1),
        "train_gflops": 3 * (gflops(p_net, 512) + gflops(l_net, 512)) / 2,  # a training step: about 3 forwards
        "train_crops": 150 * per_tile,  # tiles 7-36 of 5 cities (tile 6 held out to select the epoch)
        "val_crops": 25 * per_tile,
        "second": sorted({r["second"] for r in reading_table() if r["solutions"]}),
    }


def _claim_figures(archive: dict | None) -> dict:
    """What the ledger and the reproduce boxes state: :func:`_fixed_figures` and the archive's compute time."""
    return {
        **_fixed_figures(),
        "lab_hours": archive["compute_seconds"] / 3600 if archive and "compute_seconds" in archive else None,
        "lab_device": (archive or {}).get("provenance", {}).get("device", "a CPU"),
    }


def claims_ledger(archive: dict | None, paper_scale: dict | None) -> str:
    """Markdown: each claim of the paper, where it is stated, what the book measured, the evidence, a status.

    The evidence column links to the chapter and to the claim's reproduce box (:func:`reproduce_boxes`).

    Args:
        archive: the synthetic-lab ablation summary (or None).
        paper_scale: the Inria ablation summary (None until ``make paper`` has run).
    """
    from plinknet.study.stats import verdict

    f = _claim_figures(archive)
    rows = ["| claim | where | this book measured | evidence | status |", "|---|---|---|---|---|"]
    measured = (f"Inria: gap {_interval(paper_scale, 'iou')} points in building IoU" if paper_scale
                else "Inria: not run yet")  # fmt: skip
    if archive:
        measured += (f"; synthetic lab, {len(archive['seeds'])} seeds: gap {_interval(archive, 'iou')} points in "
                     "building IoU")  # fmt: skip
    rows.append(f"| P-LinkNet beats LinkNet34 on Inria, IoU 84.48 vs 84.26 | abstract, 3.3, 4 | {measured} "
                f"| {CHAPTERS[4]}, {_box('reproduce-gap')} | **{verdict(paper_scale)}** |")  # fmt: skip
    measured = f"on whole counts the pair fits only {' or '.join(f['second'])} as the second number"
    if archive:
        gap = archive["models"]["P-LinkNet"]["precision_mean"] - archive["models"]["LinkNet34"]["precision_mean"]
        measured += f"; synthetic lab precision gap {gap:+.2f} points"
    rows.append(f"| its second metric, 'precision', 91.50 vs 91.04 | 3.3 | {measured} | {CHAPTERS[6]}, "
                f"{_box('reproduce-second')} | **metric narrowed down; not tested at paper scale** |")  # fmt: skip
    if archive and "lab" in archive:
        lab = archive["lab"]

        def seen(rate: str) -> str:
            low, high = lab[f"gap_{rate}_ci95"]
            helped = low > 0 if rate.startswith("recall") else high < 0
            return "seen on the lab" if helped else "not seen on the lab"

        rows.append(f"| the pyramid's context helps large buildings and look-alikes | 1, 2.1, 3.3, Fig. 5 | lab "
                    f"recall of large buildings {_interval(lab, 'recall_large')}, false positives on look-alikes "
                    f"{_interval(lab, 'fp_rate')} points | {CHAPTERS[4]}, {_box('reproduce-lab')} | **large "
                    f"buildings {seen('recall_large')}; look-alikes {seen('fp_rate')}**; Inria has no labels to "
                    f"test it |")  # fmt: skip
    rows += [
        f"| the pyramid costs little (LinkNet 'runs fast') | 1, 2.1 | +{f['params']:.1f} % parameters, "
        f"+{f['flops']:.2f} % FLOPs at 512x512 (exact; latency only illustrates them) | {CHAPTERS[1]}, "
        f"{_box('reproduce-cost')} | **reproduced** |",
        f"| over 10000 training and more than 2000 test pictures | 3.1 | {f['train_crops']:,d} training and "
        f"{f['val_crops']:,d} validation crops of 512 px with the literature's split | {CHAPTERS[2]}, "
        f"{_box('reproduce-crops')} | **consistent** |",
        "| an ImageNet-pretrained encoder speeds up convergence and improves results | 2.2 | not measured: "
        "the offline book trains from random weights | - | **not tested** |",
        "| about 30 epochs to converge | 3.2 | not measured at paper scale | - | **not tested at paper scale** |",
        f"| boundaries remain the main source of error | 4 | error maps of the short demo on the synthetic sample "
        f"| {CHAPTERS[5]} | **not tested at paper scale** |",
    ]  # fmt: skip
    # in a div the site styles: on a phone each claim becomes a card of labelled fields instead of five columns
    return "\n".join(["```{div} claims-ledger", *rows, "```"])


def reproduce_boxes(archive: dict | None, paper_scale: dict | None) -> str:
    """Markdown: for each claim the book tests, the command that reproduces it, the expected value, the
    tolerance and the time it takes, each in a box that the ledger's ``reproduce`` links point at."""
    from plinknet.study.stats import DECISION_RULE

    f = _claim_figures(archive)
    lab = ""
    if archive:
        lab = (f"On the synthetic lab instead: `make ablation` (about {f['lab_hours']:.1f} hours on "
               f"{f['lab_device']}; resumable), then `results/ablation-synthetic-cpu/summary.json`. Expected: "
               f"a gap of {_interval(archive, 'iou')} points in building IoU. Tolerance: trained numbers differ "
               f"from machine to machine and from one torch to the next, so a rerun's gap should fall inside the "
               f"archived interval, not match it.")  # fmt: skip
    boxes = [
        ("reproduce-gap", "P-LinkNet beats LinkNet34 on Inria",
         "`make paper` (the paper's recipe on the real Inria data in `data/inria`, five seeds, on GPUs), then "
         "`results/paper-inria-gpu/summary.json`.",
         "the paper's +0.22 points (84.48 - 84.26), most likely in mIoU." + _power_sentence(archive),
         f"the decision rule, stated before the run and applied to every archive by one function "
         f"(`plinknet.study.stats.decide`): {DECISION_RULE}.",
         f"not measured here: no GPU has run `make paper` or `make gpu-check` (which measures the hours of "
         f"`make paper` on the machine at hand). An estimate, not a measurement: about {_gpu_hours(f):.1f} "
         f"GPU-hours for the ten runs, by arithmetic ({f['train_gflops']:.0f} GFLOPs per training crop of 512 px, "
         f"3 forward passes, x 15,000 crops x 30 epochs x 10 runs) at an assumed {ASSUMED_TFLOPS} TFLOP/s "
         f"sustained per GPU; the data loader may bound it instead." + (" " + lab if lab else "")),
        ("reproduce-second", "what the second number is",
         "`python -c \"from plinknet.study.protocol import reading_table; print(reading_table())\"` (or "
         f"re-execute {CHAPTER_6}).",
         f"only {' or '.join(f['second'])} reproduces 91.50 and 91.04 together with the first number.",
         "exact: arithmetic on the paper's numbers and Inria's building fraction.", "seconds."),
        ("reproduce-lab", "context helps large buildings and look-alikes",
         "`make ablation`, then the `lab` entry of `results/ablation-synthetic-cpu/summary.json`.",
         ("the archived gaps: recall of large buildings " + _interval(archive["lab"], "recall_large")
          + ", false positives on look-alikes " + _interval(archive["lab"], "fp_rate") + " points."
          if archive and "lab" in archive else ""),
         "trained numbers differ from machine to machine: inside the archived intervals, not equal to them.",
         f"about {f['lab_hours']:.1f} hours on {f['lab_device']}." if f["lab_hours"] else "hours on a CPU."),
        ("reproduce-cost", "the pyramid costs little", "`plinknet bench model`.",
         f"+{f['params']:.1f} % parameters and +{f['flops']:.2f} % FLOPs at 512x512.",
         "exact: parameters are counted and FLOPs are counted by PyTorch's FlopCounterMode; the latency "
         "ratio it also prints varies with the machine and its load.", "about a minute on a CPU."),
        ("reproduce-crops", "over 10000 training and 2000 test pictures",
         "`python -c \"from plinknet.data import grid_windows; print(len(grid_windows(5000, 5000, 512)))\"` "
         "(crops per tile; 150 training and 25 validation tiles).",
         f"{f['train_crops']:,d} training and {f['val_crops']:,d} validation crops.", "exact.", "seconds."),
    ]  # fmt: skip
    if not (archive and "lab" in archive):  # the ledger states no lab claim then
        boxes = [box for box in boxes if box[0] != "reproduce-lab"]
    out = []
    for label, claim, command, expected, tolerance, time in boxes:
        out += [f"({label})=", f":::{{admonition}} Reproduce: {claim}", ":class: tip dropdown",
                f"**Command.** {command}", "", f"**Expected.** {expected}", "", f"**Tolerance.** {tolerance}", "",
                f"**Time.** {time}", ":::", ""]  # fmt: skip
    return "\n".join(out)


ASSUMED_TFLOPS = 50  # sustained training throughput per GPU for the estimate of make paper's hours (an assumption)


def _gpu_hours(f: dict) -> float:
    """GPU-hours of make paper's ten runs by arithmetic: training FLOPs at :data:`ASSUMED_TFLOPS` (an estimate)."""
    return 10 * 30 * 15_000 * f["train_gflops"] * 1e9 / (ASSUMED_TFLOPS * 1e12) / 3600


def _power_sentence(archive: dict | None) -> str:
    """What five seeds can detect and what would settle the claim, at the synthetic lab's seed-to-seed spread."""
    if not archive:
        return ""
    r = archive["readings"]["miou"]
    likely = (", so unless the true gap is that large, the likely outcome is inconclusive"
              if r["detectable_gap"] > r["paper_gap"] else "")  # fmt: skip
    return (f" At the synthetic lab's spread (σ of the mIoU gap {r['sigma']:.2f} points, 95 % confidence interval "
            f"{_range(r['sigma_ci95'], '{:.2f}')}), the {r['seeds_planned']} seeds of `make paper` detect a gap of "
            f"{r['detectable_gap']:.2f} points (95 % confidence interval {_range(r['detectable_gap_ci95'], '{:.2f}')}) "
            f"with 80 % power{likely}; settling +0.22 would take {r['runs_needed']:,} "
            f"runs of each network (95 % confidence interval {_range(r['runs_needed_ci95'])}). Converged "
            f"ImageNet-initialised networks on Inria may vary less from seed to seed; `make paper` measures it.")


def open_choices(archive: dict | None) -> str:
    """Markdown: the register of choices the paper leaves open: ours, the alternatives, the measured sensitivity."""
    seed = (f"the IoU gap varies by {archive['sigma_iou']:.2f} points from seed to seed (archived ablation)"
            if archive else "not measured")  # fmt: skip
    from plinknet.data.tiles import split_words

    split = split_words()
    register = [
        ("train / validation split", f"{split['val']} validation (literature, torchgeo), {split['select']} "
         f"selection, {split['train']} training",
         "random tiles; the paper's own, unknown", "not measured"),
        ("model selection", f"best epoch on {split['select']} (selection), never reported",
         "best epoch on the reported tiles (optimistic); the last epoch", "not measured"),
        ("SGD momentum, weight decay", "0.9, 1e-4", "0 to 0.99; 0 to 5e-4", "not measured"),
        ("MultiStepLR milestones, factor", "epochs 20 and 25, x0.1", "any", "not measured"),
        ("pyramid: back to C channels", "1x1 conv + BN + ReLU from 2C to C",
         "no fuse (a wider first decoder block); a 3x3 conv as in PSPNet", "not measured"),
        ("pyramid: BatchNorm on pooled maps", "none (it fails at batch 1)", "PSPNet's BN", "not measured"),
        ("pyramid: upsampling", "bilinear, align_corners=False", "align_corners=True", "not measured"),
        ("'transformation' augmentation", "scale 0.9-1.1, flips, quarter turns", "rotations, colour jitter",
         "not measured"),
        ("metric definitions", "whole-tile counts; IoU, mIoU, precision, recall, F1, accuracy",
         "means over tiles or crops", f"{CHAPTER_6}: the same predictions under four conventions"),
        ("prediction of whole tiles", "windows of the training crop, 1/4 overlap, blended logits",
         "no overlap; larger windows (more context than in training)", "not measured"),
        ("random seed", "5 seeds, paired between the networks", "one run of each (the paper)", seed),
    ]  # fmt: skip
    rows = ["| choice | ours | alternatives | sensitivity |", "|---|---|---|---|"]
    rows += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in register]
    return "\n".join(rows)



def results_summary(report: dict, scene: str, prediction, truth, other_prediction, archive_cities: dict | None,
                    band_px: int = 2) -> str:  # fmt: skip
    """Chapter 5's summary, every sentence computed from the live demo's results on this page.

    Args:
        report: the live P-LinkNet's ``evaluate`` report (with its ``lab`` rates).
        scene: the whole tile's name; ``prediction``, ``other_prediction`` (LinkNet34) and ``truth`` its {0,1} maps.
        archive_cities: :func:`city_scores` of the archived ablation, or None.
        band_px: the width of the band around building edges that counts as "at an edge".
    """
    import numpy as np
    from scipy import ndimage

    o = report["overall"]
    truth, prediction = truth.astype(bool), prediction.astype(bool)
    strength = "too weak to stand for the paper's network" if o["iou"] < 0.6 else "a reasonable stand-in"
    bullets = [f"The live P-LinkNet of this page is {strength}: building IoU {100 * o['iou']:.1f} %, precision "
               f"{100 * o['precision']:.1f} %, recall {100 * o['recall']:.1f} % over the validation tiles. What "
               f"follows describes it, not the paper's converged network."]  # fmt: skip
    edges = truth ^ ndimage.binary_erosion(truth)
    band = ndimage.binary_dilation(edges, iterations=band_px)
    errors = prediction != truth
    if errors.any():
        at_edges, band_share = (errors & band).sum() / errors.sum(), band.mean()
        verdict = ("errors gather at building edges" if at_edges > 2 * band_share
                   else "most errors are away from building edges, whole buildings missed or invented")  # fmt: skip
        bullets.append(f"On {scene}, {100 * at_edges:.0f} % of its wrong pixels lie within {band_px} px of a "
                       f"building edge, a band that holds {100 * band_share:.0f} % of the tile: "
                       f"{verdict}.")  # fmt: skip
    lab = report.get("lab", {}).get("rates", {})
    if "fp_rate" in lab and o["fp"] + o["tn"]:
        background = o["fp"] / (o["fp"] + o["tn"])
        ratio = lab["fp_rate"] / background if background else float("inf")
        verdict = (f"look-alikes fool it {ratio:.1f} times as often as background in general" if ratio > 1.5
                   else "look-alikes fool it no more than other background")  # fmt: skip
        bullets.append(f"It calls {100 * lab['fp_rate']:.0f} % of look-alike pixels (parking lots, paved "
                       f"courtyards, yards, pools) building, against {100 * background:.0f} % of all background "
                       f"pixels: {verdict}.")  # fmt: skip
    differ = prediction != other_prediction.astype(bool)
    if differ.any():
        right = (differ & (prediction == truth)).sum() / differ.sum()
        bullets.append(f"The two live networks disagree on {100 * differ.mean():.1f} % of {scene}'s pixels; "
                       f"P-LinkNet is the one that is right on {100 * right:.0f} % of them.")  # fmt: skip
    if archive_cities:
        mean = {model: {city: float(np.mean(v)) for city, v in cities.items()}
                for model, cities in archive_cities.items()}  # fmt: skip
        means = mean["P-LinkNet"]
        best, worst = max(means, key=means.get), min(means, key=means.get)
        seeds = len(next(iter(archive_cities["P-LinkNet"].values())))
        gaps = [abs(means[c] - mean["LinkNet34"][c]) for c in means if c in mean.get("LinkNet34", {})]
        compare = (f": the cities differ by {means[best] - means[worst]:.1f} points, the two networks by at most "
                   f"{max(gaps):.1f} in any city" if gaps else "")  # fmt: skip
        bullets.append(f"Over the archive's {seeds} seeds, P-LinkNet scores best on {best} ({means[best]:.1f} % "
                       f"IoU) and worst on {worst} ({means[worst]:.1f} %){compare}.")  # fmt: skip
    return "\n".join(f"- {b}" for b in bullets)


def stability_markdown(summary: dict | None) -> str:
    """How far the live demo's numbers move, from ``results/demo-stability/summary.json`` (``make stability``)."""
    if summary is None:
        return ("How far these numbers move between runs and machines has not been measured for this commit: "
                "`make stability` measures it.")  # fmt: skip
    p, d = summary["provenance"], summary["largest_difference_points"]
    same = ("gave bitwise-equal weights" if summary["same_threads_bitwise_equal"]
            else "did **not** give bitwise-equal weights")  # fmt: skip
    threads = ("bitwise-equal weights as well" if summary["threads_bitwise_equal"]
               else "other weights")  # fmt: skip
    scores = {name: 100 * run["overall"]["iou"] for name, run in summary["runs"].items()}
    trade = (": the network trades precision against recall from one run to the next while its IoU and F1 hold "
             "better" if max(d["precision"], d["recall"]) > 2 * max(d["iou"], d["f1"]) else "")  # fmt: skip
    return (f"**How far these numbers move.** The same demo trained three times in fresh processes on "
            f"{p['device']} (commit {_short(p['commit'])}, torch {p['torch']}, `make stability`): twice with 2 "
            f"threads, which {same}, and once with 1 thread, which gave {threads}. Validation IoU "
            f"{', '.join(f'{v:.2f}' for v in scores.values())} %; across the three runs IoU moved by "
            f"{d['iou']:.2f}, F1 by {d['f1']:.2f}, precision by {d['precision']:.2f} and recall by "
            f"{d['recall']:.2f} points{trade}. A run "
            f"is seeded, so its crops and starting weights are the same everywhere, but the arithmetic of "
            f"training runs in another order with another thread count, CPU or torch: the demo's numbers are "
            f"this machine's, and another machine's may lie further apart than the band measured here.")


def verdict_headline(results_dir: str | os.PathLike, paper_dir: str | os.PathLike | None = None) -> str:
    """The verdict in two sentences, under the figure on page one: the status, the lab's gaps and the power range.

    ``paper_dir``: the paper-scale archive to read instead of ``results/paper-inria-gpu`` (a rehearsal's).
    """
    from plinknet.study.stats import verdict

    results_dir = Path(results_dir)
    paper = load_summary(paper_archive(results_dir, paper_dir))
    lab = load_summary(results_dir / "ablation-synthetic-cpu")
    shown = paper or lab
    if paper is None:
        head = f"**The paper's claim is {verdict(None)}**: nobody has run `make paper` on Inria yet."
    elif is_rehearsal(paper):
        head = (f"**A rehearsal of `make paper` on synthetic data, not Inria**: the paper's claim is "
                f"{verdict(None)} by it.")  # fmt: skip
    else:
        head = (f"**On Inria the paper's claim is {verdict(paper, 'iou')} read as building IoU and "
                f"{verdict(paper, 'miou')} read as mIoU.**")  # fmt: skip
    if shown is None:
        return head
    if is_rehearsal(paper):
        return (f"{head} In this rehearsal on synthetic data (not Inria), {len(paper['seeds'])} seeds: a gap of "
                f"{_interval(paper, 'iou')} points in building IoU and {_interval(paper, 'miou')} in mIoU, from a "
                f"schedule of minutes that shows the path runs and says nothing about the paper.")  # fmt: skip
    where = "On Inria" if paper else "On the synthetic lab sample (not Inria)"
    iou, miou = shown["readings"]["iou"], shown["readings"]["miou"]
    return (f"{head} {where}, {len(shown['seeds'])} seeds: a gap of {_interval(shown, 'iou')} points in building "
            f"IoU ({verdict(shown, 'iou')}) and {_interval(shown, 'miou')} in mIoU ({verdict(shown, 'miou')}). At "
            f"this spread, telling the paper's +0.22 apart with 80 % power would take {miou['runs_needed']:,} runs of "
            f"each network read as mIoU (95 % confidence interval {_range(miou['runs_needed_ci95'])}) and "
            f"{iou['runs_needed']:,} read as building IoU ({_range(iou['runs_needed_ci95'])}).")  # fmt: skip


def _outcomes(summary: dict) -> str:
    from plinknet.study.stats import verdict

    words = {m: verdict(summary, m) for m in ("miou", "iou")}
    if words["miou"] == words["iou"]:
        return f"**{words['miou']}** under both readings"
    return f"**{words['miou']}** read as mIoU, **{words['iou']}** read as building IoU"


def status_line(results_dir: str | os.PathLike, paper_dir: str | os.PathLike | None = None) -> str:
    """Page one's first line, from ``results/``: what was tested, on what data, and the outcome in one of the three
    words of the decision rule (:func:`plinknet.study.stats.decide`), or "not run"."""
    results_dir = Path(results_dir)
    paper = load_summary(paper_archive(results_dir, paper_dir))
    lab = load_summary(results_dir / "ablation-synthetic-cpu")
    if paper is None:
        inria = "**not run**"
    elif is_rehearsal(paper):
        inria = "**not run** (the archive read here is a rehearsal on synthetic data)"
    else:
        inria = f"{_outcomes(paper)} ({len(paper['seeds'])} seeds)"
    line = (f"**Status.** Does pyramid pooling improve LinkNet34 by the paper's +0.22 points? On Inria at paper "
            f"scale: {inria}.")  # fmt: skip
    if lab is not None:
        device = ", ".join(lab["runs_provenance"]["device"])
        line += f" On the synthetic lab (not Inria; {len(lab['seeds'])} seeds, {device}): {_outcomes(lab)}."
    return line
