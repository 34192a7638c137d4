"""The GPU code paths (precision, device placement, the vLLM command line and install, memory
settings), run with fakes of torch.cuda where no GPU is present, and against the real GPU
where there is one (`pytest -m gpu` selects them all).

The fakes answer what torch.cuda answers on a named GPU: a T4 has no bfloat16, an A100 has.
Nothing here starts a server or a download: the command lines are built and inspected, and
the hub is a local HTTP server (or a port that answers nothing) standing in for huggingface.co.
"""
from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time

import pytest

torch = pytest.importorskip("torch")

from labkit import hardware, models, serving  # noqa: E402

pytestmark = pytest.mark.gpu

REAL_GPU = torch.cuda.is_available()
REAL_PROBE = models.probe_hub


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """Make torch.cuda report a GPU named ``name`` (bf16 support as given), or none.

    Student mode, no model named, an empty hub cache, and a hub that does not answer unless
    a test says otherwise, so no test here depends on this machine's network or cache.
    """
    def install(name: str | None, bf16: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: name is not None)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: name)
        # As torch answers: with emulation counted (its default) every recent GPU says yes.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: bf16 or (name is not None and including_emulation))
        monkeypatch.delenv(hardware.PRECISION_ENV, raising=False)
        hardware.precision.cache_clear()
    for variable in (models.CHAT_ENV, models.EMBEDDING_ENV, "NBGRADER_EXECUTION", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LABKIT_QUICK", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as labkit.models sets it on import, its own guard
    monkeypatch.setattr(models, "_GUARDED", True)
    monkeypatch.setattr(models, "_PROBES", {})
    monkeypatch.setattr(models, "_ANNOUNCED", set())
    monkeypatch.setattr(models, "probe_hub", lambda *a, **k: (False, "the hub is not reached in these tests"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", huggingface_hub.constants.HF_HUB_OFFLINE)
    yield install
    hardware.precision.cache_clear()


@pytest.mark.parametrize("name, bf16, dtype", [("Tesla T4", False, "float16"), ("NVIDIA A100-SXM4-40GB", True, "bfloat16")])
def test_precision_on_a_gpu(fake_gpu, name, bf16, dtype):
    fake_gpu(name, bf16)
    chosen = hardware.precision()
    assert (chosen.dtype, chosen.device, chosen.vllm_dtype) == (dtype, "cuda", dtype)
    assert name in chosen.reason


def test_a_t4_refuses_bfloat16_with_the_choices_that_work(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4", bf16=False)
    monkeypatch.setenv(hardware.PRECISION_ENV, "bfloat16")
    with pytest.raises(hardware.PrecisionError, match="float32, float16"):
        hardware.precision()


def vllm_command(monkeypatch, **kwargs) -> serving.ManagedServer:
    monkeypatch.setattr(serving, "vllm_python", lambda: "/env/bin/python")
    monkeypatch.setattr(models, "chat_model_path", lambda *a, **k: "/models/chat")
    return serving.vllm_server(port=8123, **kwargs)   # built, not started


def test_vllm_command_line_on_a_t4(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4", bf16=False)
    server = vllm_command(monkeypatch, gpu_memory_fraction=0.5)
    command = server.command
    assert command[command.index("--dtype") + 1] == "float16"   # vLLM's --dtype half
    assert "--enforce-eager" not in command, "a GPU keeps CUDA graphs"
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.5"
    assert "VLLM_CPU_KVCACHE_SPACE" not in server.env


def test_vllm_command_line_on_a_cpu_for_contrast(fake_gpu, monkeypatch):
    fake_gpu(None)
    server = vllm_command(monkeypatch, gpu_memory_fraction=0.5)
    assert "--enforce-eager" in server.command and "--gpu-memory-utilization" not in server.command
    assert server.env["VLLM_CPU_KVCACHE_SPACE"] == "1"


@pytest.mark.parametrize("gpu, pin", [("Tesla T4", serving.VLLM_GPU_PIN), (None, serving.VLLM_CPU_PIN)])
def test_install_vllm_picks_the_build_for_the_hardware(fake_gpu, monkeypatch, tmp_path, gpu, pin):
    fake_gpu(gpu)
    calls = []
    monkeypatch.setattr(serving, "serving_env_dir", lambda: tmp_path / "env")
    monkeypatch.setattr(serving.subprocess, "run",
                        lambda command, **kwargs: calls.append([str(c) for c in command]) or subprocess.CompletedProcess(command, 0))
    serving.install_vllm(force=True)
    installs = [c for c in calls if "install" in c and "--upgrade" not in c]
    assert installs and installs[0][-1] == pin
    assert any("uninstall" in c for c in calls) == (gpu is None), "only the CPU build drops the CUDA torchvision"


def test_models_are_placed_on_the_gpu(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4")
    import sentence_transformers
    import transformers

    placed = {}
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer",
                        lambda path, device: placed.setdefault("embedding", device))
    monkeypatch.setattr(models, "embedding_model_path", lambda *a: "/models/embedding")
    models.load_embedding_model()

    class FakeModel:
        def to(self, device):
            placed["chat"] = device
            return self

        def eval(self):
            return self

    monkeypatch.setattr(models, "chat_model_path", lambda *a, **k: "/models/chat")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: object())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: FakeModel())
    models.load_chat_model()
    assert placed == {"embedding": "cuda", "chat": "cuda"}


def test_training_reports_gpu_peak_memory_from_cuda(fake_gpu, monkeypatch):
    """On a GPU the training report's peak is the CUDA allocator's, not the process's RSS."""
    from labkit import finetune

    fake_gpu("Tesla T4")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**30)

    class State:
        global_step, max_steps, log_history = 1, 1, [{"step": 1, "loss": 0.5}]

    class Trainer:
        state = State()
        data_collator = staticmethod(lambda features: features)
        model = None

        def train(self):
            return None

    report = finetune.train_and_save(Trainer())
    assert report.peak_mb == 3 * 1024


# ----------------------------------------------------------------------------- the model choice

def no_probe(*args, **kwargs):
    raise AssertionError("the hub must not be asked here")


@pytest.fixture
def local_hub(monkeypatch):
    """A stand-in for the hub on 127.0.0.1 that answers 200 for the models it lists; yields that list."""
    listed = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path.removeprefix("/api/models/") in listed
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(json.dumps({"id": self.path}).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(models, "probe_hub", REAL_PROBE)
    yield listed
    server.shutdown()
    server.server_close()


def test_without_a_gpu_the_packaged_models_and_no_probe(fake_gpu, monkeypatch, capsys):
    fake_gpu(None)
    monkeypatch.setattr(models, "probe_hub", no_probe)
    for role, name in models.DEFAULTS.items():
        assert models.spec_for(role).name == name
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all("no GPU" in line for line in printed), printed
    assert models.os.environ["HF_HUB_OFFLINE"] == "1", "the offline guard stays"


def test_a_gpu_with_the_hub_gets_the_bigger_models(fake_gpu, local_hub, capsys):
    fake_gpu("Tesla T4")
    local_hub.update(models.HUB_MODELS[name].hub_id for name in models.GPU_DEFAULTS.values())
    chat, embedding = models.spec_for("chat"), models.spec_for("embedding")
    assert (chat.name, embedding.name) == (models.GPU_DEFAULTS["chat"], models.GPU_DEFAULTS["embedding"])
    assert chat.hub_id == "Qwen/Qwen2.5-1.5B-Instruct" and chat.tool_call_parser == "hermes"
    assert models.chat_model_path() == chat.hub_id, "a hub id, nothing converted"
    printed = capsys.readouterr().out
    assert "Tesla T4" in printed and "answered" in printed and f"{models.CHAT_ENV}=smollm2-135m-instruct" in printed
    # The download needs the hub: the module's own guard is lifted, here and for the servers it starts.
    import huggingface_hub.constants

    assert models.os.environ["HF_HUB_OFFLINE"] == "0" and huggingface_hub.constants.HF_HUB_OFFLINE is False
    models.spec_for("chat")
    assert capsys.readouterr().out == "", "each choice is printed once"


def test_the_gpu_chat_default_serves_native_tool_calls():
    for role, name in models.GPU_DEFAULTS.items():
        spec = models.HUB_MODELS[name]
        assert spec.role == role and spec.package is None
    chat = models.HUB_MODELS[models.GPU_DEFAULTS["chat"]]
    assert chat.vllm_tool_call_args == ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    assert models.OFFLINE_MODELS[models.DEFAULTS["chat"]].vllm_tool_call_args == (), "vLLM has no parser for SmolLM2"


def test_a_gpu_without_the_hub_falls_back_in_one_line(fake_gpu, monkeypatch, capsys):
    fake_gpu("Tesla T4")
    with socket.socket() as closed:  # a port that refuses: the hub is unreachable
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(models, "probe_hub", REAL_PROBE)
    assert models.spec_for("chat").name == models.DEFAULTS["chat"]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and "could not be reached" in printed[0] and "packaged" in printed[0], printed
    assert models.os.environ["HF_HUB_OFFLINE"] == "1", "nothing may download"


def test_a_hub_that_never_answers_costs_the_timeout_not_a_hang(monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections are queued and never answered
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setattr(models, "_PROBES", {})
    try:
        started = time.monotonic()
        reachable, why = REAL_PROBE("Qwen/Qwen2.5-1.5B-Instruct", timeout=0.5)
        assert time.monotonic() - started < 2.0
    finally:
        silent.close()
    assert not reachable and ("within 0.5 s" in why or "timed out" in why), why


def test_a_model_the_hub_does_not_list_is_not_chosen(fake_gpu, local_hub):
    fake_gpu("NVIDIA A100-SXM4-40GB", bf16=True)
    choice = models.choose_model("chat")  # the stand-in hub lists nothing: 404
    assert choice.spec.name == models.DEFAULTS["chat"] and "answered 404" in choice.reason


def test_a_model_already_in_the_hub_cache_needs_no_network(fake_gpu, monkeypatch, tmp_path):
    fake_gpu("Tesla T4")
    monkeypatch.setattr(models, "probe_hub", no_probe)
    hub_id = models.HUB_MODELS[models.GPU_DEFAULTS["chat"]].hub_id
    snapshot = tmp_path / "hf-cache" / f"models--{hub_id.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"weights")
    choice = models.choose_model("chat")
    assert choice.spec.hub_id == hub_id and not choice.needs_download and "cache" in choice.reason
    models.spec_for("chat")
    assert models.os.environ["HF_HUB_OFFLINE"] == "1", "loaded from the cache, the guard stays"


def test_a_half_downloaded_model_is_not_taken_for_cached(fake_gpu, tmp_path):
    fake_gpu("Tesla T4")
    hub_id = models.HUB_MODELS[models.GPU_DEFAULTS["chat"]].hub_id
    snapshot = tmp_path / "hf-cache" / f"models--{hub_id.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (snapshot / "model-00001-of-00002.safetensors").write_bytes(b"half")
    assert not models.in_hf_cache(hub_id)
    assert models.choose_model("chat").spec.name == models.DEFAULTS["chat"], "no hub, so the packaged model"


def test_hf_hub_offline_set_by_the_learner_means_no_hub(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4")
    monkeypatch.setattr(models, "_GUARDED", False)  # the "1" is the learner's, not labkit's
    monkeypatch.setattr(models, "probe_hub", no_probe)
    choice = models.choose_model("embedding")
    assert choice.spec.name == models.DEFAULTS["embedding"] and "HF_HUB_OFFLINE" in choice.reason


def test_quick_mode_keeps_the_packaged_models_on_a_gpu(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4")
    monkeypatch.setattr(models, "probe_hub", no_probe)
    for variable, value in (("LABKIT_QUICK", "1"), ("NBGRADER_EXECUTION", "autograde")):
        monkeypatch.setenv("LABKIT_QUICK", "")
        monkeypatch.setenv(variable, value)
        choice = models.choose_model("chat")
        assert choice.spec.name == models.DEFAULTS["chat"] and "quick mode" in choice.reason


@pytest.mark.parametrize("role, named", [("chat", "smollm2-135m-instruct"), ("chat", "qwen2.5-0.5b-instruct"),
                                         ("embedding", "bge-small-en-v1.5")])
def test_a_named_model_wins_over_the_gpu_choice(fake_gpu, monkeypatch, role, named):
    fake_gpu("Tesla T4")
    monkeypatch.setattr(models, "probe_hub", no_probe)
    monkeypatch.setenv(models.CHAT_ENV if role == "chat" else models.EMBEDDING_ENV, named)
    choice = models.choose_model(role)
    assert choice.spec.name == named and "names it" in choice.reason


def test_vllm_serves_the_gpu_choice_with_tool_calls_on_a_t4(fake_gpu, local_hub, monkeypatch):
    """The agent lab's server on a T4: the hub model, half precision, CUDA graphs, the parser's flags."""
    fake_gpu("Tesla T4")
    local_hub.add("Qwen/Qwen2.5-1.5B-Instruct")
    monkeypatch.setattr(serving, "vllm_python", lambda: "/env/bin/python")
    spec = models.spec_for("chat")
    server = serving.vllm_server(port=8123, max_model_len=4096, extra_args=spec.vllm_tool_call_args)
    command = server.command
    assert command[command.index("--model") + 1] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert command[command.index("--dtype") + 1] == "float16"
    assert command[command.index("--max-model-len") + 1] == "4096"
    assert command[command.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in command
    assert "--enforce-eager" not in command and "--gpu-memory-utilization" not in command, "vLLM's own default"
    assert server.env["HF_HUB_OFFLINE"] == "0", "the server downloads the model it was given"


def test_default_vllm_context_fits_a_t4(fake_gpu, monkeypatch):
    """2,048 tokens by default, not the model's own 32,768: on a T4's 15 GB the KV cache then stays small.

    Qwen2.5-1.5B in float16 keeps 28 layers x 2 KV heads x 128 x 2 (K and V) x 2 bytes = 28 KiB
    per token, so 16 full sequences of 2,048 tokens take under 1 GiB beside 3.1 GB of weights.
    """
    fake_gpu("Tesla T4")
    command = vllm_command(monkeypatch).command
    assert command[command.index("--max-model-len") + 1] == "2048"


@pytest.mark.parametrize("gpu, hub_model, dtype", [
    ("Tesla T4", True, torch.float16), ("NVIDIA A100-SXM4-40GB", True, torch.bfloat16),
    ("Tesla T4", False, "auto"), (None, False, "auto")])
def test_chat_model_load_precision(fake_gpu, monkeypatch, gpu, hub_model, dtype):
    """A hub model on a GPU loads in the GPU's precision; the packaged float32 checkpoint keeps float32."""
    import transformers

    fake_gpu(gpu, bf16=gpu is not None and "A100" in gpu)
    if hub_model:
        monkeypatch.setenv(models.CHAT_ENV, "qwen2.5-1.5b-instruct")
    monkeypatch.setattr(models, "chat_model_path", lambda *a, **k: "/models/chat")
    asked = {}

    class FakeModel:
        def to(self, device):
            asked["device"] = device
            return self

        def eval(self):
            return self

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: object())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **k: asked.setdefault("dtype", k["dtype"]) and FakeModel())
    models.load_chat_model()
    assert asked["dtype"] == dtype
    assert asked.get("device") == ("cuda" if gpu else None)


def test_generation_autocasts_to_the_gpu_precision(fake_gpu):
    from labkit import finetune

    fake_gpu("Tesla T4")

    class OnTheGpu:
        device = torch.device("cuda")

    context = finetune._autocast(OnTheGpu())
    assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == torch.float16


@pytest.mark.skipif(not REAL_GPU, reason="no GPU on this machine: the fakes above cover these paths")
def test_the_real_gpu_agrees_with_the_fakes():
    hardware.precision.cache_clear()
    chosen = hardware.precision()
    assert chosen.device == "cuda"
    assert chosen.dtype == ("bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16")
    assert torch.ones(2, device="cuda").device.type == "cuda"
