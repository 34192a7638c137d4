"""labkit.finetune: task data, measured training, and safe adapter files, on a tiny model."""
from __future__ import annotations

import json

import pytest

from labkit import finetune

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


# --- the task data -------------------------------------------------------------------

def test_dataset_is_reproducible_and_splits_are_disjoint():
    first = finetune.toolcall_dataset(60, 20, 30, seed=1)
    again = finetune.toolcall_dataset(60, 20, 30, seed=1)
    other = finetune.toolcall_dataset(60, 20, 30, seed=2)
    assert {k: len(v) for k, v in first.items()} == {"train": 60, "dev": 20, "test": 30, "test_unseen": 120}
    for name in first:
        assert first[name]["request"] == again[name]["request"]
        assert first[name]["request"] != other[name]["request"]
    texts = [set(first[name]["request"]) for name in ("train", "dev", "test", "test_unseen")]
    assert sum(map(len, texts)) == 230 and len(set().union(*texts)) == 230, "no request in two splits"


def test_the_unseen_split_leaves_the_other_splits_as_they_were():
    with_unseen = finetune.toolcall_dataset(60, 20, 30, seed=1, n_unseen=40)
    without = finetune.toolcall_dataset(60, 20, 30, seed=1, n_unseen=0)
    assert set(without) == {"train", "dev", "test"} and len(with_unseen["test_unseen"]) == 40
    for name in without:
        assert with_unseen[name].to_list() == without[name].to_list()


def _template_pattern(template):
    """A regex for requests made from ``template``, with any prefix and suffix around it."""
    import re

    parts = re.split(r"\{\w+\}", template)
    return re.compile(".*" + ".+".join(map(re.escape, parts)) + ".*", re.S)


def test_reserved_templates_and_aliases_appear_only_in_test_unseen():
    data = finetune.toolcall_dataset(400, 60, 120, seed=0)
    reserved = [_template_pattern(t) for ts in finetune.UNSEEN_TEMPLATES.values() for t in ts]
    seen_templates = [_template_pattern(t) for ts in finetune.TEMPLATES.values() for t in ts]
    aliases = [a for names in finetune.UNSEEN_SERVICE_ALIASES.values() for a in names]
    for name in ("train", "dev", "test"):
        for request in data[name]["request"]:
            assert not any(p.fullmatch(request) for p in reserved), f"{name} uses a reserved template: {request!r}"
            assert not any(a in request for a in aliases), f"{name} uses a reserved alias: {request!r}"
    unseen = data["test_unseen"]
    assert all(any(p.fullmatch(r) for p in reserved) for r in unseen["request"])
    assert not any(any(p.fullmatch(r) for p in seen_templates) for r in unseen["request"]), "reserved templates are new"
    with_alias = sum(any(a in r for a in aliases) for r in unseen["request"])
    assert 0.15 * len(unseen) < with_alias < 0.6 * len(unseen), with_alias
    assert set(unseen["tool"]) == set(finetune.TOOLS)
    for row in unseen:  # the gold calls use the canonical names, whatever alias the request used
        call = finetune.check_example(row)
        assert call["args"].get("service", "checkout") in finetune.SERVICES
    assert set(finetune.UNSEEN_SERVICE_ALIASES) == set(finetune.SERVICES)
    assert set(finetune.UNSEEN_TEMPLATES) == set(finetune.TOOLS)


def test_every_generated_example_fits_the_tool_schema():
    data = finetune.toolcall_dataset(300, 10, 10, seed=0)
    tools = set()
    for row in data["train"]:
        call = finetune.check_example(row)
        assert call["tool"] == row["tool"]
        tools.add(row["tool"])
        if "replicas" in call["args"]:
            assert isinstance(call["args"]["replicas"], int)
        if "minutes" in call["args"]:
            assert call["args"]["minutes"] in finetune.DURATIONS
    assert tools == set(finetune.TOOLS)


@pytest.mark.parametrize("bad, message", [
    ("not a dict", "is a dict"),
    ({"request": "restart auth"}, "'call'"),
    ({"request": "", "call": "{}"}, "'request'"),
    ({"request": "restart auth", "call": "restart(auth)"}, "not JSON"),
    ({"request": "restart auth", "call": '{"tool": "reboot", "args": {}}'}, "unknown tool"),
    ({"request": "restart auth", "call": '{"tool": "restart_service", "args": {"service": "auth"}}'}, "takes"),
    ({"request": "restart auth", "call": '["restart_service"]'}, "a call is"),
])
def test_malformed_examples_are_named(bad, message):
    with pytest.raises(finetune.MalformedExampleError, match=message):
        finetune.check_example(bad)
    assert issubclass(finetune.MalformedExampleError, ValueError)


def test_sizes_are_checked():
    with pytest.raises(ValueError):
        finetune.toolcall_dataset(0, 1, 1)
    with pytest.raises(ValueError, match="n_unseen"):
        finetune.toolcall_dataset(1, 1, 1, n_unseen=-1)


def test_messages_carry_the_system_prompt():
    turns = finetune.messages("restart auth", '{"tool": ...}')
    assert [t["role"] for t in turns] == ["system", "user", "assistant"]
    assert all(name in turns[0]["content"] for name in finetune.TOOLS)
    assert len(finetune.messages("restart auth")) == 2
    shots = [("bounce auth in tokyo", '{"tool": "restart_service"}'), ("scale sso to 3", '{"tool": "scale_service"}')]
    few = finetune.messages("restart auth", examples=shots)
    assert [t["role"] for t in few] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert few[1]["content"] == shots[0][0] and few[4]["content"] == shots[1][1] and few[-1]["content"] == "restart auth"


