"""End to end through the real `plinknet` command: synth -> train -> evaluate -> predict."""

import argparse
import dataclasses
import inspect
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from plinknet.cli import _add_dataclass_options, main


def plinknet(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "plinknet", *map(str, args)], capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_synth_train_evaluate_predict(tmp_path):
    data = tmp_path / "sample"
    plinknet("synth", "--out", data, "--seed", "1", "--tile-size", "128", "--train-tiles", "1", "--val-tiles", "1")
    run = tmp_path / "run"
    plinknet("train", "--data-dir", data, "--out-dir", run, "--encoder-name", "resnet18", "--encoder-weights",
             "none", "--epochs", "1", "--batch-size", "4", "--crop-size", "64", "--samples-per-tile", "2",
             "--workers", "0", "--no-progress", "--pyramid-bins", "1", "2")  # fmt: skip
    assert (run / "best.pt").is_file() and (run / "history.csv").is_file()

    result = plinknet("evaluate", "--data-dir", data, "--checkpoint", run / "best.pt", "--quiet", "--device", "cpu")
    assert "overall" in result.stdout and "gridtown" in result.stdout
    report = json.loads((run / "metrics.json").read_text())
    assert set(report["per_city"]) == {"gridtown", "suburbia", "farmland", "alpine", "oldtown"}
    total = sum(report["overall"][k] for k in ("tp", "fp", "fn", "tn"))
    assert total == 5 * 128 * 128  # every pixel of every validation tile counted once

    scene = data / "AerialImageDataset" / "train" / "images" / "suburbia1.tif"
    out = tmp_path / "mask.tif"
    plinknet("predict", "--checkpoint", run / "best.pt", scene, out, "--geojson", tmp_path / "b.geojson",
             "--quiet", "--device", "cpu")  # fmt: skip
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        assert set(np.unique(dst.read(1))) <= {0, 255}
    assert json.loads((tmp_path / "b.geojson").read_text())["type"] == "FeatureCollection"


