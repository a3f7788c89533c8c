import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from helpers import FIXTURE, TORCHRUN, fingerprint, run_killable, stop_after_first_epoch

import plinknet.device as device_module
import plinknet.train.loop as train_module
from plinknet.checkpoint import load_checkpoint
from plinknet.config import ConfigError
from plinknet.data import InriaDataError, InriaDataset
from plinknet.files import save_torch as save_atomic
from plinknet.loss import DiceBCELoss
from plinknet.model import PLinkNet
from plinknet.train import (
    RECIPE_FIELDS,
    RunFolderError,
    TrainConfig,
    TrainingDiverged,
    read_history,
    recipe_changes,
    train,
    train_or_reuse,
)
from plinknet.train.config import SAFE_ON_RESUME
from plinknet.train.loop import make_loader, validate

HERE = Path(__file__).parent
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
    return torch.load(Path(run) / name, weights_only=True)["model"]


# --------------------------------------------------------------------------- runs


def test_run_folder_and_checkpoints(tmp_path):
    config = tiny(tmp_path)
    run = train(config)
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "history.csv", "last.pt", "best.pt"}
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.to_dict()
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.01, 0.001])  # MultiStepLR at epoch 2
    assert all(0 <= r["iou"] <= 1 and r["images_per_s"] > 0 for r in rows)
    state = torch.load(run / "last.pt", weights_only=True)  # plain values and tensors only
    assert state["config"] == config.to_dict() and state["epoch"] == 2 and state["best_on"] == "val"
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


def test_resume_refuses_a_changed_recipe_and_leaves_config_untouched(tmp_path):
    config = tiny(tmp_path, epochs=1)
    run = train(config)
    saved = (run / "config.yaml").read_text()
    changed = tiny(tmp_path, epochs=2, lr=0.5, batch_size=3)
    with pytest.raises(RunFolderError) as error:
        train(changed, resume=True)
    assert "lr: saved 0.01, given 0.5" in str(error.value) and "batch_size: saved 2, given 3" in str(error.value)
    assert "epochs" not in str(error.value).split("(")[1].split(")")[0]  # epochs may change
    assert (run / "config.yaml").read_text() == saved
    assert len(read_history(run)) == 1


def test_resume_with_more_epochs_is_allowed_and_recorded(tmp_path):
    run = train(tiny(tmp_path, epochs=1))
    train(tiny(tmp_path, epochs=2, workers=1), resume=True)
    assert [r["epoch"] for r in read_history(run)] == [1, 2]
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["epochs"] == 2 and recorded["workers"] == 1
    assert torch.load(run / "last.pt", weights_only=True)["config"]["epochs"] == 2


def test_resume_from_run_takes_the_saved_recipe(tmp_path):
    train(tiny(tmp_path, epochs=1, lr=0.02))
    config = TrainConfig.from_run(tmp_path / "run", epochs=2)
    assert config.lr == 0.02 and config.epochs == 2 and config.crop_size == 64


def test_resume_needs_last_pt_and_something_left_to_do(tmp_path):
    config = tiny(tmp_path, epochs=1)
    with pytest.raises(RunFolderError, match="last.pt does not exist"):
        train(config, resume=True)
    assert not Path(config.out_dir).exists()
    with pytest.raises(RunFolderError, match="last.pt does not exist"):
        TrainConfig.from_run(config.out_dir)
    train(config)
    with pytest.raises(RunFolderError, match="already trained 1 of 1"):
        train(config, resume=True)


