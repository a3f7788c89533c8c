import warnings

import pytest
import torch
import torchvision

from plinknet.model import (
    EncoderWeightsError,
    LinkNet34,
    ModelConfig,
    PLinkNet,
    PyramidPooling,
    count_parameters,
    stage_shapes,
)

# The D-LinkNet code base's LinkNet34 on torchvision's ResNet34, one logit per pixel.
LINKNET34_REFERENCE_PARAMETERS = 21_642_401


def test_linknet34_parameter_count_matches_reference():
    assert count_parameters(LinkNet34()) == LINKNET34_REFERENCE_PARAMETERS


def test_plinknet_adds_only_the_pyramid():
    a, b = LinkNet34(), PLinkNet()
    c = 512
    reduced = c // 4
    pyramid = 4 * (c * reduced + reduced) + (2 * c) * c + 2 * c  # 4 level convs, fuse conv, BN
    assert count_parameters(b) - count_parameters(a) == pyramid
    assert isinstance(a.center, torch.nn.Identity)
    assert isinstance(b.center, PyramidPooling)
    assert [n for n, _ in a.decoder.named_parameters()] == [n for n, _ in b.decoder.named_parameters()]


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
@pytest.mark.parametrize("bins", [(1, 2, 3, 6), ()])
def test_output_shape_is_input_shape(size, bins):
    model = PLinkNet(pyramid_bins=bins, classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 2, *size)


def test_train_with_batch_size_one():
    model = PLinkNet().train()
    out = model(torch.randn(1, 3, 64, 64))
    out.mean().backward()
    assert model.center.levels[0][1].weight.grad is not None


@pytest.mark.parametrize("seed", [0, 7])
def test_an_ablation_pair_shares_its_start(seed):
    """For one seed, P-LinkNet and LinkNet34 start with bitwise-equal encoder, decoder and head: only the pyramid
    differs, and the random stream after construction is the same for both (data order, augmentation)."""
    torch.manual_seed(seed)
    pyramid = PLinkNet(encoder_name="resnet18")
    after_pyramid = torch.get_rng_state()
    torch.manual_seed(seed)
    plain = LinkNet34(encoder_name="resnet18")
    after_plain = torch.get_rng_state()
    with_pyramid, without = pyramid.state_dict(), plain.state_dict()
    assert set(with_pyramid) - set(without) == {k for k in with_pyramid if k.startswith("center.")}
    for name, value in without.items():
        assert torch.equal(with_pyramid[name], value), name
    assert torch.equal(after_pyramid, after_plain)
    assert list(dict(pyramid.named_children())) == ["encoder", "center", "decoder"]  # checkpoint and optimizer order


def test_pyramid_pooling_shapes_and_bins():
    ppm = PyramidPooling(64, bins=(1, 2, 3, 6))
    x = torch.randn(2, 64, 16, 16)
    assert ppm(x).shape == x.shape
    assert [level[0].output_size for level in ppm.levels] == [1, 2, 3, 6]
    assert ppm.levels[0][1].out_channels == 16
    assert ppm.fuse[0].in_channels == 128


def test_pyramid_sees_global_context():
    """Changing one corner of the encoder map changes the far corner only through the pyramid."""
    torch.manual_seed(0)
    ppm = PyramidPooling(8, bins=(1,)).eval()
    x = torch.randn(1, 8, 6, 6)
    y = x.clone()
    y[..., 0, 0] += 10
    assert not torch.allclose(ppm(x)[..., -1, -1], ppm(y)[..., -1, -1])


@pytest.mark.parametrize("size,message", [((500, 512), "height 500"), ((512, 300), "width 300")])
def test_size_not_divisible_by_32_is_a_clear_error(size, message):
    with pytest.raises(ValueError, match=message) as err:
        PLinkNet()(torch.randn(1, 3, *size))
    assert "512x" in str(err.value) or "x320" in str(err.value)


def test_other_smp_encoder_works():
    model = PLinkNet(encoder_name="resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_from_config_round_trip():
    model = PLinkNet(pyramid_bins=(1, 3))
    again = PLinkNet.from_config(model.config.to_dict())
    assert again.config == model.config == ModelConfig(pyramid_bins=(1, 3))
    again.load_state_dict(model.state_dict())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_encoder_weights_load_offline(tmp_path, suffix):
    resnet = torchvision.models.resnet34(weights=None)
    state = resnet.state_dict()  # torchvision key names, fc included
    path = tmp_path / f"resnet34{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = PLinkNet(encoder_weights=path)
    assert torch.equal(model.encoder.conv1.weight, resnet.conv1.weight)
    assert torch.equal(model.encoder.layer4[2].bn2.running_var, resnet.layer4[2].bn2.running_var)
    assert model.config.encoder_weights == str(path)


def test_wrong_local_weights_are_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(EncoderWeightsError, match="resnet18.pth"):
        PLinkNet(encoder_weights=path)
    with pytest.raises(EncoderWeightsError, match="does not exist"):
        PLinkNet(encoder_weights=tmp_path / "missing.pth")


def test_failed_download_names_both_ways(monkeypatch):
    import segmentation_models_pytorch as smp

    real = smp.encoders.get_encoder

    def offline(name, weights=None, **kwargs):
        if weights is not None:
            raise OSError("Name or service not known")
        return real(name, weights=None, **kwargs)

    monkeypatch.setattr(smp.encoders, "get_encoder", offline)
    with pytest.raises(EncoderWeightsError) as err:
        PLinkNet(encoder_weights="imagenet")
    message = str(err.value)
    assert "internet" in message and ".pth" in message and "resnet34" in message


def test_stage_shapes_for_512():
    shapes = dict(stage_shapes(PLinkNet(), 512))
    assert shapes["layer4"] == (1, 512, 16, 16) and shapes["centre"] == (1, 512, 16, 16)
    assert shapes["stem"] == (1, 64, 256, 256) and shapes["layer1"] == (1, 64, 128, 128)
    assert shapes["decoder4"] == (1, 256, 32, 32) and shapes["decoder1"] == (1, 64, 256, 256)
    assert shapes["final"] == (1, 1, 512, 512)
    assert "centre" not in dict(stage_shapes(LinkNet34(), 64))


def test_pyramid_warns_when_its_centre_map_is_smaller_than_a_bin():
    pyramid = PyramidPooling(8, (1, 2, 3, 6)).eval()
    with pytest.warns(UserWarning, match="centre map is 4 x 4, smaller than its largest bin .6.*192 px"):
        pyramid(torch.randn(1, 8, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pyramid(torch.randn(1, 8, 6, 6))  # 192 px inputs: every bin pools


def test_pyramid_shapes_are_the_paper_figure_2():
    from plinknet.model import pyramid_shapes

    shapes = pyramid_shapes(PLinkNet().center, 16)
    assert [level["pooled"] for level in shapes["levels"]] == [(1, 512, b, b) for b in (1, 2, 3, 6)]
    assert [level["reduced"][1] for level in shapes["levels"]] == [128] * 4  # C/4 per level
    assert shapes["concatenated"] == (1, 1024, 16, 16) and shapes["output"] == (1, 512, 16, 16)
    two = pyramid_shapes(PLinkNet(pyramid_bins=(1, 2)).center, 8)
    assert [level["reduced"] for level in two["levels"]] == [(1, 256, 1, 1), (1, 256, 2, 2)]
