"""The ablation's statistics: paired gaps over seeds, their intervals, the power analysis and the verdict.

See :mod:`plinknet.study.ablation` for what the intervals mean and why they are the ones reported."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from plinknet.metrics import METRIC_NAMES, count_metrics
from plinknet.study.lab import SIZE_CLASSES_M2, lab_rates, sum_counts
from plinknet.study.paper import MODELS, PAPER, PAPER_GAP, READINGS

ALPHA, POWER = 0.05, 0.8  # two-sided test at 5 %, 80 % power
SEEDS_PLANNED = 5  # seeds of `make paper`
BOOTSTRAP_DRAWS = 10_000
LAB_GAPS = ("recall_small", "recall_medium", "recall_large", "fp_rate")


def _score(counts: np.ndarray, metric: str) -> np.ndarray:
    """A pixel metric in points from (..., 4) summed [tp, fp, fn, tn] counts."""
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric}")
    return 100 * count_metrics(counts)[metric]


def _lab_score(counts: np.ndarray, keys: list[str], rate: str) -> np.ndarray:
    """A lab rate in points from (..., len(keys)) summed lab counts."""
    if rate == "fp_rate":
        num, den = keys.index("distractor_false_positives"), keys.index("distractor_pixels")
    else:
        size = rate.removeprefix("recall_")
        num, den = keys.index(f"{size}_detected"), keys.index(f"{size}_total")
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * counts[..., num] / counts[..., den]


def paired_t_interval(gaps, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The t-interval of the mean of paired gaps over seeds (the last axis): the primary interval of every gap.

    The benchmark's tiles are held fixed, as the paper's question is; each seed's gap is one draw of the training's
    randomness. Exact for normal gaps at any number of seeds (``scipy.stats.ttest_1samp``); vectorised, so the
    coverage test can run thousands of replications at once.
    """
    result = stats.ttest_1samp(np.asarray(gaps, dtype=np.float64), 0.0, axis=-1)
    interval = result.confidence_interval(confidence)
    return interval.low, interval.high


def paired_bootstrap(first: np.ndarray, second: np.ndarray, score, draws: int, seed: int = 0,
                     groups: list[str] | None = None) -> np.ndarray:  # fmt: skip
    """Bootstrap draws of ``mean over seeds of score(first) - score(second)``, resampling seeds and tiles.

    The sensitivity line beside :func:`paired_t_interval`: it also treats the tiles as drawn from their city.
    At a handful of seeds it is too narrow (a percentile bootstrap over 5 seeds covers about 84 %).

    Args:
        first, second: (seeds, tiles, k) counts of the two networks, paired by seed and tile.
        score: maps (..., k) counts summed over tiles to a number per seed.
        draws: bootstrap draws.
        groups: the city of each tile; tiles are resampled within their city (None: one group).

    Returns:
        (draws,) gaps.
    """
    rng = np.random.default_rng(seed)
    n_seeds, n_tiles = first.shape[:2]
    groups = groups or ["all"] * n_tiles
    tile_weights = np.zeros((draws, n_tiles))  # (draws, tiles): how often each tile is drawn
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        tile_weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=draws)
    seed_picks = rng.integers(0, n_seeds, size=(draws, n_seeds))  # (draws, seeds)
    gaps = []
    for counts in (first, second):
        summed = np.einsum("dt,stk->dsk", tile_weights, counts.astype(np.float64))  # (draws, seeds, k)
        per_seed = score(np.take_along_axis(summed, seed_picks[:, :, None], axis=1))  # (draws, seeds)
        gaps.append(per_seed.mean(axis=1))
    return gaps[0] - gaps[1]


def runs_needed(sigma: float, gap: float, alpha: float = ALPHA, power: float = POWER, paired: bool = True) -> int:
    """Runs of each network for a two-sided t-test at ``alpha`` to detect ``gap`` with ``power``.

    ``paired``: seeds shared (statsmodels' ``TTestPower`` on the per-seed gaps, whose spread is ``sigma``); else two
    independent samples (``TTestIndPower``, ``sigma`` the spread of one network). The noncentral t, exact at small n.
    """
    if sigma <= 0:
        return 2
    effect = gap / sigma
    test = TTestPower() if paired else TTestIndPower()
    with warnings.catch_warnings():  # its root finder gives up (NaN, with a warning) for very small effects
        warnings.simplefilter("ignore")
        n = test.solve_power(effect_size=effect, alpha=alpha, power=power, alternative="two-sided")
    if not np.isfinite(n):  # then n is large, where Guenther's normal form with its t correction is within a run
        z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
        k = 1 if paired else 2  # an independent sample's mean difference has twice the variance
        n = k * ((z_alpha + z_power) / effect) ** 2 + z_alpha**2 / (2 * k)
    return max(2, math.ceil(n))


