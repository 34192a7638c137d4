"""Reading what the earlier labs saved, for the portfolio write-up lab (lab 08).

Labs 03 to 06 end by writing a results JSON and a figure into their results folder
(``labkit.results_dir()``: ``results/`` beside the notebook, or ``LABKIT_RESULTS``). This
module finds those files, reads them with errors that name the file and the lab that
writes it, and states the facts a freshness rule needs: when the file was written, when
the lab's notebook last changed, and whether the run was in quick mode. It also ships
sample results (``load_samples``), clearly marked, and renders Markdown to one
self-contained HTML file.

Deciding what counts as stale, writing the report and judging it are the lab's
exercises, not this module's.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


class ArtefactError(ValueError):
    """A results file is missing or unusable; the message names the file and the lab to run."""


class StaleResults(ArtefactError):
    """Results that exist but must not be quoted (quick mode, or older than their notebook)."""


@dataclass(frozen=True)
class LabOutputs:
    """What one lab leaves in its results folder."""
    stem: str
    phase: str
    title: str
    results: str
    figures: tuple[str, ...]

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.phase}/{self.stem}.ipynb"


# The labs whose results JSON the write-up reads (labs 01 and 02 save figures only).
LABS = {lab.stem: lab for lab in (
    LabOutputs("03_rag_with_eval", "phase1", "RAG with an evaluation", "03_rag_with_eval.json",
               ("03_rag_retrieval.png",)),
    LabOutputs("04_serve_with_vllm", "phase2", "Serving with vLLM", "04_serving_results.json",
               ("04_serving_throughput_latency.png",)),
    LabOutputs("05_lora_finetune", "phase2", "LoRA fine-tune", "05_lora_finetune.json",
               ("05_lora_loss.png",)),
    LabOutputs("06_agent_with_eval", "phase2", "On-call agent with an evaluation", "06_agent_with_eval.json",
               ("06_agent_heldout.png",)),
)}

SAMPLE_KEY = "sample"  # the key that marks a shipped sample; a lab never writes it


def _lab(stem: str) -> LabOutputs:
    if stem not in LABS:
        raise ArtefactError(f"unknown lab {stem!r}; the write-up reads the results of {', '.join(LABS)}")
    return LABS[stem]


def _how_to_rerun(lab: LabOutputs) -> str:
    return (f"run lab {lab.stem} top to bottom in student mode (`labkit run --full {lab.notebook}`, "
            "or in JupyterLab with LABKIT_QUICK unset), or use the course's sample for it, labelled as a sample")


@dataclass(frozen=True)
class Artefact:
    """One lab's saved results: its numbers, its figures, and the facts about how fresh they are."""
    lab: str
    path: Path
    data: dict
    written_at: float                  # the results file's modification time (seconds since the epoch)
    notebook: Path | None = None       # the lab's notebook, where one was found
    notebook_changed_at: float | None = None
    figures: dict = field(default_factory=dict)  # file name -> Path

    @property
    def outputs(self) -> LabOutputs | None:
        """What the course's lab writes; None for an artefact of your own project built by hand."""
        return LABS.get(self.lab)

    @property
    def quick_mode(self) -> bool | None:
        """True if the lab recorded a quick-mode run, False for student mode, None if it did not say."""
        if "mode" in self.data:
            return self.data["mode"] == "quick"
        if "quick_mode" in self.data:
            return bool(self.data["quick_mode"])
        return None

    @property
    def sample(self) -> dict | None:
        """The sample marker (what the sample is and where it came from), or None for real results."""
        marker = self.data.get(SAMPLE_KEY)
        return marker if isinstance(marker, dict) else None

    @property
    def is_sample(self) -> bool:
        return self.sample is not None

    @property
    def rerun(self) -> str:
        """What to do to get fresh results for this lab, for error messages."""
        if self.outputs is None:
            return f"run again whatever writes {self.path.name} ({self.lab}) and save its results"
        return _how_to_rerun(self.outputs)

    def value(self, *keys):
        """The value at ``data[k1][k2]...``; a missing key is an ArtefactError naming the file and the lab."""
        node = self.data
        for depth, key in enumerate(keys):
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                where = "".join(f"[{k!r}]" for k in keys[:depth + 1])
                raise ArtefactError(f"{self.path} has no {where} (written by lab {self.lab}); "
                                    f"it may come from an older version of the lab: {self.rerun}") from None
        return node

    def number(self, *keys) -> float:
        """A finite number at ``data[k1][k2]...``, or an ArtefactError naming the file, the key and the lab."""
        found = self.value(*keys)
        where = "".join(f"[{k!r}]" for k in keys)
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            raise ArtefactError(f"{self.path}{where} is {found!r}, not a number (written by lab {self.lab}): {self.rerun}")
        if not math.isfinite(found):
            raise ArtefactError(f"{self.path}{where} is {found}, not a finite number (written by lab {self.lab}): {self.rerun}")
        return float(found)

    def figure(self, name: str | None = None) -> Path:
        """The path of one of the lab's figures (its first when no name is given)."""
        name = name or next(iter(self.figures), None)
        if name not in self.figures:
            raise ArtefactError(f"{self.lab} has no figure called {name!r}; it has {list(self.figures)}")
        return self.figures[name]


def _non_finite(node, where="") -> str | None:
    """The key path of the first NaN or infinity in a parsed JSON tree, or None."""
    if isinstance(node, float) and not math.isfinite(node):
        return where or "the top level"
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for key, child in items:
        found = _non_finite(child, f"{where}[{key!r}]")
        if found:
            return found
    return None


