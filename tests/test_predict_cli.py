"""``plinknet predict`` as a user types it: both forms, every option checked, many scenes, torchrun."""

import os

import numpy as np
import pytest
import rasterio
import torch
from helpers import TORCHRUN, run_killable, sharp_model, write_checkpoint
from predict_scenes import blobs, write_scene

from plinknet.cli import build_parser, main

# tiny windows on purpose (fast): the pyramid's warning about centre maps smaller than its bins is expected
pytestmark = pytest.mark.filterwarnings("ignore:the pyramid's centre map")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny windows run fastest on one thread, and do not stall when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(sharp_model(), tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture()
def scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    return [write_scene(folder / f"tile{k}.tif", blobs(96, 80 + 16 * k, seed=k)) for k in range(3)]


def predict(capsys, *args):
    code = main(["predict", *map(str, args), "--quiet", "--device", "cpu", "--backend", "torch"])
    out, err = capsys.readouterr()
    return code, out, err


def tags(path):
    with rasterio.open(path) as dst:
        return dst.tags()


def test_single_scene_form_and_window_from_checkpoint(tmp_path, capsys, checkpoint, scenes):
    code, out, err = predict(capsys, "--checkpoint", checkpoint, scenes[0], tmp_path / "m.tif", "--geojson")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "m.tif") and (tmp_path / "m.geojson").is_file()
    assert tags(tmp_path / "m.tif")["plinknet_window"] == "64"  # the training crop, not 512
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0], tmp_path / "o.tif", "--overlap", "20",
                           "--batch-size", "1")  # fmt: skip
    assert code == 0, err
    assert tags(tmp_path / "o.tif")["plinknet_overlap"] == "20"  # honoured without --window


@pytest.mark.parametrize(
    "options, named",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--overlap", "64"], "--overlap"),  # not smaller than the checkpoint's 64 px crop
        (["--window", "96", "--overlap", "100"], "--overlap"),
        (["--window", "8"], "--window"),
        (["--threshold", "1"], "--threshold"),
        (["--simplify", "-1"], "--simplify"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(tmp_path, capsys, checkpoint, scenes, options, named):
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0], tmp_path / "m.tif", *options)
    assert code == 1 and named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "m.tif").exists()


def test_bad_inputs_give_one_line_errors(tmp_path, capsys, checkpoint, scenes):
    not_raster = tmp_path / "notes.tif"
    not_raster.write_text("not a raster")
    one_band = tmp_path / "gray.tif"
    with rasterio.open(one_band, "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    mismatched = tmp_path / "mismatch.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["model_config"]["pyramid_bins"] = []
    torch.save(state, mismatched)
    good = scenes[0]
    cases = [
        ((checkpoint, not_raster), "not a raster"),
        ((checkpoint, one_band), "1 band"),
        ((tmp_path / "missing.pt", good), "missing.pt"),
        ((other, good), "not a plinknet checkpoint"),
        ((mismatched, good), "do not fit"),
        ((checkpoint, tmp_path / "nothing.tif"), "nothing.tif"),
    ]
    for (ckpt, source), expected in cases:
        for backend in ("torch", "auto"):
            code = main(["predict", "--checkpoint", str(ckpt), str(source), str(tmp_path / "o.tif"), "--quiet",
                         "--device", "cpu", "--backend", backend])  # fmt: skip
            err = capsys.readouterr().err
            assert code == 1, (ckpt, source)
            assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.tif").exists()


def test_never_overwrites_the_scene_or_the_checkpoint(tmp_path, capsys, checkpoint, scenes):
    before = scenes[0].read_bytes(), checkpoint.read_bytes()
    geojson_on_scene = [scenes[0], tmp_path / "m.tif", "--geojson", scenes[0]]
    geojson_on_mask = [scenes[0], tmp_path / "m.tif", "--geojson", tmp_path / "m.tif"]
    for args in ([scenes[0], scenes[0]], [scenes[0], checkpoint], geojson_on_scene, geojson_on_mask):
        code, _, err = predict(capsys, "--checkpoint", checkpoint, *args)
        assert code == 1 and "refusing to write" in err, err
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", scenes[0].parent,
                           "--probabilities")  # fmt: skip
    assert code == 0, err  # S_probability.tif beside S.tif: allowed, nothing clobbered
    assert (scenes[0].read_bytes(), checkpoint.read_bytes()) == before


