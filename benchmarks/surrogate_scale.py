"""The attention surrogate (§5.3) at the paper's scale: 200 training chains, 50+ held out, and what it takes.

Steps (resumable: features and targets are computed once per chain and cached in --work-dir):
1. GSM8K train worked solutions as chains (calculator notes stripped, "The answer is N."), seeded pick;
2. per chain, with the pruner (default the bundled SmolLM2-135M, float32): the exact post-deletion joint
   objective of every reasoning token (one exact scoring pass: the target), the attention each token
   receives from later positions per (layer, head) (the paper's features), and two non-attention signals
   for contrast: the token's own log-probability in context and its relative position;
3. surrogates trained on the first --train chains (the last --validation of them held back to choose the
   settings), tested on the rest: a grid over hidden size, weight decay and epochs, for attention features
   alone and with the extra signals; plus single signals with no training (surprisal alone).
Reports the held-out Pearson per chain (mean, median) of each, and writes JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/surrogate_scale.py --chains 260 --train 200 \\
        --out benchmarks/results/surrogate-scale-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"


def gsm8k_chains(count: int, seed: int, min_chars: int, max_chars: int) -> list[dict]:
    chains = []
    for i, line in enumerate(GSM8K.open()):
        record = json.loads(line)
        solution, _, number = record["answer"].partition("####")
        reasoning = re.sub(r"<<[^>]*>>", "", solution).strip()
        if min_chars <= len(reasoning) <= max_chars:
            chains.append({"id": f"gsm8k-train-{i}", "question": record["question"].strip(),
                           "reasoning": reasoning, "answer": f"The answer is {number.strip()}."})
    random.Random(seed).shuffle(chains)
    return chains[:count]  # a prefix of one seeded order: a smaller --chains takes the first of a larger run


@torch.no_grad()
def chain_data(loaded, chain: dict) -> dict:
    from chainprune.analysis.surrogate import attention_features
    from chainprune.chains import tokenize_chain
    from chainprune.data.jsonl import parse_chain
    from chainprune.pruning import ChainScorer
    from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS

    ids = tokenize_chain(loaded.tokenizer, parse_chain(chain))
    n, start = len(ids.reasoning_ids), len(ids.prompt_ids)
    scorer = ChainScorer(loaded.model, ids, "joint", "packed", DEFAULT_MAX_BATCH_TOKENS)
    base, scores = scorer.candidates(list(range(n)))
    logits = loaded.model(torch.tensor([ids.input_ids])).logits[0].float()
    logp = torch.log_softmax(logits[start - 1 : start + n - 1], dim=-1)
    own = logp.gather(1, torch.tensor(ids.reasoning_ids)[:, None])[:, 0]
    return {"id": chain["id"], "target": scores.float().cpu(), "base": float(base),
            "attention": attention_features(loaded.model, ids.input_ids, start, n),
            "logprob": own.cpu(), "position": torch.arange(n, dtype=torch.float32) / max(n - 1, 1)}


def features(item: dict, kind: str) -> torch.Tensor:
    if kind == "attention":
        return item["attention"]
    extra = torch.stack([torch.exp(item["logprob"]).clamp(min=1e-6), item["position"] + 1e-3], dim=1)
    return torch.cat([item["attention"], extra], dim=1)  # surrogate.transform takes logs of everything


def pearsons(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> list[float]:
    from chainprune.analysis.surrogate import pearson

    return [float(pearson(p.float(), t.float())) for p, t in zip(predictions, targets) if len(t) > 1]


def summary(rs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(rs), 4), "median": round(statistics.median(rs), 4),
            "min": round(min(rs), 4), "chains": len(rs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--chains", type=int, default=260)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--validation", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--min-chars", type=int, default=80)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/chainprune-surrogate-scale"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--score-only-cached", action="store_true", help="fail instead of scoring a missing chain")
    parser.add_argument("--settings", metavar="HIDDEN,WEIGHT_DECAY,EPOCHS",
                        help="skip the grid: train the attention-only surrogate with these settings on every training chain")
    parser.add_argument("--save", type=Path, help="with --settings: save that surrogate here (for `baseline surrogate`)")
    args = parser.parse_args()

    from chainprune.analysis.surrogate import train_surrogate
    from chainprune.models import load_model

    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    cache = args.work_dir / f"data-{args.model.replace('/', '_')}.pt"
    data = torch.load(cache, weights_only=False) if cache.exists() else {}
    chains = gsm8k_chains(args.chains, args.seed, args.min_chars, args.max_chars)
    loaded = None
    started = time.perf_counter()
    for k, chain in enumerate(chains):
        if chain["id"] in data:
            continue
        if args.score_only_cached:
            raise SystemExit(f"only {k} of the {len(chains)} chains are scored in {cache}")
        loaded = loaded or load_model(args.model, dtype="float32", device="cpu")
        data[chain["id"]] = chain_data(loaded, chain)
        if k % 10 == 9:
            torch.save(data, cache)
            print(f"{k + 1}/{len(chains)} chains scored, {time.perf_counter() - started:.0f} s", flush=True)
    torch.save(data, cache)
    items = [data[c["id"]] for c in chains]
    train, test = items[: args.train], items[args.train :]
    fit, validation = train[: -args.validation], train[-args.validation :]
    lengths = [len(i["target"]) for i in items]
    result = {"what": "attention surrogate at scale: held-out Pearson per chain", "date": date.today().isoformat(),
              "machine": f"{platform.machine()} CPU, {platform.system()}", "command": " ".join(sys.argv),
              "pruner_and_attention_model": f"{args.model} (float32)", "chains": len(items),
              "train": len(train), "validation_within_train": len(validation), "test": len(test),
              "reasoning_tokens": {"mean": statistics.fmean(lengths), "min": min(lengths), "max": max(lengths)},
              "no_training": {}, "grid": []}
    targets = [i["target"] for i in test]
    result["no_training"]["surprisal (-log p of the token)"] = summary(pearsons([-i["logprob"] for i in test], targets))
    result["no_training"]["attention received, mean over heads"] = summary(
        pearsons([-i["attention"].mean(1) for i in test], targets))
    print(json.dumps(result["no_training"], indent=1), flush=True)
    if args.settings:
        hidden, weight_decay, epochs = args.settings.split(",")
        row = {"features": "attention", "hidden": int(hidden), "weight_decay": float(weight_decay), "epochs": int(epochs)}
        surrogate = train_surrogate([i["attention"] for i in train], [i["target"] for i in train], hidden=row["hidden"],
                                    epochs=row["epochs"], weight_decay=row["weight_decay"], seed=0)
        result["given settings"] = {"settings": row, "test": summary(pearsons([surrogate.predict(i["attention"]) for i in test], targets)),
                                    "train": summary(pearsons([surrogate.predict(i["attention"]) for i in train], [i["target"] for i in train]))}
        result["test_ids"] = [c["id"] for c in chains[args.train :]]
        print(json.dumps(result["given settings"]), flush=True)
        if args.save:
            surrogate.save(args.save)
    for kind in ("attention", "attention+logprob+position") if not args.settings else ():
        best = None
        for hidden in (16, 64, 256):
            for weight_decay in (1e-4, 1e-2, 1e-1):
                for epochs in (100, 300, 1000):
                    surrogate = train_surrogate([features(i, kind) for i in fit], [i["target"] for i in fit],
                                                hidden=hidden, epochs=epochs, weight_decay=weight_decay, seed=0)
                    val = statistics.fmean(pearsons([surrogate.predict(features(i, kind)) for i in validation],
                                                    [i["target"] for i in validation]))
                    row = {"features": kind, "hidden": hidden, "weight_decay": weight_decay, "epochs": epochs,
                           "validation_mean": round(val, 4)}
                    result["grid"].append(row)
                    if best is None or val > best[0]:
                        best = (val, row)
        _, row = best
        surrogate = train_surrogate([features(i, kind) for i in train], [i["target"] for i in train],
                                    hidden=row["hidden"], epochs=row["epochs"], weight_decay=row["weight_decay"], seed=0)
        held_out = summary(pearsons([surrogate.predict(features(i, kind)) for i in test], targets))
        trained = summary(pearsons([surrogate.predict(features(i, kind)) for i in train], [i["target"] for i in train]))
        result[f"best {kind}"] = {"chosen_by_validation": row, "test": held_out, "train": trained}
        print(kind, json.dumps(result[f"best {kind}"]), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
