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
  suffixes computed in parts, `Partial`); the `PACKED` engine.

`DENSE_BELOW` is set here and read by `attention` at each call (not bound at import), so tests and
benchmarks change it in one place.
"""

from __future__ import annotations

from chainprune.scoring.packed.attention import Pack, PackAttention, PackResult, run_pack, run_packs
from chainprune.scoring.packed.layout import PackLayout
from chainprune.scoring.packed.engine import PACK_TOKENS, PACKED, Partial, score_lookahead, score_packed

# A pack with fewer (packed tokens x keys) than this attends through the model's own function with its dense
# mask (built once per forward): for small packs one fused call beats the structured attention's dozen small
# ones (CPU, 9 heads: 0.45 vs 1.31 ms at 60 x 260, 2.6 vs 3.5 ms at 234 x 454; 36 vs 12 ms at 1155 x 1355).
DENSE_BELOW = 2**17

__all__ = [
    "DENSE_BELOW",
    "PACKED",
    "PACK_TOKENS",
    "Pack",
    "PackAttention",
    "PackLayout",
    "PackResult",
    "Partial",
    "run_pack",
    "run_packs",
    "score_lookahead",
    "score_packed",
]