def test_forms_are_told_apart(tmp_path, capsys, checkpoint, scenes):
    code, _, err = predict(capsys, "--checkpoint", checkpoint, *scenes)
    assert code == 1 and "--out-dir" in err, err
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0], "--out-dir", tmp_path / "o", "--geojson",
                           tmp_path / "x.geojson")  # fmt: skip
    assert code == 1 and "without a path" in err, err


def test_many_scenes_folders_globs_and_resume(tmp_path, capsys, checkpoint, scenes):
    extra = write_scene(tmp_path / "other.tif", blobs(70, 70, seed=9))
    out_dir = tmp_path / "out"
    code, out, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, str(tmp_path / "oth*.tif"),
                             "--out-dir", out_dir, "--geojson")  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    stems = ["other", "tile0", "tile1", "tile2"]
    assert names == sorted([f"{s}_buildings.tif" for s in stems] + [f"{s}_buildings.geojson" for s in stems])
    assert len(out.split()) == 4 and "4 scene(s) predicted, 0 already complete" in err
    with rasterio.open(extra) as src, rasterio.open(out_dir / "other_buildings.tif") as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    (out_dir / "tile1_buildings.geojson").unlink()  # polygons missing: traced again from the mask
    (out_dir / "tile2_buildings.tif").unlink()  # an interrupted run: that scene is predicted again
    code, out, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, str(tmp_path / "oth*.tif"),
                             "--out-dir", out_dir, "--geojson")  # fmt: skip
    assert code == 0 and "2 scene(s) predicted, 2 already complete" in err, err
    assert stamps[out_dir / "other_buildings.tif"] == (out_dir / "other_buildings.tif").stat().st_mtime_ns
    assert stamps[out_dir / "tile1_buildings.tif"] == (out_dir / "tile1_buildings.tif").stat().st_mtime_ns
    assert (out_dir / "tile1_buildings.geojson").is_file() and (out_dir / "tile2_buildings.tif").is_file()
    code, _, err = predict(capsys, "--checkpoint", checkpoint, tmp_path / "nowhere", "--out-dir", out_dir)
    assert code == 1 and "nowhere" in err