# --- a tiny model, adapters and training ----------------------------------------------

VOCAB = 64


def tiny_model(hidden=16, name="tiny-base"):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # the same base weights every time, as from_pretrained would give
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    model.name_or_path = f"/models/{name}"  # what from_pretrained would record
    return model


def tiny_peft(hidden=16, name="tiny-base", rank=2):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(tiny_model(hidden, name), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                                               task_type="CAUSAL_LM"))


def tiny_dataset(n=16, length=12):
    from datasets import Dataset

    rows = []
    for i in range(n):
        ids = [(3 + (i + j) % (VOCAB - 3)) for j in range(length)]
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": [-100] * 4 + ids[4:]})
    return Dataset.from_list(rows)


def tiny_trainer(model, tmp_path, steps=4, callbacks=None):
    from transformers import Trainer, TrainingArguments, default_data_collator

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=5e-3, logging_steps=1, save_strategy="no", report_to="none",
                             use_cpu=True, disable_tqdm=True, seed=0)
    return Trainer(model=model, args=args, train_dataset=tiny_dataset(), data_collator=default_data_collator,
                   callbacks=callbacks)


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_and_load_adapter_round_trip(tmp_path):
    import torch

    model = tiny_peft()
    for name, param in model.named_parameters():  # make the adapter non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    folder = finetune.save_adapter(model, tmp_path / "adapters" / "one")
    assert (folder / "adapter_config.json").is_file() and (folder / finetune.STAMP).is_file()
    assert not list(folder.parent.glob(".one.*")), "no temporary folder is left behind"
    assert finetune.adapter_size_mb(folder) > 0
    loaded = finetune.load_adapter(tiny_model(), folder)
    ids = torch.tensor([[5, 6, 7, 8]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-5)
        merged = loaded.merge_and_unload()
        assert torch.allclose(merged(ids).logits, model(ids).logits, atol=1e-4)


def test_saving_again_replaces_the_adapter_and_a_failed_save_keeps_it(tmp_path, monkeypatch):
    folder = tmp_path / "adapter"
    finetune.save_adapter(tiny_peft(rank=2), folder)
    finetune.save_adapter(tiny_peft(rank=4), folder)
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    kept = folder_bytes(folder)

    broken = tiny_peft(rank=8)

    def dies_half_way(path, *args, **kwargs):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "adapter_config.json").write_text("{")  # a half-written file
        raise OSError("disk full")

    monkeypatch.setattr(broken, "save_pretrained", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        finetune.save_adapter(broken, folder)
    assert folder_bytes(folder) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_save_adapter_wants_a_peft_model(tmp_path):
    with pytest.raises(finetune.AdapterError, match="peft model"):
        finetune.save_adapter(tiny_model(), tmp_path / "x")


def test_adapter_for_another_base_model_is_refused(tmp_path):
    folder = finetune.save_adapter(tiny_peft(name="tiny-base"), tmp_path / "adapter")
    with pytest.raises(finetune.AdapterError, match="trained on"):
        finetune.load_adapter(tiny_model(name="other-base"), folder)
    # Same name, different shape (a renamed or re-converted base): the recorded shape catches it.
    with pytest.raises(finetune.AdapterError, match="hidden_size"):
        finetune.load_adapter(tiny_model(hidden=32, name="tiny-base"), folder)


def test_missing_or_damaged_adapters_are_refused(tmp_path):
    with pytest.raises(finetune.AdapterError, match="adapter_config.json"):
        finetune.load_adapter(tiny_model(), tmp_path)
    folder = finetune.save_adapter(tiny_peft(), tmp_path / "adapter")
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(finetune.AdapterError, match="damaged"):
        finetune.load_adapter(tiny_model(), folder)


def test_train_and_save_measures_the_run(tmp_path):
    trainer = tiny_trainer(tiny_peft(), tmp_path, steps=4)
    report = finetune.train_and_save(trainer, tmp_path / "adapter")
    assert report.steps == 4 and len(report.losses) == 4
    assert report.tokens == 4 * 4 * 12 and report.supervised_tokens == 4 * 4 * 8
    assert report.wall_s > 0 and report.tokens_per_s > 0 and report.peak_mb > 0
    assert report.adapter == tmp_path / "adapter" and (report.adapter / "adapter_config.json").is_file()
    assert "4 steps" in report.summary()
    assert not isinstance(trainer.data_collator, finetune.CountingCollator), "the collator is restored"


def test_interrupted_training_keeps_the_earlier_adapter(tmp_path):
    folder = finetune.save_adapter(tiny_peft(), tmp_path / "adapter")
    kept = folder_bytes(folder)
    trainer = tiny_trainer(tiny_peft(), tmp_path, steps=5, callbacks=[finetune.StopAfterSteps(2)])
    with pytest.raises(finetune.TrainingInterrupted, match="step 2 of 5.*left as it was"):
        finetune.train_and_save(trainer, folder)
    assert folder_bytes(folder) == kept


def test_loss_plot_is_saved(tmp_path):
    path = tmp_path / "loss.png"
    finetune.plot_losses({"a": [(1, 2.0), (2, 1.5)], "b": [(1, 2.1), (3, 1.0)]}, path=path)
    assert path.stat().st_size > 1000