def test_user_errors_are_one_line(tmp_path):
    result = plinknet("train", "--data-dir", tmp_path / "nowhere", "--encoder-weights", "none", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr and "Traceback" not in result.stderr
    result = plinknet("train", "--config", tmp_path / "missing.yaml", check=False)
    assert result.returncode == 1 and "missing.yaml" in result.stderr


def test_help_lists_training_options():
    out = plinknet("train", "--help").stdout
    for option in ("--lr", "--batch-size", "--pyramid-bins", "--encoder-weights", "--resume", "--config"):
        assert option in out


def _option_help(help_text: str) -> dict[str, str]:
    """``--flag`` -> its help, whitespace collapsed, from argparse's formatted help."""
    blocks = re.split(r"\n  (?=-)", help_text.split("\noptions:", 1)[1])
    return {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks if block.startswith("-")}


def test_help_says_what_each_training_option_does(capsys, monkeypatch):
    from plinknet.train import TrainConfig

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = _option_help(capsys.readouterr().out)
    # the comment after each one-line field, read here with a plain regex over the source
    comments = dict(re.findall(r"^\s+(\w+): [^\n]*? = [^\n]*?  # ([^\n]+)$", inspect.getsource(TrainConfig), re.M))
    assert len(comments) >= len(dataclasses.fields(TrainConfig)) // 2
    for field in dataclasses.fields(TrainConfig):
        help_text = options["--" + field.name.replace("_", "-")]
        assert f"default: {field.default!r}" in help_text
        if field.name in comments:
            assert " ".join(comments[field.name].split()) in help_text


@dataclasses.dataclass
class _Example:
    """Fields written in every way the help reader must handle."""

    rate: float = 0.5  # 50% of the time
    sizes: tuple[int, ...] = (  # one size
        64,
        128,
    )  # per level
    plain: int = 3
    names: list = dataclasses.field(default_factory=list)  # noqa: RUF009
    flag: bool = False  # turn it on


def test_dataclass_option_help_from_comments_help():
    parser = argparse.ArgumentParser()
    _add_dataclass_options(parser, _Example)
    helps = {action.dest: action.help % {} for action in parser._actions}
    assert helps["rate"] == "50% of the time (default: 0.5)"
    assert helps["sizes"] == "one size per level (default: (64, 128); space separated)"
    assert helps["plain"] == "default: 3"
    assert helps["names"] == "default: []"
    assert helps["flag"] == "turn it on (default: False)"
    assert vars(parser.parse_args([])) == {}  # options not given stay out of the namespace
    assert vars(parser.parse_args(["--rate", "0.1", "--no-flag"])) == {"rate": 0.1, "flag": False}


FIXTURE = __import__("pathlib").Path(__file__).parent / "data" / "inria"


@pytest.mark.parametrize(
    ("args", "yaml_text", "named"),
    [
        (["--epochs", "0"], None, "epochs (--epochs) must be at least 1"),
        (["--samples-per-tile", "0"], None, "samples_per_tile"),
        (["--pyramid-bins", "0"], None, "pyramid_bins"),
        (["--threshold", "1.5"], None, "threshold"),
        (["--lr", "nan"], None, "lr"),
        (["--crop-size", "100"], None, "crop_size"),
        (["--encoder-name", "resnet-34"], None, "encoder_name"),
        (["--encoder-weights", "missing.pth"], None, "encoder_weights"),
        ([], "lr: 1e-3\nepochs: 0\n", "epochs"),  # lr read as a number; epochs then refused
        ([], 'epochs: "ten"\n', "epochs (--epochs): expected an integer, got 'ten'"),
        ([], "- lr\n- 0.1\n", "mapping of `option: value`"),
        ([], "lr: [0.1\n", "not valid YAML at line 2"),
        ([], "learning_rate: 0.1\n", "unknown option(s) ['learning_rate']"),
    ],
)
def test_bad_options_are_one_line_before_any_work(tmp_path, args, yaml_text, named):
    out = tmp_path / "run"
    extra = []
    if yaml_text is not None:
        (tmp_path / "c.yaml").write_text(yaml_text)
        extra = ["--config", tmp_path / "c.yaml"]
    result = plinknet("train", "--data-dir", FIXTURE, "--out-dir", out, "--encoder-weights", "none", *extra, *args,
                      check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert named in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists()  # nothing was started


def test_resume_without_a_run_is_an_error(tmp_path):
    result = plinknet("train", "--data-dir", FIXTURE, "--out-dir", tmp_path / "run", "--resume", check=False)
    assert result.returncode == 1 and "cannot resume" in result.stderr and "last.pt does not exist" in result.stderr


def test_check_data_lists_every_problem(tmp_path):
    result = plinknet("check-data", "--data-dir", FIXTURE, "--quiet")
    assert "4 tile(s) checked, every one readable and sound" in result.stdout
    empty = tmp_path / "empty" / "AerialImageDataset" / "train"
    (empty / "images").mkdir(parents=True)
    (empty / "gt").mkdir()
    result = plinknet("check-data", "--data-dir", tmp_path / "empty", "--quiet", check=False)
    assert result.returncode == 1 and "no tile in" in result.stdout and "readable and sound" not in result.stdout
    broken = tmp_path / "data"
    __import__("shutil").copytree(FIXTURE, broken)
    (broken / "AerialImageDataset/train/images/austin6.tif").write_bytes(b"not a tiff")
    (broken / "AerialImageDataset/train/gt/tyrol-w1.tif").unlink()
    result = plinknet("check-data", "--data-dir", broken, "--quiet", check=False)
    assert result.returncode == 1
    assert "austin6.tif" in result.stdout and "tyrol-w1.tif" in result.stdout
    assert "2 problem(s)" in result.stderr


BAD_BENCH = [["train", "--steps", "0"], ["train", "--batch-size", "0"], ["data", "--workers", "-1"],
             ["data", "--crops", "0"]]


@pytest.mark.parametrize("args", BAD_BENCH)
def test_bench_options_are_checked(args):
    result = plinknet("bench", *args, check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and args[1] in result.stderr


def test_resume_from_the_command_line_takes_the_saved_recipe(tmp_path):
    run = tmp_path / "run"
    common = ["--out-dir", run, "--no-progress", "--workers", "0"]
    plinknet("train", "--data-dir", FIXTURE, "--encoder-name", "resnet18", "--encoder-weights", "none", "--epochs",
             "1", "--crop-size", "64", "--batch-size", "2", "--samples-per-tile", "2", "--lr", "0.02",
             *common)  # fmt: skip
    refused = plinknet("train", "--resume", "--epochs", "2", "--lr", "0.5", *common, check=False)
    assert refused.returncode == 1 and "lr: saved 0.02, given 0.5" in refused.stderr
    again = plinknet("train", "--data-dir", FIXTURE, "--encoder-weights", "none", *common, check=False)
    assert again.returncode == 1 and "already holds a run" in again.stderr
    plinknet("train", "--resume", "--epochs", "2", *common)  # only what is typed changes
    saved = __import__("yaml").safe_load((run / "config.yaml").read_text())
    assert (saved["epochs"], saved["lr"], saved["crop_size"], saved["encoder_name"]) == (2, 0.02, 64, "resnet18")


def test_no_abbreviation_replaces_an_option(capsys):
    from plinknet.cli import build_parser

    with pytest.raises(SystemExit):  # `--seed` once stood for `--seeds` and silently replaced the seeds
        build_parser().parse_args(["ablate", "--seeds", "0", "1", "--seed", "0", "--out", "x"])
    assert "unrecognized arguments: --seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--epoch", "3"])


def test_the_data_folder_is_data_dir_everywhere_and_the_old_spellings_warn(tmp_path):
    from plinknet.cli import build_parser

    for command in (["evaluate", "--checkpoint", "c.pt"], ["bench", "data"]):
        args = build_parser().parse_args([*command, "--data-dir", "d"])
        assert str(args.data_dir) == "d"
        with pytest.warns(FutureWarning, match="--data is deprecated.*use --data-dir"):
            args = build_parser().parse_args([*command, "--data", "d"])
        assert str(args.data_dir) == "d"
    for command in (["train"], ["ablate", "--seeds", "0", "--out", "x"]):
        assert str(build_parser().parse_args([*command, "--data-dir", "d"]).data_dir) == "d"
    result = plinknet("check-data", FIXTURE, "--quiet")  # the old positional folder still works, and says so
    assert "4 tile(s) checked" in result.stdout and "deprecated" in result.stderr and "--data-dir" in result.stderr
    result = plinknet("check-data", "--quiet", check=False)
    assert result.returncode == 1 and "needs --data-dir" in result.stderr


def test_gpu_errors_are_printed_whole_with_the_rank(monkeypatch, capsys):
    """A CUDA out-of-memory or NCCL error says which call failed and why only in its later lines: all of them."""
    import plinknet.cli as cli

    nccl = ("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error (run with NCCL_DEBUG=INFO for details)\n"
            "Last error:\nCuda failure 'out of memory'")  # fmt: skip

    def fail(args):
        raise RuntimeError(nccl)

    monkeypatch.setattr(cli, "run", fail)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["check-data", "--data-dir", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("plinknet check-data: error: rank 1: RuntimeError: NCCL error in:")
    assert "Cuda failure 'out of memory'" in err

    def user_error(args):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(cli, "run", user_error)
    assert cli.main(["check-data", "--data-dir", "x"]) == 1
    assert capsys.readouterr().err.strip() == "plinknet check-data: error: first line"  # a user's error: one line
