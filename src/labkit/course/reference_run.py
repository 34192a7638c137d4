"""The reference run: what CI's run of each lab's reference solution left, shown on the lab's page.

CI autogrades every lab's reference solution in quick mode (tests/test_autograder.py). Right
after a lab scores full marks, ``harvest`` copies that run's results JSON and figures (never a
notebook, never code) into ``<folder>/<lab>/`` with a ``run.json`` saying when, on what
hardware, in which precision and mode, at which commit, and with what score. The book's
extension (book/_ext/reference_run.py) then adds a section "The reference run" to each lab's
page from those files: the headline numbers and the figures that ``PAGES`` declares.

The folder is ``LABKIT_REFERENCE_RUN`` (default ``_build/reference-run``, relative to the
course's root). With ``LABKIT_REFERENCE_RUN_REQUIRED=1`` (CI and the publishing workflow) a
lab without a complete reference run stops the book's build; without it such a page says
that the published site shows the reference run there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FOLDER_ENV = "LABKIT_REFERENCE_RUN"
REQUIRED_ENV = "LABKIT_REFERENCE_RUN_REQUIRED"
DEFAULT_FOLDER = "_build/reference-run"
RUN_FILE = "run.json"
COPIED_SUFFIXES = (".json", ".png", ".svg")  # results and figures; never notebooks, code or reports

Keys = tuple[str | int, ...]


class ReferenceRunError(ValueError):
    """A reference run is missing or does not hold what the lab's page shows; the message says how to make it.

    ``reason``: what is wrong, without the lab's name or the remedy (for a list of several labs).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class Number:
    """One headline number: its label, where it is in the results JSON, and how it is written.

    ``paths``: one key path per value; ``style`` is a format string that receives the values in
    order (``"{0:.2f} [{1[0]:.2f}, {1[1]:.2f}]"``) or a function of them. ``when_null``: the text
    shown when a path meets a JSON null (a lab's way of saying "none"); without it a null is an error.
    """
    label: str
    paths: tuple[Keys, ...]
    style: str | Callable[..., str] = "{0}"
    when_null: str | None = None

    def render(self, data: dict, where: str) -> str:
        values = []
        for path in self.paths:
            value = lookup(data, path, where)
            if value is None:
                if self.when_null is None:
                    raise ReferenceRunError(f"{where}{_keys(path)} is null, which the page cannot show as {self.label!r}")
                return self.when_null
            values.append(value)
        try:
            return self.style(*values) if callable(self.style) else self.style.format(*values)
        except (TypeError, ValueError, KeyError, IndexError) as error:
            raise ReferenceRunError(f"{where}: {self.label!r} cannot be written from {values!r} ({error})") from None


@dataclass(frozen=True)
class LabPage:
    """What a lab's page shows of its reference run: the results JSON, numbers from it, and figures."""
    stem: str
    phase: str
    figures: tuple[tuple[str, str], ...]  # (file name, caption)
    results: str | None = None  # the results JSON's file name
    numbers: tuple[Number, ...] = field(default_factory=tuple)

    @property
    def docname(self) -> str:
        return f"notebooks/{self.phase}/{self.stem}"


def _count(items) -> str:
    return str(len(items))


def _passed(signals: dict) -> str:
    return f"{sum(bool(v) for v in signals.values())} of {len(signals)}"


_RATE = "{0:.0%} (95% Wilson interval {1[0]:.0%} to {1[1]:.0%})"
_EXACT = "{0[0]:.0%} (95% Wilson interval {0[1]:.0%} to {0[2]:.0%})"

