"""Teacher generation on CPU: chainprune's decoding loop against transformers' `model.generate`, same prompts.

Both sample GSM8K train questions with the paper's settings (temperature 0.7, top-p 1.0) from the same left-
padded batch. `generate` prefills each prompt once per sample and computes every row until the longest
sample ends; chainprune's loop (`generation.decode`) prefills each prompt once, repeats its cache for the
samples, and drops rows as they finish. Reported per mode: wall time, generated tokens per second, and the
token rows each computed (prefill rows x width + one row per decoding step and live sequence): a count that
does not depend on how busy the machine is.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.speed.bench_generation --model qwen2.5-coder-0.5b \\
        --questions 8 --samples 2 --max-new-tokens 384 --out runs/bench/generation-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks.common import RUNS, command, gsm8k_records, write_result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--modes", default="generate,chainprune")
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--out", type=Path, default=RUNS / "generation-cpu.json")
    args = parser.parse_args(argv)

    from chainprune.generation import (
        Sampling,
        decode,
        derive_seed,
        render_prompt,
        stop_token_ids,
    )
    from chainprune.models import load_model
    from chainprune.tasks import get_task

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    loaded = load_model(args.model, dtype="float32", device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    task = get_task("gsm8k")
    questions = [record["question"] for record in gsm8k_records(args.gsm8k)[: args.questions]]
    prompts = [tokenizer(render_prompt(tokenizer, task.messages(q)), add_special_tokens=False)["input_ids"]
               for q in questions]
    stops = stop_token_ids(loaded)
    sampling = Sampling(n=args.samples, temperature=0.7, top_p=1.0, max_new_tokens=args.max_new_tokens)
    width = max(map(len, prompts))
    rows = []
    for mode in args.modes.split(","):
        torch.manual_seed(0)
        started = time.perf_counter()
        if mode == "generate":
            ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.7, top_p=1.0,
                                     top_k=0, num_return_sequences=args.samples, max_new_tokens=args.max_new_tokens,
                                     eos_token_id=stops, pad_token_id=stops[0], repetition_penalty=1.0)
            generated = out[:, width:].tolist()
            steps = len(generated[0])
            computed = len(generated) * width + len(generated) * (steps - 1)
        else:
            seeds = [derive_seed(0, str(i)) for i in range(len(prompts))]
            generated = decode(model, prompts, sampling, seeds, stops)
            computed = len(prompts) * width + sum(len(g) - 1 for g in generated)
        seconds = time.perf_counter() - started
        lengths = [next((j + 1 for j, t in enumerate(g) if t in stops), len(g)) for g in generated]
        row = {"mode": mode, "seconds": round(seconds, 1), "sequences": len(generated),
               "generated_tokens": sum(lengths), "tokens_per_second": round(sum(lengths) / seconds, 2),
               "longest": max(lengths), "token_rows_computed": computed}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"benchmark": "generation", "what": "teacher generation, transformers generate vs chainprune's decoding loop",
              "model": f"{args.model} (float32)", "prompt_width": width, "rows": rows}
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
