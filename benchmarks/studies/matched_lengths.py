"""Matched lengths on real GSM8K chains: all five methods cut to the same number of *student* tokens.

Steps (all through the `chainprune` command line, outputs under --work-dir, resumable):
1. write N GSM8K train chains (calculator annotations `<<...>>` stripped; reasoning = the solution before
   `####`, answer = "The answer is N.");
2. student tokenizers different from the pruner's (`--student-tokenizers`): the paper's students' own,
   `llama-2` and `mistral-7b-v0.3` (built offline by `make tokenizers`), and/or `standin`, a BPE tokenizer
   (Metaspace pre-tokenizer, sentencepiece style, 8000 tokens) trained on GSM8K train text by this script;
3. greedy traces with the bundled pruner, APPROXIMATE (`--per-step 8 --screen 8`) because exact greedy takes
   minutes per chain on this CPU; length matching concerns the cutting rule, not the ranking's exactness;
4. `chainprune match` (greedy) and `chainprune baseline` for uniform, surprisal, h2o (bundled pruner) and
   tokenskip with a STAND-IN classifier: a tiny random XLM-R token classifier with its own tokenizer, since
   the real LLMLingua-2 model cannot be downloaded here (the check is about lengths, not about its ranking);
5. per student tokenizer, `chainprune lengths`, plus agreement: per keep fraction, the spread of the methods'
   mean achieved student-token fractions and the largest per-chain spread. Prints the tables and writes JSON.

    make tokenizers
    nice -n 10 .venv/bin/python -m benchmarks.studies.matched_lengths --examples 50 \
        --student-tokenizers llama-2,mistral-7b-v0.3 --out runs/studies/matched-lengths-paper-students-cpu.json
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    STUDY_RUNS,
    command,
    gsm8k_records,
    write_result,
    write_shuffled_chains,
)

CALCULATOR = re.compile(r"<<[^>]*>>")
CLI = [sys.executable, "-m", "chainprune.cli"]
KEEPS = (0.9, 0.7, 0.5)
BASELINES = ("uniform", "surprisal", "h2o", "tokenskip")


def gsm8k_text(gsm8k: Path | None = None):
    for record in gsm8k_records(gsm8k):
        yield record["question"]
        yield CALCULATOR.sub("", record["answer"])


def train_student_tokenizer(folder: Path, gsm8k: Path | None = None) -> None:
    """A sentencepiece-style BPE (Metaspace, byte fallback off) unlike SmolLM2's byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if (folder / "tokenizer.json").exists():
        return
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(gsm8k_text(gsm8k), trainers.BpeTrainer(vocab_size=8000, special_tokens=["<unk>", "<s>", "</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(folder)


def build_standin_classifier(folder: Path, seed: int = 0, gsm8k: Path | None = None) -> None:
    """A tiny random XLM-R token classifier (2 labels) with a Unigram tokenizer trained on GSM8K: NOT LLMLingua-2."""
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaForTokenClassification,
    )

    if (folder / "config.json").exists():
        return
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(gsm8k_text(gsm8k), trainers.UnigramTrainer(vocab_size=2000, special_tokens=special, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=512)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=128, max_position_embeddings=514, num_labels=2,
                              pad_token_id=fast.pad_token_id)
    XLMRobertaForTokenClassification(config).eval().save_pretrained(folder)
    fast.save_pretrained(folder)


def agree(rows, records, methods, ids) -> list[dict]:
    """Per keep: the spread of the methods' mean achieved fractions, and the largest per-chain spread."""
    out = []
    for r in KEEPS:
        key = repr(r)
        means = {row.method: row.student_fraction_mean for row in rows if row.keep == r and row.method in methods}
        fractions = [[records[m][i]["pruned"][key]["student_fraction"] for m in methods] for i in ids]
        tokens = [[records[m][i]["pruned"][key]["student_tokens"] for m in methods] for i in ids]
        spreads = [max(f) - min(f) for f in fractions]
        out.append({"keep": r, "mean_fraction_by_method": means,
                    "spread_of_means": max(means.values()) - min(means.values()),
                    "per_chain_spread_max": max(spreads), "per_chain_spread_mean": sum(spreads) / len(spreads),
                    "per_chain_token_spread_max": max(max(t) - min(t) for t in tokens)})
    return out


STUDENT_TOKENIZERS = {
    "standin": "BPE, Metaspace pre-tokenizer, 8000 tokens, trained on GSM8K train text by this script",
    "llama-2": "Llama-2's SentencePiece vocabulary (32,000), built by `make tokenizers`, 46 reference encodings checked",
    "mistral-7b-v0.3": "Mistral-7B-v0.3's SentencePiece model (32,768), built by `make tokenizers`, checked against sentencepiece",
}


def match_all(work: Path, chains: Path, traces: Path, student: str, classifier: Path, seconds: dict) -> dict:
    """Greedy `match` and the four baselines cut to matched lengths in one student tokenizer; the table,
    agreement and lengths."""
    from dataclasses import asdict

    from chainprune.data.jsonl import read_traces
    from chainprune.pipelines.baselines import length_table

    work.mkdir(parents=True, exist_ok=True)
    keep_args = [x for r in KEEPS for x in ("--keep", str(r))]
    outputs = {"greedy": work / "greedy.jsonl"}
    label = f" ({work.name})"
    seconds["greedy match" + label] = run(["match", str(traces), "--student-tokenizer", student, *keep_args,
                                           "--out", str(outputs["greedy"]), "--overwrite"])
    for method in BASELINES:
        outputs[method] = work / f"{method}.jsonl"
        extra = ["--classifier", str(classifier)] if method == "tokenskip" else []
        seconds[method + label] = run(["baseline", method, str(chains), "--student-tokenizer", student, *keep_args,
                                       "--dtype", "float32", *extra, "--out", str(outputs[method]), "--resume"])
    run(["lengths", *map(str, outputs.values())])
    records = {m: {r["id"]: r for r in read_traces(p)} for m, p in outputs.items()}
    common = sorted(set.intersection(*(set(v) for v in records.values())))
    baseline_common = sorted(set.intersection(*(set(records[m]) for m in BASELINES)))
    rows = length_table(list(outputs.values()), ids=set(common))
    baseline_rows = length_table([outputs[m] for m in BASELINES], ids=set(baseline_common))
    agreement = {"five methods": agree(rows, records, list(records), common),
                 "four baselines": agree(baseline_rows, records, list(BASELINES), baseline_common)}
    for what, chains_used in (("five methods", common), ("four baselines", baseline_common)):
        print(f"\nagreement, {what}, {len(chains_used)} chains, {work.name} (fractions of each chain's student length):")
        for a in agreement[what]:
            print(f"  keep {a['keep']}: spread of means {a['spread_of_means']:.4f}, per-chain spread "
                  f"mean {a['per_chain_spread_mean']:.4f} max {a['per_chain_spread_max']:.4f} "
                  f"(max {a['per_chain_token_spread_max']} student tokens)")
    student_lengths = [records["uniform"][i]["student_tokens"] for i in baseline_common]
    pruner_lengths = [len(records["uniform"][i]["reasoning_ids"]) for i in baseline_common]
    return {
        "reasoning_tokens_pruner": {"mean": sum(pruner_lengths) / len(pruner_lengths), "min": min(pruner_lengths), "max": max(pruner_lengths)},
        "reasoning_tokens_student": {"mean": sum(student_lengths) / len(student_lengths), "min": min(student_lengths), "max": max(student_lengths)},
        "chains_with_all_five": len(common),
        "chains_with_all_four_baselines": len(baseline_common),
        "rows_five_methods": [asdict(row) for row in rows],
        "rows_four_baselines": [asdict(row) for row in baseline_rows],
        "agreement": agreement,
    }


def run(args: list[str]) -> float:
    started = time.perf_counter()
    print("$ chainprune " + " ".join(args), flush=True)
    subprocess.run(CLI + args, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/chainprune-bench-matched"))
    parser.add_argument("--out", type=Path, default=STUDY_RUNS / "matched-lengths-cpu.json")
    parser.add_argument("--max-words", type=int, default=35, help="longest reasoning used, in words (CPU time)")
    parser.add_argument("--per-step", type=int, default=16)
    parser.add_argument("--screen", type=int, default=8)
    parser.add_argument("--student-tokenizers", default="standin",
                        help="comma-separated: named tokenizers (llama-2, mistral-7b-v0.3, ...), folders, or 'standin'")
    parser.add_argument("--stage", choices=["all", "greedy", "rest"], default="all",
                        help="greedy: only prune (resumable); rest: everything else, on the traces written so far")
    args = parser.parse_args(argv)

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    chains, classifier = work / "chains.jsonl", work / "standin-classifier"
    if not chains.exists():
        write_shuffled_chains(chains, args.examples, args.seed, args.max_words, gsm8k=args.gsm8k)
    build_standin_classifier(classifier, gsm8k=args.gsm8k)

    seconds = {}
    traces = work / "greedy-traces.jsonl"
    greedy_args = ["--per-step", str(args.per_step), "--screen", str(args.screen)]
    if args.stage != "rest":
        seconds["greedy prune (approximate)"] = run(
            ["prune", str(chains), "--out", str(traces), "--keep", "0.4", "--engine", "packed", "--dtype", "float32",
             *greedy_args, "--resume"])
    if args.stage == "greedy":
        return
    if "greedy prune (approximate)" not in seconds:
        seconds["greedy prune (approximate), run separately"] = None
    by_tokenizer = {}
    for name in args.student_tokenizers.split(","):
        student = name
        if name == "standin":
            student = str(work / "student-tokenizer")
            train_student_tokenizer(Path(student), args.gsm8k)
        by_tokenizer[name] = match_all(work / name.replace("/", "_"), chains, traces, student, classifier, seconds)
    result = {
        "what": "achieved student-token keep fractions at matched lengths, 5 methods, real GSM8K train chains",
        "pruner": "smollm2-135m (bundled SmolLM2-135M-Instruct, float32, CPU)",
        "student_tokenizers": {name: STUDENT_TOKENIZERS.get(name, name) for name in by_tokenizer},
        "greedy": f"APPROXIMATE: --per-step {args.per_step} --screen {args.screen} --refresh 10, packed engine, pruned to keep 0.4",
        "chain_selection": f"first {args.examples} of a seed-{args.seed} shuffle of GSM8K train with reasoning <= {args.max_words} words",
        "tokenskip": "STAND-IN: tiny random XLM-R token classifier (seed 0), not the LLMLingua-2 model",
        "seconds": seconds,
        "by_student_tokenizer": by_tokenizer,
    }
    write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
