"""The streaming sliding-window predictor, its backends and its GIS outputs, on tiny scenes."""

import json
import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
import rasterio
import torch
from helpers import sharp_model, write_checkpoint
from predict_scenes import CRS, TRANSFORM, blobs, write_scene

from plinknet.data import normalize
from plinknet.infer import PredictConfig, predict_file, predict_scene
from plinknet.infer.polygons import simplify_ring
from plinknet.infer.predict import (
    Tiling,
    blend_weights,
    building_polygons,
    iter_probabilities,
    window_starts,
    write_prediction,
)
from plinknet.infer.scenes import MASK_NODATA, SceneReader

# tiny windows on purpose (fast): the pyramid's warning about centre maps smaller than its bins is expected
pytestmark = pytest.mark.filterwarnings("ignore:the pyramid's centre map")
EAGER = {"backend": "torch"}  # most tests: eager PyTorch, no ONNX export to wait for


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny windows run fastest on one thread, and do not stall when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return sharp_model()


@pytest.fixture(scope="module")
def scene():
    return blobs(200, 232)


@pytest.fixture()
def checkpoint(tmp_path, model):
    return write_checkpoint(model, tmp_path / "model.pt")


def eager_windows(model, image, tiling):
    """The reference: every window through the eager network, blended over whole-scene accumulators."""
    height, width = image.shape[:2]
    logit_sum, weight_sum = np.zeros((height, width)), np.zeros((height, width))
    w = tiling.window
    with torch.no_grad():
        for r in tiling.rows:
            for c in tiling.cols:
                logits = model(normalize(image[r : r + w, c : c + w])[None])[0, 0].numpy()
                logit_sum[r : r + w, c : c + w] += logits * tiling.weights
                weight_sum[r : r + w, c : c + w] += tiling.weights
    return 1 / (1 + np.exp(-logit_sum / weight_sum))


# --------------------------------------------------------------------------- windows


