"""P-LinkNet and LinkNet34: a ResNet encoder, LinkNet's decoder, and a pyramid pooling centre.

The paper (Ding et al., ISPRS Archives XLIII-B3, 2020) adds PSPNet's pyramid pooling
module (Zhao et al., 2017) between the encoder and the decoder of LinkNet34
(Chaurasia and Culurciello, 2017). ``LinkNet34`` is the same class with no pyramid, so the
ablation differs in nothing else.

Shapes below are for a 512x512 input and the default ResNet34 encoder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import TqdmWarning

# What ResNet34's stages output for a 512x512 input:
#   stem (conv1+bn+relu)  (B, 64, 256, 256)   stride 2
#   layer1 (after maxpool)(B, 64, 128, 128)   stride 4
#   layer2                (B, 128, 64, 64)    stride 8
#   layer3                (B, 256, 32, 32)    stride 16
#   layer4                (B, 512, 16, 16)    stride 32
OUTPUT_STRIDE = 32


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network; saved inside every checkpoint."""

    encoder_name: str = "resnet34"  # the paper's encoder; any segmentation-models-pytorch name works
    encoder_weights: str | None = None  # "imagenet" (the paper), a local .pth/.safetensors, or None
    pyramid_bins: tuple[int, ...] = (1, 2, 3, 6)  # PSPNet's four levels; () gives LinkNet34
    classes: int = 1  # one logit per pixel: building vs background

    def __post_init__(self):
        self.pyramid_bins = tuple(int(b) for b in self.pyramid_bins)

    def to_dict(self) -> dict:
        return asdict(self)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module as drawn in the paper's Figure 2.

    For each bin size b: adaptive average pooling to b x b, a 1x1 convolution from C to
    C/N channels (N levels), ReLU, and bilinear upsampling back to the input size. The N
    maps are concatenated with the input (2C channels) and a 1x1 conv + BN + ReLU brings
    them back to C so that the LinkNet decoder that follows is unchanged.

    Choices the paper leaves open, and ours:
      * the fuse layer (2C -> C, 1x1 conv + BN + ReLU): the paper concatenates and stops;
        LinkNet's first decoder block expects C channels, so something must map 2C to C;
      * no BatchNorm on the pooled maps (PSPNet has one): a 1x1 pooled map has a single
        value per channel, so BN fails in training with batch size 1;
      * bilinear upsampling with ``align_corners=False``.
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        if not bins:
            raise ValueError("PyramidPooling needs at least one bin; use pyramid_bins=() to drop it")
        self.bins = tuple(bins)
        self._warned: set[tuple[int, int]] = set()
        reduced = in_channels // len(bins)
        self.levels = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, reduced, kernel_size=1),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(in_channels + reduced * len(bins), in_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, h, w) = (B, 512, 16, 16)
        size = x.shape[-2:]
        if min(size) < max(self.bins) and not torch.compiler.is_compiling() and tuple(size) not in self._warned:
            self._warned.add(tuple(size))  # once per size and module: not on every forward pass
            warnings.warn(
                f"the pyramid's centre map is {size[0]} x {size[1]}, smaller than its largest bin "
                f"({max(self.bins)}): that level upsamples instead of pooling. Use inputs of at least "
                f"{32 * max(self.bins)} px (the network divides by 32) to exercise every bin",
                stacklevel=2,
            )
        pooled = [
            F.interpolate(level(x), size=size, mode="bilinear", align_corners=False)
            for level in self.levels
        ]  # N x (B, C/N, h, w)
        x = torch.cat([x, *pooled], dim=1)  # (B, 2C, h, w)
        return self.fuse(x)  # (B, C, h, w)


