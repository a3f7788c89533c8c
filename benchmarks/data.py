"""How fast can training crops be read? GeoTIFF windowed reads against in-memory cropping.

    python benchmarks/data.py                 # 4 random 2000x2000 LZW tiles, written to /tmp
    python benchmarks/data.py --data data/    # a real dataset (holding AerialImageDataset/)

Times 512x512 augmented training crops (random window and scale, flips, rotations,
normalisation) through a DataLoader with 0 and 2 workers reading GeoTIFF windows, and with 0
workers cropping tiles already decoded in memory (``cache=True``); prints crops/s and the ratio
to in-memory. The work lives in :func:`plinknet.bench.benchmark_crops`; ``plinknet bench data``
runs the same thing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plinknet.bench import benchmark_crops


def run(data_dir: str | Path | None = None, crop_size: int = 512, n: int = 200) -> dict:
    """Measure and print crops/s; see :func:`plinknet.bench.benchmark_crops` for the result."""
    return benchmark_crops(data_dir, crop_size=crop_size, n=n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: random tiles)")
    parser.add_argument("--crop-size", type=int, default=512, help="crop side in pixels")
    parser.add_argument("--n", type=int, default=200, help="crops timed per setting")
    args = parser.parse_args()
    run(args.data, args.crop_size, args.n)


if __name__ == "__main__":
    main()
