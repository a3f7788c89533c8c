"""plinknet.trials.paper_rehearsal: make paper from data to verdict on the CPU, a worker killed and resumed."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from plinknet.trials import paper_rehearsal

ROOT = Path(__file__).resolve().parents[1]


def test_the_rehearsal_runs_the_paper_recipe_itself_with_cpu_settings(tmp_path):
    """`make -n` of the rehearsal's command is `make paper`'s one recipe line, with the CPU settings in it."""
    command = paper_rehearsal.make_command("make", tmp_path)
    assert command[:3] == ["make", "--no-print-directory", "paper"]
    shown = subprocess.run([*command[:2], "-n", *command[2:]], cwd=ROOT, capture_output=True, text=True, check=True)
    (line,) = [line for line in shown.stdout.replace("\\\n", " ").splitlines() if "plinknet ablate" in line]
    args = shlex.split(line)
    assert args[0].endswith("/plinknet") and args[1] == "ablate"
    given = dict(zip(args[2::], args[3::]))
    assert given["--config"] == "book/params/paper.yaml"  # make paper's own recipe file
    assert given["--device"] == "cpu" and given["--processes"] == "2" and given["--data-dir"] == str(tmp_path / "data")
    assert given["--out"] == str(tmp_path / "archive") and given["--encoder-weights"] == "none"
    assert args[args.index("--seeds") + 1 : args.index("--seeds") + 3] == ["0", "1"]
    paper = subprocess.run(["make", "--no-print-directory", "-n", "paper"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.replace("\\\n", " ")  # fmt: skip
    assert "--device cuda --processes auto --out results/paper-inria-gpu" in " ".join(paper.split())


def test_the_rehearsal_writes_only_into_a_folder_it_made(tmp_path):
    record = paper_rehearsal.own_folder(tmp_path / "new")
    assert record["phases"] == {} and (tmp_path / "new" / paper_rehearsal.MARK).is_file()
    assert paper_rehearsal.own_folder(tmp_path / "new") == record  # its own: taken up again
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's")
    with pytest.raises(FileExistsError, match="no rehearsal made"):
        paper_rehearsal.own_folder(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_rehearsal_stopped_before_its_kill_is_refused(tmp_path, capsys):
    folder = tmp_path / "stopped"
    paper_rehearsal.own_folder(folder)
    (folder / "runs" / "seed0").mkdir(parents=True)  # runs of a first make paper that was stopped
    with pytest.raises(SystemExit, match="stopped before its kill was recorded"):
        paper_rehearsal.main(["--folder", str(folder)])
    assert sorted(p.name for p in folder.iterdir()) == [paper_rehearsal.MARK, "runs"]  # nothing written


def test_a_verdict_that_passes_a_rehearsal_off_as_inria_is_refused():
    good = "**A rehearsal of `make paper` on synthetic data, not Inria**: the paper's claim is not tested."
    paper_rehearsal.check_verdict({"intro": [good], "chapter_4": [good]})
    with pytest.raises(RuntimeError, match="as a result on Inria"):
        paper_rehearsal.check_verdict({"intro": [good + " On Inria, 2 seeds: a gap of +0.1"]})
    with pytest.raises(RuntimeError, match="does not call the archive a rehearsal"):
        paper_rehearsal.check_verdict({"chapter_4": ["**On Inria the paper's claim is inconclusive**"]})


@pytest.mark.slow
def test_make_paper_rehearsed_with_a_worker_killed_and_resumed(tmp_path):
    """The whole rehearsal (about 5 minutes on 2 cores): killed, resumed, finished runs untouched, the verdict."""
    folder = tmp_path / "rehearsal"
    done = subprocess.run([sys.executable, "-m", "plinknet.trials.paper_rehearsal", "--folder", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((folder / paper_rehearsal.MARK).read_text())
    assert record["complete"] and record["total_seconds"] < 600
    killed = record["phases"]["make paper, a worker killed after its run's first epoch"]
    assert killed["exit_code"] != 0 and killed["killed"]["epochs_saved"] == 1
    assert "killed by SIGKILL" in Path(killed["log"]).read_text()
    resumed = record["phases"]["make paper again: the killed run resumes, the others are kept"]
    assert resumed["killed_run_launches_from"] == [1, 2] and len(resumed["finished_runs_untouched"]) == 6
    assert resumed["summary_data_kind"] == "synthetic"
    summary = json.loads((folder / "archive" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and len(list((folder / "archive" / "runs").glob("*.json"))) == 4
    pages = record["phases"]["page one and chapter 4 against the rehearsal's archive"]["pages"]
    assert all("rehearsal" in " ".join(lines) and "On Inria" not in " ".join(lines) for lines in pages.values())
    again = subprocess.run([sys.executable, "-m", "plinknet.trials.paper_rehearsal", "--folder", str(folder)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0 and "complete" in again.stdout  # done: reported, not run again