class DecoderBlock(nn.Sequential):
    """LinkNet's decoder block: 1x1 conv m->m/4, 3x3 transposed conv stride 2, 1x1 conv m/4->n.

    Each convolution is followed by BN + ReLU; the block doubles height and width.
    """

    def __init__(self, in_channels: int, out_channels: int):
        mid = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, mid, kernel_size=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class LinkNetDecoder(nn.Module):
    """Four decoder blocks with encoder features added as skips, then the final block.

    The final block is D-LinkNet's (Zhou et al., 2018) LinkNet34 head: 3x3 transposed conv
    64->32 stride 2, ReLU, 3x3 conv 32->32, ReLU, 2x2 conv 32->classes. No activation at the
    end: the network returns logits and the loss applies the sigmoid.
    """

    def __init__(self, encoder_channels: tuple[int, ...], classes: int = 1):
        super().__init__()
        c1, c2, c3, c4 = encoder_channels[-4:]  # (64, 128, 256, 512) for ResNet34
        self.blocks = nn.ModuleList(
            [DecoderBlock(c4, c3), DecoderBlock(c3, c2), DecoderBlock(c2, c1), DecoderBlock(c1, c1)]
        )
        self.final_deconv = nn.ConvTranspose2d(c1, 32, kernel_size=3, stride=2)
        self.final_conv = nn.Conv2d(32, 32, kernel_size=3)
        self.classifier = nn.Conv2d(32, classes, kernel_size=2, padding=1)

    def forward(self, center: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        # center: (B, 512, 16, 16); skips: [(B, 256, 32, 32), (B, 128, 64, 64), (B, 64, 128, 128)]
        x = center
        for block, skip in zip(self.blocks, [*skips, None]):
            x = block(x)  # 32 -> 64 -> 128 -> 256 pixels on a side
            if skip is not None:
                x = x + skip
        x = F.relu(self.final_deconv(x))  # (B, 32, 513, 513): (256 - 1) * 2 + 3
        x = F.relu(self.final_conv(x))  # (B, 32, 511, 511)
        return self.classifier(x)  # (B, classes, 512, 512)


class PLinkNet(nn.Module):
    """P-LinkNet: LinkNet34 with a pyramid pooling module in the centre (Ding et al., 2020).

    Paper: https://doi.org/10.5194/isprs-archives-XLIII-B3-2020-35-2020

    Args:
        encoder_name: a segmentation-models-pytorch encoder; the paper uses ``"resnet34"``.
        encoder_weights: ``None`` (random), ``"imagenet"`` (downloads through smp when
            online, as in the paper), or a path to a local ``.pth``/``.safetensors`` ResNet
            state dict with torchvision's key names (works offline).
        pyramid_bins: bin sizes of the pyramid pooling module; ``()`` removes it (LinkNet34).
        classes: output channels.

    Returns (from ``forward``): logits of shape (B, classes, H, W). H and W must be
    multiples of 32.
    """

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_weights: str | Path | None = None,
        pyramid_bins: tuple[int, ...] = (1, 2, 3, 6),
        classes: int = 1,
    ):
        super().__init__()
        self.config = ModelConfig(
            encoder_name,
            None if encoder_weights is None else str(encoder_weights),
            tuple(pyramid_bins),
            classes,
        )
        self.encoder = build_encoder(encoder_name, encoder_weights)
        channels = tuple(self.encoder.out_channels)
        self.center = nn.Identity()  # registered here, before the decoder: the order of parameters and checkpoints
        self.decoder = LinkNetDecoder(channels, classes)
        if pyramid_bins:
            # Drawn last, from a fork of the random stream: for one seed, P-LinkNet and LinkNet34 get bitwise-equal
            # encoder, decoder and head weights, and the stream after construction is the same for both, so an
            # ablation pair differs in the pyramid alone.
            with torch.random.fork_rng(devices=[]):
                self.center = PyramidPooling(channels[-1], self.config.pyramid_bins)

    @classmethod
    def from_config(cls, config: ModelConfig | dict, **overrides) -> PLinkNet:
        """Build from a ``ModelConfig`` (or its dict), e.g. the one stored in a checkpoint."""
        fields = config.to_dict() if isinstance(config, ModelConfig) else dict(config)
        fields.update(overrides)
        return cls(**fields)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 512, 512)
        check_input_size(x.shape[-2], x.shape[-1])
        features = self.encoder(x)  # [input, stem, layer1, layer2, layer3, layer4]
        center = self.center(features[-1])  # (B, 512, 16, 16)
        skips = features[-2:-5:-1]  # [layer3, layer2, layer1]
        return self.decoder(center, skips)  # (B, classes, 512, 512)


@torch.no_grad()
def _forward_with_hooks(module: nn.Module, shape: tuple[int, ...], hooks: list[tuple[nn.Module, Callable]]) -> None:
    """One eval-mode forward pass of zeros of ``shape`` with forward ``hooks`` (submodule, fn) attached, then none."""
    handles = [sub.register_forward_hook(fn) for sub, fn in hooks]
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(shape, device=next(module.parameters()).device))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()


