"""Fine-tuning infrastructure for the LoRA lab: task data, measured training, safe adapters.

- ``toolcall_dataset``: an on-call assistant's task, turning a request typed in chat
  ("roll billing back to release 2.4.1") into one call of a fixed set of tools
  (``{"tool": "rollback", "args": {"service": "payments", "version": "2.4.1"}}``), with
  arguments to normalise (service aliases, region names, durations, numbers in words).
  Generated with a seed and split into train, dev and test with the ``datasets`` library,
  plus ``test_unseen``: requests phrased with templates and service aliases that no other
  split uses, to measure whether the tuned model generalises beyond the phrasings it saw.
- ``train_and_save``: runs a ``transformers.Trainer`` while measuring wall time, peak memory
  and tokens per second, and writes the adapter only when training finished.
- ``save_adapter`` / ``load_adapter``: an adapter is written to a temporary folder and
  renamed into place, so an interrupted run never damages an earlier adapter; loading
  checks that the adapter was trained for the base model it is being put on.

How the examples are formatted, scored and compared is left to the lab: that is the
learner's work.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .bench import watch_memory
from .hardware import precision
from .heldout import UNSEEN_SEED_KEY, UNSEEN_SERVICE_ALIASES, UNSEEN_TEMPLATES

# ---------------------------------------------------------------------------------------
# The task: a request in chat -> one tool call
# ---------------------------------------------------------------------------------------

TOOLS = {  # tool name -> its arguments, in the order the answer lists them
    "search_logs": ("service", "minutes", "level"),
    "restart_service": ("service", "region"),
    "scale_service": ("service", "replicas"),
    "rollback": ("service", "version"),
    "page_oncall": ("team", "urgency"),
}

SERVICES = {
    "checkout": ["checkout", "the checkout service", "checkout-svc", "the cart"],
    "payments": ["payments", "the payment api", "payments-api", "billing"],
    "search": ["search", "the search backend", "search-svc", "product search"],
    "auth": ["auth", "the login service", "auth-api", "sso"],
    "inventory": ["inventory", "the stock service", "inventory-svc", "the warehouse api"],
}
REGIONS = {
    "us-east-1": ["us-east-1", "virginia", "us east"],
    "us-west-2": ["us-west-2", "oregon", "us west"],
    "eu-central-1": ["eu-central-1", "frankfurt", "central europe"],
    "ap-northeast-1": ["ap-northeast-1", "tokyo", "japan"],
}
DURATIONS = {  # minutes -> how people say "the last ..."
    5: ["5 minutes", "five minutes", "5m"],
    15: ["15 minutes", "quarter hour", "15m"],
    30: ["30 minutes", "half hour", "30m"],
    60: ["hour", "60 minutes", "1h"],
    120: ["2 hours", "two hours", "2h"],
    180: ["3 hours", "three hours", "180 minutes"],
    1440: ["day", "24 hours", "24h"],
}
LEVELS = {
    "error": ["errors", "error lines", "exceptions"],
    "warn": ["warnings", "warning lines", "warns"],
    "info": ["info lines", "info-level logs", "info logs"],
}
TEAMS = {
    "platform": ["platform", "the platform team", "infra"],
    "payments": ["the payments team", "the billing folks", "payments on-call"],
    "data": ["the data team", "data eng", "the analytics people"],
    "security": ["security", "secops", "the security team"],
}
URGENCIES = {
    "critical": ["right now, it's a sev1", "immediately, wake them up", "critical"],
    "high": ["asap", "high priority", "sev2"],
    "low": ["no rush", "low priority", "whenever they can"],
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"]

TEMPLATES = {
    "search_logs": [
        "show me {level} from {service} in the last {duration}",
        "pull the {level} for {service}, last {duration}",
        "any {level} in {service} over the past {duration}?",
        "grep {service} logs for {level} (last {duration})",
        "what {level} did {service} log in the last {duration}",
    ],
    "restart_service": [
        "restart {service} in {region}",
        "bounce {service} over in {region}",
        "{service} is stuck in {region}, restart it",
        "can you kick {service} ({region})",
        "do a rolling restart of {service}, region {region}",
    ],
    "scale_service": [
        "scale {service} to {replicas} replicas",
        "set {service} to {replicas} instances",
        "we need {replicas} pods of {service}",
        "bump {service} up to {replicas}",
        "run {replicas} copies of {service}",
    ],
    "rollback": [
        "roll {service} back to {version}",
        "revert {service} to {version}",
        "{service} broke after the deploy, go back to {version}",
        "rollback {service} -> {version}",
        "put {service} back on {version}",
    ],
    "page_oncall": [
        "page {team}, {urgency}",
        "get {team} on the phone, {urgency}",
        "escalate to {team} ({urgency})",
        "ping {team} on-call: {urgency}",
        "alert {team}, {urgency}",
    ],
}
# Held back for the ``test_unseen`` split (phrasings and aliases that train, dev and test never
# use) in labkit.heldout, the one module the public course replaces with a stand-in.
PREFIXES = ["", "", "", "hey, ", "pls ", "quick one: ", "@opsbot "]
SUFFIXES = ["", "", "", " thanks", " please", "!", " ty"]

SYSTEM_PROMPT = (
    'Reply with one tool call as JSON: {"tool": ..., "args": {...}}. Tools: '
    + "; ".join(f"{name}({', '.join(args)})" for name, args in TOOLS.items()) + "."
)


class MalformedExampleError(ValueError):
    """An example of the task data lacks a field or holds a call that breaks the tool schema."""


def _version(rng: random.Random) -> tuple[str, str]:
    canonical = f"{rng.randint(1, 4)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
    said = rng.choice([canonical, f"v{canonical}", f"release {canonical}", f"version {canonical}"])
    return canonical, said


def _replicas(rng: random.Random) -> tuple[int, str]:
    n = rng.randint(1, 16)
    return n, (NUMBER_WORDS[n] if rng.random() < 0.5 else str(n))


def _pick(rng: random.Random, table: dict):
    canonical = rng.choice(list(table))
    return canonical, rng.choice(table[canonical])


def make_example(rng: random.Random, templates: dict | None = None, services: dict | None = None) -> dict:
    """One random request and its gold call: ``{"request", "tool", "call"}`` (``call`` is JSON text).

    ``templates`` and ``services`` default to the tables train, dev and test are drawn from.
    """
    templates = TEMPLATES if templates is None else templates
    services = SERVICES if services is None else services
    tool = rng.choice(list(TOOLS))
    said, args = {}, {}
    if tool == "page_oncall":
        args["team"], said["team"] = _pick(rng, TEAMS)
        args["urgency"], said["urgency"] = _pick(rng, URGENCIES)
    else:
        args["service"], said["service"] = _pick(rng, services)
    if tool == "search_logs":
        args["minutes"], said["duration"] = _pick(rng, DURATIONS)
        args["level"], said["level"] = _pick(rng, LEVELS)
    elif tool == "restart_service":
        args["region"], said["region"] = _pick(rng, REGIONS)
    elif tool == "scale_service":
        args["replicas"], said["replicas"] = _replicas(rng)
    elif tool == "rollback":
        args["version"], said["version"] = _version(rng)
    request = rng.choice(PREFIXES) + rng.choice(templates[tool]).format(**said) + rng.choice(SUFFIXES)
    call = {"tool": tool, "args": {name: args[name] for name in TOOLS[tool]}}
    return {"request": request, "tool": tool, "call": json.dumps(call)}


def check_example(example) -> dict:
    """The parsed gold call of ``example``; raises ``MalformedExampleError`` saying what is wrong."""
    if not isinstance(example, Mapping):
        raise MalformedExampleError(f"an example is a dict with 'request' and 'call', got {type(example).__name__}")
    for name in ("request", "call"):
        if not isinstance(example.get(name), str) or not example[name].strip():
            raise MalformedExampleError(f"example lacks a non-empty text field {name!r}: {example!r}")
    try:
        call = json.loads(example["call"])
    except json.JSONDecodeError as error:
        raise MalformedExampleError(f"the call of {example['request']!r} is not JSON ({error}): {example['call']!r}") from None
    if not isinstance(call, dict) or set(call) != {"tool", "args"} or not isinstance(call["args"], dict):
        raise MalformedExampleError(f'a call is {{"tool": ..., "args": {{...}}}}, got {example["call"]!r}')
    if call["tool"] not in TOOLS:
        raise MalformedExampleError(f"unknown tool {call['tool']!r} in {example['call']!r}; tools: {', '.join(TOOLS)}")
    if tuple(call["args"]) != TOOLS[call["tool"]]:
        raise MalformedExampleError(f"{call['tool']} takes {TOOLS[call['tool']]}, got {tuple(call['args'])}")
    return call


def _distinct_rows(rng: random.Random, count: int, seen: set, **tables) -> list[dict]:
    rows = []
    for _ in range(count * 50):
        row = make_example(rng, **tables)
        if row["request"] not in seen:
            seen.add(row["request"])
            rows.append(row)
            if len(rows) == count:
                return rows
    raise ValueError(f"could not generate {count} distinct requests; ask for fewer")


def toolcall_dataset(n_train: int = 400, n_dev: int = 60, n_test: int = 120, seed: int = 0, n_unseen: int = 120):
    """A ``datasets.DatasetDict`` with ``train``, ``dev``, ``test`` and ``test_unseen`` splits.

    The same seed gives the same splits. No request text appears in two splits, so the test
    split is made of requests the model never saw in training; keep it for the final number.
    ``test`` is drawn from the same templates and aliases as ``train`` (in-distribution);
    ``test_unseen`` uses only ``UNSEEN_TEMPLATES`` and, for about a third of its services,
    ``UNSEEN_SERVICE_ALIASES``, which no other split contains: a test of generalisation.
    ``n_unseen=0`` leaves that split out. Train, dev and test do not depend on ``n_unseen``.
    """
    from datasets import Dataset, DatasetDict

    if min(n_train, n_dev, n_test) < 1 or n_unseen < 0:
        raise ValueError("train, dev and test need at least one example each, and n_unseen can't be negative")
    seen: set = set()
    rows = _distinct_rows(random.Random(seed), n_train + n_dev + n_test, seen)
    full = Dataset.from_list(rows)
    first = full.train_test_split(test_size=n_test, shuffle=True, seed=seed)
    second = first["train"].train_test_split(test_size=n_dev, shuffle=True, seed=seed)
    splits = DatasetDict(train=second["train"], dev=second["test"], test=first["test"])
    if n_unseen:
        wider = {name: SERVICES[name] + UNSEEN_SERVICE_ALIASES[name] for name in SERVICES}
        # A stream of its own, so the other splits stay exactly what they were for this seed.
        unseen = _distinct_rows(random.Random(f"{UNSEEN_SEED_KEY}-{seed}"), n_unseen, seen,
                                templates=UNSEEN_TEMPLATES, services=wider)
        splits["test_unseen"] = Dataset.from_list(unseen)
    return splits


def messages(request: str, answer: str | None = None, examples=()) -> list[dict]:
    """The chat messages for one request: system prompt, user request and, for training, the answer.

    ``examples`` is a sequence of ``(request, call)`` pairs shown before the request as earlier
    turns of the conversation: a few-shot prompt.
    """
    turns = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shown_request, shown_call in examples:
        turns += [{"role": "user", "content": shown_request}, {"role": "assistant", "content": shown_call}]
    turns.append({"role": "user", "content": request})
    if answer is not None:
        turns.append({"role": "assistant", "content": answer})
    return turns


# ---------------------------------------------------------------------------------------
# Generation, for evaluating a model before and after tuning
# ---------------------------------------------------------------------------------------

def generate(model, tokenizer, requests: list[str], max_new_tokens: int = 48, batch_size: int = 16,
             examples=()) -> list[str]:
    """Greedy replies of ``model`` to each request (with the task's system prompt), in order.

    ``examples``: ``(request, call)`` pairs put before each request (see ``messages``).
    """
    import torch

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # a decoder continues from the right end of each row
    replies = []
    try:
        for start in range(0, len(requests), batch_size):
            prompts = [tokenizer.apply_chat_template(messages(r, examples=examples), tokenize=False,
                                                     add_generation_prompt=True)
                       for r in requests[start:start + batch_size]]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad(), _autocast(model):
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            replies += tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = old_side
    return [r.strip() for r in replies]


def _autocast(model):
    """Autocast to the course's precision (``labkit.hardware``) when the model is on that device."""
    import contextlib

    chosen = precision()
    return chosen.autocast() if model.device.type == chosen.device else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------
# Training, measured
# ---------------------------------------------------------------------------------------

class CountingCollator:
    """Wraps a data collator and counts the tokens (and supervised tokens) of every batch it builds."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0
        self.supervised = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += int(batch["attention_mask"].sum())
        if "labels" in batch:
            self.supervised += int((batch["labels"] != -100).sum())
        return batch


@dataclass
class TrainingReport:
    steps: int
    wall_s: float
    tokens: int  # tokens in the batches the trainer consumed, padding excluded
    supervised_tokens: int  # of which the loss was computed on
    peak_mb: float  # resident memory of this process (CPU) or peak allocated GPU memory
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    adapter: Path | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def summary(self) -> str:
        return (f"{self.steps} steps in {self.wall_s:.0f} s, {self.tokens_per_s:.0f} tokens/s, "
                f"peak memory {self.peak_mb:.0f} MiB")


class TrainingInterrupted(RuntimeError):
    """Training stopped before its last step; no adapter was written."""


class StopAfterSteps:
    """A ``TrainerCallback`` that raises ``KeyboardInterrupt`` after ``steps`` steps, as Ctrl-C would."""

    def __new__(cls, steps: int):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= steps:
                    raise KeyboardInterrupt(f"stopped on purpose after step {state.global_step}")

        return _Stop()


def train_and_save(trainer, adapter_dir=None) -> TrainingReport:
    """Run ``trainer.train()`` measured; on success save the adapter to ``adapter_dir`` (if given).

    The trainer's data collator is wrapped to count tokens. If training stops early (an
    error, Ctrl-C), ``TrainingInterrupted`` is raised and any adapter already in
    ``adapter_dir`` stays exactly as it was.
    """
    import torch

    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        with watch_memory() as memory:
            trainer.train()
    except (Exception, KeyboardInterrupt) as error:
        where = f"at step {trainer.state.global_step} of {trainer.state.max_steps}"
        kept = (f"; the adapter in {adapter_dir} was left as it was" if adapter_dir and Path(adapter_dir).exists()
                else "; no adapter was written")
        raise TrainingInterrupted(f"training stopped {where} ({type(error).__name__}: {error}){kept}") from error
    finally:
        trainer.data_collator = counter.collator
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else memory["peak_mb"]
    losses = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
    report = TrainingReport(trainer.state.global_step, wall, counter.tokens, counter.supervised, peak, losses)
    if adapter_dir is not None:
        report.adapter = save_adapter(trainer.model, adapter_dir)
    return report


def plot_losses(losses, path=None, title: str = "LoRA training loss"):
    """Training loss per step, one line per run: ``losses`` is a list of (step, loss) or a dict of them."""
    from . import plots

    runs = losses if isinstance(losses, dict) else {"training loss": losses}
    steps = sorted({s for run in runs.values() for s, _ in run})
    # line_chart wants one x for all series: runs logged at other steps are aligned by step.
    series = {name: [dict(run).get(s, float("nan")) for s in steps] for name, run in runs.items()}
    return plots.line_chart(steps, series, "step", "loss (answer tokens)", title, path=path)


# ---------------------------------------------------------------------------------------
# Adapters on disk
# ---------------------------------------------------------------------------------------

STAMP = "labkit-adapter.json"  # written last: the shape of the base model the adapter fits


class AdapterError(ValueError):
    """An adapter folder cannot be used: missing, half written, or made for another base model."""


def _base_identity(model) -> dict:
    config = model.config
    return {
        "base_model": str(getattr(model, "name_or_path", "") or getattr(config, "_name_or_path", "")),
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": getattr(config, "vocab_size", None),
    }


def _unwrap(model):
    """The base transformers model under a peft wrapper."""
    base = model
    while hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base


def save_adapter(model, folder) -> Path:
    """Save a peft model's adapter into ``folder`` atomically; returns the folder.

    The files go to a temporary folder beside it first; only a complete save is renamed into
    place, so an interrupted save leaves any earlier adapter in ``folder`` untouched.
    """
    folder = Path(folder)
    if not hasattr(model, "peft_config"):
        raise AdapterError("save_adapter needs a peft model (from get_peft_model or load_adapter)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        identity = _base_identity(_unwrap(model))
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / STAMP).write_text(json.dumps({**identity, "files": files}, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the earlier adapter in ``folder`` was never touched
        raise
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def adapter_size_mb(folder) -> float:
    """Size of an adapter folder on disk, in MiB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


