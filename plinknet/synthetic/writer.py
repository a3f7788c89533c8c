"""Writing a synthetic sample in the Inria layout: GeoTIFF pairs, lab truth, the manifest, atomically."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from tqdm import tqdm

from plinknet.files import SAMPLE_MANIFEST, atomic_folder
from plinknet.synthetic.render import SyntheticTile
from plinknet.synthetic.tiles import CITY_CRS, SyntheticConfig, draw_tile


def ensure_sample(out_dir, seed: int = 0, config: SyntheticConfig | None = None) -> Path:
    """Generate the sample into ``out_dir`` unless it is there already; return its AerialImageDataset path.

    It is written into a temporary sibling folder and renamed at the end, so an interrupted
    run never leaves a half sample that would later be taken for a whole one.
    """
    root = Path(out_dir) / "AerialImageDataset"
    if (root / "train" / "images").is_dir():
        return root
    if root.exists():
        raise FileExistsError(f"{root} exists but holds no train/images: it is not a sample; move it away or "
                              f"choose another folder")  # fmt: skip
    try:
        with atomic_folder(root) as partial:
            _draw_sample(partial, seed, config or SyntheticConfig(), progress=True)
            _write_manifest(partial, seed, config or SyntheticConfig())
    except FileExistsError:  # another process wrote the same sample meanwhile
        if not (root / "train" / "images").is_dir():
            raise
    return root


MANIFEST = SAMPLE_MANIFEST  # in AerialImageDataset/, written last: what the sample is and every file it holds


def _manifest(seed: int, config: SyntheticConfig) -> dict:
    return {"kind": "synthetic", "seed": seed, "config": {**asdict(config), "cities": list(config.cities)}}


def _write_manifest(root: Path, seed: int, config: SyntheticConfig) -> None:
    (root / MANIFEST).write_text(json.dumps({**_manifest(seed, config), "files": _sample_files(root)}, indent=1))


def _sample_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_sample(out_dir, seed: int = 0, config: SyntheticConfig | None = None, overwrite: bool = False,
                 progress: bool = True) -> tuple[Path, bool]:  # fmt: skip
    """``plinknet synth``: the sample in ``out_dir``, never mixed with another; returns (AerialImageDataset, written).

    A folder that already holds the complete sample of the same seed and sizes is left as it is (``written`` is
    False). Another sample, or an incomplete one, is refused, or with ``overwrite`` replaced whole. Data that
    plinknet did not write (no manifest: a download, a user's files) and files that are not of the sample are
    refused, with or without ``overwrite``, and named. The sample is written beside the folder and moved in
    when complete, with a manifest of its parameters and files.

    Raises:
        FileExistsError: ``out_dir`` holds something else; the message says what (and names a user's files).
    """
    config = config or SyntheticConfig()
    out_dir = Path(out_dir)
    root = out_dir / "AerialImageDataset"
    wanted = _manifest(seed, config)
    others = sorted(p.name for p in out_dir.iterdir() if p.name != "AerialImageDataset") if out_dir.is_dir() else []
    if others:
        raise FileExistsError(f"{out_dir} holds other files ({', '.join(others[:5])}); plinknet synth writes only "
                              f"into an empty folder or one holding a sample: choose another --out")  # fmt: skip
    if root.exists() and any(root.iterdir()):
        manifest_path = root / MANIFEST
        try:
            found = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        except (ValueError, OSError) as error:
            raise FileExistsError(f"{manifest_path} cannot be read ({error}): cut or edited, so plinknet cannot tell "
                                  f"which files are its own; move {root} away or choose another --out") from None
        if found is not None and {k: found.get(k) for k in wanted} == wanted:
            missing = sorted(set(found.get("files", [])) - set(_sample_files(root)))
            if not missing and not _not_of_sample(root, found):
                return root, False
            why = f"an incomplete sample ({len(missing)} file(s) missing: {', '.join(missing[:3])})"
        elif found is not None:
            differ = [f"{k} {found['config'].get(k)!r} (asked {v!r})" for k, v in wanted["config"].items()
                      if found["config"].get(k) != v]  # fmt: skip
            if found.get("seed") != seed:
                differ.insert(0, f"seed {found.get('seed')} (asked {seed})")
            why = f"another sample: {', '.join(differ)}"
        else:
            raise FileExistsError(f"{root} holds data that plinknet did not write (no {MANIFEST}: a download, or "
                                  f"your own files); plinknet synth never replaces it: choose another --out")
        extra = _not_of_sample(root, found)
        if extra:
            raise FileExistsError(f"{root} holds {len(extra)} file(s) that are not of the sample: "
                                  f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}; plinknet deletes "
                                  f"nothing it did not write: move them away, or choose another --out")  # fmt: skip
        if not overwrite:
            raise FileExistsError(f"{root} holds {why}; use --overwrite to replace it whole, or another --out")

    with atomic_folder(root, replace=overwrite) as partial:  # an old sample goes once the new is whole
        _draw_sample(partial, seed, config, progress)
        _write_manifest(partial, seed, config)
    return root, True


def _not_of_sample(root: Path, manifest: dict) -> list[str]:
    """The files in ``root`` that its manifest does not list (a user's, then), relative to ``root``."""
    return sorted(set(_sample_files(root)) - set(manifest.get("files", [])))


def _profile(city: str, n: int, size: int, resolution: float, compress: bool = True) -> dict:
    """GeoTIFF creation options of tile ``n`` of ``city``, but its band count and dtype."""
    crs, east, north = CITY_CRS[city]
    east += (n - 1) * size * resolution  # tiles of a city lie side by side, west to east
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "crs": crs,
        "transform": Affine(resolution, 0, east, 0, -resolution, north),  # north-up
    }
    if compress:
        profile.update(compress="lzw", tiled=True, blockxsize=256, blockysize=256)
    return profile  # else uncompressed and striped, GDAL's defaults


def _write_pair(folder: Path, stem: str, image, mask, profile: dict):
    with rasterio.open(
        folder / "images" / f"{stem}.tif", "w", count=3, dtype="uint8", photometric="RGB", **profile
    ) as f:
        f.write(image.transpose(2, 0, 1))
    with rasterio.open(folder / "gt" / f"{stem}.tif", "w", count=1, dtype="uint8", **profile) as f:
        f.write(mask[None] * np.uint8(255))


def _write_lab(folder: Path, stem: str, tile: SyntheticTile, profile: dict, resolution: float):
    """``<stem>_instances.tif``, ``<stem>_distractors.tif`` and ``<stem>_instances.csv``."""
    with rasterio.open(folder / f"{stem}_instances.tif", "w", count=1, dtype="uint32", **profile) as f:
        f.write(tile.instances[None])
    with rasterio.open(folder / f"{stem}_distractors.tif", "w", count=1, dtype="uint8", **profile) as f:
        f.write(tile.distractors[None])
    areas = np.bincount(tile.instances.ravel())[1:]
    rows = [f"{i},{a},{a * resolution**2:.2f}" for i, a in enumerate(areas, start=1)]
    (folder / f"{stem}_instances.csv").write_text("\n".join(["id,area_px,area_m2", *rows]) + "\n")


def generate(
    out_dir, seed: int = 0, config: SyntheticConfig | None = None, progress: bool = True
) -> Path:
    """Write the synthetic sample in the Inria layout, with the lab labels of every tile.

    Args:
        out_dir: folder that receives ``AerialImageDataset/train/{images,gt,lab}``.
        seed: the same seed writes the same pixels.
        config: sizes and cities; ``SyntheticConfig()`` when None.
        progress: show a progress bar over tiles.

    Returns:
        The path of ``<out_dir>/AerialImageDataset``.
    """
    root = Path(out_dir) / "AerialImageDataset"
    _draw_sample(root, seed, config or SyntheticConfig(), progress)
    return root


def _draw_sample(root: Path, seed: int, config: SyntheticConfig, progress: bool) -> None:
    """Draw every tile of the sample into ``root`` (an AerialImageDataset folder)."""
    for folder in ("images", "gt", "lab"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(city, n) for city in config.cities for n in config.tile_numbers()]
    for city, n in tqdm(jobs, desc="synthetic tiles", unit="tile", disable=not progress):
        tile = draw_tile(city, seed * 10_000 + n, config.tile_size, config.resolution)
        profile = _profile(city, n, config.tile_size, config.resolution)
        _write_pair(root / "train", f"{city}{n}", tile.image, tile.mask, profile)
        _write_lab(root / "train" / "lab", f"{city}{n}", tile, profile, config.resolution)


def generate_tile(
    city: str, seed: int, size: int, resolution: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one tile of one city style: :func:`draw_tile` without the lab labels.

    Returns:
        ``image`` (size, size, 3) uint8 RGB and ``mask`` (size, size) uint8 in {0, 1}.
    """
    tile = draw_tile(city, seed, size, resolution)
    return tile.image, tile.mask