def test_window_starts_cover_everything_evenly():
    for length, window, overlap in [(5000, 512, 128), (1000, 256, 64), (100, 256, 64), (512, 512, 0), (3072, 512, 32)]:
        starts = window_starts(length, window, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[0] == 0 and starts[-1] + min(window, length) == length
        shared = [window - (b - a) for a, b in zip(starts, starts[1:])]
        assert all(s >= overlap for s in shared) and (not shared or max(shared) - min(shared) <= 1)
    assert len(window_starts(5000, 512, 128)) == 13
    assert len(window_starts(5000, 512, 12)) == 10  # the spare 120 px become a 13 px overlap, not an extra window
    assert len(window_starts(3072, 512, 0)) == 6 and len(window_starts(3072, 512, 32)) == 7


def test_blend_weights_fade_to_edges():
    w = blend_weights(64, 16)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w[32, 32] == 1 and w[0, 0] < w[0, 32] < w[32, 32] and (w > 0).all()
    assert np.array_equal(w, w[::-1]) and np.array_equal(w, w.T)


def test_config_checks_name_the_option():
    for kwargs, name in [({"batch_size": 0}, "--batch-size"), ({"window": 64, "overlap": 64}, "--overlap"),
                         ({"threshold": 1.5}, "--threshold"), ({"backend": "tpu"}, "--backend")]:  # fmt: skip
        with pytest.raises(ValueError, match=name):
            PredictConfig(**kwargs)
    assert PredictConfig(overlap=40).for_checkpoint(64).window == 64
    assert PredictConfig().for_checkpoint(256).overlap == 16 and PredictConfig().for_checkpoint(None).window == 512
    with pytest.raises(ValueError, match="--overlap"):
        PredictConfig(overlap=64).for_checkpoint(64)


# --------------------------------------------------------------------------- equality with references


def test_single_window_equals_whole_image_prediction(model, scene):
    image = scene[:192, :192]
    whole = torch.sigmoid(model(normalize(image)[None]))[0, 0].detach().numpy()
    tiled = predict_scene(model, image, PredictConfig(window=256, **EAGER), device="cpu", progress=False)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_streamed_bands_equal_whole_scene_blending(model):
    """Band by band, with bounded buffers, equals blending over whole-scene arrays: at band boundaries too."""
    image = blobs(340, 150, seed=1)
    config = PredictConfig(window=64, overlap=12, batch_size=3, **EAGER)
    tiling = Tiling.plan(340, 150, 64, 12)
    assert len(tiling.rows) >= 6  # several bands
    streamed = predict_scene(model, image, config, device="cpu", progress=False)
    reference = eager_windows(model, image, tiling)
    np.testing.assert_allclose(streamed, reference, atol=1e-5)
    boundaries = [r for r in tiling.rows[1:]] + [r - 1 for r in tiling.rows[1:]]
    np.testing.assert_allclose(streamed[boundaries], reference[boundaries], atol=1e-5)


def test_default_backend_equals_eager_fp32_within_1e3(model, scene):
    """Whatever ``auto`` picks on the CPU (ONNX Runtime when installed) stays within 1e-3 of eager fp32."""
    config = PredictConfig(window=128, overlap=24)
    default = predict_scene(model, scene, config, device="cpu", progress=False)
    eager = predict_scene(model, scene, PredictConfig(window=128, overlap=24, **EAGER), device="cpu", progress=False)
    assert np.abs(default - eager).max() < 1e-3


def test_onnx_backend_when_installed(model, scene):
    pytest.importorskip("onnxruntime")
    from plinknet.infer.backends import Network, OnnxBackend

    network = Network(model=model, device=torch.device("cpu"))
    assert isinstance(network.backend(128), OnnxBackend)  # exported once, then cached in $PLINKNET_CACHE


def test_missing_onnxruntime_falls_back_to_pytorch(model, scene, monkeypatch):
    import plinknet.infer.backends as backends

    monkeypatch.setattr(backends, "_onnx_available", lambda: False)
    monkeypatch.setattr(backends, "_warned", set())
    with pytest.warns(RuntimeWarning, match="onnxruntime is not installed"):
        network = backends.Network(model=model, device=torch.device("cpu"))
    assert isinstance(network.backend(64), backends.TorchBackend)
    with pytest.raises(ValueError, match="needs onnxruntime"):
        backends.Network(model=model, device=torch.device("cpu"), backend="onnx")


def test_light_default_overlap_stays_close_to_a_heavy_one(model, scene):
    """The default overlap (window/16) against half a window: the blended maps agree, no seam shows."""
    light = predict_scene(model, scene, PredictConfig(window=64, **EAGER), device="cpu", progress=False)
    heavy = predict_scene(model, scene, PredictConfig(window=64, overlap=32, **EAGER), device="cpu", progress=False)
    assert np.abs(light - heavy).mean() < 0.02 and ((light > 0.5) == (heavy > 0.5)).mean() > 0.97
    # no seam: the jump between neighbouring columns at window joins is like that elsewhere
    joins = [c for c in Tiling.plan(*scene.shape[:2], 64, 4).cols[1:]]
    step = np.abs(np.diff(light, axis=1)).mean(axis=0)
    assert step[joins].mean() < 3 * step.mean()


def test_tiled_prediction_is_close_to_whole_image(model, scene):
    image = scene[:192, :224]
    whole = torch.sigmoid(model(normalize(image)[None]))[0, 0].detach().numpy()
    tiled = predict_scene(model, image, PredictConfig(window=128, overlap=64, batch_size=3, **EAGER), device="cpu",
                          progress=False)  # fmt: skip
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).mean() < 0.05
    assert ((tiled > 0.5) == (whole > 0.5)).mean() > 0.95


