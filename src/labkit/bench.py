"""Measuring helpers: wall time, peak memory, latency percentiles, and how load-test results are reported.

Load-test conventions shared by lab 4 and ``benchmarks/serving_throughput.py``:
output tokens are the server's own count (``usage.completion_tokens``), inter-token
latencies are per token (a chunk that brings k tokens after a gap counts as k gaps of
gap/k), a run with fewer than ``P95_MIN_SAMPLES`` requests reports its maximum latency
rather than a p95, and repeated runs are reported as median and min-max.
"""
from __future__ import annotations

import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
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


def latency_summary(seconds) -> dict:
    """p50, p95 and mean of a list of latencies in seconds, reported in milliseconds."""
    seconds = list(seconds)
    if not seconds:
        raise ValueError("no latencies to summarise")
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": len(ms)}


# Below this many requests a p95 is the largest sample or close to it: report the maximum.
P95_MIN_SAMPLES = 20
_DATA = Path(__file__).with_name("data")


def tail_statistic(samples: int) -> str:
    """Which tail a run of ``samples`` requests can honestly report: ``"p95"`` or ``"max"``."""
    if samples < 1:
        raise ValueError(f"a run needs at least one request, got {samples}")
    return "p95" if samples >= P95_MIN_SAMPLES else "max"


def combine_repeats(summaries: list[dict]) -> dict:
    """Repeated runs of one load level as medians with their min and max.

    Each summary is one run's dict (``requests``, ``throughput_tok_s``, ``ttft_p95_s``,
    ``ttft_max_s``, ``e2e_p95_s``, ``e2e_max_s``, ``itl_p50_s``, ...). The result holds, for
    every numeric key, the median over runs under the same key and its spread under
    ``<key>_min`` and ``<key>_max``; ``ttft_tail_s`` and ``e2e_tail_s`` (with their spread)
    are the p95 or the maximum, as ``tail`` says, chosen by ``tail_statistic``;
    ``repeats`` counts the runs.
    """
    if not summaries:
        raise ValueError("no runs to combine")
    sizes = {int(s["requests"]) for s in summaries}
    if len(sizes) != 1:
        raise ValueError(f"runs of one level must send the same number of requests, got {sorted(sizes)}")
    tail = tail_statistic(sizes.pop())
    runs = [dict(s, ttft_tail_s=s[f"ttft_{tail}_s"], e2e_tail_s=s[f"e2e_{tail}_s"]) for s in summaries]
    combined: dict = {"repeats": len(runs), "tail": tail}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [float(run[key]) for run in runs]
            combined[key] = statistics.median(values)
            combined[f"{key}_min"], combined[f"{key}_max"] = min(values), max(values)
    return combined


def recorded_stream_traces() -> dict:
    """Streams recorded from a real vLLM server (``labkit/data/vllm_stream_traces.json``).

    ``{"recorded": how and where, "wall_s": ..., "requests": [{"chunks": [[seconds since
    the request was sent, text, running usage.completion_tokens or None], ...],
    "ttft_s", "itl_s", "e2e_s", "output_tokens"}, ...]}``.
    """
    return json.loads((_DATA / "vllm_stream_traces.json").read_text())
