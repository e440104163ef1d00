"""Attention surrogate (the paper's §5.3): predict each reasoning token's post-deletion objective from the
attention it receives.

Features of reasoning token p, for every (layer, head) of a model: the mean attention weight p receives from
all later positions of the chain (prompt + reasoning + answer), log-scaled (feature kind `attention`, the
paper's). Kind `attention-split+given` splits that attention by distance (received from the next position,
from 2-8 positions after, from the rest) and adds, per (layer, head), the attention p gives: its weight on the
previous token and the entropy of its attention row (held-out Pearson about 0.72 -> 0.77 with SmolLM2-135M on
GSM8K, mean of 5 seeds, benchmarks/results/surrogate-features-seeds-cpu.json). A two-layer MLP maps them to a score; it is trained with a
Pearson-correlation loss per chain (1 - r, averaged over chains), so it learns the relative order within a
chain, not the chain's scale. Knows models and tensors, not files (except
`save`/`load` of a trained surrogate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chainprune.choices import SURROGATE_FEATURES

EPS = 1e-6
FEATURE_KINDS = SURROGATE_FEATURES  # a saved surrogate without a kind is `attention`


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two 1-D tensors (0 when either is constant)."""
    x = x - x.mean()
    y = y - y.mean()
    denominator = torch.sqrt((x * x).sum() * (y * y).sum())
    return (x * y).sum() / denominator if denominator > 0 else x.new_zeros(())


def pearson_loss(predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 - mean Pearson r over chains (chains of fewer than 2 tokens are left out)."""
    rs = [pearson(p, t) for p, t in zip(predictions, targets) if len(p) > 1]
    return 1 - torch.stack(rs).mean() if rs else torch.zeros(())


def check_feature_kind(kind: str) -> None:
    """ValueError unless `kind` is one of `FEATURE_KINDS`."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown surrogate feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")


def feature_count(layers: int, heads: int, kind: str = "attention") -> int:
    """Columns of `attention_features` of that kind for a model of `layers` x `heads`."""
    return layers * heads * (5 if kind == "attention-split+given" else 1)


@torch.no_grad()
def attention_features(
    model: Any, input_ids: Sequence[int], start: int, count: int, kind: str = "attention",
) -> torch.Tensor:
    """(count, layers * heads): mean attention received from later positions by input positions
    start .. start+count-1, per (layer, head), for one sequence. Runs one eager forward. Kind
    `attention-split+given`: (count, 5 * layers * heads): per layer, the mean attention received from the next
    position, from 2-8 positions after and from the rest (3 x heads; 0 where no position is that far), then per
    layer the weight each position gives the previous one and the entropy of its attention row (2 x heads)."""
    check_feature_kind(kind)
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        device = next(model.parameters()).device
        out = model(torch.tensor([list(input_ids)], device=device), output_attentions=True, use_cache=False)
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)
    length = len(input_ids)
    positions = torch.arange(start, start + count, device=device)
    later = (length - 1 - positions).clamp(min=1).to(torch.float64)  # how many positions come after each
    distance = torch.arange(length, device=device)[None, :] - positions[:, None]  # (count, T): query - key position
    bands = [distance == 1, (distance >= 2) & (distance <= 8), distance > 8]  # (count, T) each
    columns, given = [], []
    for layer in out.attentions:  # (1, heads, T, T), row = query, column = key
        weights = layer[0].to(torch.float64)
        if kind == "attention":
            received = weights.sum(dim=1) - weights.diagonal(dim1=1, dim2=2)  # (heads, T): from later queries only
            columns.append((received[:, positions] / later).T)  # (count, heads)
        else:
            received = weights[:, :, positions].transpose(1, 2)  # (heads, count, T): by each position, per query
            for band in bands:
                columns.append(((received * band).sum(-1) / band.sum(1).clamp(min=1)).T)  # (count, heads)
            rows = weights[:, positions, :]  # (heads, count, T): what each position attends to
            given.append(rows[:, torch.arange(count, device=device), positions - 1].T)  # (count, heads)
            given.append(-(rows * torch.log(rows.clamp(min=1e-12))).sum(-1).T)  # (count, heads): row entropy
    features = torch.cat(columns + given, dim=1).float().cpu()
    # the split and given features were measured (benchmarks/studies/surrogate_scale.py) with EPS added once more before
    # the surrogate's log(x + EPS): kept, so a surrogate trained there or here sees the same numbers
    return features if kind == "attention" else features + EPS


class MLP(torch.nn.Module):
    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@dataclass
class Surrogate:
    """A trained surrogate: normalization of the (log) features and the MLP, plus what it was trained on."""

    mlp: MLP
    mean: torch.Tensor
    std: torch.Tensor
    info: dict[str, Any]

    @property
    def feature_kind(self) -> str:
        return self.info.get("feature_kind", "attention")

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        return (torch.log(features + EPS) - self.mean) / self.std

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted scores (higher = safer to delete), comparable within one chain only."""
        return self.mlp(self.transform(features))

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.mlp.state_dict(), "mean": self.mean, "std": self.std, "info": self.info}, path)

    @classmethod
    def load(cls, path: Path) -> Surrogate:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        features, hidden = saved["info"]["features"], saved["info"]["hidden"]
        mlp = MLP(features, hidden)
        mlp.load_state_dict(saved["state_dict"])
        return cls(mlp.eval(), saved["mean"], saved["std"], saved["info"])


def train_surrogate(
    features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], hidden: int = 64, epochs: int = 300,
    lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, info: dict[str, Any] | None = None,
) -> Surrogate:
    """Fit the MLP on chains of (features (m, F), targets (m,)) with the per-chain Pearson loss (full batch, Adam)."""
    if not features:
        raise ValueError("no training chains")
    torch.manual_seed(seed)
    stacked = torch.log(torch.cat(list(features)) + EPS)
    mean, std = stacked.mean(0), stacked.std(0).clamp(min=1e-6)
    mlp = MLP(stacked.shape[1], hidden)
    surrogate = Surrogate(mlp, mean, std, dict(info or {}, features=stacked.shape[1], hidden=hidden))
    inputs = [surrogate.transform(f) for f in features]
    targets = [t.float() for t in targets]
    optimizer = torch.optim.Adam(mlp.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = pearson_loss([mlp(x) for x in inputs], targets)
        loss.backward()
        optimizer.step()
    surrogate.info["train_loss"] = float(loss.detach())
    mlp.eval()
    return surrogate


def evaluate(surrogate: Surrogate, features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> list[float]:
    """Pearson r of predictions and targets, per chain (chains of fewer than 2 tokens left out)."""
    return [float(pearson(surrogate.predict(f), t.float())) for f, t in zip(features, targets) if len(t) > 1]
