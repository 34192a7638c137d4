"""benchmarks/gpu_shapes.py: its shapes and lengths are the course's, and it runs without the course's package.

The script is meant for a GPU machine that has torch, transformers and peft but neither the
course's package nor its packaged models, so its numbers are written into it; these tests
check them against the packaged models and the labs' own data, and run it in quick mode on
this CPU with ``labkit`` hidden.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_shapes.py"


@pytest.fixture(scope="module")
def shapes():
    spec = importlib.util.spec_from_file_location("gpu_shapes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chat_shape_is_the_packaged_models(shapes):
    from labkit import models

    config = json.loads((Path(models.chat_model_path(models.OFFLINE_MODELS["smollm2-135m-instruct"]))
                         / "config.json").read_text())
    config.setdefault("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta"))
    assert {key: config[key] for key in shapes.SMOLLM2_135M} == shapes.SMOLLM2_135M


def test_the_embedding_shape_is_the_packaged_models(shapes):
    from labkit import models

    folder = Path(models.embedding_model_path(models.OFFLINE_MODELS["all-minilm-l6-v2"]))
    config = json.loads((folder / "config.json").read_text())
    assert {key: config[key] for key in shapes.MINILM_L6} == shapes.MINILM_L6
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == shapes.EMBEDDING_MAX_TOKENS


def test_lab5_lengths_are_the_labs(shapes):
    """The deciles of the token lengths of lab 5's training split, formatted as its reference solution does."""
    from transformers import AutoTokenizer

    from labkit import finetune, models

    tokenizer = AutoTokenizer.from_pretrained(models.chat_model_path(models.OFFLINE_MODELS["smollm2-135m-instruct"]))
    train = finetune.toolcall_dataset(n_train=400, n_dev=60, n_test=120, n_unseen=120, seed=0)["train"]
    totals, answers = [], []
    for example in train:
        prompt = tokenizer.apply_chat_template(finetune.messages(example["request"]), tokenize=False,
                                               add_generation_prompt=True)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        n_total = len(tokenizer(prompt + example["call"] + tokenizer.eos_token + "\n", add_special_tokens=False)["input_ids"])
        totals.append(n_total)
        answers.append(n_total - n_prompt)
    deciles = list(range(0, 101, 10))
    assert [round(v) for v in np.percentile(totals, deciles)] == shapes.LAB5_LENGTH_DECILES
    assert [round(v) for v in np.percentile(answers, deciles)] == shapes.LAB5_ANSWER_DECILES


def test_lab1_lengths_are_the_labs(shapes):
    from transformers import AutoTokenizer

    from labkit import corpus, models

    tokenizer = AutoTokenizer.from_pretrained(models.embedding_model_path(models.OFFLINE_MODELS["all-minilm-l6-v2"]))
    lengths = [len(tokenizer(text)["input_ids"]) for text in corpus.stdlib_passages(512)]  # lab 1's 512
    # The standard library's docstrings hold a submodule only once something imported it, so
    # the sample moves with what the process has loaded, most in its long tail: within 10% (or
    # 2 tokens) up to the 90th percentile, within 20% above it.
    measured = np.percentile(lengths, shapes.LAB1_PERCENTS)
    table = np.array(shapes.LAB1_TOKEN_PERCENTILES)
    share = np.where(np.array(shapes.LAB1_PERCENTS) > 90, 0.2, 0.1)
    assert np.all(np.abs(measured - table) <= np.maximum(2, share * table)), list(zip(measured.round(), table))


def test_synthetic_lengths_follow_the_tables(shapes):
    lengths = shapes.lengths_from_percentiles(shapes.LAB1_PERCENTS, shapes.LAB1_TOKEN_PERCENTILES, 512, seed=0)
    assert min(lengths) == shapes.LAB1_TOKEN_PERCENTILES[0] and max(lengths) <= shapes.LAB1_TOKEN_PERCENTILES[-1]
    assert abs(np.median(lengths) - shapes.LAB1_TOKEN_PERCENTILES[shapes.LAB1_PERCENTS.index(50)]) <= 1
    passage = shapes.synthetic_passages(1, seed=3)[0]
    assert len(passage.split()) + 2 in range(shapes.LAB1_TOKEN_PERCENTILES[0], shapes.LAB1_TOKEN_PERCENTILES[-1] + 1)


def test_embeddings_without_sentence_transformers(shapes, monkeypatch):
    """The fallback encoder: the same tokenizer, model and mean pooling, unit-length vectors."""
    import torch

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails, as where it is absent
    found = shapes.embedding_throughput(torch, "cpu", ["float32"], [4], n_passages=8, repeats=1)
    assert found["engine"].startswith("transformers") and found["rows"][0]["passages_per_s"] > 0
    with tempfile.TemporaryDirectory() as scratch:
        shapes._embedding_folder(torch, Path(scratch), seed=0)
        vectors = shapes._PlainEncoder(torch, Path(scratch), "cpu").encode(shapes.synthetic_passages(3, seed=1), 2)
    assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-4) and vectors[0].shape == (384,)


def test_quick_run_without_the_course_package(tmp_path):
    """The smoke test: quick mode on this CPU, with ``import labkit`` failing as on the GPU test machine."""
    hidden = tmp_path / "hide"
    (hidden / "labkit").mkdir(parents=True)
    (hidden / "labkit" / "__init__.py").write_text("raise ImportError('the course package is not installed here')\n")
    out = tmp_path / "gpu_shapes.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--json", str(out)],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(hidden),
                                             "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert "labkit" not in found["precision"]["why"], "the inline rule must decide when labkit is absent"
    [lora] = found["lora"]
    assert (lora["steps"], lora["batch_size"]) == (3, 2) and lora["all_losses_finite"]
    assert lora["trainable_params"] == 2_442_240, "r=8 on all seven projections of SmolLM2-135M"
    assert 110 <= lora["mean_tokens_per_sequence"] <= 133 and lora["tokens_per_s"] > 0 and lora["peak_mib"] > 100
    rows = found["embeddings"]["rows"]
    assert [r["batch_size"] for r in rows] == [1, 8] and all(r["passages_per_s"] > 0 for r in rows)
    assert "passages/s" in done.stdout and "tokens/s" in done.stdout
