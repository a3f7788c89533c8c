"""``make paper`` rehearsed from data to verdict on the CPU, a worker killed on the way: ``make paper-rehearsal``.

    make paper-rehearsal    # python -m plinknet.trials.paper_rehearsal --folder runs/paper-rehearsal

Everything goes into ``--folder``, a folder this command makes and marks as its own (``rehearsal.json``;
a folder without that mark is refused). In order:

1. **data**: a small synthetic sample in Inria's layout (5 cities, tiles 1, 6 and 7 of 256 px, with lab
   labels), ``<folder>/data``;
2. **make paper, killed**: ``make paper`` itself, the same Makefile recipe and ``book/params/paper.yaml``, given
   CPU settings through make variables (:data:`MAKE_SETTINGS`: 2 worker processes on the CPU, seeds 0 and 1,
   and :data:`SCHEDULE`, a short schedule from random encoder weights). Once one run has finished its first
   epoch of three, its worker is killed (SIGKILL): that ``make paper`` fails, naming the run;
3. **make paper, resumed**: the same command again. The killed run resumes from its last saved epoch; the
   runs that had finished are not touched (their checkpoints' SHA-256 and modification times are compared);
   the parent alone writes the summary;
4. **verdict**: page one and chapter 4 executed with papermill against that archive (their ``paper_dir``
   parameter) into ``<folder>/book/``; the verdict they print must call the archive a rehearsal on synthetic
   data, and never a result on Inria.

``<folder>/rehearsal.json`` keeps each phase's seconds, the run killed and how it resumed, the checkpoints
compared, the verdict line and the provenance. A finished rehearsal is reported, not repeated (``--folder``
elsewhere to rehearse again); one stopped after its kill goes on from the phase it stopped in; one stopped before
it is refused, since its runs cannot be killed halfway again. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from plinknet.bench.memory import process_tree
from plinknet.files import write_json
from plinknet.provenance import provenance

MARK = "rehearsal.json"  # what makes a folder this command's own
SEEDS = (0, 1)
SCHEDULE = ("--encoder-weights none --crop-size 128 --batch-size 4 --samples-per-tile 24 --val-samples-per-tile 2 "
            "--epochs 3 --lr 0.1 --lr-milestones 2")  # fmt: skip
KILL_AFTER_EPOCHS = 1  # of the schedule's 3: halfway
DEMO = {"epochs": 1, "samples_per_tile": 4, "val_samples_per_tile": 2, "crop_size": 128, "batch_size": 4}  # chapter 4


def make_settings(folder: Path) -> dict[str, str]:
    """The make variables that turn ``make paper`` into its rehearsal: data, archive, runs, CPU, 2 processes."""
    return {"PAPER_DATA": str(folder / "data"), "PAPER_OUT": str(folder / "archive"),
            "PAPER_RUNS": str(folder / "runs"), "PAPER_DEVICE": "cpu", "GPUS": "2",
            "SEEDS": " ".join(map(str, SEEDS)), "PAPER_OPTIONS": SCHEDULE}  # fmt: skip


def make_command(make: str, folder: Path) -> list[str]:
    return [*shlex.split(make), "--no-print-directory", "paper",
            *(f"{key}={value}" for key, value in make_settings(folder).items())]  # fmt: skip


def own_folder(folder: Path) -> dict:
    """The rehearsal's record in ``folder``, made when the folder is new; refuses a folder that is not a rehearsal's.

    Raises:
        FileExistsError: ``folder`` exists, holds something and carries no rehearsal mark.
    """
    mark = folder / MARK
    if mark.is_file():
        return json.loads(mark.read_text())
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} holds files that no rehearsal made (no {MARK}); choose another --folder")
    folder.mkdir(parents=True, exist_ok=True)
    record = {"what": "make paper rehearsed on the CPU, on synthetic data (not Inria)", "phases": {}}
    write_json(record, mark)
    return record


def checkpoints(runs: Path) -> dict[str, dict]:
    """SHA-256 and modification time of every checkpoint under ``runs``."""
    found = {}
    for path in sorted(runs.rglob("*.pt")):
        found[str(path.relative_to(runs))] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                              "mtime_ns": path.stat().st_mtime_ns}  # fmt: skip
    return found


def _worker_of(root: int, seed: int, model_slug: str) -> int | None:
    """The pid of the ``ablate --runs-only`` worker training ``seed`` of ``model_slug``, if it runs."""
    for pid in process_tree(root)[1:]:
        try:
            argv = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        if "--runs-only" in argv and argv[argv.index("--seeds") + 1] == str(seed) and \
                argv[argv.index("--models") + 1] == model_slug:  # fmt: skip
            return pid
    return None


def _epochs_done(run: Path) -> int:
    history = run / "history.csv"
    try:
        return max(0, len(history.read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def killed_make_paper(command: list[str], folder: Path, log: Path, timeout_s: float = 900) -> dict:
    """Run ``make paper``; SIGKILL the worker of the first run past its first epoch; return what happened."""
    from plinknet.study.paper import MODELS

    runs, records = folder / "runs", folder / "archive" / "runs"
    with log.open("w") as out:
        make = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killed, deadline = None, time.monotonic() + timeout_s
        while make.poll() is None and time.monotonic() < deadline:
            if killed is None:
                for seed in SEEDS:
                    for model, slug in MODELS.items():
                        run = runs / f"seed{seed}" / slug
                        done = _epochs_done(run)
                        record = records / f"seed{seed}-{slug}.json"
                        if KILL_AFTER_EPOCHS <= done < 3 and not record.exists():
                            pid = _worker_of(make.pid, seed, slug)
                            if pid is not None:
                                os.kill(pid, signal.SIGKILL)
                                killed = {"model": model, "seed": seed, "run": str(run), "folder": f"seed{seed}/{slug}",
                                          "epochs_saved": done, "pid": pid}  # fmt: skip
                                break
                    if killed:
                        break
            time.sleep(0.05)
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
            raise TimeoutError(f"make paper ran past {timeout_s:.0f} s (log: {log})")
    if killed is None:
        raise RuntimeError(f"no run was caught between epochs {KILL_AFTER_EPOCHS} and 3: the schedule is too short "
                           f"for this machine (log: {log})")  # fmt: skip
    return {"exit_code": make.returncode, "killed": killed, "log": str(log)}


def run_book(folder: Path, book: Path) -> dict:
    """Page one and chapter 4 against the rehearsal's archive; the verdict line page one prints."""
    import papermill

    out = folder / "book"
    out.mkdir(exist_ok=True)
    archive = (folder / "archive").resolve()
    common = {"results_dir": str((book.parent / "results").resolve()), "paper_dir": str(archive)}
    papermill.execute_notebook(str(book / "intro.ipynb"), str(out / "intro.ipynb"), parameters=common, cwd=str(book),
                               progress_bar=False, kernel_name="python3")  # fmt: skip
    demo = {**DEMO, "run_dir": str((folder / "demo").resolve()), "data_dir": str((folder / "data").resolve()),
            "synthetic": True, "device": "cpu", "workers": 0}  # fmt: skip
    papermill.execute_notebook(str(book / "04_ablation.ipynb"), str(out / "04_ablation.ipynb"),
                               parameters={**common, **demo}, cwd=str(book), progress_bar=False,
                               kernel_name="python3")  # fmt: skip
    return {"intro": verdict_lines(out / "intro.ipynb"), "chapter_4": verdict_lines(out / "04_ablation.ipynb")}