def stage_shapes(model: PLinkNet, size: int = 512) -> list[tuple[str, tuple[int, ...]]]:
    """(stage name, output shape) for every stage of the network on one (1, 3, size, size) input."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("input", (1, 3, size, size))]

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, (list, tuple)):  # the encoder returns all its stages
                names = ["stem", "layer1", "layer2", "layer3", "layer4"][-(len(output) - 1) :]
                shapes.extend((n, tuple(o.shape)) for n, o in zip(names, output[1:]))
            else:
                shapes.append((name, tuple(output.shape)))

        return hook

    modules = [("encoder", model.encoder), ("centre", model.center)]
    modules += [(f"decoder{4 - i}", block) for i, block in enumerate(model.decoder.blocks)]
    modules += [("final", model.decoder.classifier)]
    hooks = [(m, record(n)) for n, m in modules if not isinstance(m, nn.Identity)]
    _forward_with_hooks(model, (1, 3, size, size), hooks)
    return shapes


def pyramid_shapes(module: PyramidPooling, size: int = 16) -> dict:
    """The shapes inside a :class:`PyramidPooling` on one (1, C, size, size) centre map, recorded by hooks.

    Returns:
        ``{"input": (1, C, s, s), "levels": [{"bin": b, "pooled": (1, C, b, b), "reduced": (1, C/N, b, b),
        "upsampled": (1, C/N, s, s)}, ...], "concatenated": (1, C + N C/N, s, s), "output": (1, C, s, s)}``.
    """
    channels = module.levels[0][1].in_channels
    shapes: dict = {"input": (1, channels, size, size), "levels": [{"bin": b} for b in module.bins]}

    def record(target: dict, key: str, of_input: bool = False):
        def hook(_, inputs, output):
            target[key] = tuple((inputs[0] if of_input else output).shape)

        return hook

    hooks = [(module.fuse, record(shapes, "concatenated", of_input=True)), (module.fuse, record(shapes, "output"))]
    for level, entry in zip(module.levels, shapes["levels"]):
        hooks += [(level[0], record(entry, "pooled")), (level[1], record(entry, "reduced"))]
    _forward_with_hooks(module, shapes["input"], hooks)
    for entry in shapes["levels"]:  # upsampled back to the centre map (F.interpolate: no module to hook)
        entry["upsampled"] = (1, entry["reduced"][1], size, size)
    return shapes


def LinkNet34(**kwargs) -> PLinkNet:
    """LinkNet34, the paper's baseline: P-LinkNet with ``pyramid_bins=()`` and nothing else changed."""
    kwargs["pyramid_bins"] = ()
    return PLinkNet(**kwargs)


def check_input_size(height: int, width: int) -> None:
    """Raise a ValueError saying how to pad when height or width is not a multiple of 32."""
    bad = [(name, s) for name, s in (("height", height), ("width", width)) if s % OUTPUT_STRIDE]
    if bad:
        name, s = bad[0]
        padded = padded_size(s)
        raise ValueError(
            f"input {name} {s} is not divisible by {OUTPUT_STRIDE}; pad the image to "
            f"{padded_size(height)}x{padded_size(width)} (e.g. {name} {s} -> {padded})"
        )


def padded_size(size: int, multiple: int = OUTPUT_STRIDE) -> int:
    """The smallest multiple of ``multiple`` that is >= ``size``."""
    return -(-size // multiple) * multiple


# --------------------------------------------------------------------------- encoder weights


class EncoderWeightsError(RuntimeError):
    """Encoder weights could not be downloaded or loaded."""


def import_smp():
    """segmentation-models-pytorch, imported without the warning its import prints in Jupyter.

    smp imports huggingface_hub, which imports ``tqdm.auto``; without ipywidgets that warns
    "IProgress not found" into every notebook that touches smp first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import segmentation_models_pytorch as smp
    return smp


def build_encoder(name: str, weights: str | Path | None) -> nn.Module:
    """An smp encoder of depth 5; ``weights`` as in :class:`PLinkNet`."""
    smp = import_smp()

    if weights is None:
        return smp.encoders.get_encoder(name, in_channels=3, depth=5, weights=None)
    if str(weights) == "imagenet":
        try:
            return smp.encoders.get_encoder(name, in_channels=3, depth=5, weights="imagenet")
        except KeyError:  # an unknown encoder or weights name: smp's own message is clear
            raise
        except Exception as err:  # offline: hub and connection errors of several libraries
            raise EncoderWeightsError(
                f"could not download ImageNet weights for encoder {name!r} ({type(err).__name__}: "
                f"{err}). Either connect to the internet (smp downloads them once into the "
                f"Hugging Face cache), or download a torchvision {name} state dict elsewhere and pass its "
                f"path: encoder_weights='/path/to/{name}.pth' (or .safetensors)."
            ) from err
    encoder = smp.encoders.get_encoder(name, in_channels=3, depth=5, weights=None)
    load_encoder_weights(encoder, weights)
    return encoder


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local ResNet state dict (torchvision key names; ``fc.*`` ignored) into ``encoder``."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(
            f"encoder weights file {path} does not exist; pass encoder_weights='imagenet' to "
            f"download them, or the path of a torchvision ResNet state dict (.pth or .safetensors)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise EncoderWeightsError(
            f"{path} is not a state dict for this encoder: {len(missing)} keys missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} of another shape (e.g. {wrong[:3]}); torchvision key names are expected"
        )
    encoder.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (all of them are trainable here)."""
    return sum(p.numel() for p in model.parameters())

