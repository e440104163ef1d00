"""Greedy pruning at paper scale on one GPU: random-weight models with the shapes of Qwen2.5-7B and Llama-3.1-8B.

No downloads: each model is built from its config with random weights, in bf16, and given a random chain
(prompt ~150, reasoning 250, answer ~20 tokens by default), which it prunes to keep 0.5. Random weights give
meaningless rankings but the same work as real ones, so the timings stand. Per model and mode: seconds per
example, token-forwards per second, and the fraction of the GPU's measured bf16 matmul rate achieved by the
decoder's matmuls (2 x non-embedding parameters x token-forwards; attention and the LM head not counted, so a
lower bound). `--passes N` stops a prune after N scoring passes and extrapolates the whole prune from the
measured token-forward rate: only `naive`, whose token-forwards do not depend on what is deleted, is
extrapolated (by default after 2 passes; said so in the output), the others are reported as partial.

    python -m benchmarks.speed.bench_gpu --shapes qwen2.5-7b llama3.1-8b --modes packed prefix naive screen=8,lookahead=4 \\
        --out runs/bench/gpu-h100.json
    python -m benchmarks.speed.bench_gpu --shapes tiny --device cpu --dtype float32   # smoke test of this script

The model is named by its shape (`--shapes`), not loaded: there is no `--model`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from benchmarks.common import RUNS, command, device_name, write_result
from chainprune.keep import deletions_for
from chainprune.pruning import ChainScorer
from chainprune.pruning.greedy import EXACT, Approximation, greedy_prune
from chainprune.types import ChainIds

SHAPES = {
    "qwen2.5-7b": lambda: Qwen2Config(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
        tie_word_embeddings=False,
    ),
    "llama3.1-8b": lambda: LlamaConfig(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=5e5,
        tie_word_embeddings=False,
    ),
    "tiny": lambda: LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=512, max_position_embeddings=1024, tie_word_embeddings=False,
    ),
}


def parse_mode(text: str) -> tuple[str, Approximation]:
    """'packed' -> exact packed; 'screen=8,lookahead=4' (optionally 'engine=prefix,...') -> an approximation."""
    if "=" not in text:
        return text, EXACT
    fields = dict(part.split("=") for part in text.split(","))
    engine = fields.pop("engine", "packed")
    return engine, Approximation(**{k: int(v) for k, v in fields.items()})


def naive_prune_token_forwards(n_prompt: int, m: int, n_answer: int, deletions: int) -> int:
    """Token-forwards of a whole `naive` prune (the same whatever is deleted): per pass, the chain and every
    candidate sequence."""
    total = 0
    for done in range(deletions):
        r = m - done
        length = n_prompt + r + n_answer
        total += length + r * (length - 1)
    return total


def matmul_rate(device: str, dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    """Measured dense matmul rate (FLOP/s) of this device in this dtype."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["qwen2.5-7b", "llama3.1-8b"], choices=list(SHAPES))
    parser.add_argument("--modes", nargs="+", default=["packed", "prefix", "naive", "screen=8,lookahead=4"])
    parser.add_argument("--prompt", type=int, default=150)
    parser.add_argument("--reasoning", type=int, default=250)
    parser.add_argument("--answer", type=int, default=20)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--passes", type=int, default=None, help="stop each prune after this many scoring passes")
    parser.add_argument("--naive-passes", type=int, default=2, help="scoring passes naive runs (then extrapolated)")
    parser.add_argument("--max-batch-tokens", type=int, default=32768)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", default="sdpa", help="attn_implementation for the model (sdpa, eager, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RUNS / "gpu.json")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)

    rate = matmul_rate(args.device, dtype, size=8192 if args.device.startswith("cuda") else 1024, repeats=20)
    print(f"{device_name(args.device)}: measured {args.dtype} matmul rate {rate / 1e12:.1f} TFLOP/s", flush=True)
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    for shape in args.shapes:
        config = SHAPES[shape]()
        torch.manual_seed(args.seed)
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=args.attn).eval()
        non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name and "lm_head" not in name)
        vocab = config.vocab_size
        ids = ChainIds(
            *(torch.randint(0, vocab, (n,), generator=generator).tolist() for n in (args.prompt, args.reasoning, args.answer))
        )
        deletions = deletions_for(args.reasoning, args.keep)
        for mode in args.modes:
            engine, approximation = parse_mode(mode)
            passes = args.naive_passes if engine == "naive" else args.passes
            scorer = ChainScorer(model, ids, "joint", engine, args.max_batch_tokens)
            planned = deletions if passes is None else min(deletions, passes * approximation.per_step)
            sync(args.device)
            start = time.perf_counter()
            greedy_prune(args.reasoning, scorer, planned, approximation=approximation)
            sync(args.device)
            seconds = time.perf_counter() - start
            forwards = scorer.stats.token_forwards
            per_second = forwards / seconds
            row = {
                "shape": shape, "mode": mode, "engine": engine, "exact": approximation.exact, "deletions": planned,
                "seconds": seconds, "token_forwards": forwards, "token_forwards_per_s": per_second,
                "matmul_fraction": 2 * non_embedding * per_second / rate,
                "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None,
            }
            if planned < deletions:
                if engine == "naive" and approximation.exact:
                    counted = naive_prune_token_forwards(args.prompt, args.reasoning, args.answer, planned)
                    assert forwards == counted, f"naive did {forwards} token-forwards, the count says {counted}"
                    whole = naive_prune_token_forwards(args.prompt, args.reasoning, args.answer, deletions)
                    row.update(extrapolated=True, whole_prune_token_forwards=whole, seconds_per_example=whole / per_second)
                else:
                    row["seconds_per_example"] = None  # a partial prune with no exact count to extrapolate by
            else:
                row["seconds_per_example"] = seconds
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    print(f"\n{'shape':>12} {'mode':>24} {'s/example':>10} {'token-fwd/s':>12} {'matmul frac':>11} {'note':>14}")
    for row in rows:
        spe = row["seconds_per_example"]
        note = "extrapolated" if row.get("extrapolated") else ("partial" if spe is None else "")
        print(f"{row['shape']:>12} {row['mode']:>24} {spe if spe is not None else float('nan'):10.1f} "
              f"{row['token_forwards_per_s']:12,.0f} {row['matmul_fraction']:11.2f} {note:>14}")
    report = {
        "benchmark": "gpu", "dtype": args.dtype, "matmul_tflops": rate / 1e12,
        "shape": {"prompt": args.prompt, "reasoning": args.reasoning, "answer": args.answer, "keep": args.keep},
        "rows": rows,
    }
    write_result(args.out, report, command=command(__file__, argv), device=args.device)
    return report


if __name__ == "__main__":
    main()
