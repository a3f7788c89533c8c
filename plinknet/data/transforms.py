"""From uint8 crops to network inputs: ImageNet normalisation, the scale resize, the batch on the device."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from plinknet.data.tiles import MASK_PADDING

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the encoder is an ImageNet-pretrained ResNet34
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image_uint8_hwc: np.ndarray) -> torch.Tensor:
    """ImageNet-normalise an RGB image for the pretrained encoder.

    Args:
        image_uint8_hwc: (H, W, 3) uint8 array.

    Returns:
        (3, H, W) float32 tensor, the arithmetic of :func:`normalize_batch` on one image.
    """
    image = np.asarray(image_uint8_hwc)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return normalize_batch(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])[0]


@functools.lru_cache(maxsize=16)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std of 0-255 pixels, made once per device: no host-to-device copy per batch."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return mean, std


def normalize_batch(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a (B, 3, H, W) batch of 0-255 values, on its own device.

    ``(x - 255 mean) / (255 std)``: the one normalisation of the package, for training,
    validation, prediction and every backend.
    """
    mean, std = _imagenet_stats(image.device)
    return (image.float() - mean) / std


def resize_regions(
    image: torch.Tensor, mask: torch.Tensor, side: torch.Tensor, crop_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the top-left ``side`` x ``side`` region of each buffer to ``crop_size``, batched.

    Output pixel ``i`` (of ``crop_size``) samples the source at ``(i + 0.5) * side / crop_size
    - 0.5``, centre-aligned: bilinear for the image (``grid_sample``, ``align_corners=False``,
    the same grid as ``F.interpolate(..., "bilinear")``) and nearest for the mask with
    ``floor((i + 0.5) * side / crop_size)``, PyTorch's ``"nearest-exact"``. Plain
    ``"nearest"`` (``floor(i * side / crop_size)``) would shift the mask by up to half a
    source pixel against its image.

    Args:
        image: (B, 3, S, S) float.
        mask: (B, 1, S, S) any dtype.
        side: (B,) int, each at most S.
        crop_size: output side.

    Returns:
        (B, 3, crop, crop) float image and (B, 1, crop, crop) mask of ``mask``'s dtype.
    """
    batch, size = image.shape[0], image.shape[-1]
    side = side.to(image.device, torch.float32)
    scale = side / size  # (B,)
    theta = torch.zeros(batch, 2, 3, device=image.device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, 0, 2] = theta[:, 1, 2] = scale - 1  # the region's centre, in [-1, 1] coordinates
    grid = F.affine_grid(theta, (batch, 1, crop_size, crop_size), align_corners=False)  # (B, c, c, 2)
    # keep samples within the region's outer pixel centres (edge pixels repeat, as in F.interpolate)
    low, high = 1 / size - 1, ((2 * side - 1) / size - 1)[:, None, None, None]
    grid = torch.minimum(grid.clamp_min(low), high)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    centres = torch.arange(crop_size, device=image.device, dtype=torch.float64) + 0.5  # (crop,)
    index = torch.floor(centres[None] * side.double()[:, None] / crop_size).long()  # (B, crop)
    index = torch.minimum(index, side.long()[:, None] - 1)
    rows = torch.arange(batch, device=image.device)[:, None, None]
    mask = mask[:, 0][rows, index[:, :, None], index[:, None, :]][:, None]  # (B, 1, crop, crop)
    return image, mask


def prepare_batch(
    batch: dict, device: torch.device, crop_size: int, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn a collated uint8 batch of :class:`InriaDataset` into network inputs on ``device``.

    The copy to the device is non-blocking (from pinned memory when the DataLoader pins);
    the resize of scale-augmented crops, the float conversion and the normalisation then run
    batched on the device.

    Returns:
        ``image`` (B, 3, crop, crop) float32 normalised (channels_last on CUDA if asked),
        ``target`` (B, 1, crop, crop) float32 in {0, 1} and ``valid`` (B, 1, crop, crop) bool,
        False on pixels outside the source tile.
    """
    non_blocking = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=non_blocking)  # (B, 3, S, S) uint8
    mask = batch["mask"].to(device, non_blocking=non_blocking)  # (B, 1, S, S) uint8
    side = batch["side"]  # (B,) on the host: the test below costs no device sync
    if image.shape[-1] != crop_size or bool((side != crop_size).any()):
        side = side.to(device, non_blocking=non_blocking)
        image, mask = resize_regions(image.float(), mask, side, crop_size)
    image = normalize_batch(image)  # (B, 3, crop, crop) float32
    if channels_last and device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    valid = mask != MASK_PADDING
    return image, (mask == 1).float(), valid

