"""One exact `packed` pass over the first candidates of a long chain with a tiny random model: where its time goes.

A chain of about N reasoning tokens (GSM8K worked solutions concatenated, the bundled tokenizer), a random
2-layer Llama of width 64 in float64 (arithmetic trivial: what remains is allocation), the first C candidates
(the longest suffixes) scored once; prints wall, user and system time, minor page faults and peak memory.
`BLOCK=ELEMENTS` in the environment changes the LM head's block (`scoring.logprobs.LOGITS_BLOCK`) for the run.

    .venv/bin/python benchmarks/studies/long_pass.py 2600 30
"""
import json
import re
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chainprune.chains import tokenize_chain
from chainprune.models import load_model
from chainprune.scoring import ENGINES, ChainCache, ForwardStats, ScoreRequest
from chainprune.scoring.chain_state import forward_current
from chainprune.types import Chain

torch.set_num_threads(1)
import os

import chainprune.scoring.logprobs as _lp

if os.environ.get("BLOCK"): _lp.LOGITS_BLOCK = int(os.environ["BLOCK"])
tok = load_model("smollm2-135m", dtype="float32", device="cpu").tokenizer
rows = [json.loads(l) for l in open(Path(__file__).resolve().parents[2] / "data" / "gsm8k" / "train.jsonl")]
text, i = "", 0
while len(tok(text)["input_ids"]) < int(sys.argv[1]):
    text += re.sub(r"<<[^>]*>>", "", rows[i]["answer"].split("####")[0]).strip() + "\n"; i += 1
chain = Chain("long", rows[0]["question"], text.strip(), "The answer is 72.")
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192)
model = LlamaForCausalLM(cfg).to(torch.float64).eval()
ids = tokenize_chain(tok, chain)
m = len(ids.reasoning_ids)
current = forward_current(model, ids, "joint", ForwardStats())
subset = list(range(int(sys.argv[2])))
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
stats = ForwardStats()
_, scores = ENGINES["packed"](model, ScoreRequest(ids, "joint", 8192, positions=subset, stats=stats, cache=ChainCache(current=current)))
t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"reasoning": m, "tokens": len(ids.input_ids), "candidates": len(subset), "token_forwards": stats.token_forwards,
  "seconds": round(t1 - t0, 1), "user": round(r1.ru_utime - r0.ru_utime, 1), "system": round(r1.ru_stime - r0.ru_stime, 1),
  "minor_faults": r1.ru_minflt - r0.ru_minflt, "peak_rss_mb": r1.ru_maxrss // 1024, "checksum": float(scores[subset].sum())}))
