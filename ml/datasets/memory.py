"""Memory of a process tree (the build's parent plus its workers), sampled in a thread.

RSS summed over processes double-counts pages the processes share (torch's libraries); PSS splits
shared pages between their users, so its sum is the tree's real footprint. Both are reported.
"""
from __future__ import annotations

import threading

import psutil


def tree_memory(root: psutil.Process | None = None) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over ``root`` and all its descendants."""
    root = root or psutil.Process()
    rss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


class PeakMemory:
    """Background sampler of :func:`tree_memory`; ``peak_rss``/``peak_pss`` hold the maxima."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_rss = self.peak_pss = self.last_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _run(self) -> None:
        root = psutil.Process()
        while not self._stop.is_set():
            self.sample(root)
            self._stop.wait(self.interval)

    def sample(self, root: psutil.Process | None = None) -> None:
        rss, pss = tree_memory(root)
        self.last_rss = rss
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
