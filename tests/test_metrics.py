import pytest
import segmentation_models_pytorch as smp
import torch

from plinknet.metrics import BinaryConfusion, metrics_from_counts


def _random(seed, shape=(6, 1, 20, 20)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), (torch.rand(shape, generator=g) > 0.6).long()


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_matches_smp_metrics_micro(threshold):
    logits, target = _random(0)
    cm = BinaryConfusion(threshold)
    cm.update(logits[:3], target[:3])
    cm.update(logits[3:], target[3:])  # accumulation over batches
    tp, fp, fn, tn = smp.metrics.get_stats(logits.sigmoid(), target, mode="binary", threshold=threshold)
    result = cm.compute()
    expect = {
        "iou": smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro"),
        "precision": smp.metrics.precision(tp, fp, fn, tn, reduction="micro"),
        "recall": smp.metrics.recall(tp, fp, fn, tn, reduction="micro"),
        "f1": smp.metrics.f1_score(tp, fp, fn, tn, reduction="micro"),
        "accuracy": smp.metrics.accuracy(tp, fp, fn, tn, reduction="micro"),
    }
    for name, value in expect.items():
        assert result[name] == pytest.approx(value.item(), abs=1e-6), name
    background = smp.metrics.iou_score(tn, fn, fp, tp, reduction="micro").item()
    assert result["miou"] == pytest.approx((expect["iou"].item() + background) / 2)
    assert cm.counts.dtype == torch.int64 and cm.counts.sum() == target.numel()


def test_groups():
    logits, target = _random(1, (4, 1, 10, 10))
    cm = BinaryConfusion()
    cm.update(logits, target, groups=["a", "b", "a", "b"])
    alone = BinaryConfusion()
    alone.update(logits[[0, 2]], target[[0, 2]])
    assert cm.groups == ["a", "b"]
    assert cm.compute("a") == alone.compute()
    assert torch.equal(cm.group_counts["a"] + cm.group_counts["b"], cm.counts)
    with pytest.raises(ValueError, match="2 group names"):
        cm.update(logits, target, groups=["a", "b"])


def test_known_counts():
    m = metrics_from_counts(tp=6, fp=2, fn=2, tn=90)
    assert m["iou"] == pytest.approx(0.6)
    assert m["miou"] == pytest.approx((0.6 + 90 / 94) / 2)
    assert m["precision"] == m["recall"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.96)
    empty = metrics_from_counts(0, 0, 0, 10)
    assert empty["iou"] == 1.0 and empty["precision"] == 0.0


def test_counts_do_not_overflow_int32():
    cm = BinaryConfusion()
    ones = torch.ones(1, 1, 1, 1)
    cm.update(ones, ones)
    cm.counts[0] = 2**33
    cm.update(ones, ones)
    assert cm.counts[0] == 2**33 + 1


def test_shape_mismatch_and_threshold_errors():
    with pytest.raises(ValueError, match="shape"):
        BinaryConfusion().update(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="threshold"):
        BinaryConfusion(1.0)


def test_only_valid_pixels_are_counted():
    logits = torch.tensor([[[[5.0, -5.0, 5.0, -5.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    valid = torch.tensor([[[[True, True, False, False]]]])
    cm = BinaryConfusion()
    cm.update(logits, target, valid=valid)
    assert cm.counts.tolist() == [1, 0, 0, 1]  # the fp and fn in the padding are not counted
    with pytest.raises(ValueError, match="valid"):
        cm.update(logits, target, valid=valid[..., :2])


def test_count_metrics_on_arrays_is_the_scalar_arithmetic():
    import numpy as np

    from plinknet.metrics import count_metrics

    counts = np.array([[[5, 3, 2, 90], [0, 0, 0, 100]], [[0, 7, 0, 93], [40, 0, 10, 50]]])  # (2, 2, 4)
    arrays = count_metrics(counts)
    for index in np.ndindex(2, 2):
        scalar = metrics_from_counts(*counts[index].tolist())
        assert {name: arrays[name][index] for name in arrays} == {name: scalar[name] for name in arrays}
    assert arrays["iou"][0, 1] == 1.0 and arrays["precision"][0, 1] == 0.0  # an empty map: perfect IoU, no precision
    assert arrays["precision"][1, 0] == 0.0 and arrays["iou"][1, 1] == 0.8
