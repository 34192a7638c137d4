"""Measuring helpers: wall time, peak memory, percentiles."""
from __future__ import annotations

import time
from contextlib import contextmanager

import psutil


def peak_rss_mb(pid: int | None = None, include_children: bool = True) -> float:
    """Resident memory of a process (and its children) right now, in MiB."""
    proc = psutil.Process(pid)
    procs = [proc] + (proc.children(recursive=True) if include_children else [])
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a child that ended between the listing and the read
            pass
    return total / 2**20


class Timer:
    """Wall-clock timer for a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


@contextmanager
def watch_memory(pid: int | None = None, interval: float = 0.2):
    """Sample the resident memory of ``pid`` and its children in the background.

    Yields a dict whose ``"peak_mb"`` holds the highest total seen, updated until the
    block ends.
    """
    import threading

    result = {"peak_mb": peak_rss_mb(pid)}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                result["peak_mb"] = max(result["peak_mb"], peak_rss_mb(pid))
            except psutil.Error:
                return
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
