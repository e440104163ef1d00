"""Running packs through the model: alone, or several chains' packs as one forward.

A pack is run by `run_pack`: alone, or, when several chains are pruned at once (`together`), in one forward
with the other chains' packs waiting at the same moment (`run_packs`): their tokens end to end, their keys
side by side, each pack attending only to its own (`PackAttention`). Small forwards use a CPU poorly; larger
ones, less so. Models whose attention needs more than the layout models (soft-capped scores, sliding windows,
attention sinks) get their own attention function with the dense mask, built only then. This module knows
models and packs, not chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import DynamicCache

from chainprune.models.attention import attention_override
from chainprune.scoring import together
from chainprune.scoring.engine import ScoringOptions
from chainprune.scoring.logprobs import output_cache, run_decoder, target_logprobs
from chainprune.scoring.packed.layout import PackLayout


@dataclass
class Pack:
    """One packed forward: its tokens and their positions, the keys and values before them (the chain's, then
    the resumed candidates' stored suffixes), who attends to what, and the targets the objective counts."""

    inputs: torch.Tensor  # (T,) token ids
    positions: torch.Tensor  # (T,)
    past: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv_heads, keys before, head_dim)
    layout: PackLayout  # who attends to what, among those keys and the packed tokens
    counted: torch.Tensor  # (T,) bool: the packed tokens whose target the objective counts
    targets: torch.Tensor  # (counted,) those targets
    options: ScoringOptions = ScoringOptions()  # its attention's (`dense_below`, `structured_attention`)
    engine: ClassVar[str] = "packed"  # the engine whose `run_packs` runs a list of these (`scoring.run_packs`)

    @property
    def tokens(self) -> int:
        return self.inputs.shape[0]

    @property
    def keys_before(self) -> int:
        return self.past[0][0].shape[2]


@dataclass
class PackResult:
    hidden: torch.Tensor  # (T, d) last hidden states
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer the packed tokens' (keys, values), (1, kv_heads, T, head_dim)
    logp: torch.Tensor  # (counted,) float64 log-probs of the counted targets


def run_pack(model: Any, pack: Pack) -> PackResult:
    """Run one pack: on its own, or, in a thread pruning alongside others (`together.run_together`), as part
    of one forward with the packs the other threads are waiting on."""
    shared = together.current()
    return shared.submit(pack) if shared is not None else run_packs(model, [pack])[0]


@torch.no_grad()
def run_packs(model: Any, packs: list[Pack]) -> list[PackResult]:
    """Packs, of one chain or of several, run as one forward: their tokens laid end to end, their keys before
    them side by side in one cache, each pack's tokens attending only to its own (`PackAttention`). The LM
    head runs once over every pack's counted rows."""
    past = packs[0].past
    if len(packs) > 1:
        past = [
            (torch.cat([p.past[n][0] for p in packs], dim=2), torch.cat([p.past[n][1] for p in packs], dim=2))
            for n in range(len(past))
        ]
    inputs = torch.cat([p.inputs for p in packs])
    positions = torch.cat([p.positions for p in packs])
    with attention_override(model, PackAttention(packs)):
        out = run_decoder(model, DynamicCache(ddp_cache_data=past), input_ids=inputs[None], position_ids=positions[None], use_cache=True)
    hidden = out.last_hidden_state[0]  # (T, d)
    total = inputs.shape[0]
    new_keys = [(layer.keys[:, :, -total:], layer.values[:, :, -total:]) for layer in output_cache(out).layers]
    counted = torch.cat([p.counted for p in packs])
    logp = target_logprobs(model, hidden[counted], torch.cat([p.targets for p in packs]))
    results, first, first_counted = [], 0, 0
    for p in packs:
        rows, n_counted = slice(first, first + p.tokens), int(p.counted.sum())
        # copied out of the cache (which also holds the keys before them), so a kept view holds only these
        layers = [(k[:, :, rows].clone(), v[:, :, rows].clone()) for k, v in new_keys]
        results.append(PackResult(hidden[rows], layers, logp[first_counted : first_counted + n_counted]))
        first, first_counted = first + p.tokens, first_counted + n_counted
    return results


class PackAttention:
    """An attention function (see `attention_override`) for packs run as one forward. The cache holds every
    pack's keys before its tokens, pack after pack, then every packed token's; each pack's queries attend to its
    own keys by its layout's structure (`PackLayout.attend`; one pack at a time: laid on one padded grid, packs
    of unlike runs padded each other out), or, for a small pack (`ScoringOptions.dense_below`), when structured
    attention is switched off (`ScoringOptions.structured_attention`), and for what a layout does not model
    (soft-capped scores, sliding windows, attention sinks, dropout), through the model's own function with the
    layout's dense mask. Packs run as one share one run's options: the first pack's are used."""

    def __init__(self, packs: list[Pack]):
        self.options = packs[0].options
        self.layouts = [p.layout for p in packs]
        self.before = sum(p.keys_before for p in packs)
        self.spans = []  # per pack: its keys before its tokens, and its packed tokens
        key, token = 0, 0
        for p in packs:
            self.spans.append((slice(key, key + p.keys_before), slice(token, token + p.tokens)))
            key, token = key + p.keys_before, token + p.tokens

    def __call__(self, original, module, query, key, value, attention_mask, *args, **kwargs):
        plain = all(kwargs.get(name) is None for name in ("softcap", "sliding_window", "s_aux", "position_bias"))
        plain = plain and self.options.structured_attention and not kwargs.get("dropout", 0.0) and query.shape[0] == 1
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        outputs = []
        for layout, (keys_before, tokens) in zip(self.layouts, self.spans):
            q, k, v = query[:, :, tokens], key, value
            if len(self.layouts) > 1:
                own = slice(self.before + tokens.start, self.before + tokens.stop)
                k = torch.cat([key[:, :, keys_before], key[:, :, own]], dim=2)
                v = torch.cat([value[:, :, keys_before], value[:, :, own]], dim=2)
            if plain and q.shape[2] * k.shape[2] >= self.options.dense_below:
                outputs.append(layout.attend(q, k, v, scaling))
            else:
                outputs.append(original(module, q, k, v, layout.dense_mask(q.dtype), *args, **kwargs)[0])
        return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None
