"""labkit's infrastructure: settings, data, measuring, plots, notebook runner, command line."""
from __future__ import annotations

import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labkit import bench, config, corpus, plots
from labkit.course import cli
from labkit.course.labrun import LabRunError, run_notebook


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_quick_mode_switch(monkeypatch, value, expected):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("LABKIT_QUICK", value)
    assert config.quick_mode() is expected


def test_grading_turns_quick_mode_on(monkeypatch):
    monkeypatch.delenv("LABKIT_QUICK", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert config.quick_mode() is True


def test_folders_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "out"))
    assert config.cache_dir() == tmp_path / "cache" and config.cache_dir().is_dir()
    assert config.results_dir() == tmp_path / "out" and config.results_dir().is_dir()


def test_http_corpus_and_queries_agree():
    documents = corpus.http_status_corpus()
    ids = [doc["id"] for doc in documents]
    assert len(ids) == len(set(ids)) >= 60
    assert all(doc["text"].startswith(str(doc["id"])) for doc in documents)
    assert {code for _, code in corpus.HTTP_STATUS_QUERIES} <= set(ids)
    assert len(corpus.HTTP_STATUS_QUERIES) >= 20


def test_stdlib_passages_are_reproducible():
    first = corpus.stdlib_passages(50, seed=3)
    assert first == corpus.stdlib_passages(50, seed=3) and len(set(first)) == 50
    assert first != corpus.stdlib_passages(50, seed=4)
    with pytest.raises(ValueError, match="asked for"):
        corpus.stdlib_passages(10**7)


def test_timer_and_memory_watch():
    with bench.watch_memory(interval=0.01) as memory, bench.Timer() as timer:
        block = bytearray(64 * 2**20)
        time.sleep(0.1)
    del block
    assert 0.09 < timer.seconds < 2
    assert memory["peak_mb"] > 64


def test_plots_save_png(tmp_path):
    path = tmp_path / "fig" / "line.png"
    plots.line_chart([1, 2, 4], {"a": [1, 2, 3]}, "x", "y", "t", logx=True, path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    plots.heatmap([[1.0, 0.5], [0.5, 1.0]], ["a", "b"], ["a", "b"], "h", path=tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def _notebook(path, *sources):
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return path


def test_runner_executes_and_keeps_the_original(tmp_path):
    nb = _notebook(tmp_path / "ok.ipynb", "import os\nx = os.environ['LABKIT_QUICK']", "print(x)")
    before = nb.read_bytes()
    run = run_notebook(nb, tmp_path / "out" / "ok.ipynb", timeout=60)
    assert nb.read_bytes() == before, "the learner's notebook is never rewritten"
    executed = nbformat.read(run.executed_copy, as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "1"
    assert run.wall_s > 0 and run.peak_mb > 10


def test_runner_names_the_failing_cell(tmp_path):
    nb = _notebook(tmp_path / "bad.ipynb", "x = 1", "raise RuntimeError('model server down')")
    with pytest.raises(LabRunError) as error:
        run_notebook(nb, tmp_path / "bad.out.ipynb", timeout=60)
    message = str(error.value)
    assert "bad.ipynb" in message and "cell 1" in message and "model server down" in message
    assert (tmp_path / "bad.out.ipynb").exists(), "the executed copy with the traceback is kept"


def test_runner_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    with pytest.raises(LabRunError, match="broken.ipynb is not a readable notebook"):
        run_notebook(broken)
    with pytest.raises(ValueError, match="must not overwrite"):
        run_notebook(_notebook(tmp_path / "same.ipynb", "1"), tmp_path / "same.ipynb")


def test_cli_run_reports_failures(tmp_path, capsys):
    good = _notebook(tmp_path / "good.ipynb", "1 + 1")
    bad = _notebook(tmp_path / "bad.ipynb", "1 / 0")
    assert cli.main(["run", str(good), "--output-dir", str(tmp_path / "out")]) == 0
    assert "wall" in capsys.readouterr().out
    assert cli.main(["run", str(good), str(bad), "--output-dir", str(tmp_path / "out")]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_cli_lists_models(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "LABKIT_CHAT_MODEL" in out


def test_small_runs_report_their_maximum_not_a_p95():
    assert [bench.tail_statistic(n) for n in (1, 8, 19, 20, 64)] == ["max", "max", "max", "p95", "p95"]
    with pytest.raises(ValueError, match="at least one request"):
        bench.tail_statistic(0)


def _run(requests, throughput, e2e_p95, e2e_max):
    return {"requests": float(requests), "throughput_tok_s": throughput, "ttft_p95_s": e2e_p95 / 4,
            "ttft_max_s": e2e_max / 4, "e2e_p95_s": e2e_p95, "e2e_max_s": e2e_max}


def test_repeats_are_combined_as_median_and_range():
    row = bench.combine_repeats([_run(8, 30.0, 1.0, 1.5), _run(8, 10.0, 1.1, 3.0), _run(8, 20.0, 0.9, 2.0)])
    assert row["repeats"] == 3 and row["tail"] == "max"
    assert (row["throughput_tok_s"], row["throughput_tok_s_min"], row["throughput_tok_s_max"]) == (20.0, 10.0, 30.0)
    assert (row["e2e_tail_s"], row["e2e_tail_s_min"], row["e2e_tail_s_max"]) == (2.0, 1.5, 3.0), "8 requests: the maximum"
    assert row["ttft_tail_s"] == 0.5
    big = bench.combine_repeats([_run(24, 30.0, 1.0, 1.5), _run(24, 40.0, 1.2, 3.0)])
    assert big["tail"] == "p95" and big["e2e_tail_s"] == pytest.approx(1.1) and big["throughput_tok_s"] == 35.0
    with pytest.raises(ValueError, match="no runs"):
        bench.combine_repeats([])
    with pytest.raises(ValueError, match="same number of requests"):
        bench.combine_repeats([_run(8, 1.0, 1.0, 1.0), _run(24, 1.0, 1.0, 1.0)])


def test_recorded_vllm_streams_are_consistent():
    """The streams lab 4's hidden checks replay: real chunk timings that agree with their derived numbers."""
    traces = bench.recorded_stream_traces()
    assert "vllm" in traces["recorded"] and "AMD EPYC" in traces["recorded"]
    assert "Q4_1" in traces["model"]["what"]
    requests = traces["requests"]
    assert len(requests) >= 4 and traces["wall_s"] >= max(r["e2e_s"] for r in requests) * 0.9
    for request in requests:
        times = [at for at, _, _ in request["chunks"]]
        assert times == sorted(times), "chunks arrive in order"
        texts = [chunk for chunk in request["chunks"] if chunk[1]]
        assert request["chunks"][-1][2] == request["output_tokens"], "the last chunk carries the server's count"
        assert len(request["itl_s"]) == request["output_tokens"] - 1
        assert request["ttft_s"] == pytest.approx(texts[0][0], abs=0.01)
        assert sum(request["itl_s"]) == pytest.approx(texts[-1][0] - texts[0][0], abs=0.01)
        assert request["e2e_s"] >= request["chunks"][-1][0] - 0.01


def test_latency_summary():
    summary = bench.latency_summary([0.001] * 19 + [0.1])
    assert summary["p50_ms"] == pytest.approx(1.0) and summary["p95_ms"] > 1.0 and summary["n"] == 20
    with pytest.raises(ValueError):
        bench.latency_summary([])