def repository_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working folder) that holds the labs' notebooks/."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and any((folder / "notebooks").glob("phase*")):
            return folder
    return None


def results_folders(lab: str, start: Path | None = None) -> list[Path]:
    """Where lab ``lab``'s results may be, in the order they are searched.

    ``LABKIT_RESULTS`` when set (every lab then writes there); otherwise ``results/`` beside
    the lab's own notebook (where it writes when run from its folder), then ``results/`` in
    the working folder.
    """
    if os.environ.get("LABKIT_RESULTS"):
        return [Path(os.environ["LABKIT_RESULTS"]).expanduser()]
    folders = []
    root = repository_root(start)
    if root is not None:
        folders.append(root / "notebooks" / _lab(lab).phase / "results")
    folders.append(Path(start or Path.cwd()) / "results")
    unique = []
    for folder in folders:
        if folder.resolve() not in [f.resolve() for f in unique]:
            unique.append(folder)
    return unique


def find_notebook(lab: str, start: Path | None = None) -> Path | None:
    """The lab's notebook in the learner's copy of the course, or None where there is none."""
    root = repository_root(start)
    if root is None:
        return None
    path = root / _lab(lab).notebook
    return path if path.is_file() else None


def load_artefact(lab: str, folder: Path | str | None = None, *, start: Path | None = None) -> Artefact:
    """Read lab ``lab``'s results JSON and check that its figures exist.

    ``folder``: read only from there; by default ``results_folders(lab)`` is searched.
    Every problem (no file, not JSON, not an object, a NaN or infinite number, a missing
    figure) is an ``ArtefactError`` that names the file and the lab to run.
    """
    outputs = _lab(lab)
    folders = [Path(folder)] if folder is not None else results_folders(lab, start)
    path = next((f / outputs.results for f in folders if (f / outputs.results).is_file()), None)
    if path is None:
        looked = ", ".join(str(f / outputs.results) for f in folders)
        raise ArtefactError(f"no results from lab {lab}: looked for {looked}. To make them, {_how_to_rerun(outputs)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ArtefactError(f"{path} cannot be read ({error}); it is written by lab {lab}: {_how_to_rerun(outputs)}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArtefactError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                            f"it is written by lab {lab}: {_how_to_rerun(outputs)}") from error
    if not isinstance(data, dict):
        raise ArtefactError(f"{path} holds a JSON {type(data).__name__}, not the object lab {lab} writes: "
                            f"{_how_to_rerun(outputs)}")
    bad = _non_finite(data)
    if bad:
        raise ArtefactError(f"{path}{bad} is not a finite number (NaN or infinity); it is written by lab {lab}: "
                            f"{_how_to_rerun(outputs)}")
    figures = {}
    for name in outputs.figures:
        figure = path.parent / name
        if not figure.is_file():
            raise ArtefactError(f"{figure} does not exist, though {path.name} does; lab {lab} saves both: "
                                f"{_how_to_rerun(outputs)}")
        figures[name] = figure
    notebook = None if SAMPLE_KEY in data else find_notebook(lab, start)
    return Artefact(lab=lab, path=path, data=data, written_at=path.stat().st_mtime, notebook=notebook,
                    notebook_changed_at=notebook.stat().st_mtime if notebook else None, figures=figures)


def sample_folder() -> Path:
    """The folder of shipped sample results (package data)."""
    return Path(str(resources.files("labkit") / "data" / "sample_results"))


def load_samples(labs=None) -> dict[str, Artefact]:
    """The shipped samples of every lab in ``labs`` (default: all of ``LABS``), each marked as a sample."""
    samples = {}
    for lab in labs or LABS:
        artefact = load_artefact(lab, sample_folder())
        if not artefact.is_sample:
            raise ArtefactError(f"{artefact.path} lacks its '{SAMPLE_KEY}' marker; the shipped samples must say what they are")
        samples[lab] = artefact
    return samples


def render_html(markdown_text: str, path: Path | str, *, title: str, base: Path | str | None = None) -> Path:
    """Render Markdown (CommonMark with tables) to one self-contained HTML file at ``path``.

    Local images are embedded, so the page can be mailed or uploaded alone; an image that
    does not exist is an ``ArtefactError`` naming it. Relative image paths are read from
    ``base`` (default: the folder of ``path``). Returns ``path``.
    """
    try:
        from markdown_it import MarkdownIt
    except ImportError as error:
        raise ImportError("rendering needs markdown-it-py, which comes with the course's packages: "
                          "install the course extra of this repository (pip install -e '.[course]')") from error
    path = Path(path)
    base = Path(base) if base is not None else path.parent
    renderer = MarkdownIt("commonmark").enable("table")
    tokens = renderer.parse(markdown_text)
    for token in tokens:
        for child in token.children or []:
            if child.type != "image":
                continue
            src = child.attrGet("src") or ""
            if src.startswith(("http://", "https://", "data:")):
                continue
            image = Path(src) if Path(src).is_absolute() else base / src
            if not image.is_file():
                raise ArtefactError(f"the report shows the figure {src}, but {image} does not exist")
            kind = "png" if image.suffix.lower() == ".png" else image.suffix.lower().lstrip(".")
            child.attrSet("src", f"data:image/{kind};base64,{base64.b64encode(image.read_bytes()).decode()}")
    body = renderer.renderer.render(tokens, renderer.options, {})
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n"
            "body{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\n"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}\n"
            "img{max-width:100%}code{background:#f3f3f3}\n</style>\n</head>\n<body>\n"
            f"{body}</body>\n</html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
