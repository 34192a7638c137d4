"""Execute a lab notebook top to bottom, the way CI and the course tools do.

The notebook on disk is never modified: the executed copy is written elsewhere, so
nothing a learner wrote is overwritten.

Two modes: by default the first failing cell stops the run with ``LabRunError`` (CI, and
``labkit run``); with ``allow_errors=True`` every cell runs and the errors are returned per
cell, which is what ``labkit progress`` needs to say which checks pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..bench import watch_memory


class LabRunError(RuntimeError):
    """A notebook failed to execute; the message names the file, the cell and the fix."""


@dataclass
class LabRun:
    notebook: Path
    executed_copy: Path
    wall_s: float
    peak_mb: float
    executed: list[int] = field(default_factory=list)  # indices of the code cells that ran, in order
    errors: dict[int, str] = field(default_factory=dict)  # cell index -> its error, "Name: message"
    stopped: str | None = None  # with allow_errors: why the run ended before the last cell


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _error_text(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
    return None


def run_notebook(path, executed_copy=None, timeout: int = 600, quick: bool = True, extra_env=None,
                 *, allow_errors: bool = False, on_cell=None, kernel_args=()) -> LabRun:
    """Run every cell of ``path`` in a fresh kernel; raise ``LabRunError`` on the first failure.

    ``timeout`` bounds each cell in seconds. The kernel runs with ``LABKIT_QUICK=1`` unless
    ``quick`` is false. Wall time and peak memory (kernel included) are measured. The kernel's
    working folder is the notebook's own, so the lab's relative paths work.

    With ``allow_errors`` a failing cell does not stop the run: the result's ``errors`` maps
    each failed cell to its error, and a timeout or a dead kernel ends the run early with the
    reason in ``stopped`` instead of raising. ``on_cell(index, cell)`` is called after each
    code cell runs (a progress bar, for one). ``kernel_args`` are passed to the kernel's
    command line, e.g. ``["--log-level=ERROR"]`` to keep its start-up warnings off the terminal.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        raise LabRunError(f"{path} is not a readable notebook ({error.__class__.__name__}: {error}). "
                          "Fix: restore it from git or from the course's notebooks/ folder.") from error
    executed_copy = Path(executed_copy) if executed_copy else path.with_name(f"{path.stem}.executed.ipynb")
    if executed_copy.resolve() == path.resolve():
        raise ValueError("the executed copy must not overwrite the notebook itself")

    env = dict(os.environ, LABKIT_QUICK="1" if quick else "0", **(extra_env or {}))
    executed: list[int] = []
    running: list[int] = []  # the cell sent to the kernel last, to name it if the run stops there

    def cell_done(cell, cell_index, **_):
        executed.append(cell_index)
        if on_cell is not None:
            on_cell(cell_index, cell)

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_execute=lambda cell_index, **_: running.append(cell_index),
                            on_cell_executed=cell_done, extra_arguments=list(kernel_args))
    stopped = None
    old_env = os.environ.copy()
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        with watch_memory() as memory:
            client.execute()
    except (CellTimeoutError, DeadKernelError) as error:
        if not allow_errors:
            raise _stop_error(path, nb, executed_copy, error) from error
        where = f"cell {running[-1]}" if running else "a cell"
        stopped = (f"{where} timed out after {timeout} s" if isinstance(error, CellTimeoutError)
                   else f"the kernel died in {where}")
    except CellExecutionError as error:
        raise _stop_error(path, nb, executed_copy, error) from error
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        executed_copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_copy)
    errors = {i: _error_text(nb.cells[i]) for i in executed if _error_text(nb.cells[i])}
    return LabRun(path, executed_copy, time.perf_counter() - start, memory["peak_mb"], executed, errors, stopped)


def _stop_error(path: Path, nb, executed_copy: Path, error: Exception) -> LabRunError:
    """The error ``run_notebook`` raises when a cell fails and errors are not allowed."""
    failed = next((i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    where = f"cell {failed}" if failed is not None else "a cell"
    return LabRunError(
        f"{path}: {where} failed: {_first_line(str(error))}\n"
        f"The executed copy with the traceback is at {executed_copy}. "
        f"Fix: open {path.name} in JupyterLab, run that cell and read its error."
    )