def test_a_run_folder_is_never_silently_overwritten(tmp_path):
    config = tiny(tmp_path, epochs=1)
    run = train(config)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(config)
    assert (run / "last.pt").read_bytes() == before
    (run / "notes.txt").write_text("the user's")
    train(tiny(tmp_path, epochs=1, lr=0.02), overwrite=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.02
    assert (run / "notes.txt").read_text() == "the user's"  # only the run's own files were replaced


def test_overwrite_deletes_nothing_in_a_folder_that_holds_no_run(tmp_path):
    from plinknet.files import NotPlinknetsError

    config = tiny(tmp_path, epochs=1)
    out = Path(config.out_dir)
    out.mkdir(parents=True)
    for name in ("config.yaml", "history.csv"):  # another tool's files of the same names, no checkpoint
        (out / name).write_text(f"the user's {name}")
    with pytest.raises(NotPlinknetsError, match="carries no mark"):
        train(config, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "history.csv"]
    assert (out / "history.csv").read_text() == "the user's history.csv"


def test_train_or_reuse_skips_a_finished_run_and_resumes_a_stopped_one(tmp_path):
    config = tiny(tmp_path, epochs=2)
    stop_after_first_epoch(train, config)
    first = read_history(config.out_dir)
    train_or_reuse(tiny(tmp_path, epochs=2, workers=1))  # resumed, the run option changed
    assert [r["epoch"] for r in read_history(config.out_dir)] == [1, 2]
    assert read_history(config.out_dir)[0] == first[0]
    finished = fingerprint(config.out_dir)
    train_or_reuse(tiny(tmp_path, epochs=2, progress=True, check_data=False))  # finished: nothing happens
    assert fingerprint(config.out_dir) == finished


@pytest.mark.parametrize("change, named", [({"lr": 0.5}, "lr: saved 0.01, given 0.5"),
                                           ({"epochs": 1}, "a run of 2 epochs, asked for 1")])  # fmt: skip
def test_train_or_reuse_refuses_another_recipe_and_deletes_nothing(tmp_path, change, named):
    config = tiny(tmp_path, epochs=2)
    run = train(config)
    before = fingerprint(run)
    with pytest.raises(RunFolderError) as error:
        train_or_reuse(tiny(tmp_path, **{"epochs": 2, **change}))
    assert named in str(error.value) and str(run) in str(error.value)
    assert fingerprint(run) == before


def test_a_run_saved_before_a_field_existed_still_resumes(tmp_path):
    config = tiny(tmp_path, epochs=2)
    stop_after_first_epoch(train, config)
    last = Path(config.out_dir) / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["config"]["dice_weight"]  # as if the field had been added to TrainConfig after this run
    torch.save(state, last)
    assert recipe_changes(state["config"], config.to_dict()) == []
    train_or_reuse(config)
    assert [r["epoch"] for r in read_history(config.out_dir)] == [1, 2]


def test_every_field_is_either_recipe_or_run_option():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(RECIPE_FIELDS + SAFE_ON_RESUME) == sorted(names)
    assert not set(RECIPE_FIELDS) & set(SAFE_ON_RESUME)
    assert {"lr", "pyramid_bins", "seed", "threshold", "amp", "data_dir"} <= set(RECIPE_FIELDS)
    # the same folder written two ways is the same data
    assert recipe_changes({"data_dir": "data/x"}, {"data_dir": str(Path("data/x").resolve())}, ("data_dir",)) == []


def test_checkpoints_that_could_run_code_are_refused(tmp_path):
    model = PLinkNet(encoder_name="resnet18")
    path = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "config": {},
                "payload": pickle.loads(pickle.dumps(Path("x")))}, path)  # fmt: skip  # an arbitrary class
    with pytest.raises(ValueError, match="could run code"):
        load_checkpoint(path)
    good = tmp_path / "good.pt"
    save_atomic({"model": model.state_dict(), "model_config": model.config.to_dict(), "config": {}}, good)
    assert load_checkpoint(good)[0].config.encoder_name == "resnet18"


