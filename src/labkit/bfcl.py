"""A slice of the Berkeley Function Calling Leaderboard, scored by the leaderboard's own checker.

A held-out set nobody in this course wrote: the ``simple_python`` category of BFCL (one
question, one function, one expected call), with its ground truth. Both ship offline in the
``bfcl-eval`` wheel from PyPI (Apache-2.0, Gorilla project, UC Berkeley). Its own pins
clash with the course's, so it is installed without its dependencies
(``labkit prepare --install`` does it); this module needs only its data files and its AST
checker, whose one heavy import (the table of every model handler) is replaced by a stub.

A model answers with one JSON object, ``{"name": <function>, "arguments": {...}}``, which
``score`` turns into the call shape BFCL checks.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "bfcl-eval"
PIP_ARGS = ("--no-deps", "bfcl-eval==2026.3.23")  # its own pins conflict with the course's
CATEGORY = "simple_python"
LICENCE = "Apache-2.0 (bfcl-eval, Gorilla project, UC Berkeley)"
SOURCE = "Berkeley Function Calling Leaderboard v4, category simple_python, from the bfcl-eval wheel"

# BFCL writes JSON-schema types in its own words; these are the standard ones.
_JSON_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


class MissingBenchmarkError(RuntimeError):
    """bfcl-eval is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Task:
    id: str
    question: str  # the user's request
    function: dict  # the one function offered, as BFCL describes it
    ground_truth: dict  # {function name: {parameter: [accepted values]}}


def _data_folder() -> Path:
    found = importlib.util.find_spec("bfcl_eval")
    if found is None or not found.submodule_search_locations:
        raise MissingBenchmarkError(
            f"The BFCL data ships in the PyPI package '{PACKAGE}', which is not installed for "
            f"{sys.executable}.\nFix: pip install {' '.join(PIP_ARGS)}   (or: labkit prepare --install)"
        )
    return Path(found.submodule_search_locations[0]) / "data"


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tasks(n: int | None = None, seed: int = 0) -> list[Task]:
    """``n`` tasks of the category drawn with ``seed`` (all of them, in file order, when ``n`` is None)."""
    data = _data_folder()
    questions = _read_lines(data / f"BFCL_v4_{CATEGORY}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_lines(data / "possible_answer" / f"BFCL_v4_{CATEGORY}.json")}
    everything = []
    for q in questions:
        (turn,) = q["question"]
        (function,) = q["function"]
        (truth,) = answers[q["id"]]
        everything.append(Task(q["id"], turn[-1]["content"], function, truth))
    if n is None:
        return everything
    if not 1 <= n <= len(everything):
        raise ValueError(f"n must be between 1 and {len(everything)}, got {n}")
    return random.Random(seed).sample(everything, n)


def _standard_schema(schema: dict) -> dict:
    """A BFCL parameter schema in standard JSON-schema words, without BFCL's extra keys."""
    out: dict = {}
    kind = schema.get("type")
    if kind is not None:
        kind = _JSON_TYPES.get(kind, kind)
        if kind is not None:
            out["type"] = kind
    if "description" in schema:
        out["description"] = schema["description"]
    if "enum" in schema:
        out["enum"] = schema["enum"]
    if "items" in schema:
        out["items"] = _standard_schema(schema["items"])
    if "properties" in schema:
        out["properties"] = {k: _standard_schema(v) for k, v in schema["properties"].items()}
        out["required"] = [r for r in schema.get("required", []) if r in schema["properties"]]
    return out


def tool_schema(task: Task) -> dict:
    """The task's function in the OpenAI tools format (what a server with native tool calls takes)."""
    f = task.function
    return {"type": "function", "function": {"name": f["name"], "description": f.get("description", ""),
                                             "parameters": _standard_schema(f["parameters"])}}


def answer_schema(task: Task) -> dict:
    """JSON schema of a reply that calls the task's function: for constrained decoding."""
    parameters = _standard_schema(task.function["parameters"])
    parameters["additionalProperties"] = False
    return {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"type": "string", "enum": [task.function["name"]]}, "arguments": parameters}}


SYSTEM_PROMPT = (
    "You call functions. You are given one function, as a JSON schema, and a request. Reply with "
    'one JSON object and nothing else: {"name": <the function name>, "arguments": {<parameter>: <value>}}. '
    "Use the exact types of the schema; leave out optional parameters the request does not give."
)


def messages(task: Task) -> list[dict]:
    """The chat messages for one task: the function's schema and the request."""
    function = tool_schema(task)["function"]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Function:\n{json.dumps(function)}\n\nRequest: {task.question}"}]


def _checker():
    """BFCL's own simple-call checker, imported without the model-handler table it never needs here."""
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        _data_folder()  # a clear error when the package is missing
        stub = types.ModuleType(name)
        # Only read to decide whether a model's API rewrote "." in function names; ours never does.
        stub.MODEL_CONFIG_MAPPING = _NoRenaming()
        sys.modules[name] = stub
    module = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    enums = importlib.import_module("bfcl_eval.constants.enums")
    return module.simple_function_checker, enums.Language.PYTHON


class _NoRenaming(dict):
    def __missing__(self, key):
        return types.SimpleNamespace(underscore_to_dot=False)


def parse_call(text: str | None) -> dict | None:
    """The ``{"name", "arguments"}`` object in a reply, or None when there is none."""
    if not isinstance(text, str):
        return None
    body = text.strip()
    for candidate in (body, body[body.find("{"): body.rfind("}") + 1]):
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str) and isinstance(data.get("arguments"), dict):
            return data
    return None


def score(task: Task, reply: str | None) -> tuple[bool, str]:
    """(correct, reason) for one reply, judged by BFCL's checker against the task's ground truth."""
    call = parse_call(reply)
    if call is None:
        return False, "no function call in the reply"
    check, python = _checker()
    verdict = check(task.function, {call["name"]: call["arguments"]}, task.ground_truth, python, "labkit")
    if verdict["valid"]:
        return True, "correct"
    return False, verdict.get("error_type", "wrong") + ": " + "; ".join(map(str, verdict.get("error", [])))[:200]
