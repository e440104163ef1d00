"""Write short real GSM8K chains as prune input, for the README recipes and docs/analyses.md (not used at run time).

The worked solution before `####` is the reasoning (calculator annotations `<<...>>` stripped) and
"The answer is N." the answer. Picks `--count` chains with reasoning of `--min-chars`..`--max-chars`
characters, seeded.

    python examples/gsm8k_short_chains.py GSM8K_TRAIN.jsonl --out chains.jsonl --count 10
"""

from __future__ import annotations

import argparse
import json
import random
import re


def to_chain(index: int, record: dict) -> dict:
    solution, _, number = record["answer"].partition("####")
    reasoning = re.sub(r"<<[^>]*>>", "", solution).strip()
    return {"id": f"gsm8k-train-{index}", "question": record["question"].strip(), "reasoning": reasoning,
            "answer": f"The answer is {number.strip()}."}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gsm8k", help="GSM8K train.jsonl ({question, answer} per line)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--min-chars", type=int, default=120)
    parser.add_argument("--max-chars", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.gsm8k) as f:
        chains = [to_chain(i, json.loads(line)) for i, line in enumerate(f)]
    fitting = [c for c in chains if args.min_chars <= len(c["reasoning"]) <= args.max_chars]
    picked = sorted(random.Random(args.seed).sample(fitting, args.count), key=lambda c: len(c["reasoning"]))
    with open(args.out, "w") as f:
        for chain in picked:
            f.write(json.dumps(chain) + "\n")


if __name__ == "__main__":
    main()