# --------------------------------------------------------------------------- divergence


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_module.DiceBCELoss

    class BreaksInEpochTwo(real):
        calls = 0

        def forward(self, logits, target, valid=None):
            BreaksInEpochTwo.calls += 1
            loss = super().forward(logits, target, valid)
            return loss * float("nan") if BreaksInEpochTwo.calls > 3 and logits.requires_grad else loss

    monkeypatch.setattr(train_module, "DiceBCELoss", BreaksInEpochTwo)
    config = tiny(tmp_path)
    with pytest.raises(TrainingDiverged, match="last.pt"):
        train(config)
    state = torch.load(Path(config.out_dir) / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_weights_with_a_finite_loss_never_reach_last_pt(tmp_path, monkeypatch):
    class PoisonedSGD(torch.optim.SGD):
        steps = 0

        def step(self, closure=None):
            super().step(closure)
            PoisonedSGD.steps += 1
            if PoisonedSGD.steps == 4:  # the last step of epoch 2: its loss was finite
                with torch.no_grad():
                    self.param_groups[0]["params"][0].fill_(float("inf"))

    monkeypatch.setattr(train_module.torch.optim, "SGD", PoisonedSGD)
    config = tiny(tmp_path, samples_per_tile=2)
    with pytest.raises(TrainingDiverged, match="weights"):
        train(config)
    state = torch.load(Path(config.out_dir) / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# --------------------------------------------------------------------------- options


def test_config_from_yaml_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\npyramid_bins: []\nencoder_weights: null\nlr: 1e-3\n")
    config = TrainConfig.from_yaml(path, batch_size=3)
    assert (config.epochs, config.pyramid_bins, config.encoder_weights, config.batch_size) == (7, (), None, 3)
    assert config.lr == 0.001 and isinstance(config.lr, float)  # PyYAML reads 1e-3 as a string
    assert config.model_config.pyramid_bins == ()
    path.write_text("epoch: 7\n")
    with pytest.raises(ValueError, match="epoch"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize(
    "yaml_text, option",
    [
        ('epochs: "ten"\n', "epochs"),
        ("epochs: 0\n", "epochs"),
        ("samples_per_tile: 0\n", "samples_per_tile"),
        ("pyramid_bins: [0]\n", "pyramid_bins"),
        ("threshold: 1.5\n", "threshold"),
        ("threshold: 0\n", "threshold"),
        ("lr: -1\n", "lr"),
        ("crop_size: 100\n", "crop_size"),
        ("amp: maybe\n", "amp"),
        ("lr_milestones: [25, 20]\n", "lr_milestones"),
        ("select_tiles: [3]\n", "select_tiles"),
        ("- epochs\n- 3\n", "mapping"),
        ("epochs: [1\n", "not valid YAML at line 2"),
    ],
)
def test_bad_yaml_values_name_the_option(tmp_path, yaml_text, option):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=option):
        TrainConfig.from_yaml(path)


def test_string_values_from_notebooks_are_converted():
    config = TrainConfig(epochs="3", lr="1e-3", amp="false", pyramid_bins=[1, "2"], samples_per_tile="none")
    assert (config.epochs, config.lr, config.amp, config.pyramid_bins, config.samples_per_tile) == (
        3, 0.001, False, (1, 2), None)  # fmt: skip


def test_paper_recipe_defaults():
    c = TrainConfig()
    assert (c.lr, c.batch_size, c.crop_size, c.epochs, c.threshold) == (0.01, 16, 512, 30, 0.5)
    assert (c.encoder_name, c.encoder_weights, c.pyramid_bins) == ("resnet34", "imagenet", (1, 2, 3, 6))


# --------------------------------------------------------------------------- data before training


def _copy_fixture(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE / "AerialImageDataset", tmp_path / "data" / "AerialImageDataset")).parent


def _poke_mask(root: Path, name: str, value: int) -> Path:
    path = root / "AerialImageDataset" / "train" / "gt" / name
    with rasterio.open(path, "r+") as dst:
        mask = dst.read(1)
        mask[3, 4] = value
        dst.write(mask, 1)
    return path


def test_bad_tiles_are_refused_before_training_all_named(tmp_path):
    root = _copy_fixture(tmp_path)
    bad = [_poke_mask(root, "austin6.tif", 128), _poke_mask(root, "tyrol-w1.tif", 7)]
    config = tiny(tmp_path, data_dir=str(root))
    with pytest.raises(InriaDataError) as error:
        train(config)
    assert all(str(path) in str(error.value) for path in bad)
    assert not (Path(config.out_dir) / "config.yaml").exists()


def test_a_worker_error_names_the_file(tmp_path):
    root = _copy_fixture(tmp_path)
    bad = _poke_mask(root, "austin6.tif", 128)
    config = tiny(tmp_path, data_dir=str(root), check_data=False, workers=1, samples_per_tile=8, crop_size=64)
    with pytest.raises(InriaDataError) as error:
        train(config)
    message = str(error.value)
    assert str(bad) in message and "DataLoader worker" not in message and "128" in message


def test_validation_scores_only_pixels_of_the_tiles(tmp_path):
    # 128 px crops of 64 x 80 tiles: most of each crop is padding, which must not count
    config = tiny(tmp_path, crop_size=128)
    val_set = InriaDataset.from_config(config.data_config, "val")
    loader = make_loader(val_set, 2, None, 0, torch.device("cpu"))
    torch.manual_seed(0)
    metrics = validate(PLinkNet.from_config(config.model_config), loader, DiceBCELoss(), torch.device("cpu"), config)
    pixels = sum(t.height * t.width for t in val_set.tiles)
    assert metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"] == pixels == 2 * 64 * 80


# --------------------------------------------------------------------------- distributed (gloo, 2 processes)


def test_two_process_ddp_on_cpu(tmp_path):
    config = tiny(tmp_path, "ddp", epochs=2)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    code, _, stderr = run_killable([*TORCHRUN, "-m", "plinknet", "train", "--config", str(config_file),
                                    "--device", "cpu"])  # fmt: skip
    assert code == 0, stderr[-3000:]
    rows = read_history(config.out_dir)
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 alone wrote, once per epoch
    assert not list(Path(config.out_dir).glob("*.tmp"))
    state = torch.load(Path(config.out_dir) / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    # batch_size is the global batch: 2 processes x 1 image, as many steps per epoch as one process of 2 images
    (ddp,) = state["launches"]
    assert (ddp["world_size"], ddp["batch_per_process"], ddp["global_batch"]) == (2, 1, 2)
    assert "CUDA-only" in ddp["batchnorm"] and ddp["precision"] == "fp32"
    assert state["provenance"]["launch"] == ddp
    train(TrainConfig.from_run(config.out_dir, epochs=3), resume=True)  # resumed in one process
    state = torch.load(Path(config.out_dir) / "last.pt", weights_only=True)
    first, single = state["launches"]
    assert first == ddp and (single["from_epoch"], single["world_size"], single["batch_per_process"]) == (3, 1, 2)
    assert single["steps_per_epoch"] == ddp["steps_per_epoch"] > 1
    assert "2 process(es) x 1 images = global batch 2" in (Path(config.out_dir) / "config.yaml").read_text()
    assert TrainConfig.from_yaml(Path(config.out_dir) / "config.yaml").batch_size == 2  # still a --config file


def test_validation_counts_summed_over_processes_equal_one_process(tmp_path):
    config = tiny(tmp_path, crop_size=64)
    torch.manual_seed(0)
    model = PLinkNet.from_config(config.model_config)
    val_set = InriaDataset.from_config(config.data_config, "val")
    single = validate(model, make_loader(val_set, 3, None, 0, torch.device("cpu")), DiceBCELoss(),
                      torch.device("cpu"), config)  # fmt: skip
    code, _, stderr = run_killable([*TORCHRUN, str(HERE / "ddp_worker.py"), "validate", str(FIXTURE), str(tmp_path)])
    assert code == 0, stderr[-3000:]
    import json

    summed = json.loads((tmp_path / "counts.json").read_text())
    assert summed == {k: single[k] for k in ("tp", "fp", "fn", "tn")}


def test_nan_on_one_rank_stops_every_rank(tmp_path):
    code, _, stderr = run_killable([*TORCHRUN, str(HERE / "ddp_worker.py"), "nan", str(FIXTURE), str(tmp_path)],
                                   timeout=180)  # fmt: skip
    assert code == 0, stderr[-3000:]
    outcomes = [(tmp_path / f"rank{k}.txt").read_text() for k in (0, 1)]
    assert outcomes == ["TrainingDiverged", "TrainingDiverged"]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_every_rank_issues_the_same_collectives_when_one_has_no_validation_window(tmp_path):
    """3 gloo processes, 2 validation windows: rank 2 validates nothing. Under NCCL a collective that one rank skips
    hangs or corrupts the next; gloo lets it pass, so the sequences are compared instead."""
    threeway = [*TORCHRUN[:-1], "--nproc_per_node=3"]
    code, _, stderr = run_killable([*threeway, str(HERE / "ddp_worker.py"), "collectives", str(FIXTURE),
                                    str(tmp_path)], timeout=300)  # fmt: skip
    assert code == 0, stderr[-3000:]
    sequences = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in range(3)]
    assert sequences[0] == sequences[1] == sequences[2], sequences
    assert "broadcast" in sequences[0]  # the BatchNorm buffers, made rank 0's on every rank
    config = TrainConfig.from_run(tmp_path / "run")  # the same 2 windows, validated in one process
    model, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    val_set = train_module._every_nth_tile_window(InriaDataset.from_config(config.data_config, "val"), 1)
    assert len(val_set) == 2
    single = validate(model, make_loader(val_set, 1, None, 0, torch.device("cpu")), DiceBCELoss(),
                      torch.device("cpu"), config)  # fmt: skip
    assert json.loads((tmp_path / "counts.json").read_text()) == {k: single[k] for k in ("tp", "fp", "fn", "tn")}


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(train_module.distributed, "init", lambda device: (0, 3))  # as under torchrun, 3 processes
    with pytest.raises(ConfigError, match=r"batch_size \(--batch-size\) 4 is the global batch and does not divide "
                       r"among 3 processes; give a multiple of 3 \(3 or 6\)"):  # fmt: skip
        train(tiny(tmp_path, batch_size=4))
    assert not (tmp_path / "run").exists()
    assert train_module.batch_per_process(16, 8) == 2 and train_module.batch_per_process(16, 1) == 16


def test_fp16_trains_with_a_loss_scaler_kept_across_a_resume(tmp_path, monkeypatch):
    """The fp16 path of GPUs without bf16, exercised on the CPU (which autocasts to fp16 and scales losses too)."""
    fp16 = lambda device, amp=True: "fp16" if amp else "fp32"  # noqa: E731
    monkeypatch.setattr(device_module, "precision", fp16)  # autocast, the scaler and the launch record
    run = train(tiny(tmp_path, epochs=1))
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["launches"][0]["precision"] == "fp16 autocast with a loss scaler"
    steps = state["launches"][0]["steps_per_epoch"]
    assert state["scaler"]["scale"] > 1 and state["scaler"]["_growth_tracker"] == steps  # finite steps counted
    assert np.isfinite(read_history(run)[0]["train_loss"])
    train(TrainConfig.from_run(run, epochs=2), resume=True)
    assert torch.load(run / "last.pt", weights_only=True)["scaler"]["_growth_tracker"] == 2 * steps  # not restarted
    assert "scaler" not in torch.load(run / "best.pt", weights_only=True)


def test_resume_never_downloads_encoder_weights(tmp_path, monkeypatch):
    run = train(tiny(tmp_path, epochs=1))
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"]["encoder_weights"] = "imagenet"  # as trained online, from ImageNet
    state["model_config"]["encoder_weights"] = "imagenet"
    torch.save(state, run / "last.pt")
    import plinknet.model as model_module

    real = model_module.build_encoder

    def offline(name, weights):  # a compute node without internet
        if weights is not None:
            raise AssertionError(f"resume tried to fetch {weights} weights")
        return real(name, weights)

    monkeypatch.setattr(model_module, "build_encoder", offline)
    train(TrainConfig.from_run(run, epochs=2), resume=True)
    assert [r["epoch"] for r in read_history(run)] == [1, 2]


def test_an_explicit_gpu_index_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match="every process on GPU 1"):
        train_module.resolve_device("cuda:1")