def verdict_lines(notebook: Path) -> list[str]:
    """The Markdown a notebook printed that speaks of the rehearsal, Inria or the claim's status."""
    cells = json.loads(notebook.read_text())["cells"]
    found = []
    for cell in cells:
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/markdown", []))
            if any(word in text for word in ("rehearsal", "On Inria", "Status of the claim", "claim is")):
                found.append(text)
    return found


def check_verdict(lines: dict[str, list[str]]) -> None:
    """Both pages call the archive a rehearsal on synthetic data and never present it as a result on Inria."""
    for page, texts in lines.items():
        joined = "\n".join(texts)
        if "rehearsal" not in joined or "synthetic data" not in joined:
            raise RuntimeError(f"{page} does not call the archive a rehearsal on synthetic data: {joined[:300]!r}")
        if "On Inria" in joined:
            raise RuntimeError(f"{page} presents the rehearsal as a result on Inria: {joined[:300]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--folder", type=Path, default=Path("runs/paper-rehearsal"), help="made here and marked")
    parser.add_argument("--book", type=Path, default=Path("book"), help="the book's notebooks")
    parser.add_argument("--make", default=os.environ.get("MAKE", "make"), help="the make command (make's $(MAKE))")
    args = parser.parse_args(argv)
    folder = args.folder
    record = own_folder(folder)
    if record.get("complete"):
        print(f"{folder}: this rehearsal is complete ({record['total_seconds']:.0f} s); choose another --folder "
              f"to rehearse again")  # fmt: skip
        return 0
    started = time.perf_counter()
    phases = record["phases"]
    killing = "make paper, a worker killed after its run's first epoch"
    if killing not in phases and (folder / "runs").exists():
        raise SystemExit(f"{folder} holds runs of a rehearsal stopped before its kill was recorded: they cannot be "
                         f"killed halfway again; choose another --folder")  # fmt: skip

    def phase(name: str, what, *args):
        if name in phases:  # done by an earlier call that was stopped later: what matches is taken up
            print(f"== {name}: done before ({phases[name]['seconds']:.0f} s)", flush=True)
            return phases[name]
        print(f"== {name}", flush=True)
        begun = time.perf_counter()
        result = what(*args)
        phases[name] = {"seconds": round(time.perf_counter() - begun, 1), **(result or {})}
        write_json(record, folder / MARK)
        print(f"   {phases[name]['seconds']:.0f} s", flush=True)
        return result

    from plinknet.synthetic import SyntheticConfig, write_sample

    def data() -> dict:
        root, written = write_sample(folder / "data", seed=0, config=SyntheticConfig(tile_size=256, val_tiles=1,
                                                                                     train_tiles=2), progress=False)
        return {"data": str(root), "written": written}

    phase("data: a small synthetic sample in Inria's layout", data)
    command = make_command(args.make, folder)
    print("   " + shlex.join(command), flush=True)
    def killed_and_kept() -> dict:
        result = killed_make_paper(command, folder, folder / "make-paper-killed.log")
        if result["exit_code"] == 0:
            raise SystemExit(f"make paper succeeded although a worker was killed: see {result['log']}")
        prefix = result["killed"]["folder"] + "/"
        kept = {name: facts for name, facts in checkpoints(folder / "runs").items() if not name.startswith(prefix)}
        return {**result, "finished_checkpoints": kept}

    first = phase(killing, killed_and_kept)
    killed, finished = first["killed"], first["finished_checkpoints"]

    def resumed() -> dict:
        log = folder / "make-paper-resumed.log"
        with log.open("w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise SystemExit(f"make paper did not finish after the kill (exit {code}); see {log}")
        after = checkpoints(folder / "runs")
        changed = sorted(name for name, facts in finished.items() if after.get(name) != facts)
        if changed:
            raise SystemExit(f"finished runs were touched by the resumed make paper: {', '.join(changed)}")
        import torch

        state = torch.load(Path(killed["run"]) / "last.pt", weights_only=True)
        starts = [launch["from_epoch"] for launch in state["launches"]]
        if starts != [1, killed["epochs_saved"] + 1] or state["epoch"] != 2:
            raise SystemExit(f"the killed run did not resume from epoch {killed['epochs_saved'] + 1}: launches "
                             f"from epochs {starts}, last epoch {state['epoch'] + 1}")  # fmt: skip
        summary = json.loads((folder / "archive" / "summary.json").read_text())
        return {"log": str(log), "finished_runs_untouched": sorted(finished), "killed_run_launches_from": starts,
                "summary_data_kind": summary["data_kind"], "seeds": summary["seeds"]}  # fmt: skip

    phase("make paper again: the killed run resumes, the others are kept", resumed)

    def verdict() -> dict:
        lines = run_book(folder, args.book)
        check_verdict(lines)
        return {"pages": lines}

    phase("page one and chapter 4 against the rehearsal's archive", verdict)
    record.update(total_seconds=round(time.perf_counter() - started, 1), complete=True, provenance=provenance("cpu"),
                  command=shlex.join(command))  # fmt: skip
    write_json(record, folder / MARK)
    print(f"rehearsal complete in {record['total_seconds']:.0f} s: killed {killed['model']} seed {killed['seed']} "
          f"after epoch {killed['epochs_saved']}, resumed from epoch {killed['epochs_saved'] + 1}; "
          f"{len(finished)} checkpoint(s) of finished runs untouched; verdict pages in {folder / 'book'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
