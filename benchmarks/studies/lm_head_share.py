"""Where packed's time goes on short chains: the share of the LM head, which token-forwards do not weigh.

A token-forward counts one token through the decoder; the LM head (logits over the whole vocabulary and their
log-softmax) runs only for tokens whose target the objective counts. `naive` recomputes every candidate's
prompt and prefix (decoder only), `packed` only suffix tokens (decoder and head), so packed's saving in
token-forwards is larger than its saving in head rows. This prunes short GSM8K chains exactly with `naive` and
`packed`, counting the rows through the head (`target_logprobs`, wrapped for the count) and their time.

    .venv/bin/python -m benchmarks.studies.lm_head_share --examples 3 --width 256   # a random 4-layer model
    .venv/bin/python -m benchmarks.studies.lm_head_share --examples 3               # the bundled SmolLM2-135M
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import chainprune.scoring.chain_state as chain_state
import chainprune.scoring.logprobs as logprobs
import chainprune.scoring.objectives as objectives
import chainprune.scoring.packed.attention as attention
import chainprune.scoring.prefix as prefix
from benchmarks.common import (
    STUDY_RUNS,
    command,
    gsm8k_records,
    solution_chain,
    write_result,
)
from chainprune.data.jsonl import parse_chain
from chainprune.models import LoadedModel, load_model
from chainprune.pruning import prune_chain


def short_chains(count: int, max_chars: int, path: Path | None) -> list:
    """The first `count` GSM8K worked solutions of at most `max_chars` characters, as chains."""
    records = (solution_chain(record, i) for i, record in enumerate(gsm8k_records(path)))
    return [parse_chain(r) for r in records if len(r["reasoning"]) <= max_chars][:count]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--max-chars", type=int, default=110, help="worked solutions at most this long")
    parser.add_argument("--width", type=int, default=0, help="a random 4-layer Llama of this width with the bundled "
                        "tokenizer's vocabulary (0: the bundled model itself)")
    parser.add_argument("--engines", default="naive,packed")
    parser.add_argument("--gsm8k", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=STUDY_RUNS / "lm-head-share.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, seconds = [0], [0.0]
    original = logprobs.target_logprobs

    def counted(model, hidden, targets):
        rows[0] += hidden.shape[0]
        started = time.perf_counter()
        out = original(model, hidden, targets)
        seconds[0] += time.perf_counter() - started
        return out

    for module in (logprobs, objectives, chain_state, prefix, attention):  # every caller of the head
        module.target_logprobs = counted
    bundled = load_model("smollm2-135m", dtype="float32", device="cpu")
    pruner = bundled
    if args.width:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(bundled.tokenizer), hidden_size=args.width, intermediate_size=4 * args.width,
                             num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
        pruner = LoadedModel(model=LlamaForCausalLM(config).eval(), tokenizer=bundled.tokenizer, name=f"random-{args.width}")
    chains = short_chains(args.examples, args.max_chars, args.gsm8k)
    results = []
    for engine in args.engines.split(","):
        prune_chain(pruner, chains[0], keep=[0.9], engine=engine)  # warm-up
        rows[0], seconds[0], forwards, started = 0, 0.0, 0, time.perf_counter()
        for chain in chains:
            forwards += prune_chain(pruner, chain, keep=[0.5], engine=engine).token_forwards
        total = time.perf_counter() - started
        results.append({"engine": engine, "seconds": round(total, 1), "token_forwards": forwards, "lm_head_rows": rows[0],
                        "lm_head_seconds": round(seconds[0], 1)})
        print(json.dumps(results[-1]), flush=True)
    result = {"study": "lm_head_share", "model": pruner.name, "chains": [c.id for c in chains], "results": results}
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