# --------------------------------------------------------------------------- GPU (skipped without CUDA)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_channels_last_training_step_on_cuda(tmp_path):
    run = train(tiny(tmp_path, epochs=1, device="cuda", amp=True, channels_last=True, batch_size=4,
                     samples_per_tile=4))  # fmt: skip
    row = read_history(run)[0]
    assert np.isfinite(row["train_loss"]) and 0 <= row["iou"] <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reductions_in_a_one_process_nccl_group(tmp_path):
    import torch.distributed as dist

    from plinknet import distributed

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.cuda.set_device(0)
        counts = torch.tensor([1, 2, 3, 4], dtype=torch.int64)  # on the CPU, as validation keeps them
        assert torch.equal(distributed.all_reduce(counts), counts)
        assert distributed.all_reduce(counts).device.type == "cpu"
        assert distributed.any_rank(torch.tensor(True, device="cuda"))
        assert not distributed.any_rank(False)
        assert distributed.all_gather_objects(["x"]) == [["x"]]
        distributed.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_with_nccl_sum_the_counts_and_synchronise_batchnorm(tmp_path):
    import os

    config = tiny(tmp_path, crop_size=64, device="cuda", amp=False)
    torch.manual_seed(0)
    model = PLinkNet.from_config(config.model_config).to("cuda:0")
    val_set = InriaDataset.from_config(config.data_config, "val")
    single = validate(model, make_loader(val_set, 3, None, 0, torch.device("cuda:0")), DiceBCELoss(),
                      torch.device("cuda:0"), config)  # fmt: skip
    env = {**os.environ, "PLINKNET_TEST_DEVICE": "cuda"}
    code, _, stderr = run_killable([*TORCHRUN, str(HERE / "ddp_worker.py"), "validate", str(FIXTURE), str(tmp_path)],
                                   env=env)  # fmt: skip
    assert code == 0, stderr[-3000:]
    summed = json.loads((tmp_path / "counts.json").read_text())
    assert summed == {k: single[k] for k in ("tp", "fp", "fn", "tn")}  # a no-op all-reduce gives rank 0's half

    run = tiny(tmp_path, "nccl", epochs=1, device="cuda", batch_size=4)
    config_file = tmp_path / "nccl.yaml"
    config_file.write_text(yaml.safe_dump(run.to_dict()))
    code, _, stderr = run_killable([*TORCHRUN, "-m", "plinknet", "train", "--config", str(config_file)])
    assert code == 0, stderr[-3000:]
    (launch,) = torch.load(Path(run.out_dir) / "last.pt", weights_only=True)["launches"]
    assert launch["world_size"] == 2 and launch["batch_per_process"] == 2 and launch["batchnorm"].startswith("Sync")


