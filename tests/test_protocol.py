"""Protocol forensics: solving the paper's two numbers for precision and recall, crop means."""

import numpy as np
import pytest

from plinknet.study.protocol import metrics_from_rates, readings_markdown, score_conventions, solve_reading


def test_rates_give_back_their_precision_and_recall():
    m = metrics_from_rates(0.8, 0.7, 0.15)
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(0.7)
    assert m["f1"] == pytest.approx(2 * m["iou"] / (1 + m["iou"]))
    assert metrics_from_rates(0.01, 1.0, 0.5) is None  # more false positives than background pixels


def test_a_reading_made_from_known_rates_is_solved_back():
    truth = metrics_from_rates(0.9, 0.75, 0.15)
    (found,) = solve_reading("miou", 100 * truth["miou"], "precision", 100 * truth["precision"], 0.15)
    assert found["recall"] == pytest.approx(75, abs=0.02)
    assert found["iou"] == pytest.approx(100 * truth["iou"], abs=0.02)


def test_iou_and_f1_are_tied_on_whole_counts():
    assert solve_reading("iou", 84.48, "f1", 91.50) == []  # the paper's pair: impossible
    assert solve_reading("iou", 84.48, "f1", round(100 * 2 * 0.8448 / 1.8448, 2))  # the identity: possible


def test_conventions_differ_on_the_same_predictions():
    truth = np.zeros((8, 8), np.uint8)
    truth[:4, :4] = 1  # buildings in the top-left crop only
    prediction = truth.copy()
    prediction[0, :4] = 0  # one row missed
    prediction[6, 6] = 1  # one false positive in a crop without building
    result = score_conventions([(prediction, truth), (truth, truth)], crop=4)
    assert result["whole"]["iou"] == pytest.approx(28 / 33)  # (12 + 16) / (12 + 1 + 4 + 16)
    assert result["tile_mean"]["iou"] == pytest.approx((12 / 17 + 1) / 2)
    # tile 1: crops 12/16, 1, 1, 0; tile 2: 1, 1, 1, 1
    assert result["crop_mean"]["iou"] == pytest.approx((12 / 16 + 0 + 2 + 4) / 8)
    assert result["crop_mean_skip_empty"]["iou"] == pytest.approx((12 / 16 + 0 + 1) / 3)


def test_reading_table_names_impossible_readings():
    text = readings_markdown(0.15)
    assert "| building IoU | F1 | impossible | impossible |" in text
    assert "| mIoU | precision | building IoU 73.76" in text


def test_the_gap_under_each_convention_says_only_what_holds():
    from plinknet.study.protocol import CONVENTIONS, conventions_gap_markdown

    metrics = ("iou", "miou", "precision", "recall", "f1", "accuracy")
    a = {c: dict.fromkeys(metrics, 0.5) for c in CONVENTIONS}
    b = {c: {m: 0.49 if (c, m) == ("whole", "iou") else 0.51 for m in metrics} for c in CONVENTIONS}
    text = conventions_gap_markdown({"P-LinkNet": a, "LinkNet34": b})
    assert "| counts summed over all tiles (the Inria benchmark) | +1.00 | -1.00 |" in text
    assert "keeps its sign in mIoU, precision, recall, F1, accuracy and changes sign in IoU" in text
    assert "the sign differs between building IoU and mIoU" in text
    lower = {c: dict.fromkeys(metrics, 0.4) for c in CONVENTIONS}
    same = conventions_gap_markdown({"P-LinkNet": a, "LinkNet34": lower})
    assert "keeps its sign in IoU, mIoU" in same and "changes sign" not in same and "agree in sign" in same
