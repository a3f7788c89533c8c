"""The ``plinknet`` command. Errors a user can cause print one line on stderr and exit with 1.

Set ``PLINKNET_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path

USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, OSError, KeyError)


def _add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--field-name`` option per dataclass field; options not given stay out of the namespace.

    So a YAML file's values are overridden only by options actually typed.
    """
    hints = typing.get_type_hints(cls)
    unset = argparse.SUPPRESS
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        union = optional or isinstance(hint, types.UnionType)
        base = next((a for a in args if a is not type(None)), hint) if union else hint
        help_text = f"default: {field.default!r}"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=unset, help=help_text)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, type=int, nargs="*", default=unset, help=help_text + " (space separated)")
        elif optional:
            parser.add_argument(flag, type=lambda s, t=base: None if s.lower() == "none" else t(s), default=unset,
                                help=help_text + " ('none' for None)")  # fmt: skip
        else:
            parser.add_argument(flag, type=base, default=unset, help=help_text)


def _overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def build_parser() -> argparse.ArgumentParser:
    from plinknet.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="plinknet",
        description="P-LinkNet (LinkNet34 + pyramid pooling) for building extraction from aerial imagery.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write the synthetic offline sample in the Inria layout")
    p.add_argument("--out", required=True, type=Path, help="folder to create (AerialImageDataset/ inside)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile-size", type=int, default=None, help="pixels on a side")
    p.add_argument("--train-tiles", type=int, default=None, help="training tiles per city")
    p.add_argument("--val-tiles", type=int, default=None, help="validation tiles per city")

    p = sub.add_parser("download", help="download a dataset (needs internet)")
    p.add_argument("dataset", choices=["inria"])
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("train", help="train P-LinkNet or LinkNet34 (--pyramid-bins with no value)")
    p.add_argument("--config", type=Path, help="YAML file of training options; command-line options win")
    p.add_argument("--resume", action="store_true", help="continue from <out-dir>/last.pt")
    _add_dataclass_options(p, TrainConfig)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on whole validation tiles")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (Inria layout)")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--split", default="val", choices=["val", "train", "all"])
    p.add_argument("--out", type=Path, help="metrics.json path (default: beside the checkpoint)")
    _add_predict_options(p)

    p = sub.add_parser("predict", help="building mask of a GeoTIFF of any size, georeferenced")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("input", type=Path, help="RGB GeoTIFF")
    p.add_argument("output", type=Path, help="output GeoTIFF (mask 0/255, or probabilities 0-255)")
    p.add_argument("--probabilities", action="store_true", help="write uint8 probabilities instead of a mask")
    p.add_argument("--geojson", type=Path, help="also write building polygons (input CRS)")
    _add_predict_options(p)

    p = sub.add_parser("bench", help="benchmarks: model, data, train, predict")
    p.add_argument("what", choices=["model", "data", "train", "predict"])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, help="dataset folder for `bench data` (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


def _add_predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=int, default=None, help="window size (default: the training crop size or 512)")
    p.add_argument("--overlap", type=int, default=None, help="pixels shared by neighbours (default: window/4)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _predict_config(args):
    from plinknet.predict import PredictConfig

    if args.window is None:
        return None
    return PredictConfig(window=args.window, overlap=args.overlap, batch_size=args.batch_size)


def run(args: argparse.Namespace) -> None:
    if args.command == "synth":
        from plinknet.synthetic import SyntheticConfig, generate

        sizes = {"tile_size": args.tile_size, "train_tiles": args.train_tiles, "val_tiles": args.val_tiles}
        config = SyntheticConfig(**{k: v for k, v in sizes.items() if v is not None})
        print(generate(args.out, seed=args.seed, config=config))
    elif args.command == "download":
        from plinknet.download import download_inria

        print(download_inria(args.out))
    elif args.command == "train":
        from plinknet.train import TrainConfig, train

        overrides = _overrides(args, TrainConfig)
        config = TrainConfig.from_yaml(args.config, **overrides) if args.config else TrainConfig(**overrides)
        print(train(config, resume=args.resume))
    elif args.command == "evaluate":
        from plinknet.evaluate import evaluate_checkpoint, format_table

        config = _predict_config(args)
        report = evaluate_checkpoint(args.checkpoint, args.data, args.out, args.split, config, args.device,
                                     progress=not args.quiet)  # fmt: skip
        print(format_table(report))
        print(f"(IoU: building class over all pixels; mIoU: mean of building and background IoU; "
              f"data {args.data}, split {args.split}, device {report['device']})")  # fmt: skip
    elif args.command == "predict":
        from plinknet.predict import predict_file

        config = _predict_config(args)
        print(predict_file(args.checkpoint, args.input, args.output, args.probabilities, args.geojson, config,
                           args.device, progress=not args.quiet))  # fmt: skip
    elif args.command == "bench":
        from plinknet import bench

        result = bench.run(args.what, device=args.device, data_dir=args.data)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        print("plinknet: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if os.environ.get("PLINKNET_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"plinknet {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