def test_the_validation_loader_keeps_no_idle_workers(tmp_path, monkeypatch):
    """On CUDA the training loader's workers persist between epochs; the validation loader's do not (they would sit
    idle through every training epoch: 8 processes per run)."""
    make_loader, persistent = train_module.make_loader, []

    def recording(*args, **kwargs):
        persistent.append(kwargs.get("persistent", True))
        return make_loader(*args, **kwargs)

    monkeypatch.setattr(train_module, "make_loader", recording)
    train(tiny(tmp_path, epochs=1))
    assert persistent == [True, False]  # the training loader, then the validation loader
    cuda = torch.device("cuda:0")
    assert make_loader(range(4), 2, None, 2, cuda).persistent_workers
    assert not make_loader(range(4), 2, None, 2, cuda, persistent=False).persistent_workers


def test_rank_zero_downloads_first_and_the_others_wait(monkeypatch):
    from plinknet import distributed

    for rank in (0, 1):
        events = []
        monkeypatch.setattr(distributed, "rank_and_size", lambda rank=rank: (rank, 2))
        monkeypatch.setattr(distributed, "barrier", lambda events=events: events.append("barrier"))
        with distributed.rank_zero_first():
            events.append("download")
        assert events == (["download", "barrier"] if rank == 0 else ["barrier", "download"])


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A 2-epoch run trained without interruption, to compare the interrupted ones with."""
    return train(tiny(tmp_path_factory.mktemp("reference"), epochs=2))


@pytest.mark.parametrize(("killed_after", "epoch"), [("last.pt", 2), ("best.pt", 1), ("history.csv", 2)])
def test_a_kill_between_an_epochs_saves_leaves_a_run_that_finishes(tmp_path, monkeypatch, two_epochs, killed_after,
                                                                    epoch):  # fmt: skip
    """Killed right after one of an epoch's saves (best.pt is written only when an epoch improves: the first always
    does), the next call finishes or resumes the run as if nothing had happened; it is never stuck as 'already
    trained' without its best.pt or history."""
    saves, history_writer, written = train_module.save_torch, train_module._write_history, []

    def kill_if_due(name: str) -> None:
        written.append(name)
        if name == killed_after and written.count(name) == epoch:
            raise KeyboardInterrupt  # as a SIGKILL right after this save: the rest of the epoch is not saved

    def save(obj, path):
        saves(obj, path)
        kill_if_due(Path(path).name)

    def history(path, rows):
        history_writer(path, rows)
        kill_if_due("history.csv")

    config = tiny(tmp_path, epochs=2)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_torch", save)
        patch.setattr(train_module, "_write_history", history)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    run = train_or_reuse(config)
    assert _history(run) == _history(two_epochs)
    best, expected = (torch.load(folder / "best.pt", weights_only=True) for folder in (run, two_epochs))
    assert best["epoch"] == expected["epoch"]
    assert all(torch.equal(best["model"][k], expected["model"][k]) for k in expected["model"])
    with pytest.raises(RunFolderError, match="already trained 2 of 2"):  # finished, not stuck
        train(config, resume=True)


def test_a_run_is_not_resumed_on_data_replaced_under_it(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    config = tiny(tmp_path, data_dir=str(data), epochs=2)
    stop_after_first_epoch(train, config)
    before = fingerprint(config.out_dir)
    masks = sorted((data / "AerialImageDataset" / "train" / "gt").iterdir())
    with rasterio.open(masks[0]) as src:
        profile, pixels = src.profile, src.read()
    with rasterio.open(masks[0], "w", **{**profile, "compress": "deflate"}) as dst:  # another file, another size
        dst.write(1 - pixels)
    for resume in (lambda: train(config, resume=True), lambda: train_or_reuse(config)):
        with pytest.raises(RunFolderError, match=rf"other data than {data} holds now \(1 file\(s\) of another size: "
                                                 rf"train/gt/{masks[0].name}\)"):  # fmt: skip
            resume()
    assert fingerprint(config.out_dir) == before
