"""Can attention bound how far a lookahead estimate falls short? A replay on widening_recall.py's recorded passes.

The margin rule's cost comes from the estimate's tail: deleting a token changes the log-probs of targets past
the window W, and the candidate exact greedy deletes is the one whose tail helps most (BENCHMARKS.md, "Where the
margin rule's cost goes"). Here, per recorded pass, one eager forward of the chain as it stands gives each
candidate the most attention any far query (past W) pays it, max over layers and heads, f; an adaptive margin
`base + c * f` with the smallest c that still covers every pass's winner is compared with the constant margin
that does (how many candidates each leaves close: what widening costs), and the tail's correlation with f.

    .venv/bin/python -m benchmarks.studies.far_attention_bound runs/reallen/exact4.suffixes-4-every8.pkl \
        --chains runs/reallen/chains.jsonl --window 3
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import command, write_result
from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model


@torch.no_grad()
def far_attention(model, ids, remaining: list[int], window: int) -> np.ndarray:
    seq = ids.prompt_ids + [ids.reasoning_ids[i] for i in remaining] + ids.answer_ids
    attentions = model(torch.tensor([seq]), output_attentions=True, use_cache=False).attentions
    weights = torch.stack([a[0] for a in attentions])  # (layers, heads, T, T): row = query
    start, length = len(ids.prompt_ids), len(seq)
    return np.array([float(weights[:, :, start + k + window + 1 :, start + k].max()) if start + k + window + 1 < length else 0.0
                     for k in range(len(remaining))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="widening_recall.py's recorded passes (--cache)")
    parser.add_argument("--chains", type=Path, required=True)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--bases", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    recorded = pickle.loads(args.cache.read_bytes())
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    pruner.model.set_attn_implementation("eager")
    by_id = {c.id: c for c in (parse_chain(json.loads(line)) for line in args.chains.open())}
    rows = []  # per pass: (exact scores, estimates at the window, tails, far attention)
    for chain in recorded:
        ids = tokenize_chain(pruner.tokenizer, by_id[chain["id"]])
        for p in chain["passes"]:
            scores = p["scores"].astype(np.float64)
            tails = np.array([g[args.window - 1 :].sum() for g in p["gains"]])
            rows.append((scores, scores - tails, tails, far_attention(pruner.model, ids, p["remaining"], args.window)))
    helped = np.concatenate([np.maximum(t, 0) for _, _, t, _ in rows])
    hurt = np.concatenate([np.abs(np.minimum(t, 0)) for _, _, t, _ in rows])
    f_all = np.concatenate([f for *_, f in rows])
    constant = max(t[np.argmax(s)] for s, _, t, _ in rows)
    result = {"cache": str(args.cache), "window": args.window, "passes": len(rows),
              "corr_far_attention_vs_tail_gain": round(float(np.corrcoef(helped, f_all)[0, 1]), 3),
              "corr_far_attention_vs_tail_loss": round(float(np.corrcoef(hurt, f_all)[0, 1]), 3),
              "constant_margin": round(float(constant), 3),
              "constant_close": round(float(np.mean([(e + constant >= s.max()).sum() for s, e, _, _ in rows])), 1),
              "adaptive": []}
    for base in args.bases:
        c = max(max(0.0, (t[np.argmax(s)] - base) / max(f[np.argmax(s)], 1e-9)) for s, _, t, f in rows)
        close = np.mean([(e + base + c * f >= s.max()).sum() for s, e, _, f in rows])
        result["adaptive"].append({"base": base, "c": round(float(c), 2), "close": round(float(close), 1)})
    print(json.dumps(result, indent=1))
    if args.out:
        write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