# One place says what every lab's page shows. tests/test_reference_run.py checks each path
# against the results the labs really write.
PAGES = {page.stem: page for page in (
    LabPage("01_embeddings", "phase1",
            (("01_embeddings_throughput.png", "Encoding throughput of all-MiniLM-L6-v2 by batch size"),),
            "01_embeddings.json", (
                Number("known-item search", (("known_item_search", "queries"), ("known_item_search", "documents")),
                       "{0} hand-written queries over {1} HTTP status codes"),
                *(Number(f"recall@{k}", (("known_item_search", f"recall@{k}"), ("known_item_search", f"recall@{k}_wilson95")),
                         _RATE) for k in (1, 5)),
                Number("best encoding throughput", (("throughput_passages_per_s",), ("best_batch_size",)),
                       lambda rates, best: f"{rates[str(best)]:.0f} passages/s at batch size {best}"),
            )),
    LabPage("02_vector_search", "phase1",
            (("02_vector_search_hnsw.png", "Recall and latency of exact search against HNSW as the index grows"),),
            "02_vector_search.json", (
                *(Number(f"hit rate@5, chunked as {name}", (("chunking", name, "hit rate@5"), ("chunking", name, "hit rate@5_wilson95")),
                         _RATE) for name in ("fixed 500, overlap 100", "paragraphs", "recursive 500")),
                Number("chunks in the largest index", (("largest_index", "chunks"),), "{0:,}"),
                Number("p50 latency, Qdrant local mode (exact)", (("largest_index", "qdrant exact p50 ms"),), "{0:.1f} ms"),
                Number("p50 latency, pgvector exact scan", (("largest_index", "pg exact p50 ms"),), "{0:.1f} ms",
                       when_null="not measured: PostgreSQL did not start"),
                Number("p50 latency and recall@10, pgvector HNSW (ef_search 40)",
                       (("largest_index", "pg hnsw ef40 p50 ms"), ("largest_index", "pg hnsw ef40 recall")),
                       "{0:.1f} ms, recall {1:.3f}", when_null="not measured: PostgreSQL did not start"),
            )),
    LabPage("03_rag_with_eval", "phase1",
            (("03_rag_retrieval.png", "Retrieval scores of BM25, dense and hybrid search on the development set"),),
            "03_rag_with_eval.json", (
                Number("passages in the index", (("passages",),)),
                Number("development questions, hand-written", (("dev_questions", "hand-written"),)),
                Number("development questions, generated by the chat model", (("dev_questions", "generated"),)),
                *(Number(f"hit rate@5 on the development set, {name}",
                         (("dev_scores", name, "hit rate@5"), ("dev_hit_rate@5_wilson95", name)),
                         "{0:.2f} (95% Wilson interval {1[0]:.2f} to {1[1]:.2f})")
                  for name in ("BM25", "dense", "hybrid (RRF)")),
                Number("configuration chosen on the development set", (("chosen_configuration",),)),
                Number("mean faithfulness of the generated answers", (("mean_faithfulness",), ("answers",)),
                       "{0:.2f} over {1} answers"),
            )),
    LabPage("04_serve_with_vllm", "phase2",
            (("04_serving_throughput_latency.png", "Throughput against end-to-end latency, with and without continuous batching"),),
            "04_serving_results.json", (
                Number("engine", (("engine",),)),
                Number("output tokens per request", (("max_tokens",),)),
                Number("best throughput under the latency target",
                       (("best_under_target", "throughput_tok_s"), ("best_under_target", "concurrency"),
                        ("best_under_target", "max_num_seqs"), ("e2e_target_s",)),
                       "{0:.0f} output tokens/s (concurrency {1}, max-num-seqs {2}, target {3:g} s)",
                       when_null="no setting met the latency target"),
                Number("continuous batching against the same engine without it, at the top concurrency",
                       (("batching_ratio_at_top_concurrency",),), "{0:.1f}x the throughput"),
                Number("cost per million output tokens, at the lab's illustrative hourly price",
                       (("usd_per_million_output_tokens",),), "{0:.2f} $"),
                Number("agreement with vLLM's own benchmark client", (("vllm_bench_ratio",),), "ratio {0:.2f}"),
            )),
    LabPage("05_lora_finetune", "phase2",
            (("05_lora_loss.png", "LoRA training loss of each setting"),),
            "05_lora_finetune.json", (
                Number("held-out requests", (("heldout", "test", "n"),)),
                Number("exact tool-call match on held-out requests, base model", (("heldout", "test", "base"),), _EXACT),
                Number("exact tool-call match on held-out requests, few-shot prompt", (("heldout", "test", "few_shot"),), _EXACT),
                Number("exact tool-call match on held-out requests, LoRA-tuned", (("heldout", "test", "tuned"),), _EXACT),
                Number("training", (("train_steps",), ("train_tokens_per_s",), ("peak_memory_mib",)),
                       "{0} steps at {1:.0f} tokens/s, peak memory {2:.0f} MiB"),
                Number("adapter size", (("adapter_mib",),), "{0:.1f} MiB"),
            )),
    LabPage("06_agent_with_eval", "phase2",
            (("06_agent_heldout.png", "Success and harm rates of each agent on the held-out incidents"),),
            "06_agent_with_eval.json", (
                Number("held-out incidents", (("heldout_n",),)),
                *(Number(f"incidents resolved, {name}", (("results", name, "success"), ("results", name, "success_ci")),
                         _RATE)
                  for name in ("random", "SmolLM2 free-form", "SmolLM2 constrained", "oracle")),
                Number("harmful actions, SmolLM2 constrained",
                       (("results", "SmolLM2 constrained", "harmful"), ("results", "SmolLM2 constrained", "harmful_ci")),
                       _RATE),
                Number("public function-calling benchmark (BFCL), constrained",
                       (("results", "BFCL constrained", "accuracy"), ("results", "BFCL constrained", "accuracy_ci"),
                        ("results", "BFCL constrained", "tasks")),
                       "{0:.0%} of {2} tasks (95% Wilson interval {1[0]:.0%} to {1[1]:.0%})"),
            )),
    LabPage("07_ship_and_monitor", "phase3",
            (("07_ship_and_monitor.png", "Latency, request rate and the burn-rate alert during the load test and the outage drill"),),
            "07_ship_and_monitor.json", (
                Number("load", (("load_generator",),)),
                Number("answer latency", (("slo_report", "p50_s"), ("slo_report", "p95_s")), "p50 {0:.2f} s, p95 {1:.2f} s"),
                Number("throughput", (("slo_report", "throughput_answers_per_s"),), "{0:.2f} answers/s"),
                Number("error rate", (("slo_report", "availability", "error_rate"), ("slo_report", "availability", "error_rate_ci")),
                       _RATE),
                Number("outage drill", (("drill", "mode"), ("drill", "detect_readyz_s"), ("drill", "detect_alert_s")),
                       "{0}: detected in {1:.1f} s by /readyz, {2:.1f} s by the alert"),
                Number("requests per second with metrics, against without", (("metrics_overhead", "ratio_with_to_without"),),
                       "{0:.2f}x"),
                Number("load average (1, 5, 15 min) during the run", (("load_average_1_5_15",),),
                       lambda load: ", ".join(f"{x:.2f}" for x in load)),
            )),
    LabPage("08_portfolio_writeup", "phase3",
            (("08_portfolio_signals.png", "The five hiring signals as the checker scores each text"),),
            "08_portfolio_writeup.json", (
                Number("words in the write-up", (("report", "words"),)),
                Number("numbers in the write-up that no results file holds", (("report", "untraceable_numbers"),), _count),
                Number("hiring signals the write-up shows", (("signals", "write-up"),), _passed),
                Number("hiring signals the example resume bullets show", (("signals", "resume bullets"),), _passed),
                Number("hollow sentences in the write-up", (("hollow_sentences", "write-up"),)),
            )),
    LabPage("09_open_source_contribution", "phase3",
            (("09_open_source_contribution.png", "The project's own test suite at each stage of the contribution"),),
            "09_open_source_contribution.json", (
                Number("project", (("project", "name"), ("project", "version"), ("project", "issue")), "{0} {1}, issue {2}"),
                *(Number(f"the project's test suite, {label}", (("stages", stage, "passed"), ("stages", stage, "failed")),
                         "{0} passed, {1} failed")
                  for stage, label in (("3.0.4 as released", "as released"),
                                       ("+ your test", "with the reproduction test"),
                                       ("+ your fix", "with the test and the fix"),
                                       ("patch on a fresh copy", "the patch applied to a fresh copy"))),
                Number("files the patch changes", (("patch", "files"),), _count),
            )),
)}


