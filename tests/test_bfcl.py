"""The BFCL slice: its data loads offline and the leaderboard's own checker scores replies."""
from __future__ import annotations

import json

import pytest

from labkit import bfcl


def _reference_reply(task: bfcl.Task) -> str:
    """A reply built from the ground truth's first accepted value of each parameter."""
    (name, params), = task.ground_truth.items()
    return json.dumps({"name": name, "arguments": {k: v[0] for k, v in params.items() if v and v[0] != ""}})


def test_the_slice_is_a_seeded_sample_of_the_whole_category():
    everything = bfcl.tasks()
    assert len(everything) == 400 and len({t.id for t in everything}) == 400
    slice_a, slice_b = bfcl.tasks(20, seed=0), bfcl.tasks(20, seed=0)
    assert [t.id for t in slice_a] == [t.id for t in slice_b] != [t.id for t in bfcl.tasks(20, seed=1)]
    with pytest.raises(ValueError):
        bfcl.tasks(0)


def test_the_leaderboards_checker_accepts_the_truth_and_rejects_wrong_calls():
    flat = [t for t in bfcl.tasks() if all(p.get("type") != "dict" for p in t.function["parameters"]["properties"].values())]
    assert len(flat) > 300
    rejected = {t.id for t in flat if not bfcl.score(t, _reference_reply(t))[0]}
    # Two items whose first accepted values do not make a complete call (a list of dicts, a
    # required parameter whose only answer is "omitted"); every other ground truth scores.
    assert rejected <= {"simple_python_96", "simple_python_200"}, rejected
    triangle = next(t for t in flat if t.id == "simple_python_0")
    ok, why = bfcl.score(triangle, '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 6}}')
    assert not ok and "height" in why
    assert bfcl.score(triangle, '{"name": "area", "arguments": {"base": 10, "height": 5}}')[0] is False
    assert bfcl.score(triangle, "The area is 25.") == (False, "no function call in the reply")
    fenced = "```json\n" + _reference_reply(triangle) + "\n```"
    assert bfcl.score(triangle, fenced)[0], "a call inside a code fence still counts"
    assert bfcl.score(triangle, None)[0] is False


def test_schemas_use_standard_json_schema_words():
    task = next(t for t in bfcl.tasks() if any(p.get("type") == "dict" for p in t.function["parameters"]["properties"].values()))
    text = json.dumps(bfcl.tool_schema(task))
    assert '"dict"' not in text and '"float"' not in text and '"object"' in text
    answer = bfcl.answer_schema(task)
    assert answer["properties"]["name"]["enum"] == [task.function["name"]]
    assert answer["properties"]["arguments"]["additionalProperties"] is False
    system, user = bfcl.messages(task)
    assert task.question in user["content"] and task.function["name"] in user["content"]
