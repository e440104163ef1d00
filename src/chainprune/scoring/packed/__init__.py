"""The `packed` engine: every candidate's suffix packed into one sequence, with no padding and no recompute.

After one forward of the current chain (length L, prompt P), its KV cache holds keys/values for every
position. Deleting reasoning token i leaves positions before P + i untouched, so candidate i needs only
its suffix seq[P+i+1 : L-1] recomputed (the last token predicts nothing), at positions shifted down by one,
attending to the cached keys before P + i and to its own earlier suffix tokens. The suffixes of many
candidates are laid end to end in a single row of packed tokens; a 4D additive mask
(1, 1, T, L + T) gives each its own view (0 = attend, dtype min = blocked):

    past keys:   candidate i's queries see cached positions [0, P + i)
    packed keys: and the packed tokens of candidate i up to themselves (causal within the suffix)

Work per step is at most sum_i (L - P - i - 2) token-forwards: the `prefix` engine's chunk redundancy is gone.

The package, along its seams:
- `layout`: who attends to what in one pack (`PackLayout`), and that attention computed by its structure;
  knows tensors, not models or chains;
- `attention`: running packs through the model (`Pack`, `run_pack`, `run_packs`, `PackAttention`), alone or,
  when several chains are pruned at once (`together`), several chains' packs as one forward; knows models and
  packs, not chains;
- `engine`: scoring a chain's candidates with packs (`score_packed`, the lookahead estimates `score_lookahead`,
  suffixes computed in parts, `chain_state.Partial`); the `PACKED` engine.

When a pack attends by its structure and when through the dense mask is a `ScoringOptions` setting
(`dense_below`, `structured_attention`), carried by every pack.
"""

from __future__ import annotations

from chainprune.scoring.packed.attention import Pack, PackAttention, PackResult, run_pack, run_packs
from chainprune.scoring.packed.layout import PackLayout
from chainprune.scoring.packed.engine import PACK_TOKENS, PACKED, score_lookahead, score_packed

__all__ = [
    "PACKED",
    "PACK_TOKENS",
    "Pack",
    "PackAttention",
    "PackLayout",
    "PackResult",
    "run_pack",
    "run_packs",
    "score_lookahead",
    "score_packed",
]
