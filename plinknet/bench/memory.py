"""Peak memory of a process tree (PSS and RSS summed over its children), sampled while work runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), started from any of its threads."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, parents before their children (Linux /proc; ``[pid]`` elsewhere)."""
    pids, frontier = [], [pid]
    while frontier:
        pid = frontier.pop(0)
        pids.append(pid)
        frontier += _children(pid)
    return pids


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB from /proc/<pid>/smaps_rollup; (0, 0) if it is gone."""
    values = {"Pss:": 0, "Rss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, *rest = line.split()
            if key in values:
                values[key] = int(rest[0])
    except (OSError, ValueError, IndexError):
        pass
    return values["Pss:"], values["Rss:"]


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled in a background thread.

    PSS (proportional set size) splits each shared page among the processes that map it, so
    summing it over DataLoader workers that share memory-mapped tiles or forked pages counts
    them once; RSS would count them once per process. Linux only (``/proc``); elsewhere the
    peaks stay None.

    Example::

        with TreeMemory() as memory:   # this process and its children
            ...
        memory.peak_pss_mb
    """

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.available = Path(f"/proc/{self.pid}/smaps_rollup").exists()
        self.peak_pss_mb: float | None = None
        self.peak_rss_mb: float | None = None
        self.peak_processes = 0
        self._stop = threading.Event()

    def sample(self) -> None:
        pids = process_tree(self.pid)
        pss, rss = map(sum, zip(*(_memory_kb(pid) for pid in pids)))
        self.peak_pss_mb = max(self.peak_pss_mb or 0.0, pss / 1024)
        self.peak_rss_mb = max(self.peak_rss_mb or 0.0, rss / 1024)
        self.peak_processes = max(self.peak_processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemory:
        if self.available:
            self.sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()

