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

Feature kinds (--kinds; the features beyond the cached attention are computed lazily, one plain forward per
chain, and added to the cache): `attention` (the paper's), `attention+logprob+position`, `attention-split`
(attention received per head split by distance: from the next position, from 2-8 after, from the rest),
`attention-split+given` (plus the attention each token gives: to the previous token, and its row's entropy),
`attention+given` (the paper's features plus the attention given),
`hidden+attention` (the residual stream after the middle and the last layer, plus attention),
`attention+extras` (attention, the token's and the next token's log-probability, position, is-digit,
is-punctuation), `all` (split + given + hidden + extras).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.studies.surrogate_scale --chains 260 --train 200 \\
        --out runs/studies/surrogate-scale-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import command, gsm8k_records, solution_chain, write_result


def gsm8k_chains(count: int, seed: int, min_chars: int, max_chars: int, gsm8k: Path | None = None) -> list[dict]:
    chains = []
    for i, record in enumerate(gsm8k_records(gsm8k)):
        chain = solution_chain(record, i)
        if min_chars <= len(chain["reasoning"]) <= max_chars:
            chains.append(chain)
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


EXTRA_KEYS = ("split", "given", "hidden_mid", "hidden_last", "next_logprob", "token_class")


@torch.no_grad()
def extra_data(loaded, chain: dict) -> dict:
    """The features beyond the paper's, from one eager forward of the whole chain (no targets: cheap)."""
    from chainprune.chains import tokenize_chain
    from chainprune.data.jsonl import parse_chain

    model = loaded.model
    ids = tokenize_chain(loaded.tokenizer, parse_chain(chain))
    n, start = len(ids.reasoning_ids), len(ids.prompt_ids)
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model(torch.tensor([ids.input_ids]), output_attentions=True, output_hidden_states=True, use_cache=False)
    finally:
        model.set_attn_implementation(previous)
    length = len(ids.input_ids)
    positions = torch.arange(start, start + n)
    query = torch.arange(length)
    distance = query[None, :] - positions[:, None]  # (n, T): query position minus key position
    bands = [(distance == 1), (distance >= 2) & (distance <= 8), (distance > 8)]
    split, given = [], []
    for layer in out.attentions:  # (1, heads, T, T), row = query, column = key
        weights = layer[0].to(torch.float64)
        received = weights[:, :, positions].transpose(1, 2)  # (heads, n, T): key = reasoning token, over queries
        for band in bands:
            count = band.sum(1).clamp(min=1)
            split.append(((received * band).sum(-1) / count).T)  # (n, heads)
        rows = weights[:, positions, :]  # (heads, n, T): what each reasoning token attends to
        given.append(rows[:, torch.arange(n), positions - 1].T)  # to the previous token
        given.append(-(rows * torch.log(rows.clamp(min=1e-12))).sum(-1).T)  # entropy of its row
    middle = len(out.hidden_states) // 2
    logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    targets = torch.tensor(ids.input_ids)
    next_lp = logp[start : start + n].gather(1, targets[start + 1 : start + n + 1, None])[:, 0]
    texts = [loaded.tokenizer.decode([t]) for t in ids.reasoning_ids]
    token_class = torch.tensor([[any(c.isdigit() for c in t), bool(t.strip()) and all(not c.isalnum() for c in t.strip())]
                                for t in texts], dtype=torch.float32)
    return {"split": torch.cat(split, 1).float(), "given": torch.cat(given, 1).float(),
            "hidden_mid": out.hidden_states[middle][0, positions].float(),
            "hidden_last": out.hidden_states[-1][0, positions].float(),
            "next_logprob": next_lp, "token_class": token_class}


KINDS = ("attention", "attention+logprob+position", "attention-split", "attention-split+given", "attention+given",
         "hidden+attention", "attention+extras", "all")


def features(item: dict, kind: str, hidden_scale: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """(tokens, F) positive features: surrogate.transform takes logs of everything."""
    if kind == "attention":
        return item["attention"]
    if kind == "attention+logprob+position":
        extra = torch.stack([torch.exp(item["logprob"]).clamp(min=1e-6), item["position"] + 1e-3], dim=1)
        return torch.cat([item["attention"], extra], dim=1)
    parts = []
    if kind in ("attention-split", "attention-split+given", "all"):
        parts.append(item["split"] + 1e-6)
    if kind in ("hidden+attention", "attention+extras", "attention+given"):
        parts.append(item["attention"])
    if kind in ("attention-split+given", "attention+given", "all"):
        parts.append(item["given"] + 1e-6)
    if kind in ("hidden+attention", "all"):
        # signed values through the surrogate's log: exp of the (scaled, clipped) state, whose log gives it back
        mean, std = hidden_scale  # from the fitting chains
        hidden = (torch.cat([item["hidden_mid"], item["hidden_last"]], dim=1) - mean) / std
        parts.append(torch.exp(hidden.clamp(-8, 8)))
    if kind in ("attention+extras", "all"):
        parts.append(torch.stack([torch.exp(item["logprob"]).clamp(min=1e-6),
                                  torch.exp(item["next_logprob"]).clamp(min=1e-6), item["position"] + 1e-3], dim=1))
        parts.append(item["token_class"] + 1e-3)
    return torch.cat(parts, dim=1)


def pearsons(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> list[float]:
    from chainprune.analysis.surrogate import pearson

    return [float(pearson(p.float(), t.float())) for p, t in zip(predictions, targets) if len(t) > 1]


def summary(rs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(rs), 4), "median": round(statistics.median(rs), 4),
            "min": round(min(rs), 4), "chains": len(rs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
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
    parser.add_argument("--settings-kind", choices=("attention", "attention-split+given"), default="attention",
                        help="with --settings: the feature kind (one the library computes, for --save)")
    parser.add_argument("--save", type=Path, help="with --settings: save that surrogate here (for `baseline surrogate`)")
    parser.add_argument("--kinds", default="attention,attention+logprob+position",
                        help=f"comma-separated feature kinds, of: {', '.join(KINDS)}")
    parser.add_argument("--seeds", default="0", help="the chosen setting is also trained with these seeds "
                        "(the grid uses the first): the held-out mean per seed shows how much is training noise")
    parser.add_argument("--grid", default="16,64,256;0.0001,0.01,0.1;100,300,1000", metavar="HIDDENS;WEIGHT_DECAYS;EPOCHS",
                        help="the settings tried per kind, chosen by the mean validation Pearson")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := [k for k in kinds if k not in KINDS]:
        parser.error(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    hiddens, weight_decays, epoch_counts = ([float(v) for v in part.split(",")] for part in args.grid.split(";"))

    from chainprune.analysis.surrogate import train_surrogate
    from chainprune.models import load_model

    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    cache = args.work_dir / f"data-{args.model.replace('/', '_')}.pt"
    data = torch.load(cache, weights_only=False) if cache.exists() else {}
    chains = gsm8k_chains(args.chains, args.seed, args.min_chars, args.max_chars, args.gsm8k)
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
    if any(k not in ("attention", "attention+logprob+position") for k in kinds):
        missing = [c for c in chains if any(key not in data[c["id"]] for key in EXTRA_KEYS)]
        for k, chain in enumerate(missing):
            loaded = loaded or load_model(args.model, dtype="float32", device="cpu")
            data[chain["id"]].update(extra_data(loaded, chain))
            if k % 50 == 49:
                print(f"{k + 1}/{len(missing)} chains given extra features", flush=True)
    torch.save(data, cache)
    items = [data[c["id"]] for c in chains]
    train, test = items[: args.train], items[args.train :]
    fit, validation = train[: -args.validation], train[-args.validation :]
    lengths = [len(i["target"]) for i in items]
    result = {"what": "attention surrogate at scale: held-out Pearson per chain",
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
        kind = args.settings_kind  # a kind the library computes too (`attention_features`), so `--save` can be used

        def library_features(item: dict) -> torch.Tensor:  # what `attention_features(kind=...)` gives
            return features(item, kind)

        row = {"features": kind, "hidden": int(hidden), "weight_decay": float(weight_decay), "epochs": int(epochs)}
        surrogate = train_surrogate([library_features(i) for i in train], [i["target"] for i in train], hidden=row["hidden"],
                                    epochs=row["epochs"], weight_decay=row["weight_decay"], seed=0,
                                    info={"feature_kind": kind})
        result["given settings"] = {"settings": row, "test": summary(pearsons([surrogate.predict(library_features(i)) for i in test], targets)),
                                    "train": summary(pearsons([surrogate.predict(library_features(i)) for i in train], [i["target"] for i in train]))}
        result["test_ids"] = [c["id"] for c in chains[args.train :]]
        print(json.dumps(result["given settings"]), flush=True)
        if args.save:
            surrogate.save(args.save)
    def hidden_scale(chosen: list[dict]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if "hidden_mid" not in chosen[0]:
            return None
        states = torch.cat([torch.cat([i["hidden_mid"], i["hidden_last"]], dim=1) for i in chosen])
        return states.mean(0), states.std(0).clamp(min=1e-6)

    result["grid_tried"] = {"hidden": [int(h) for h in hiddens], "weight_decay": weight_decays,
                            "epochs": [int(e) for e in epoch_counts]}
    for kind in kinds if not args.settings else ():
        best = None
        scale = hidden_scale(fit)
        fit_x, val_x = [features(i, kind, scale) for i in fit], [features(i, kind, scale) for i in validation]
        for hidden in hiddens:
            for weight_decay in weight_decays:
                for epochs in epoch_counts:
                    tick = time.perf_counter()
                    surrogate = train_surrogate(fit_x, [i["target"] for i in fit], hidden=int(hidden),
                                                epochs=int(epochs), weight_decay=weight_decay, seed=0)
                    val_rs = pearsons([surrogate.predict(x) for x in val_x], [i["target"] for i in validation])
                    val = statistics.fmean(val_rs)
                    row = {"features": kind, "hidden": int(hidden), "weight_decay": weight_decay, "epochs": int(epochs),
                           "validation_mean": round(val, 4)}
                    result["grid"].append(row)
                    print(json.dumps(row), f"{time.perf_counter() - tick:.0f} s", flush=True)
                    if best is None or val > best[0]:
                        best = (val, row, summary(val_rs))
        _, row, chosen_validation = best
        scale = hidden_scale(train)  # the final surrogate is fitted on every training chain, scaled by them
        train_x, test_x = [features(i, kind, scale) for i in train], [features(i, kind, scale) for i in test]
        surrogate = train_surrogate(train_x, [i["target"] for i in train],
                                    hidden=row["hidden"], epochs=row["epochs"], weight_decay=row["weight_decay"], seed=0)
        held_out = summary(pearsons([surrogate.predict(x) for x in test_x], targets))
        trained = summary(pearsons([surrogate.predict(x) for x in train_x], [i["target"] for i in train]))
        result[f"best {kind}"] = {"chosen_by_validation": row, "validation": chosen_validation,
                                  "features": train_x[0].shape[1],
                                  "test": held_out, "train": trained}
        seeds = [int(v) for v in args.seeds.split(",")]
        if len(seeds) > 1:
            by_seed = {}
            for seed in seeds:
                fitted = train_surrogate(fit_x, [i["target"] for i in fit], hidden=row["hidden"], epochs=row["epochs"],
                                         weight_decay=row["weight_decay"], seed=seed)
                val_mean = statistics.fmean(pearsons([fitted.predict(x) for x in val_x], [i["target"] for i in validation]))
                final = train_surrogate(train_x, [i["target"] for i in train], hidden=row["hidden"], epochs=row["epochs"],
                                        weight_decay=row["weight_decay"], seed=seed)
                by_seed[seed] = {"validation_mean": round(val_mean, 4),
                                 "test_mean": summary(pearsons([final.predict(x) for x in test_x], targets))["mean"]}
            result[f"best {kind}"]["by_seed"] = by_seed
        print(kind, json.dumps(result[f"best {kind}"]), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