def detectable_gap(sigma: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true gap that ``seeds`` paired runs detect with ``power`` (two-sided paired t-test at ``alpha``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effect = TTestPower().solve_power(nobs=seeds, alpha=alpha, power=power, alternative="two-sided")
    return float(effect * sigma)


def sigma_interval(sigma: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of a standard deviation estimated from ``n`` values."""
    df = n - 1
    return (float(sigma * math.sqrt(df / stats.chi2.ppf((1 + confidence) / 2, df))),
            float(sigma * math.sqrt(df / stats.chi2.ppf((1 - confidence) / 2, df))))  # fmt: skip


def reading(summary: dict, metric: str, paper_gap: float = PAPER_GAP, seeds_planned: int = SEEDS_PLANNED) -> dict:
    """The paper's +0.22 read as ``metric`` (``iou`` or ``miou``): verdict, flags and power with their ranges."""
    low, high = summary[f"gap_{metric}_ci95"]
    sigma = summary[f"sigma_{metric}"]
    sigma_low, sigma_high = sigma_interval(sigma, len(summary["seeds"]))
    return {
        "metric": metric,
        "paper_gap": paper_gap,
        "verdict": decide(low, high, paper_gap),
        "paper_gap_inside_ci95": bool(low <= paper_gap <= high),
        "zero_inside_ci95": bool(low <= 0 <= high),
        "sigma": sigma,
        "sigma_ci95": [sigma_low, sigma_high],
        "runs_needed": runs_needed(sigma, paper_gap),
        "runs_needed_ci95": [runs_needed(sigma_low, paper_gap), runs_needed(sigma_high, paper_gap)],
        "seeds_planned": seeds_planned,
        "detectable_gap": detectable_gap(sigma, seeds_planned),
        "detectable_gap_ci95": [detectable_gap(sigma_low, seeds_planned), detectable_gap(sigma_high, seeds_planned)],
    }


def _stack(records: list[dict], model: str, seeds: list[int], tiles: list[str], field: str, keys=None) -> np.ndarray:
    by_seed = {r["seed"]: r for r in records if r["model"] == model}
    if field == "per_tile":
        return np.array([[by_seed[s]["per_tile"][t] for t in tiles] for s in seeds], dtype=np.int64)
    return np.array([[[by_seed[s]["lab"][t][k] for k in keys] for t in tiles] for s in seeds], dtype=np.int64)


def summarize(records: list[dict], bootstrap_draws: int = BOOTSTRAP_DRAWS) -> dict:
    """The ablation's statistics from the run records (see the module docstring)."""
    seeds = sorted({r["seed"] for r in records})
    tiles = list(records[0]["per_tile"])
    cities = [records[0].get("cities", {}).get(t, "all") for t in tiles]
    counts = {m: _stack(records, m, seeds, tiles, "per_tile") for m in MODELS}  # (seeds, tiles, 4)
    summary: dict = {"seeds": seeds, "tiles": tiles, "split": records[0]["split"], "window": records[0]["window"],
                     "threshold": records[0].get("threshold"), "models": {}, "paper": PAPER}  # fmt: skip
    per_seed = {}
    for model, c in counts.items():
        summed = c.sum(axis=1)  # (seeds, 4)
        per_seed[model] = {metric: _score(summed, metric) for metric in ("iou", "miou", "f1", "precision")}
        summary["models"][model] = {
            **{f"{metric}_{stat}": float(fn(values)) for metric, values in per_seed[model].items()
               for stat, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1)))},
            **{f"{metric}_per_seed": [round(float(v), 4) for v in values]
               for metric, values in per_seed[model].items()},
            "best_epochs": [r["best_epoch"] for s in seeds for r in records if r["model"] == model and r["seed"] == s],
            "epochs": [r["config"]["epochs"] for s in seeds for r in records
                       if r["model"] == model and r["seed"] == s and "config" in r],
        }  # fmt: skip
    first, second = counts["P-LinkNet"], counts["LinkNet34"]
    summary["pairing"] = {}
    for metric in ("iou", "miou", "f1"):
        gaps = per_seed["P-LinkNet"][metric] - per_seed["LinkNet34"][metric]
        low, high = paired_t_interval(gaps)
        draws = paired_bootstrap(first, second, lambda c, m=metric: _score(c, m), bootstrap_draws, groups=cities)
        summary[f"gap_{metric}_mean"] = float(gaps.mean())
        summary[f"gap_{metric}_per_seed"] = [round(float(g), 4) for g in gaps]
        summary[f"gap_{metric}_ci95"] = [float(low), float(high)]
        summary[f"gap_{metric}_ci95_bootstrap"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
        summary[f"sigma_{metric}"] = float(np.std(gaps, ddof=1))
        one = float(np.sqrt((summary["models"]["P-LinkNet"].get(f"{metric}_std", np.nan) ** 2
                             + summary["models"]["LinkNet34"].get(f"{metric}_std", np.nan) ** 2) / 2))  # fmt: skip
        summary["pairing"][metric] = {"sigma_paired_gap": summary[f"sigma_{metric}"], "sigma_one_network": one,
                                      "sqrt2_sigma_one_network": math.sqrt(2) * one}  # fmt: skip
    summary["paper_gap"] = PAPER_GAP
    summary["readings"] = {metric: reading(summary, metric) for metric in READINGS}
    for metric, r in summary["readings"].items():  # unpaired: two networks trained independently, as in the paper
        r["runs_needed_unpaired"] = runs_needed(summary["pairing"][metric]["sigma_one_network"], PAPER_GAP,
                                                paired=False)  # fmt: skip
    if all(r["lab"] for r in records):
        summary["lab"] = _lab_summary(records, seeds, tiles, cities, bootstrap_draws)
    summary["method"] = (
        "score per seed from counts summed over the held-out tiles; gap = P-LinkNet - LinkNet34 per seed, "
        "averaged; 95 % interval: paired t-interval over the per-seed gaps (tiles held fixed; scipy.stats); "
        "sensitivity: percentile bootstrap over seeds and tiles, tiles resampled within their city "
        f"({bootstrap_draws} draws); sigma: standard deviation over seeds of the per-seed gap, with its chi-square "
        "95 % interval; runs needed: paired two-sided t-test at 5 % with 80 % power (statsmodels TTestPower), "
        f"for the paper's {PAPER_GAP}-point gap read as IoU and as mIoU, at sigma and at the ends of its interval"
    )
    return summary


def _lab_summary(records, seeds, tiles, cities, draws) -> dict:
    keys = list(next(iter(records[0]["lab"].values())))
    counts = {m: _stack(records, m, seeds, tiles, "lab", keys) for m in MODELS}
    lab = {"size_classes_m2": {k: [lo, None if math.isinf(hi) else hi] for k, (lo, hi) in SIZE_CLASSES_M2.items()},
           "models": {}}  # fmt: skip
    for model, c in counts.items():
        per_seed = [lab_rates(sum_counts(dict(zip(keys, row)) for row in c[s].tolist())) for s in range(len(seeds))]
        lab["models"][model] = {
            rate: {"mean": _mean_or_none([100 * p[rate] for p in per_seed if p[rate] is not None]),
                   "per_seed": [None if p[rate] is None else round(100 * p[rate], 4) for p in per_seed]}
            for rate in per_seed[0]
        }  # fmt: skip
    lab["totals"] = {k: int(v) for k, v in zip(keys, counts["P-LinkNet"][0].sum(axis=0))}
    for rate in LAB_GAPS:
        samples = paired_bootstrap(counts["P-LinkNet"], counts["LinkNet34"], lambda c, r=rate: _lab_score(c, keys, r),
                                   draws, groups=cities)  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            first = _lab_score(counts["P-LinkNet"].sum(axis=1), keys, rate)
            second = _lab_score(counts["LinkNet34"].sum(axis=1), keys, rate)
        gaps, samples = (first - second)[np.isfinite(first - second)], samples[np.isfinite(samples)]
        lab[f"gap_{rate}_mean"] = _mean_or_none(gaps)  # None: no instance of that size in these tiles
        lab[f"gap_{rate}_ci95"] = [float(v) for v in paired_t_interval(gaps)] if len(gaps) >= 2 else None
        lab[f"gap_{rate}_ci95_bootstrap"] = ([float(np.percentile(samples, q)) for q in (2.5, 97.5)]
                                             if samples.size else None)  # fmt: skip
    return lab


def _mean_or_none(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


OUTCOMES = ("supported", "refuted", "inconclusive")
DECISION_RULE = (
    "the paper's claim (the pyramid improves LinkNet34 by +0.22 points) is judged from the 95 % paired t-interval "
    "of the gap over seeds, by a rule fixed before any run: **refuted** when the interval's upper end lies below "
    "+0.22 (a gain as large as the paper's is ruled out, whatever the sign of a smaller one); **supported** when "
    "the interval lies above 0 and reaches +0.22 or more (a real gain, and the paper's size not ruled out; a "
    "credibly larger gain supports the claim, it does not refute it); **inconclusive** otherwise (the interval "
    "holds both 0 and +0.22: too few runs to tell)"
)


def decide(low: float, high: float, paper_gap: float = PAPER_GAP) -> str:
    """The outcome of the paper's claim for a 95 % interval ``[low, high]`` of the gap (P-LinkNet minus LinkNet34,
    points), by :data:`DECISION_RULE`: one of :data:`OUTCOMES`.

    The three cases partition the intervals: refuted iff ``high < paper_gap``; else supported iff ``low > 0``; else
    inconclusive (``low <= 0`` and ``high >= paper_gap``). Refuted means the paper's gain is credibly too large:
    the 95 % interval excludes every gain of +0.22 or more.
    """
    if high < paper_gap:
        return "refuted"
    if low > 0:
        return "supported"
    return "inconclusive"


def verdict(summary: dict | None, metric: str = "iou") -> str:
    """The paper's claim read as ``metric``: :func:`decide` on the summary's interval, or ``not tested at paper
    scale`` without one (nobody has run ``make paper`` yet)."""
    if summary is None:
        return "not tested at paper scale"
    low, high = summary[f"gap_{metric}_ci95"]
    return decide(low, high, summary.get("paper_gap", PAPER_GAP))


def format_summary(summary: dict) -> str:
    """A plain-text account of an ablation summary: scores over seeds, the gaps, both readings and the power."""
    n = len(summary["seeds"])
    lines = [f"{n} seeds {summary['seeds']}, {len(summary['tiles'])} {summary['split']} tiles, window "
             f"{summary['window']}; points, mean +- standard deviation over seeds"]  # fmt: skip
    lines.append(f"{'':12s}{'IoU':>16s}{'mIoU':>16s}{'F1':>16s}")
    for model, m in summary["models"].items():
        cells = "".join(f"{m[f'{k}_mean']:9.2f} +- {m[f'{k}_std']:4.2f}" for k in ("iou", "miou", "f1"))
        lines.append(f"{model:12s}{cells}")
    for metric in ("iou", "miou", "f1"):
        low, high = summary[f"gap_{metric}_ci95"]
        blow, bhigh = summary[f"gap_{metric}_ci95_bootstrap"]
        lines.append(f"gap {metric:5s} P-LinkNet - LinkNet34: {summary[f'gap_{metric}_mean']:+.2f} points, "
                     f"95 % t-interval [{low:+.2f}, {high:+.2f}] (bootstrap over seeds and tiles: "
                     f"[{blow:+.2f}, {bhigh:+.2f}])")  # fmt: skip
    for metric, r in summary["readings"].items():
        lines.append(f"the paper's +{r['paper_gap']} read as {READINGS[metric]}: {r['verdict']}; sigma "
                     f"{r['sigma']:.2f} [{r['sigma_ci95'][0]:.2f}, {r['sigma_ci95'][1]:.2f}]; runs per network to "
                     f"detect it at 80 % power: {r['runs_needed']} [{r['runs_needed_ci95'][0]}, "
                     f"{r['runs_needed_ci95'][1]}]; {r['seeds_planned']} seeds detect "
                     f"{r['detectable_gap']:.2f} points")  # fmt: skip
    pairing = summary["pairing"]["iou"]
    lines.append(f"pairing: sigma of the paired IoU gap {pairing['sigma_paired_gap']:.2f} against sqrt(2) x sigma of "
                 f"one network {pairing['sqrt2_sigma_one_network']:.2f}")  # fmt: skip
    if "lab" in summary:
        lab = summary["lab"]
        for rate in LAB_GAPS:
            if lab[f"gap_{rate}_ci95"] is None:
                lines.append(f"lab {rate}: nothing to count in these tiles")
                continue
            low, high = lab[f"gap_{rate}_ci95"]
            means = ", ".join(f"{model} {lab['models'][model][rate]['mean']:.2f}" for model in MODELS)
            lines.append(f"lab {rate}: {means}; gap {lab[f'gap_{rate}_mean']:+.2f} [{low:+.2f}, {high:+.2f}]")
    return "\n".join(lines)

