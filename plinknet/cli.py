"""The ``plinknet`` command. Errors a user can cause print one line on stderr and exit with 1.

Set ``PLINKNET_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import os
import re
import sys
import textwrap
import tokenize
import types
import typing
import warnings
from pathlib import Path

from plinknet.config import read_yaml_mapping
from plinknet.data.tiles import InriaDataError

USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, OSError, KeyError)
DATA_DIR_HELP = "dataset folder (Inria layout: AerialImageDataset/train/{images,gt})"


class _Spelling(argparse.Action):
    """An option with an old spelling kept for one release: the old one works and says it is deprecated."""

    def __init__(self, option_strings, dest, deprecated=(), **kwargs):
        self.deprecated = tuple(deprecated)
        super().__init__(option_strings + list(self.deprecated), dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.deprecated:
            _deprecated(option_string, self.option_strings[0])
        setattr(namespace, self.dest, values)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"plinknet: {old} is deprecated and will be removed in the next release; use {new}",
                  FutureWarning, stacklevel=2)  # fmt: skip


def _field_comments(cls) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the source of dataclass ``cls`` and its bases.

    A field written over several lines gets its comments joined; pragmas (``noqa``, ``type:``,
    ``fmt:``) are dropped; a field without comment, or a class whose source cannot be read, gets none.
    """
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            tree = ast.parse(source)
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (OSError, TypeError, SyntaxError, tokenize.TokenError):
            continue
        by_line: dict[int, list[str]] = {}
        for token in tokens:
            text = token.string.lstrip("#").strip()
            if token.type == tokenize.COMMENT and text and not re.match(r"(noqa|type:|fmt:|pragma)\b", text):
                by_line.setdefault(token.start[0], []).append(text)
        for node in tree.body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                lines = range(node.lineno, node.end_lineno + 1)
                if found := [text for line in lines for text in by_line.get(line, [])]:
                    comments[node.target.id] = " ".join(found)
    return comments


