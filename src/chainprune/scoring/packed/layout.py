"""Who attends to what in one packed forward, and that attention computed by its structure.

A pack's keys are the current chain's, then the stored suffixes of resumed candidates, then the packed tokens,
which form runs, one per candidate. The mask alone would make attention dense over the whole pack (every packed
token against every other, T x (L + T), most of it blocked), which cost a quarter of an exact pass on CPU. So
`PackLayout.attend` computes it by its structure: each packed token against the cached keys of the chain (up to
the last any of them sees, a prefix of each row allowed) and against its own candidate's keys (candidates laid
out on a padded grid, causal within), with one softmax over the two. `dense_mask` is the same as an additive
mask, for attention functions that take one. This module knows tensors, not models or chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PackLayout:
    """Who attends to what in one packed forward. Keys: the current chain's [0, past), then the stored suffixes
    of resumed candidates (`stored` keys), then the T packed tokens, which form runs, one per candidate, each
    resuming after its candidate's stored keys. Packed token t sees the chain's first `sees[t]` keys, its own
    run's stored keys, and its run's packed tokens up to itself."""

    past: int
    stored: int
    sees: torch.Tensor  # (T,) chain keys visible to each packed token
    queries: torch.Tensor  # (C, n) packed token at each cell of the runs' padded grid (row = run), 0 in padding
    keys: torch.Tensor  # (C, s + n) each run's own keys (stored, then packed) as indices after `past`, 0 in padding
    cell: torch.Tensor  # (T,) each packed token's flat cell in the query grid
    hidden_past: torch.Tensor  # (T, V) bool: chain key blocked, over the V = max(sees) keys anyone sees
    hidden_own: torch.Tensor  # (C, n, s + n) bool: own key blocked (padding, or a later packed token)
    masks: dict = field(default_factory=dict, repr=False)  # dense masks built so far, by dtype

    @classmethod
    def of(cls, past: int, sees: torch.Tensor, runs: list[tuple[int, int]]) -> PackLayout:
        """`runs`: (stored keys, packed tokens) of each run, in the order both are laid out."""
        device = sees.device
        n_stored = torch.tensor([s for s, _ in runs], device=device)
        n_packed = torch.tensor([n for _, n in runs], device=device)
        s_steps = torch.arange(int(n_stored.max()), device=device)
        n_steps = torch.arange(int(n_packed.max()), device=device)
        s_valid = s_steps[None, :] < n_stored[:, None]  # (C, s)
        n_valid = n_steps[None, :] < n_packed[:, None]  # (C, n)
        s_first = torch.cumsum(n_stored, 0) - n_stored
        n_first = torch.cumsum(n_packed, 0) - n_packed
        stored = int(n_stored.sum())
        queries = torch.where(n_valid, n_first[:, None] + n_steps[None, :], 0)
        keys = torch.cat([torch.where(s_valid, s_first[:, None] + s_steps[None, :], 0), torch.where(n_valid, stored + queries, 0)], dim=1)
        causal = n_steps[None, :] <= n_steps[:, None]  # (n, n) query row, key column
        width = n_steps.shape[0]
        allowed_own = torch.cat([s_valid[:, None, :].expand(-1, width, -1), causal[None] & n_valid[:, None, :]], dim=2)
        hidden_past = torch.arange(int(sees.max()), device=device)[None, :] >= sees[:, None]
        cell = torch.arange(n_valid.numel(), device=device)[n_valid.flatten()]
        return cls(past, stored, sees, queries, keys, cell, hidden_past, ~allowed_own)

    def dense_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The same as an additive mask (1, 1, T, past + stored + T), for attention functions that take one
        (built once per dtype)."""
        if dtype not in self.masks:
            self.masks[dtype] = self._dense_mask(dtype)
        return self.masks[dtype]

    def _dense_mask(self, dtype: torch.dtype) -> torch.Tensor:
        total, visible = self.sees.shape[0], self.hidden_past.shape[1]
        allowed = torch.zeros(total, self.past + self.stored + total, dtype=torch.bool, device=self.sees.device)
        allowed[:, :visible] = ~self.hidden_past
        runs, width, own = self.hidden_own.shape
        rows = self.queries[:, :, None].expand(runs, width, own)
        columns = self.past + self.keys[:, None, :].expand(runs, width, own)
        real = ~self.hidden_own & (self.cell.new_zeros(runs * width, dtype=torch.bool).index_fill_(0, self.cell, True)).view(runs, width, 1)
        allowed[rows[real], columns[real]] = True
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[None, None]

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
        """query (1, H, T, d), key and value (1, KVH, past + stored + T, d) -> (1, T, H, d), as the attention
        functions of transformers return. Query head h uses KV head h // (H / KVH), as `repeat_kv`."""
        _, heads, total, dim = query.shape
        kv_heads, (runs, width) = key.shape[1], self.queries.shape
        groups, visible = heads // kv_heads, self.hidden_past.shape[1]
        work = torch.promote_types(query.dtype, torch.float32)
        q = query[0].to(work).reshape(kv_heads, groups, total, dim) * scaling  # (KVH, G, T, d)
        k, v = key[0, :, None].to(work), value[0, :, None].to(work)  # (KVH, 1, keys, d)
        k_own, v_own = k[:, :, self.past :][:, :, self.keys], v[:, :, self.past :][:, :, self.keys]  # (KVH, 1, C, s + n, d)

        seen = (q @ k[:, :, :visible].transpose(-1, -2)).masked_fill_(self.hidden_past, float("-inf"))  # (KVH, G, T, V)
        own = (q[:, :, self.queries] @ k_own.transpose(-1, -2)).masked_fill_(self.hidden_own, float("-inf"))  # (KVH, G, C, n, s + n)

        # one softmax over [chain keys, own keys]: a shared maximum per query row, then the two parts' sums
        flat = (kv_heads, groups, runs * width)
        top = torch.maximum(seen.amax(-1), own.amax(-1).reshape(flat)[..., self.cell])  # (KVH, G, T)
        seen.sub_(top[..., None]).exp_()
        top_grid = torch.full(flat, float("inf"), dtype=work, device=q.device)  # padding cells: weight 0
        top_grid[..., self.cell] = top
        own.sub_(top_grid.reshape(own.shape[:-1])[..., None]).exp_()
        weight = seen.sum(-1) + own.sum(-1).reshape(flat)[..., self.cell]
        out = seen @ v[:, :, :visible] + (own @ v_own).reshape(*flat, dim)[:, :, self.cell]  # (KVH, G, T, d)
        out = (out / weight[..., None]).reshape(heads, total, dim)
        return out.transpose(0, 1)[None].to(query.dtype)
