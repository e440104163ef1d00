"""`chainprune prune --estimate`: what a prune run will cost, per chain and in all, before it runs.

Token-forwards come from `pruning.estimate` (the engine's own count per pass, the scorer's policy around it).
Time on this machine: token-forwards at the pruner's throughput, measured now by a short calibration (full
forwards of the chain lengths at hand, LM head included). Time on a GPU: the FLOPs of a token-forward (two per
weight, LM head included, plus attention over the chain) at a stated share of the GPU's peak. Approximate modes
do less than exact greedy: for them the exact figures are an upper bound.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from chainprune.chains import check_fits, tokenize_chain
from chainprune.data.jsonl import RecordError, read_chains
from chainprune.models import load_model
from chainprune.pipelines.prune import PruneConfig
from chainprune.pruning.estimate import PruneEstimate, estimate_prune
from chainprune.run import require_input
from chainprune.scoring.logprobs import ForwardStats
from chainprune.scoring.objectives import objective_start, sequence_objectives
from chainprune.units import unit_spans

# The GPU the estimate names: bfloat16 dense peak, and the share of it a pruning forward is taken to reach
# (small batched forwards of a few thousand tokens; stated, not measured).
GPU_NAME = "NVIDIA H100 SXM"
GPU_PEAK_FLOPS = 989e12
GPU_UTILISATION = 0.30


@dataclass
class ChainEstimate:
    id: str
    tokens: int  # the chain's tokens (prompt + reasoning + answer)
    reasoning: int
    units: int
    estimate: PruneEstimate
    flops_per_token_forward: float


@dataclass
class EstimateReport:
    chains: list[ChainEstimate] = field(default_factory=list)
    failures: list[RecordError] = field(default_factory=list)
    rate: float = 0.0  # token-forwards per second on this machine, measured
    device: str = "cpu"
    exact: bool = True  # False: an approximate mode, the figures are upper bounds
    gpu: str = GPU_NAME
    gpu_utilisation: float = GPU_UTILISATION

    @property
    def token_forwards(self) -> int:
        return sum(c.estimate.token_forwards for c in self.chains)

    def seconds_here(self, token_forwards: int) -> float:
        return token_forwards / self.rate if self.rate else float("nan")

    def seconds_on_gpu(self, chain: ChainEstimate, token_forwards: int) -> float:
        return token_forwards * chain.flops_per_token_forward / (GPU_PEAK_FLOPS * self.gpu_utilisation)


def flops_per_token_forward(model: Any, length: int) -> float:
    """Two FLOPs per weight a token meets (every linear layer and the LM head; not the input embedding), plus
    attention's four per key and width per layer over a chain of `length` tokens."""
    embedding = model.get_input_embeddings().weight
    weights = sum(p.numel() for p in model.parameters()) - embedding.numel()
    head = model.get_output_embeddings().weight
    if head.data_ptr() == embedding.data_ptr():  # tied: the head is the embedding, met once per token
        weights += head.numel()
    config = model.config.get_text_config()
    return 2.0 * weights + 4.0 * config.num_hidden_layers * config.hidden_size * length


def calibrate(model: Any, length: int, seconds: float = 3.0) -> float:
    """Token-forwards per second of full forwards (LM head on every position) of rows of `length` tokens."""
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    rows = max(1, 2048 // max(length, 1))
    ids = torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(0)).to(device)
    stats = ForwardStats()
    with torch.no_grad():
        sequence_objectives(model, ids[:1, : min(length, 32)], 1, ForwardStats())  # warm-up
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or stats.token_forwards == 0:
            sequence_objectives(model, ids, 1, stats)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return stats.token_forwards / (time.perf_counter() - started)


def run_estimate(input_path: Path, config: PruneConfig, calibrate_seconds: float = 3.0) -> EstimateReport:
    """The estimate of pruning every chain of `input_path` with `config` (bad records are reported, the others
    estimated)."""
    config.validate()
    require_input(input_path)
    pruner = load_model(config.model, dtype=config.dtype, device=config.device)
    report = EstimateReport(device=str(pruner.device), exact=config.approximation.exact)
    chains, report.failures = read_chains(input_path)
    lengths = []
    for line, chain in chains:
        try:
            ids = tokenize_chain(pruner.tokenizer, chain)
            check_fits(ids, pruner.max_length)
            objective_start(len(ids.prompt_ids), len(ids.reasoning_ids), config.objective)
        except ValueError as e:  # (ChainError is one)
            report.failures.append(RecordError(line, chain.id, str(e)))
            continue
        units = unit_spans(ids.reasoning_texts, config.unit)
        estimate = estimate_prune(len(ids.prompt_ids), len(ids.answer_ids), units, min(config.keep), config.engine,
                                  config.objective, config.max_batch_tokens)
        report.chains.append(ChainEstimate(chain.id, len(ids.input_ids), len(ids.reasoning_ids), len(units), estimate,
                                           flops_per_token_forward(pruner.model, len(ids.input_ids))))
        lengths.append(len(ids.input_ids))
    if lengths:
        report.rate = calibrate(pruner.model, int(statistics.median(lengths)), calibrate_seconds)
    return report