def _add_dataclass_options(parser: argparse.ArgumentParser, cls, exclude: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` option per dataclass field; options not given stay out of the namespace.

    So a YAML file's values are overridden only by options actually typed. Each option's help is
    the field's comment in the class source followed by its default.
    """
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    unset = argparse.SUPPRESS
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        union = optional or isinstance(hint, types.UnionType)
        base = next((a for a in args if a is not type(None)), hint) if union else hint
        if field.default is not dataclasses.MISSING:
            default = f"default: {field.default!r}"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"default: {field.default_factory()!r}"
        else:
            default = "required"
        if typing.get_origin(base) is tuple:
            default += "; space separated"
        elif optional:
            default += "; 'none' for None"
        comment = comments.get(field.name)
        help_text = (f"{comment} ({default})" if comment else default).replace("%", "%%")  # argparse formats %
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=unset, help=help_text)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, type=int, nargs="*", default=unset, help=help_text)
        elif optional:
            parser.add_argument(flag, type=lambda s, t=base: None if s.lower() == "none" else t(s), default=unset,
                                help=help_text)  # fmt: skip
        else:
            parser.add_argument(flag, type=base, default=unset, help=help_text)


def _overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def build_parser() -> argparse.ArgumentParser:
    from plinknet.train.config import TrainConfig

    parser = argparse.ArgumentParser(
        prog="plinknet",
        description="P-LinkNet (LinkNet34 + pyramid pooling) for building extraction from aerial imagery.",
        allow_abbrev=False,  # `--seed` must not silently stand for `--seeds`: every option is spelled out
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser = functools.partial(sub.add_parser, allow_abbrev=False)

    p = sub.add_parser("synth", help="write the synthetic offline sample in the Inria layout")
    p.add_argument("--out", required=True, type=Path, help="folder to create (AerialImageDataset/ inside)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile-size", type=int, default=None, help="pixels on a side")
    p.add_argument("--train-tiles", type=int, default=None, help="training tiles per city")
    p.add_argument("--val-tiles", type=int, default=None, help="validation tiles per city")
    p.add_argument("--inria-scale", action="store_true",
                   help="instead: the Inria-size rehearsal set, 5 x 36 tiles of 5000 px (~18 GB, minutes)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace, whole, a sample of other parameters (or other files) in --out")  # fmt: skip

    p = sub.add_parser("download", help="download a dataset (needs internet)")
    p.add_argument("dataset", choices=["inria"])
    p.add_argument("--out", required=True, type=Path,
                   help="folder for the 7z volumes, the zip and AerialImageDataset/; run again to resume")  # fmt: skip

    p = sub.add_parser("train", help="train P-LinkNet or LinkNet34 (--pyramid-bins with no value)")
    p.add_argument("--config", type=Path, help="YAML file of training options; command-line options win")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out-dir from its last.pt; only options typed here change, and only "
                        "epochs and the run options (workers, progress, device, cache-dir, check-data, "
                        "channels-last, compile) may")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out-dir")
    _add_dataclass_options(p, TrainConfig)

    p = sub.add_parser("ablate", help="P-LinkNet against LinkNet34 over several seeds, with a confidence interval")
    p.add_argument("--config", type=Path, help="YAML file of training options (a book parameter file works too); "
                   "command-line options win")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="one P-LinkNet and one LinkNet34 run per seed")
    p.add_argument("--out", type=Path, required=True,
                   help="archive folder: results.csv, summary.json, runs/*.json; another scoring goes to its "
                        "scores/<split>-<hash>/ (an archive is never rewritten)")  # fmt: skip
    p.add_argument("--runs-dir", type=Path, help="run folders with checkpoints (default: runs/ablation/<out name>)")
    p.add_argument("--split", default="val", choices=["val", "select", "train", "all"], help="tiles that are scored")
    p.add_argument("--models", nargs="+", choices=["plinknet", "linknet34"], default=["plinknet", "linknet34"],
                   help="the networks to run (default both; the summary needs both)")  # fmt: skip
    p.add_argument("--runs-only", action="store_true",
                   help="train and score the runs asked for and write only their records, not the summary: one job "
                        "of a job array; a last call without it writes the summary (see the README)")  # fmt: skip
    p.add_argument("--processes", default="1", metavar="N",
                   help="share the runs among N worker processes, one per GPU ('auto': every GPU torch sees), then "
                        "write the summary once (default 1)")  # fmt: skip
    p.add_argument("--data-sha256", metavar="HEX", type=_sha256,
                   help="the data's SHA-256, already computed by the calling process with every tile checked "
                        "(ablate --processes hands it to its workers): the data are then neither checked nor "
                        "hashed again")  # fmt: skip
    p.add_argument("--retrain", action="store_true",
                   help="train again, from scratch, the archived runs that a new scoring needs whose checkpoints "
                        "are not in --runs-dir; their records go into the new scoring's folder (scores/...), the "
                        "archived ones stay. Without it ablate refuses, naming them: scoring never trains")  # fmt: skip
    _add_dataclass_options(p, TrainConfig, exclude=("out_dir", "seed"))

    p = sub.add_parser("check-data", help="read every tile fully and list every problem, and hash the data, in one "
                       "pass (before a long training)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    p.add_argument("data", type=Path, nargs="?", help="deprecated spelling of --data-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on whole validation tiles")
    p.add_argument("--data-dir", required=True, type=Path, action=_Spelling, deprecated=["--data"], help=DATA_DIR_HELP)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--split", default="val", choices=["val", "select", "train", "all"],
                   help="which tiles: val (1-5, default), select (the run's select tiles), train or all")  # fmt: skip
    p.add_argument("--tiles", nargs="+", metavar="NAME", help="evaluate only these tiles, e.g. austin1 vienna3")
    p.add_argument("--out", type=Path, help="JSON report (default: metrics.json beside the checkpoint; "
                   "metrics-<split>.json or metrics-tiles.json for other tiles)")  # fmt: skip
    _add_predict_options(p)

    p = sub.add_parser(
        "predict",
        help="building masks of GeoTIFFs of any size, georeferenced: one scene, or many into --out-dir",
        description="Two forms. Without --out-dir: INPUT OUTPUT, one scene to one GeoTIFF. With --out-dir: every "
        "path is an input (files, folders, glob patterns) and each scene S gives DIR/S_buildings.tif "
        "(S_probability.tif), skipped when already there; under torchrun --nproc_per_node=N the scenes are "
        "shared among the N processes. Outputs keep the scene's CRS and transform, mark its nodata, and are "
        "written under a temporary name and renamed when complete.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by `plinknet train`")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="INPUT OUTPUT (one scene), or with --out-dir: INPUTS... (files, folders, globs)")  # fmt: skip
    p.add_argument("--out-dir", type=Path, help="predict every PATH into this folder (the many-scenes form)")
    p.add_argument("--probabilities", action="store_true",
                   help="write round(p x 254) as uint8 (255: nodata) instead of a 0/255 mask "
                        "(127: nodata)")  # fmt: skip
    p.add_argument("--geojson", nargs="?", const=True, type=Path, metavar="PATH",
                   help="also write building polygons with area_m2: to PATH, or beside each output when "
                        "no PATH is given (always so with --out-dir)")  # fmt: skip
    p.add_argument("--geojson-wgs84", action="store_true",
                   help="polygons in RFC 7946 lon/lat (EPSG:4326) instead of the scene's CRS")  # fmt: skip
    p.add_argument("--simplify", type=float, metavar="TOLERANCE",
                   help="simplify polygons (Douglas-Peucker) with this tolerance in map units, "
                        "e.g. 0.5 (m)")  # fmt: skip
    p.add_argument("--scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="map pixel values LOW..HIGH linearly to 0..255 (16-bit imagery, which is "
                        "refused without)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="with --out-dir: predict again scenes already done")
    _add_predict_options(p)

    p = sub.add_parser("bench", help="benchmarks: model, data, train, predict")
    p.add_argument("what", choices=["model", "data", "train", "predict"])
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=Path, action=_Spelling, deprecated=["--data"],
                   help="dataset folder for `bench data` (default: random tiles in a temporary folder) and "
                        "`bench train` (adds the real loader to the timing)")  # fmt: skip
    p.add_argument("--workers", type=int, help="data, train: DataLoader processes (data: 4; train: automatic)")
    p.add_argument("--crops", type=int, help="data: crops through the DataLoader (default: 2 per tile, at least 200)")
    p.add_argument("--cache-dir", type=Path, help="data: also measure the memory-mapped tile cache, built here")
    p.add_argument("--batch-size", type=int, help="train: images per step (default 16 on CUDA, 4 on CPU)")
    p.add_argument("--steps", type=int, help="train: timed steps (default 50 on CUDA, 3 on CPU)")
    p.add_argument("--compile", action="store_true", help="train: time with torch.compile as well")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


def _add_predict_options(p: argparse.ArgumentParser) -> None:
    """The sliding-window options shared by ``predict`` and ``evaluate``: one per ``PredictConfig`` field."""
    p.add_argument("--window", type=int, help="window side in px (default: the checkpoint's training crop, "
                   "else 512): the pyramid pooling's context, best left as trained")  # fmt: skip
    p.add_argument("--overlap", type=int, help="least px shared by neighbouring windows, whose blending hides "
                   "seams (default: window/16; windows are spread evenly, so most overlaps are wider)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: 16 on CUDA, 2 on the CPU)")
    p.add_argument("--threshold", type=float, help="probability above which a pixel is a building (default: the "
                   "checkpoint's training threshold, 0.5 in the paper's recipe)")  # fmt: skip
    p.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"],
                   help="auto (default): ONNX Runtime on the CPU when installed, about 2x PyTorch; PyTorch on "
                        "CUDA (bf16)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (CUDA when available; the rank's GPU under torchrun), "
                   "cpu, cuda or cuda:N")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _predict_config(args: argparse.Namespace, crop_size: int | None = None):
    """The ``PredictConfig`` of the --window/--overlap/--batch-size/--threshold/--backend options.

    Every option counts on its own (an --overlap without --window too). The window, when not
    given, is the checkpoint's training crop: pass ``crop_size`` (``state["config"]["crop_size"]``)
    here, or resolve it later with ``config.for_checkpoint(crop_size)``; ``predict`` does the latter.

    Raises:
        ConfigError: an out-of-range option, named as on the command line.
    """
    from plinknet.infer.predict import PredictConfig

    config = PredictConfig(window=args.window, overlap=args.overlap, batch_size=args.batch_size,
                           threshold=args.threshold, backend=args.backend)  # fmt: skip
    return config.for_checkpoint(crop_size) if crop_size is not None else config


def _predict(args: argparse.Namespace) -> None:
    """``plinknet predict``: INPUT OUTPUT, or INPUTS... --out-dir DIR (see the sub-command's description)."""
    from plinknet.infer.predict import predict_file, predict_scenes

    config = _predict_config(args)
    if args.simplify is not None and args.simplify < 0:
        raise ValueError(f"simplify (--simplify) must be 0 or more, got {args.simplify}")
    common = {"config": config, "device": args.device, "progress": not args.quiet, "scale": args.scale,
              "simplify": args.simplify, "geojson_wgs84": args.geojson_wgs84}  # fmt: skip
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise ValueError(f"give INPUT OUTPUT for one scene, or --out-dir DIR to predict {len(args.paths)} "
                             f"paths into a folder")  # fmt: skip
        if args.overwrite:
            raise ValueError("--overwrite goes with --out-dir; INPUT OUTPUT always writes OUTPUT")
        source, output = args.paths
        geojson = output.with_suffix(".geojson") if args.geojson is True else args.geojson
        print(predict_file(args.checkpoint, source, output, args.probabilities, geojson, **common))
        return
    if args.geojson not in (None, True):
        raise ValueError("with --out-dir, give --geojson without a path: each scene's polygons go beside its mask")
    done = predict_scenes(args.checkpoint, args.paths, args.out_dir, args.probabilities, args.geojson is True,
                          overwrite=args.overwrite, **common)  # fmt: skip
    for path in done["written"]:
        print(path)
    rank = os.environ.get("RANK")
    who = f"rank {rank}: " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    ignored = f", {len(done['ignored'])} plinknet output(s) among the inputs left out" if done["ignored"] else ""
    print(f"{who}{len(done['written'])} scene(s) predicted, {len(done['skipped'])} already complete with this "
          f"checkpoint and these options (skipped) in {args.out_dir}{ignored}", file=sys.stderr)  # fmt: skip


def run(args: argparse.Namespace) -> None:
    if args.command == "synth":
        from plinknet.synthetic import SyntheticConfig, generate_inria_scale, write_sample

        sizes = {"tile_size": args.tile_size, "train_tiles": args.train_tiles, "val_tiles": args.val_tiles}
        sizes = {k: v for k, v in sizes.items() if v is not None}
        if args.inria_scale and sizes:
            raise ValueError("--inria-scale has Inria's fixed sizes; drop --tile-size, --train-tiles and --val-tiles")
        if args.inria_scale:
            if args.overwrite:
                raise ValueError("--overwrite does not apply to --inria-scale (18 GB): delete the folder yourself")
            print(generate_inria_scale(args.out, seed=args.seed))
        else:
            root, written = write_sample(args.out, seed=args.seed, config=SyntheticConfig(**sizes),
                                         overwrite=args.overwrite)  # fmt: skip
            print(root if written else f"{root}: already holds this sample (seed {args.seed}); nothing written")
    elif args.command == "download":
        from plinknet.data.download import download_inria

        print(download_inria(args.out))
    elif args.command == "train":
        from plinknet.train.config import TrainConfig
        from plinknet.train.loop import train

        given = read_yaml_mapping(args.config) if args.config else {}
        given.update(_overrides(args, TrainConfig))
        if args.resume:  # the saved recipe, changed only where an option was given
            config = TrainConfig.from_run(given.pop("out_dir", TrainConfig.out_dir), **given)
        else:
            config = TrainConfig.from_dict(given)
        from plinknet import distributed

        try:
            print(train(config, resume=args.resume, overwrite=args.overwrite))
        finally:
            distributed.shutdown()  # under torchrun: leave the process group, every rank
    elif args.command == "ablate":
        from plinknet.study.ablation import BOOK_ONLY_KEYS, run_ablation
        from plinknet.study.paper import MODELS
        from plinknet.study.stats import format_summary
        from plinknet.train.config import TrainConfig

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would train the same runs into one archive
            raise ValueError("plinknet ablate runs in one process, not under torchrun; to use several GPUs, give "
                             "--processes N (one run per GPU at a time), or see the README for job arrays")  # fmt: skip
        given = read_yaml_mapping(args.config) if args.config else {}
        given = {k: v for k, v in given.items() if k not in BOOK_ONLY_KEYS}  # a book parameter file works too
        given.update(_overrides(args, TrainConfig))
        config = TrainConfig.from_dict(given)
        processes = _processes(args.processes, config.device)
        models = [name for name, slug in MODELS.items() if slug in args.models]
        summary = run_ablation(config, args.seeds, args.out, args.runs_dir, args.split, progress=config.progress,
                               models=models, runs_only=args.runs_only, processes=processes,
                               data_sha256=args.data_sha256, retrain=args.retrain)  # fmt: skip
        if summary is not None:
            print(format_summary(summary))
        print(f"archive: {args.out}" + (" (run records only)" if summary is None else ""))
    elif args.command == "check-data":
        from plinknet.data.checks import check_and_hash, count_tiles

        if args.data is not None:  # the old positional spelling
            if args.data_dir is not None:
                raise ValueError("give the dataset folder once, as --data-dir")
            _deprecated("the positional dataset folder of check-data", "--data-dir")
            args.data_dir = args.data
        if args.data_dir is None:
            raise ValueError("check-data needs --data-dir (the dataset folder)")
        problems, checksum = check_and_hash(args.data_dir, progress=not args.quiet)
        if problems:
            print("\n".join(problems))
            raise InriaDataError(f"{len(problems)} problem(s) in {args.data_dir}, listed above")
        print(f"{args.data_dir}: {count_tiles(args.data_dir)} tile(s) checked, every one readable and sound; "
              f"SHA-256 {checksum} (both remembered: make paper and ablate read nothing more)")  # fmt: skip
    elif args.command == "evaluate":
        _evaluate(args)
    elif args.command == "predict":
        _predict(args)
    elif args.command == "bench":
        from plinknet import bench

        options = {"data": {"workers": args.workers, "throughput_crops": args.crops, "cache_dir": args.cache_dir},
                   "train": {"workers": args.workers, "batch": args.batch_size, "steps": args.steps,
                             "compile": args.compile}}.get(args.what, {})  # fmt: skip
        options = {k: v for k, v in options.items() if v is not None}
        for flag, value, low in (("--workers", args.workers, 0), ("--crops", args.crops, 1),
                                 ("--batch-size", args.batch_size, 1), ("--steps", args.steps, 1)):  # fmt: skip
            if value is not None and value < low:
                raise ValueError(f"{flag} must be at least {low}, got {value}")
        result = bench.run(args.what, device=args.device, data_dir=args.data_dir, **options)
        if args.json:
            from plinknet.files import write_json

            write_json(result, args.json)


def _evaluate(args: argparse.Namespace) -> None:
    """Evaluate (tiles shared among processes under torchrun), print, then write the report."""
    from plinknet import distributed
    from plinknet.device import resolve_device
    from plinknet.files import write_json
    from plinknet.infer.evaluate import format_table
    from plinknet.study.lab import evaluate_with_lab, format_lab_table

    rank, _ = distributed.init(resolve_device(args.device))
    try:
        report = evaluate_with_lab(args.checkpoint, args.data_dir, split=args.split, config=_predict_config(args),
                                   device=args.device, progress=not args.quiet, tiles=args.tiles)  # fmt: skip
    finally:
        distributed.shutdown()
    if rank != 0:
        return
    print(format_table(report))
    if "lab" in report:  # the synthetic sample's lab labels
        print(format_lab_table({Path(args.checkpoint).stem: report["lab"]["rates"]}, report["lab"]["counts"]))
    print(f"(IoU: building class over all pixels; mIoU: mean of building and background IoU; data {args.data_dir}, "
          f"{report['split']} tiles, device {report['device']}, {report['world_size']} process(es))")  # fmt: skip
    name = "metrics.json" if args.split == "val" and not args.tiles else f"metrics-{report['split']}.json"
    out = args.out or Path(args.checkpoint).parent / name
    try:
        print(f"report: {write_json(report, out)}")
    except OSError as error:
        reason = error.strerror or error
        raise OSError(f"could not write the report to {out} ({reason}); the results are above") from None


def _processes(value: str, device: str) -> int:
    """``--processes``: a number of at least 1, or ``auto`` (every GPU this process was given; refused without one).

    Counts GPUs only (:func:`plinknet.device.assigned_gpus`): no CUDA context in the process that hands them out.
    """
    if value == "auto":
        from plinknet.device import assigned_gpus

        gpus = assigned_gpus()
        if not gpus:
            raise ValueError("--processes auto shares the runs among the GPUs, and torch sees no CUDA GPU here; the "
                             "paper's recipe needs GPUs (on the CPU give a number of processes)")  # fmt: skip
        if device not in ("auto", "cuda"):
            raise ValueError(f"--processes auto shares the runs among the GPUs, but --device is {device}; give "
                             f"--device cuda, or a number of processes")  # fmt: skip
        return len(gpus)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--processes must be a number of at least 1 or auto, got {value!r}")
    return int(value)


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"not a SHA-256 (64 lowercase hex digits): {value!r}")
    return value


def _message(error: BaseException) -> str:
    """What a user reads: the first line of the message (``train`` unwraps DataLoader workers' errors); a CUDA or
    NCCL error whole (its later lines say which call failed and why), with the rank under torchrun."""
    from plinknet.device import is_gpu_error

    text = str(error).strip()
    if not text:
        return type(error).__name__
    if is_gpu_error(error):
        rank = os.environ.get("RANK") if os.environ.get("WORLD_SIZE", "1") != "1" else None
        return (f"rank {rank}: " if rank is not None else "") + f"{type(error).__name__}: {text}"
    return text.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt as interrupt:
        print(f"plinknet: interrupted{f' ({interrupt})' if str(interrupt) else ''}", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if os.environ.get("PLINKNET_DEBUG"):
            raise
        print(f"plinknet {args.command}: error: {_message(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
