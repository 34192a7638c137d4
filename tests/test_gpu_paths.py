"""The GPU code paths (precision, device placement, the vLLM command line and install, memory
settings), run with fakes of torch.cuda where no GPU is present, and against the real GPU
where there is one (`pytest -m gpu` selects them all).

The fakes answer what torch.cuda answers on a named GPU: a T4 has no bfloat16, an A100 has.
Nothing here starts a server or a download: the command lines are built and inspected.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from labkit import hardware, models, serving  # noqa: E402

pytestmark = pytest.mark.gpu

REAL_GPU = torch.cuda.is_available()


@pytest.fixture
def fake_gpu(monkeypatch):
    """Make torch.cuda report a GPU named ``name`` (bf16 support as given), or none."""
    def install(name: str | None, bf16: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: name is not None)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
        monkeypatch.delenv(hardware.PRECISION_ENV, raising=False)
        hardware.precision.cache_clear()
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


@pytest.mark.skipif(not REAL_GPU, reason="no GPU on this machine: the fakes above cover these paths")
def test_the_real_gpu_agrees_with_the_fakes():
    hardware.precision.cache_clear()
    chosen = hardware.precision()
    assert chosen.device == "cuda"
    assert chosen.dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert torch.ones(2, device="cuda").device.type == "cuda"