def test_torchrun_splits_scenes_between_ranks(tmp_path, capsys, checkpoint, scenes):
    """Two CPU processes under torchrun (no process group needed): scenes r::2 each, equal to one process."""
    cmd = [*TORCHRUN, "-m", "plinknet", "predict", "--checkpoint", str(checkpoint), str(scenes[0].parent),
           "--out-dir", str(tmp_path / "two"), "--device", "cpu", "--backend", "torch", "--quiet"]  # fmt: skip
    code, _, stderr = run_killable(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert code == 0, stderr[-3000:]
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", tmp_path / "one")
    assert code == 0, err
    ranks = {}
    for scene in scenes:
        name = f"{scene.stem}_buildings.tif"
        ranks[scene.stem] = tags(tmp_path / "two" / name)["plinknet_rank"]
        with rasterio.open(tmp_path / "two" / name) as a, rasterio.open(tmp_path / "one" / name) as b:
            assert np.array_equal(a.read(1), b.read(1))
    assert ranks == {"tile0": "0", "tile1": "1", "tile2": "0"}
    assert "rank 0: 2 scene(s) predicted" in stderr and "rank 1: 1 scene(s) predicted" in stderr


def test_help_says_what_each_option_does():
    sub = build_parser()._subparsers._group_actions[0].choices["predict"]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 15, action.option_strings
    text = sub.format_help()
    for option in ("--out-dir", "--geojson-wgs84", "--simplify", "--scale", "--overwrite", "--window", "--overlap",
                   "--batch-size", "--backend", "torchrun", "INPUT OUTPUT"):  # fmt: skip
        assert option in text


def test_outputs_of_another_checkpoint_or_option_are_not_reported_as_done(tmp_path, capsys, checkpoint, scenes):
    out_dir = tmp_path / "out"
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", out_dir)
    assert code == 0, err
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    other = sharp_model()
    with torch.no_grad():
        other.decoder.classifier.bias.add_(1.0)  # another network in a file of the same name
    (tmp_path / "again").mkdir()
    retrained = write_checkpoint(other, tmp_path / "again" / checkpoint.name)
    code, _, err = predict(capsys, "--checkpoint", retrained, scenes[0].parent, "--out-dir", out_dir)
    assert code == 1 and "checkpoint_sha256" in err and "--overwrite" in err, err
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", out_dir,
                           "--overlap", "8")  # fmt: skip
    assert code == 1 and "overlap 4 (now 8)" in err, err
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", out_dir,
                           "--threshold", "0.7")  # fmt: skip
    assert code == 1 and "threshold 0.5 (now 0.7)" in err, err
    assert {p: p.stat().st_mtime_ns for p in out_dir.iterdir()} == stamps  # refused before any work
    code, _, err = predict(capsys, "--checkpoint", retrained, scenes[0].parent, "--out-dir", out_dir, "--overwrite")
    assert code == 0 and "3 scene(s) predicted, 0 already complete" in err, err
    code, _, err = predict(capsys, "--checkpoint", retrained, scenes[0].parent, "--out-dir", out_dir)
    assert code == 0 and "0 scene(s) predicted, 3 already complete" in err, err


def test_an_output_folder_that_is_also_the_input_folder(tmp_path, capsys, checkpoint, scenes):
    folder = scenes[0].parent
    for _ in range(2):  # the second run must not take the first run's outputs for scenes
        code, _, err = predict(capsys, "--checkpoint", checkpoint, folder, "--out-dir", folder)
        assert code == 0, err
    assert "0 scene(s) predicted, 3 already complete" in err and "3 plinknet output(s) among the inputs" in err, err
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"tile{k}.tif" for k in range(3)] + [f"tile{k}_buildings.tif" for k in range(3)])


def test_a_truncated_scene_is_named(tmp_path, capsys, checkpoint, scenes):
    damaged = scenes[1]
    damaged.write_bytes(damaged.read_bytes()[:-300])
    code, _, err = predict(capsys, "--checkpoint", checkpoint, damaged, tmp_path / "m.tif")
    assert code == 1 and str(damaged) in err and "damaged or truncated" in err, err
    code, _, err = predict(capsys, "--checkpoint", checkpoint, scenes[0].parent, "--out-dir", tmp_path / "out")
    assert code == 1 and str(damaged) in err, err


def test_a_path_with_glob_characters_is_the_path_itself(tmp_path):
    from plinknet.infer.scenes import find_scenes

    for name in ("scene[1].tif", "scene1.tif", "a*b.tif"):
        (tmp_path / name).write_bytes(b"")
    assert find_scenes([tmp_path / "scene[1].tif"]) == [tmp_path / "scene[1].tif"]  # not scene1.tif
    assert find_scenes([tmp_path / "a*b.tif"]) == [tmp_path / "a*b.tif"]
    assert find_scenes([str(tmp_path / "scene?.tif")]) == [tmp_path / "scene1.tif"]  # a pattern: still one
    folder = tmp_path / "tiles[2024]"
    folder.mkdir()
    (folder / "x.tif").write_bytes(b"")
    assert find_scenes([folder]) == [folder / "x.tif"]
