"""The model registry: offline resolution, clear errors, and both real models working."""
from __future__ import annotations

import json

import numpy as np
import pytest

from labkit import models


def test_registry_names_every_default():
    for role, name in models.DEFAULTS.items():
        spec = models.OFFLINE_MODELS[name]
        assert spec.role == role and spec.package and spec.pip_args
        assert spec.install.startswith("pip install ")
    assert all(spec.package is None for spec in models.HUB_MODELS.values())


def test_choice_by_environment(monkeypatch):
    monkeypatch.delenv(models.CHAT_ENV, raising=False)
    assert models.spec_for("chat").name == "smollm2-135m-instruct"
    monkeypatch.setenv(models.CHAT_ENV, "qwen2.5-1.5b-instruct")
    assert models.spec_for("chat").hub_id == "Qwen/Qwen2.5-1.5B-Instruct"
    assert models.chat_model_path() == "Qwen/Qwen2.5-1.5B-Instruct"  # a hub id, nothing converted
    monkeypatch.setenv(models.CHAT_ENV, "some-org/some-model")
    assert models.spec_for("chat").hub_id == "some-org/some-model"
    monkeypatch.setenv(models.CHAT_ENV, "all-minilm-l6-v2")
    with pytest.raises(ValueError, match="embedding model, not a chat model"):
        models.spec_for("chat")
    with pytest.raises(ValueError, match="unknown model role"):
        models.spec_for("vision")


def test_missing_package_says_what_to_install():
    spec = models.ModelSpec("ghost", "chat", "org/ghost", package="no-such-model-package",
                            pip_args=("no-such-model-package==1.0",), file="ghost.gguf")
    with pytest.raises(models.MissingModelError, match=r"pip install no-such-model-package==1\.0"):
        models.chat_model_path(spec)


def test_damaged_cache_names_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    spec = models.OFFLINE_MODELS["smollm2-135m-instruct"]
    folder = tmp_path / "models" / spec.name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"truncated")
    (folder / "labkit-model.json").write_text(json.dumps({"files": {"model.safetensors": 538_000_000}}))
    with pytest.raises(models.ModelCacheError) as error:
        models.chat_model_path(spec)
    assert str(folder) in str(error.value) and "labkit prepare --force" in str(error.value)


def test_unparseable_checkpoint_is_reported_as_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    monkeypatch.delenv(models.CHAT_ENV, raising=False)
    folder = tmp_path / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{ not json")
    sizes = {"config.json": (folder / "config.json").stat().st_size}
    (folder / "labkit-model.json").write_text(json.dumps({"files": sizes}))
    with pytest.raises(models.ModelCacheError, match="labkit prepare --force"):
        models.load_chat_model()


def test_chat_model_gives_a_sensible_greedy_reply(monkeypatch):
    monkeypatch.delenv(models.CHAT_ENV, raising=False)
    tokenizer, model = models.load_chat_model()
    reply = models.chat(tokenizer, model, "What is the capital of France?", max_new_tokens=20)
    assert "Paris" in reply, reply
    folder = models.chat_model_path()
    assert (models.Path(folder) / "model.safetensors").stat().st_size > 100e6


def test_embedding_model_orders_by_meaning(monkeypatch):
    monkeypatch.delenv(models.EMBEDDING_ENV, raising=False)
    embedder = models.load_embedding_model()
    query, close, far = embedder.encode(
        ["How do I restart the web server?", "Steps to reboot the nginx service", "A recipe for lemon cake"],
        normalize_embeddings=True)
    assert query.shape == (384,)
    assert float(np.dot(query, close)) > float(np.dot(query, far)) + 0.2


def test_every_model_says_what_it_is(monkeypatch):
    monkeypatch.delenv(models.CHAT_ENV, raising=False)
    packaged = models.describe_model("chat")
    assert "4-bit (Q4_1) GGUF" in packaged["what"] and packaged["file"].endswith(".gguf")
    monkeypatch.setenv(models.CHAT_ENV, "qwen2.5-1.5b-instruct")
    hub = models.describe_model("chat")
    assert hub["hub_id"] == "Qwen/Qwen2.5-1.5B-Instruct" and "Hugging Face Hub" in hub["what"]
    assert models.spec_for("chat").tool_call_parser == "hermes"


class CountingModel:
    """Stands in for an embedding model: a fixed vector per text, and a count of texts seen."""

    def __init__(self):
        self.seen = 0

    def encode(self, texts, batch_size=32):
        self.seen += len(texts)
        return np.array([[len(t), t.count("a") + 1, 1.0] for t in texts], dtype=np.float32)


def test_encode_caches_each_text_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    model = CountingModel()
    first = models.encode(model, ["a", "bb", "a"], name="fake")
    assert first.shape == (3, 3) and first.dtype == np.float32
    assert model.seen == 2, "a repeated text is encoded once"
    again = models.encode(model, ["bb", "ccc", "a"], name="fake")
    assert model.seen == 3, "only the new text reaches the model"
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    models.encode(model, ["a"], name="another model")
    assert model.seen == 4, "the cache key includes the model"
    with pytest.raises(ValueError, match="empty"):
        models.encode(model, [], name="fake")