def test_scene_smaller_than_window_is_padded(model, scene):
    prob = predict_scene(model, scene[:150, :170], PredictConfig(window=512, **EAGER), "cpu", progress=False)
    assert prob.shape == (150, 170) and np.isfinite(prob).all()
    strip = predict_scene(model, scene[:40, :], PredictConfig(window=64, **EAGER), "cpu", progress=False)
    assert strip.shape == (40, 232) and np.isfinite(strip).all()


# --------------------------------------------------------------------------- memory


class _FakeNetwork:
    """Zero logits, at once: exercises the streaming bookkeeping without a network."""

    device = torch.device("cpu")

    def backend(self, window):
        return lambda windows: np.zeros(windows.shape[:3], np.float32)


def _peak_bytes(height, width):
    reader = SceneReader(np.zeros((height, width, 3), np.uint8))
    tracemalloc.start()
    for _ in iter_probabilities(_FakeNetwork(), reader, PredictConfig(window=128, overlap=8), progress=False):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_scene_height():
    short, tall = _peak_bytes(512, 600), _peak_bytes(4096, 600)
    assert tall < short * 1.2 + 100_000, (short, tall)  # 8x the rows, the same buffers


# --------------------------------------------------------------------------- files in, files out


def test_predict_file_keeps_georeference_and_writes_tiled_compressed_geotiff(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "scene.tif", blobs(300, 280, seed=2))
    out = predict_file(checkpoint, src, tmp_path / "out" / "mask.tif", geojson=tmp_path / "b.geojson",
                       config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(out) as dst:
        assert dst.crs.to_string() == CRS and dst.transform == TRANSFORM and dst.shape == (300, 280)
        assert dst.nodata == MASK_NODATA and dst.compression is not None and dst.profile["tiled"]
        assert dst.tags()["plinknet_window"] == "64"  # the checkpoint's training crop
        mask = dst.read(1)
    assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any() and (mask == 0).any()
    collection = json.loads((tmp_path / "b.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == CRS
    areas = [f["properties"]["area_m2"] for f in collection["features"]]
    assert sum(areas) == pytest.approx((mask == 255).sum() * 0.09, rel=1e-6)  # 0.3 m pixels
    x, y = collection["features"][0]["geometry"]["coordinates"][0][0]
    assert 620000 <= x <= 620000 + 280 * 0.3 and 3350000 - 300 * 0.3 <= y <= 3350000
    probabilities = predict_file(checkpoint, src, tmp_path / "p.tif", probabilities=True, geojson=tmp_path / "p.json",
                                 config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(probabilities) as dst:
        p = dst.read(1)
        assert dst.nodata == 255 and p.max() <= 254
    assert ((p > 127) == (mask > 0)).mean() > 0.99
    assert json.loads((tmp_path / "p.json").read_text())["features"] == collection["features"]
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.glob(".*"))  # no temporary file left


def test_nodata_and_alpha_become_nodata(tmp_path, checkpoint, model, monkeypatch):
    image = blobs(128, 256, seed=3)
    image[:, :128] = 0  # the left half: outside the survey
    nodata = write_scene(tmp_path / "nodata.tif", image, nodata=0)
    rgba = np.concatenate([blobs(128, 256, seed=3), np.full((128, 256, 1), 255, np.uint8)], axis=2)
    rgba[:, :128, 3] = 0
    alpha = write_scene(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    from plinknet.infer.backends import TorchBackend

    calls = []
    original = TorchBackend.__call__
    monkeypatch.setattr(TorchBackend, "__call__", lambda self, w: calls.append(len(w)) or original(self, w))
    for src in (nodata, alpha):
        calls.clear()
        out = predict_file(checkpoint, src, tmp_path / f"{src.stem}_mask.tif", config=PredictConfig(**EAGER),
                           device="cpu", progress=False)  # fmt: skip
        with rasterio.open(out) as dst:
            mask = dst.read(1)
        assert (mask[:, :128] == MASK_NODATA).all(), src
        assert set(np.unique(mask[:, 128:])) <= {0, 255}, src
        tiling = Tiling.plan(128, 256, 64, 4)
        assert sum(calls) < tiling.windows  # windows of nodata only are skipped
    prob = predict_scene(model, rgba, PredictConfig(window=64, **EAGER), "cpu", progress=False)
    assert np.isnan(prob[:, :128]).all() and np.isfinite(prob[:, 128:]).all()


def test_16_bit_scenes_are_refused_by_name_or_scaled(tmp_path, checkpoint):
    deep = (blobs(64, 64).astype(np.uint16) * 16).astype(np.uint16)
    src = write_scene(tmp_path / "deep.tif", deep)
    with pytest.raises(ValueError, match=r"deep\.tif holds uint16 pixels.*--scale"):
        predict_file(checkpoint, src, tmp_path / "m.tif", config=PredictConfig(**EAGER), device="cpu", progress=False)
    assert not (tmp_path / "m.tif").exists()
    out = predict_file(checkpoint, src, tmp_path / "m.tif", config=PredictConfig(**EAGER), device="cpu",
                       progress=False, scale=(0, 4095))  # fmt: skip
    reference = predict_file(checkpoint, write_scene(tmp_path / "byte.tif", blobs(64, 64)), tmp_path / "r.tif",
                             config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.98


def test_no_crs_warns_and_writes_pixel_coordinates(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "nocrs.tif", scene[:64, :64], crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        out = predict_file(checkpoint, src, tmp_path / "m.tif", geojson=tmp_path / "g.geojson",
                           config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    with rasterio.open(out) as dst:
        assert dst.crs is None
    collection = json.loads((tmp_path / "g.geojson").read_text())
    assert "crs" not in collection
    assert all(f["properties"]["area_m2"] is None for f in collection["features"])
    with pytest.raises(ValueError, match="no CRS"), pytest.warns(UserWarning):
        predict_file(checkpoint, src, tmp_path / "w.tif", geojson=tmp_path / "w.geojson", geojson_wgs84=True,
                     config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip


def test_polygons_simplify_and_wgs84(tmp_path):
    mask = np.zeros((40, 40), np.uint8)
    mask[5:20, 5:25] = 1
    mask[25:35, 10:12] = 1
    mask[25:27, 10:30] = 1  # an L
    reference = write_scene(tmp_path / "ref.tif", np.zeros((40, 40, 3), np.uint8))
    exact = building_polygons(mask, reference)
    assert sorted(round(f["properties"]["area_m2"], 3) for f in exact["features"]) == [
        round(56 * 0.09, 3), round(300 * 0.09, 3)]  # fmt: skip
    simple = building_polygons(mask, reference, simplify=0.5)
    vertices = [len(f["geometry"]["coordinates"][0]) for f in simple["features"]]
    assert vertices == [len(f["geometry"]["coordinates"][0]) for f in exact["features"]]  # staircase-free already
    ring = [[0, 0], [1, 0.01], [2, 0], [2, 2], [0, 2], [0, 0]]
    assert simplify_ring(ring, 0.1) == [[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]
    wgs84 = building_polygons(mask, reference, wgs84=True)
    assert "crs" not in wgs84
    lon, lat = wgs84["features"][0]["geometry"]["coordinates"][0][0]
    assert -90 < lon < -85 and 29 < lat < 31  # UTM 16N, 620 km E, 3350 km N: near Baton Rouge
    for feature in wgs84["features"]:  # RFC 7946: exterior rings counterclockwise
        x, y = np.asarray(feature["geometry"]["coordinates"][0]).T
        assert np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) > 0


def test_failed_prediction_leaves_no_file(tmp_path, checkpoint, scene, monkeypatch):
    from plinknet.infer.backends import TorchBackend

    def broken(self, windows):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(TorchBackend, "__call__", broken)
    src = write_scene(tmp_path / "scene.tif", scene)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_file(checkpoint, src, tmp_path / "m.tif", geojson=tmp_path / "b.geojson",
                     config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "scene.tif"]


def test_output_that_is_an_input_or_the_checkpoint_is_refused(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "scene.tif", scene)
    before = src.read_bytes()
    for output in (src, checkpoint):
        with pytest.raises(ValueError, match="refusing to write"):
            predict_file(checkpoint, src, output, config=PredictConfig(**EAGER), device="cpu", progress=False)
    assert src.read_bytes() == before


def test_mask_from_logits_equals_thresholded_probabilities():
    from plinknet.infer.predict import _mask_from_logits, sigmoid
    from plinknet.infer.scenes import encode_mask

    logits = np.random.default_rng(0).normal(0, 3, (64, 64)).astype(np.float32)
    logits[:5] = np.nan
    for threshold in (0.3, 0.5, 0.9):
        assert np.array_equal(_mask_from_logits(logits, threshold, True), encode_mask(sigmoid(logits), threshold))


def test_large_scene_says_so_at_the_start(tmp_path, checkpoint, scene, capsys, monkeypatch):
    import plinknet.infer.predict

    monkeypatch.setattr(plinknet.infer.predict, "LARGE_SCENE_WINDOWS", 4)
    src = write_scene(tmp_path / "scene.tif", scene)
    predict_file(checkpoint, src, tmp_path / "m.tif", config=PredictConfig(**EAGER), device="cpu", progress=False)
    err = capsys.readouterr().err.splitlines()
    assert "232 x 200 px" in err[0] and "windows of 64 px" in err[0] and "GB free" in err[0]
    assert "min at this pace" in err[1]


def test_write_prediction_marks_nan_as_nodata(tmp_path, scene):
    reference = write_scene(tmp_path / "ref.tif", scene)
    prob = np.full(scene.shape[:2], 0.9, np.float32)
    prob[:10] = np.nan
    with rasterio.open(write_prediction(prob, reference, tmp_path / "m.tif")) as dst:
        mask = dst.read(1)
        assert dst.nodata == MASK_NODATA and dst.crs.to_string() == CRS
    assert (mask[:10] == MASK_NODATA).all() and (mask[10:] == 255).all()


def test_outputs_read_by_an_outside_reader(tmp_path, checkpoint, scene):
    """GDAL's own tools (or fiona, GDAL's Python binding for vectors) read what we wrote."""
    gdalinfo, ogrinfo = shutil.which("gdalinfo"), shutil.which("ogrinfo")
    try:
        import fiona
    except ImportError:
        fiona = None
    if not (gdalinfo and ogrinfo) and fiona is None:
        pytest.skip("neither GDAL's command-line tools nor fiona are installed")
    src = write_scene(tmp_path / "scene.tif", blobs(200, 232, seed=4))
    out = predict_file(checkpoint, src, tmp_path / "m.tif", geojson=tmp_path / "b.geojson",
                       config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    wgs = tmp_path / "w.geojson"
    predict_file(checkpoint, src, tmp_path / "m2.tif", geojson=wgs, geojson_wgs84=True,
                 config=PredictConfig(**EAGER), device="cpu", progress=False)  # fmt: skip
    count = len(json.loads((tmp_path / "b.geojson").read_text())["features"])
    assert count > 0
    if gdalinfo and ogrinfo:
        info = json.loads(subprocess.run([gdalinfo, "-json", str(out)], capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
        assert info["bands"][0]["noDataValue"] == MASK_NODATA and "32616" in info["coordinateSystem"]["wkt"]
        listing = subprocess.run([ogrinfo, "-so", "-al", str(tmp_path / "b.geojson")], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
        assert f"Feature Count: {count}" in listing and "area_m2" in listing
    if fiona is not None:
        with fiona.open(tmp_path / "b.geojson") as layer:
            assert len(layer) == count and "32616" in layer.crs.to_string()
            assert "area_m2" in layer.schema["properties"]
        with fiona.open(wgs) as layer:
            assert layer.crs.to_epsg() == 4326 and len(layer) == count
            lon, lat = next(iter(layer))["geometry"]["coordinates"][0][0]
            assert -90 < lon < -85 and 29 < lat < 31


@pytest.mark.parametrize("name, index", [("cuda", 0), ("cuda:1", 1)])
def test_the_torch_backend_on_a_simulated_gpu(tmp_path, model, name, index):
    """The device check's prediction step, on a simulated 2-GPU machine: the network built for ``torch.device(name)``
    (``cuda``, which torch's set_device refuses, and ``cuda:1``), a file predicted through the pinned buffers."""
    from simgpu import simulated_gpus

    from plinknet.infer.backends import Network

    src = write_scene(tmp_path / "scene.tif", blobs(200, 232, seed=3))
    cpu = predict_file(None, src, tmp_path / "cpu.tif", config=PredictConfig(window=64, **EAGER), device="cpu",
                       progress=False, probabilities=True, network=Network(model=model, backend="torch"))  # fmt: skip
    with simulated_gpus(2, "H100") as machine:
        network = Network(model=model, device=torch.device(name), backend="torch")
        gpu = predict_file(None, src, tmp_path / "gpu.tif", config=PredictConfig(window=64, **EAGER), device=name,
                           progress=False, probabilities=True, network=network)  # fmt: skip
    model.cpu()
    assert [args for call, args in machine.calls if call == "set_device"] == [(index,)]
    recorded = {args for call, args in machine.calls if call == "Event.record"}
    assert recorded == {(index,)}  # every copy's event on the stream of the GPU the windows went to
    assert set(machine.placed) == {index} and machine.placed  # the windows and the network on that GPU alone
    with rasterio.open(cpu) as a, rasterio.open(gpu) as b:
        assert np.array_equal(a.read(1), b.read(1))  # the simulated GPU computes on the CPU: the same map


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prediction_equals_cpu_prediction(model, scene):
    """bf16 on the GPU, blending on the device: the same map as fp32 on the CPU, within bf16's precision."""
    config = PredictConfig(window=128, overlap=24, **EAGER)
    cpu = predict_scene(model, scene, config, device="cpu", progress=False)
    try:
        cuda = predict_scene(model, scene, config, device="cuda", progress=False)
    finally:
        model.cpu()  # the module's other tests run on the CPU
    assert np.abs(cpu - cuda).mean() < 0.01 and np.abs(cpu - cuda).max() < 0.1
    assert ((cpu > 0.5) == (cuda > 0.5)).mean() > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_streamed_file_equals_cpu(tmp_path, checkpoint, scene):
    src = write_scene(tmp_path / "scene.tif", blobs(400, 300, seed=5))
    cpu = predict_file(checkpoint, src, tmp_path / "cpu.tif", config=PredictConfig(**EAGER), device="cpu",
                       progress=False, probabilities=True)  # fmt: skip
    cuda = predict_file(checkpoint, src, tmp_path / "cuda.tif", device="cuda", progress=False, probabilities=True)
    with rasterio.open(cpu) as a, rasterio.open(cuda) as b:
        diff = np.abs(a.read(1).astype(int) - b.read(1).astype(int))
    assert diff.mean() < 3 and diff.max() < 30  # of 254


@pytest.mark.slow
def test_bench_predict_reports_the_three_figures(tmp_path):
    from plinknet.bench.prediction_speed import bench_prediction

    result = bench_prediction("cpu", speed_size=160, tile_size=192, memory_sizes=(128, 256), repeats=1,
                           encoder_name="resnet18", crop_size=64, workdir=tmp_path)  # fmt: skip
    assert result["speed_ratio_median"] > 0 and len(result["plain_loop_s"]) == 1
    assert result["extrapolated"] and result["seconds_per_5000_tile"] > 0
    assert set(result["peak_rss_mb"]) == {"128", "256"} and result["peak_rss_mb"]["128"] > 100