def lookup(data, path: Keys, where: str = "the results"):
    """The value at ``data[k1][k2]...``; a missing key is a ReferenceRunError naming it."""
    node = data
    for depth, key in enumerate(path):
        if node is None:
            return None
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise ReferenceRunError(f"{where} has no {_keys(path[:depth + 1])}") from None
    return node


def _keys(path: Keys) -> str:
    return "".join(f"[{key!r}]" for key in path)


def folder(root: Path | str) -> Path:
    """Where reference runs are kept: ``LABKIT_REFERENCE_RUN``, relative to ``root`` unless absolute."""
    return Path(root) / Path(os.environ.get(FOLDER_ENV) or DEFAULT_FOLDER).expanduser()


def required() -> bool:
    """True when a missing reference run must stop the build (``LABKIT_REFERENCE_RUN_REQUIRED``)."""
    return os.environ.get(REQUIRED_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def how_to_make(stem: str = "<lab>") -> str:
    return (f"run the lab's reference solution through the autograder, which saves the run into {FOLDER_ENV} "
            f"(default {DEFAULT_FOLDER}): LABKIT_QUICK=1 .venv/bin/python -m pytest tests/test_autograder.py "
            f"-k 'test_reference_runs_clean_and_scores_full_marks and {stem}' (bash .ci/test runs every lab)")


def _git(root: Path, *args) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def harvest(stem: str, results: Path | str, score: tuple[float, float], root: Path | str, *,
            mode: str = "quick", hardware: str | None = None, precision: str | None = None) -> Path:
    """Copy a graded reference run's results JSON and figures into ``folder(root)/stem`` and record it.

    ``results``: the results folder of the autograded reference notebook; ``score``: (points,
    max points) it earned. Replaces any earlier run of the lab, then checks that the run holds
    everything ``PAGES`` declares for it (a ReferenceRunError otherwise). Returns the lab's folder.
    """
    results, root = Path(results), Path(root)
    if stem not in PAGES:
        raise ReferenceRunError(f"lab {stem} has no entry in labkit.course.reference_run.PAGES: declare what its page shows")
    files = sorted(p for p in results.glob("*") if p.is_file() and p.suffix.lower() in COPIED_SUFFIXES) \
        if results.is_dir() else []
    if not files:
        raise ReferenceRunError(f"{results} holds no results JSON or figure of lab {stem}")
    if hardware is None or precision is None:
        import labkit  # the course's runtime package; read here, in the process that ran the grader

        hardware = hardware or labkit.describe_hardware()
        precision = precision or labkit.precision().dtype
    target = folder(root) / stem
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, target / path.name)  # contents only: the grader may leave its files read-only
        os.utime(target / path.name, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    finished = max(path.stat().st_mtime for path in files)  # the run's last write: when it ran, not when copied
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    run = {
        "lab": stem,
        "date": datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds"),
        "hardware": hardware,
        "precision": precision,
        "mode": mode,
        "commit": _git(root, "rev-parse", "HEAD"),
        "uncommitted_changes": bool(status) if status is not None else None,
        "score": {"points": score[0], "max_points": score[1]},
        "files": [path.name for path in files],
    }
    (target / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    load(stem, root)  # the page's numbers and figures must all be there
    return target


@dataclass(frozen=True)
class ReferenceRun:
    """One lab's harvested run, checked: its record, its results, and the rendered numbers."""
    page: LabPage
    path: Path
    run: dict
    numbers: tuple[tuple[str, str], ...]  # (label, written value)

    @property
    def figures(self) -> tuple[tuple[Path, str], ...]:
        return tuple((self.path / name, caption) for name, caption in self.page.figures)


def load(stem: str, root: Path | str) -> ReferenceRun:
    """Read and check lab ``stem``'s reference run; every problem is a ReferenceRunError saying how to make it."""
    if stem not in PAGES:
        raise ReferenceRunError(f"lab {stem} has no entry in labkit.course.reference_run.PAGES: declare what its page shows")
    page, path = PAGES[stem], folder(root) / stem
    if not (path / RUN_FILE).is_file():
        raise ReferenceRunError(f"no reference run of lab {stem} in {path}: {how_to_make(stem)}",
                                f"no reference run in {path}")
    problems = []
    try:
        run = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
        missing = [key for key in ("date", "hardware", "precision", "mode", "commit", "score") if key not in run]
        if missing:
            problems.append(f"{RUN_FILE} lacks {', '.join(missing)}")
    except (OSError, ValueError) as error:
        raise ReferenceRunError(f"{path / RUN_FILE} cannot be read ({error}): {how_to_make(stem)}",
                                f"{path / RUN_FILE} cannot be read ({error})") from None
    if run.get("mode") != "quick":
        problems.append(f"the run is in {run.get('mode')!r} mode, not the quick mode CI runs")
    for name, _ in page.figures:
        figure = path / name
        if not figure.is_file() or figure.stat().st_size == 0:
            problems.append(f"the figure {name} is missing")
    numbers = []
    if page.results:
        source = path / page.results
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(f"the results file {page.results} is missing")
        except (OSError, ValueError) as error:
            problems.append(f"{page.results} cannot be read ({error})")
        else:
            stated = data.get("mode", "quick" if data.get("quick_mode", True) else "student")
            if stated != "quick":
                problems.append(f"{page.results} says it is a {stated}-mode run")
            for number in page.numbers:
                try:
                    numbers.append((number.label, number.render(data, page.results)))
                except ReferenceRunError as error:
                    problems.append(str(error))
    if problems:
        reason = f"the reference run in {path} is incomplete: {'; '.join(problems)}"
        raise ReferenceRunError(f"lab {stem}: {reason}. To make it again, {how_to_make(stem)}", reason)
    return ReferenceRun(page, path, run, tuple(numbers))


# What the page says. Markdown that myst-nb parses as one more cell of the notebook.

SECTION = "The reference run"
_MARKDOWN_SPECIALS = set("\\`*_{}[]<>()#|$~!")


def escape(text: str) -> str:
    """Text shown literally in Markdown (a table cell, a caption)."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in str(text))


def _when(iso: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{moment.day} {moment:%B %Y} at {moment:%H:%M} UTC"


def render(reference: ReferenceRun, figure_links: list[str]) -> str:
    """The section for the lab's page; ``figure_links``: each declared figure's path as the page links it."""
    run = reference.run
    commit = (run.get("commit") or "unknown")[:10]
    if run.get("uncommitted_changes"):
        commit += ", with uncommitted changes"
    score = run["score"]
    lines = [
        f"## {SECTION}", "",
        f"This is the course's reference solution of this lab, run by CI in quick mode on {_when(run['date'])} "
        f"(hardware: {escape(run['hardware'])}; precision {escape(run['precision'])}; commit {escape(commit)}). "
        f"It scored {score['points']:g} of {score['max_points']:g} points. Quick mode runs on less data and fewer "
        "steps, so these numbers teach the method; they are not a portfolio number. Your own run prints its own.", "",
    ]
    if reference.numbers:
        lines += ["| headline number | reference run |", "| --- | --- |"]
        lines += [f"| {escape(label)} | {escape(value)} |" for label, value in reference.numbers]
        lines.append("")
    for link, (_, caption) in zip(figure_links, reference.page.figures):
        lines += [f"```{{figure}} {link}", f":alt: {caption}", "", f"{escape(caption)} (reference run).", "```", ""]
    return "\n".join(lines)


def placeholder() -> str:
    """The section on a page built without a reference run."""
    return (f"## {SECTION}\n\nThe course's published site shows here the figures and headline numbers of the "
            "reference solution as CI ran it, in quick mode.\n")
