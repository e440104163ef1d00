"""Statistics of a teacher chain set (`chainprune teacher` output and its samples file): acceptance, sample
accuracy, why samples were rejected, and the reasoning length in several tokenizers.

    .venv/bin/python -m benchmarks.studies.chain_set_stats benchmarks/data/gsm8k-train-qwen2.5-coder-1.5b.jsonl \\
        --tokenizers smollm2-135m,qwen2.5-coder-1.5b,llama-2 --json benchmarks/data/gsm8k-train-qwen2.5-coder-1.5b.stats.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from benchmarks.common import command, write_result


def quantiles(values: list[int]) -> dict:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"n": len(values), "mean": round(statistics.fmean(values), 1), "min": values[0], "p10": pick(0.1),
            "median": pick(0.5), "p90": pick(0.9), "max": values[-1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--tokenizers", default="smollm2-135m,llama-2")
    parser.add_argument("--seconds", type=float, help="wall time of the generation, for its throughput")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from chainprune.chains import tokenize_chain
    from chainprune.data.jsonl import parse_chain
    from chainprune.models.auxiliary import load_tokenizer

    chains = [json.loads(line) for line in args.chains.open()]
    attempts = [json.loads(line) for line in args.chains.with_name(args.chains.name + ".samples.jsonl").open()]
    samples = [s for a in attempts for s in a["samples"]]
    config = json.loads(args.chains.with_name(args.chains.name + ".config.json").read_text())
    generated = sum(s["num_tokens"] for s in samples)
    result = {
        "chains": str(args.chains), "settings": {k: config.get(k) for k in ("model", "samples", "temperature", "top_p", "max_new_tokens", "seed", "dtype")},
        "questions": len(attempts), "kept": len(chains), "acceptance_rate": round(len(chains) / len(attempts), 3),
        "samples": len(samples), "correct_samples": sum(s["correct"] for s in samples),
        "sample_accuracy": round(sum(s["correct"] for s in samples) / len(samples), 3),
        "rejected_because": dict(Counter(
            "cut off at max-new-tokens" if not s["finished"] else (s["problem"] or "wrong answer")
            for s in samples if not s["correct"])),
        "generated_tokens": generated, "generated_tokens_per_sample": quantiles([s["num_tokens"] for s in samples]),
        "reasoning_tokens": {},
    }
    if args.seconds:
        result["seconds"] = args.seconds
        result["generated_tokens_per_second"] = round(generated / args.seconds, 2)
    for name in args.tokenizers.split(","):
        tokenizer = load_tokenizer(name)
        lengths = [len(tokenize_chain(tokenizer, parse_chain(c)).reasoning_ids) for c in chains]
        result["reasoning_tokens"][name] = quantiles(lengths)
    print(json.dumps(result, indent=1))
    if args.json:
        write_result(args.json, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
