"""How fast and how lean is the training loader? The same as ``plinknet bench data``.

    python benchmarks/data.py                                   # 4 random 2000x2000 LZW tiles, in /tmp
    python benchmarks/data.py --data data/inria-scale --workers 4   # Inria-size: 180 tiles of 5000x5000

Prints, measured in one run: the per-crop time of ``InriaDataset[i]`` (and of collated
batches) against the bare rasterio windowed reads of the same windows, and the crops/s and
peak memory (PSS and RSS summed over the process tree) of the DataLoader with ``--workers``
processes. The work lives in :func:`plinknet.bench.bench_data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plinknet.bench import bench_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: random tiles)")
    parser.add_argument("--crop-size", type=int, default=512, help="crop side in pixels")
    parser.add_argument("--n", type=int, default=200, help="crops timed for the overhead ratio")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader processes for throughput and memory")
    parser.add_argument("--cache-dir", type=Path, help="also measure the memory-mapped tile cache, built here")
    args = parser.parse_args()
    bench_data(args.data, crop_size=args.crop_size, n=args.n, workers=args.workers, cache_dir=args.cache_dir)


if __name__ == "__main__":
    main()
