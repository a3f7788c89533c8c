import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import plinknet.train as train_module
from plinknet.train import TrainConfig, TrainingDiverged, load_checkpoint, read_history, train

FIXTURE = Path(__file__).parent / "data" / "inria"
COMPARED = ("epoch", "lr", "train_loss", "val_loss", "iou", "miou", "precision", "recall", "accuracy")


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    """A config that trains in about a second on the tiny fixture tiles."""
    values = dict(
        data_dir=str(FIXTURE), out_dir=str(tmp_path / name), encoder_name="resnet18",
        encoder_weights=None, crop_size=64, batch_size=2, samples_per_tile=2, epochs=3,
        lr_milestones=(2,), workers=0, progress=False,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _history(run):
    return [{k: row[k] for k in COMPARED} for row in read_history(run)]


def _weights(run, name="last.pt"):
    return torch.load(Path(run) / name, weights_only=False)["model"]


def test_run_folder_and_checkpoints(tmp_path):
    config = tiny(tmp_path)
    run = train(config)
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "history.csv", "last.pt", "best.pt"}
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.to_dict()
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.01, 0.001])  # MultiStepLR at epoch 2
    assert all(0 <= r["iou"] <= 1 and r["images_per_s"] > 0 for r in rows)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["config"] == config.to_dict() and state["epoch"] == 2
    model, _ = load_checkpoint(run / "best.pt")
    assert model.config.encoder_name == "resnet18" and not model.training


def test_same_config_twice_gives_identical_history(tmp_path):
    a = train(tiny(tmp_path, "a", epochs=2))
    b = train(tiny(tmp_path, "b", epochs=2))
    assert _history(a) == _history(b)
    for k, v in _weights(a).items():
        assert torch.equal(v, _weights(b)[k]), k


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    whole = train(tiny(tmp_path, "whole"))

    def stop_after_first_epoch(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    config = tiny(tmp_path, "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(config, on_epoch_end=stop_after_first_epoch)
    assert len(read_history(config.out_dir)) == 1
    resumed = train(config, resume=True)
    assert _history(resumed) == _history(whole)
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(resumed)[k]), k


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_module.DiceBCELoss

    class BreaksInEpochTwo(real):
        calls = 0

        def forward(self, logits, target):
            BreaksInEpochTwo.calls += 1
            loss = super().forward(logits, target)
            return loss * float("nan") if BreaksInEpochTwo.calls > 3 and logits.requires_grad else loss

    monkeypatch.setattr(train_module, "DiceBCELoss", BreaksInEpochTwo)
    config = tiny(tmp_path)
    with pytest.raises(TrainingDiverged, match="last.pt"):
        train(config)
    state = torch.load(Path(config.out_dir) / "last.pt", weights_only=False)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_config_from_yaml_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\npyramid_bins: []\nencoder_weights: null\n")
    config = TrainConfig.from_yaml(path, batch_size=3)
    assert (config.epochs, config.pyramid_bins, config.encoder_weights, config.batch_size) == (7, (), None, 3)
    assert config.model_config.pyramid_bins == ()
    path.write_text("epoch: 7\n")
    with pytest.raises(ValueError, match="epoch"):
        TrainConfig.from_yaml(path)


def test_paper_recipe_defaults():
    c = TrainConfig()
    assert (c.lr, c.batch_size, c.crop_size, c.epochs, c.threshold) == (0.01, 16, 512, 30, 0.5)
    assert (c.encoder_name, c.encoder_weights, c.pyramid_bins) == ("resnet34", "imagenet", (1, 2, 3, 6))


def test_two_process_ddp_on_cpu(tmp_path):
    config = tiny(tmp_path, "ddp", epochs=2)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "plinknet", "train", "--config", str(config_file), "--device", "cpu"]  # fmt: skip
    # a session of its own, so that a hang kills torchrun's workers too, not only torchrun
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-3000:]
    rows = read_history(config.out_dir)
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 alone wrote, once per epoch
    assert all(0 < r["accuracy"] <= 1 for r in rows)
    assert not list(Path(config.out_dir).glob("*.tmp"))
    assert torch.load(Path(config.out_dir) / "last.pt", weights_only=False)["epoch"] == 1
