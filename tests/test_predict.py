import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from plinknet.cli import main
from plinknet.data import normalize
from plinknet.model import PLinkNet
from plinknet.predict import PredictConfig, blend_weights, predict_file, predict_scene, window_starts
from plinknet.train import save_atomic

CRS = "EPSG:32616"
TRANSFORM = from_origin(620000.0, 3350000.0, 0.3, 0.3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = PLinkNet(encoder_name="resnet18").eval()
    with torch.no_grad():  # a non-trivial output: sharpen the random head
        net.decoder.classifier.weight.mul_(20)
    return net


@pytest.fixture(scope="module")
def scene():
    """A smooth 'scene' (blobs), so a good tiled prediction should not show seams."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :232]
    image = np.zeros((200, 232, 3))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, 200), rng.uniform(0, 232), rng.uniform(8, 30)
        image += rng.uniform(40, 120, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None]
    return np.clip(image + 60, 0, 255).astype(np.uint8)


def write_scene(path, image, crs=CRS):
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=3,
                       dtype="uint8", crs=crs, transform=TRANSFORM) as dst:  # fmt: skip
        dst.write(image.transpose(2, 0, 1))
    return path


@pytest.fixture()
def checkpoint(tmp_path, model):
    path = tmp_path / "model.pt"
    save_atomic({"model": model.state_dict(), "model_config": model.config.to_dict(), "config": {}}, path)
    return path


def test_window_starts_cover_everything():
    for length, window, overlap in [(5000, 512, 128), (1000, 256, 64), (100, 256, 64), (512, 512, 0)]:
        starts = window_starts(length, window, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[-1] + min(window, length) == length
    assert len(window_starts(5000, 512, 128)) == 13


def test_blend_weights_fade_to_edges():
    w = blend_weights(64, 16)
    assert w[32, 32] == 1 and w[0, 0] < w[0, 32] < w[32, 32] and (w > 0).all()
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.T)


def test_single_window_equals_whole_image_prediction(model, scene):
    image = scene[:192, :192]
    whole = torch.sigmoid(model(normalize(image)[None]))[0, 0].detach().numpy()
    tiled = predict_scene(model, image, PredictConfig(window=256), device="cpu", progress=False)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_prediction_is_close_to_whole_image(model, scene):
    image = scene[:192, :224]
    whole = torch.sigmoid(model(normalize(image)[None]))[0, 0].detach().numpy()
    tiled = predict_scene(model, image, PredictConfig(window=128, overlap=64, batch_size=3), device="cpu",
                          progress=False)  # fmt: skip
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).mean() < 0.05
    assert ((tiled > 0.5) == (whole > 0.5)).mean() > 0.95


def test_scene_not_multiple_of_32_is_padded(model, scene):
    prob = predict_scene(model, scene[:150, :170], PredictConfig(window=128, overlap=32), "cpu", progress=False)
    assert prob.shape == (150, 170) and np.isfinite(prob).all()


def test_predict_file_keeps_georeference(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "scene.tif", scene)
    out = predict_file(checkpoint, src, tmp_path / "out" / "mask.tif", geojson=tmp_path / "b.geojson",
                       config=PredictConfig(window=128, overlap=32), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(out) as dst:
        assert dst.crs.to_string() == CRS and dst.transform == TRANSFORM
        mask = dst.read(1)
    assert mask.shape == scene.shape[:2] and set(np.unique(mask)) <= {0, 255}
    collection = json.loads((tmp_path / "b.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == CRS
    if mask.any():
        x, y = collection["features"][0]["geometry"]["coordinates"][0][0]
        assert 620000 <= x <= 620000 + 232 * 0.3 and 3350000 - 200 * 0.3 <= y <= 3350000
    prob = predict_file(checkpoint, src, tmp_path / "p.tif", probabilities=True,
                        config=PredictConfig(window=128, overlap=32), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(prob) as dst:
        p = dst.read(1)
    assert ((p > 127) == (mask > 0)).mean() > 0.99


def test_no_crs_input_works(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "nocrs.tif", scene[:64, :64], crs=None)
    out = predict_file(checkpoint, src, tmp_path / "m.tif", geojson=tmp_path / "g.geojson", device="cpu",
                       progress=False)  # fmt: skip
    with rasterio.open(out) as dst:
        assert dst.crs is None
    assert "crs" not in json.loads((tmp_path / "g.geojson").read_text())


def _cli(capsys, *args):
    code = main(["predict", *map(str, args), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    return code, err


def test_bad_inputs_give_one_line_errors(tmp_path, capsys, checkpoint, scene):
    good = write_scene(tmp_path / "scene.tif", scene[:64, :64])
    not_raster = tmp_path / "notes.tif"
    not_raster.write_text("not a raster")
    one_band = tmp_path / "gray.tif"
    with rasterio.open(one_band, "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    mismatched = tmp_path / "mismatch.pt"
    state = torch.load(checkpoint, weights_only=False)
    state["model_config"]["pyramid_bins"] = []
    torch.save(state, mismatched)
    cases = [
        (("--checkpoint", checkpoint, not_raster, tmp_path / "o.tif"), "not a raster"),
        (("--checkpoint", checkpoint, one_band, tmp_path / "o.tif"), "1 band"),
        (("--checkpoint", tmp_path / "missing.pt", good, tmp_path / "o.tif"), "missing.pt"),
        (("--checkpoint", other, good, tmp_path / "o.tif"), "not a plinknet checkpoint"),
        (("--checkpoint", mismatched, good, tmp_path / "o.tif"), "do not fit"),
        (("--checkpoint", checkpoint, tmp_path / "nothing.tif", tmp_path / "o.tif"), "nothing.tif"),
    ]
    for args, expected in cases:
        code, err = _cli(capsys, *args)
        assert code == 1, args
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