def check_adapter(folder, base_model) -> dict:
    """Raise ``AdapterError`` unless ``folder`` holds a complete adapter made for ``base_model``."""
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{folder} holds no adapter_config.json: not an adapter, or a save that did not finish")
    config = json.loads(config_file.read_text())
    # The wrong base model is the more useful diagnosis, so it is checked before damage.
    want = _base_identity(_unwrap(base_model))
    named = str(config.get("base_model_name_or_path") or "")
    if named and want["base_model"] and Path(named).name != Path(want["base_model"]).name:
        raise AdapterError(
            f"the adapter in {folder} was trained on {named!r} (adapter_config.json's "
            f"base_model_name_or_path), but the model it is being loaded onto is {want['base_model']!r}. "
            "Load the base model it was trained on, or train a new adapter for this one."
        )
    stamp_file = folder / STAMP
    if stamp_file.is_file():
        stamp = json.loads(stamp_file.read_text())
        for name, size in stamp.get("files", {}).items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != size:
                raise AdapterError(f"the adapter in {folder} is damaged: {name} is missing or has the wrong size")
    else:
        stamp = {}
    for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size"):
        if key in stamp and stamp[key] != want[key]:
            raise AdapterError(f"the adapter in {folder} fits a base model with {key}={stamp[key]}, "
                               f"but this one has {key}={want[key]}")
    return config


def load_adapter(base_model, folder, is_trainable: bool = False):
    """``PeftModel`` of ``base_model`` with the adapter in ``folder``, after ``check_adapter``."""
    from peft import PeftModel

    check_adapter(folder, base_model)
    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)
