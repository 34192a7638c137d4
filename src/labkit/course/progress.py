"""Which visible checks of each lab pass, from the learner's own notebooks.

A visible check is a code cell whose nbgrader metadata says ``grade: true`` (the student
copies keep that metadata); it passes when it runs without an error. Each lab runs in a
fresh kernel in quick mode with errors allowed, so one failing exercise does not hide the
checks after it. The learner's notebook is only read: the executed copy and anything the
lab saves under ``results/`` go to a temporary folder.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import nbmeta

DEFAULT_FOLDER = "notebooks"
PATTERN = "phase*/[0-9][0-9]_*.ipynb"


@dataclass
class LabProgress:
    lab: str  # "phase1/01_embeddings"
    path: Path
    checks: list[str] = field(default_factory=list)  # every visible check, in notebook order
    failing: list[str] = field(default_factory=list)
    problem: str | None = None  # why the lab could not be run at all
    stopped: str | None = None  # why the run ended before the last cell

    @property
    def passed(self) -> int:
        return len(self.checks) - len(self.failing)

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.failing


def find_labs(folder=DEFAULT_FOLDER, lab: str | None = None) -> list[Path]:
    """The lab notebooks under ``folder`` (``phaseN/NN_name.ipynb``), optionally only ``lab``.

    ``lab`` matches a lab's name (``01_embeddings``), its ``phase1/01_embeddings`` form, or
    the start of its name (``01``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"no folder {folder}; run from the course folder or pass --notebooks DIR")
    labs = sorted(p for p in folder.glob(PATTERN) if not p.name.endswith(".executed.ipynb"))
    if not labs:
        raise ValueError(f"no lab notebooks (phaseN/NN_name.ipynb) in {folder}; "
                         "pass the folder that holds your labs with --notebooks DIR")
    if lab is None:
        return labs
    wanted = lab.strip().removesuffix(".ipynb").strip("/")
    chosen = [p for p in labs if wanted in (p.stem, f"{p.parent.name}/{p.stem}") or p.stem.startswith(wanted)]
    if not chosen:
        names = ", ".join(f"{p.parent.name}/{p.stem}" for p in labs)
        raise ValueError(f"no lab named {lab!r} in {folder}; the labs there are: {names}")
    return chosen


def visible_checks(nb) -> dict[int, str]:
    """Cell index -> check name (its nbgrader grade_id) for every graded code cell."""
    return nbmeta.graded_tests(nb.cells)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def _bar(total: int, label: str, show: bool | None):
    """A per-cell bar on stderr, so stdout keeps only the report; none when stderr is not a terminal."""
    show = sys.stderr.isatty() if show is None else show
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the course environment; the report works without it
        return _NoBar()
    return tqdm(total=total, desc=label, unit="cell", file=sys.stderr, leave=False, disable=not show)


def check_lab(path, timeout: int = 600, bar: bool | None = None) -> LabProgress:
    """Run one lab's notebook with errors allowed and say which of its visible checks pass.

    ``bar``: show a per-cell progress bar on stderr (None: only when stderr is a terminal).
    """
    import nbformat

    from .labrun import LabRunError, run_notebook

    path = Path(path)
    label = f"{path.parent.name}/{path.stem}"
    result = LabProgress(label, path)
    fix = (f"Fix: restore it from git (git checkout -- {path}) or from JupyterLab's last "
           f"checkpoint in {path.parent / '.ipynb_checkpoints'}.")
    try:
        nb = nbformat.read(path, as_version=4)
        cells = nb.cells
    except Exception as error:  # not JSON, or JSON that is not a notebook
        result.problem = f"unreadable, not a notebook ({error.__class__.__name__}). {fix}"
        return result
    checks = visible_checks(nb)
    result.checks = list(checks.values())
    runnable = sum(1 for c in cells if c.get("cell_type") == "code" and c.get("source", "").strip())

    with tempfile.TemporaryDirectory(prefix="labkit-progress-") as tmp, _bar(runnable, label, bar) as progress:
        try:
            run = run_notebook(path, Path(tmp) / path.name, timeout=timeout, quick=True,
                               extra_env={"LABKIT_RESULTS": str(Path(tmp) / "results")},
                               allow_errors=True, on_cell=lambda *_: progress.update(1),
                               kernel_args=["--log-level=ERROR"])  # its warnings would break the bar
        except LabRunError as error:
            result.problem = f"{error} {fix}"
            return result
    result.stopped = run.stopped
    ran = set(run.executed)
    result.failing = [name for index, name in checks.items() if index not in ran or index in run.errors]
    return result


def format_line(result: LabProgress, width: int = 0) -> str:
    """One report line, e.g. ``phase1/01_embeddings   3/5 checks pass  (failing: a, b)``."""
    name = result.lab.ljust(width)
    if result.problem:
        return f"{name}   {result.problem}"
    if not result.checks:
        return f"{name}   no visible checks"
    line = f"{name}   {result.passed}/{len(result.checks)} checks pass"
    notes = []
    if result.failing:
        notes.append("failing: " + ", ".join(result.failing))
    if result.stopped:
        notes.append(f"stopped: {result.stopped}")
    return line + (f"  ({'; '.join(notes)})" if notes else "")


def format_total(results: list[LabProgress], width: int = 0) -> str:
    passed = sum(r.passed for r in results if not r.problem)
    total = sum(len(r.checks) for r in results if not r.problem)
    labs = len(results)
    line = f"{'total'.ljust(width)}   {passed}/{total} checks pass in {labs} lab{'s' if labs != 1 else ''}"
    unreadable = sum(1 for r in results if r.problem)
    return line + (f", {unreadable} unreadable" if unreadable else "")


def report(folder=DEFAULT_FOLDER, lab: str | None = None, timeout: int = 600, bar: bool | None = None,
           out=None) -> int:
    """Check every lab, printing one line each as it finishes and a total; return the exit code.

    0 when every check of every lab passes; 1 when any fails or a notebook is unreadable.
    """
    out = out or sys.stdout
    labs = find_labs(folder, lab)
    width = max(len(f"{p.parent.name}/{p.stem}") for p in labs)
    results = []
    for path in labs:
        result = check_lab(path, timeout=timeout, bar=bar)
        results.append(result)
        print(format_line(result, width), file=out, flush=True)
    print(format_total(results, width), file=out)
    if any(r.failing for r in results):
        print("\nOpen a lab in JupyterLab and run its failing check cells to see why they fail.", file=out)
    return 0 if all(r.ok for r in results) else 1
