"""Training an encoder on the labels (docs/design.md, "Evaluation"): fine-tuning the SSL encoder, and
the supervised baseline (the same architecture from random weights). One multi-task linear head on
the pooled tokens (`embedding.pool`: mean and spread of each channel's tokens, channels concatenated) predicts every
window-level task at once: logistic outputs for the classifications, standardised targets for the
regressions; a window contributes to the tasks whose label it has. The encoder sees what it sees at
embedding time (pipeline/model/embedding.py): each window and channel z-scored, no mask.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from pipeline.io import progress
from pipeline.model.embedding import pool
from pipeline.model.preprocess import normalize

log = logging.getLogger(__name__)


class WithHead(nn.Module):
    def __init__(self, encoder, n_out: int, n_channels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(n_channels * 2 * encoder.d_model, n_out)

    def forward(self, x):
        return self.head(pool(self.encoder(x)).flatten(1))


def train_on_labels(encoder, signals: np.ndarray, targets: np.ndarray, kinds: list[str], epochs: int, lr: float,
                    batch_size: int, seed: int, desc: str):
    """Train `encoder` (in place) with a multi-task head on raw windows `signals` [n, C, L] and
    `targets` [n, K] (NaN = no label); `kinds[k]` is "regression" or "classification". Trains on the
    encoder's device. Returns the encoder and the per-epoch mean losses."""
    torch.manual_seed(seed)
    targets = np.asarray(targets, dtype=np.float64)
    is_cls = np.array([k == "classification" for k in kinds])
    mean, std = np.zeros(len(kinds)), np.ones(len(kinds))
    for k in np.flatnonzero(~is_cls):  # regression targets standardised by their train statistics
        col = targets[np.isfinite(targets[:, k]), k]
        if len(col):
            mean[k], std[k] = col.mean(), (col.std() or 1.0)
    y = torch.as_tensor((targets - mean) / std, dtype=torch.float32)
    device = next(encoder.parameters()).device
    cls = torch.as_tensor(is_cls, device=device)
    model = WithHead(encoder, targets.shape[1], signals.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(signals))
        total, n = 0.0, 0
        for s in progress(range(0, len(order), batch_size), desc=f"{desc} epoch {epoch + 1}/{epochs}", mininterval=10, leave=False):
            idx = np.sort(order[s : s + batch_size])
            x = normalize(torch.as_tensor(signals[idx], dtype=torch.float32).to(device))
            out, t = model(x), y[idx].to(device)
            have = torch.isfinite(t)
            t0 = torch.nan_to_num(t)
            per = torch.where(cls, nn.functional.binary_cross_entropy_with_logits(out, t0, reduction="none"), (out - t0) ** 2)
            loss = (per * have).sum() / have.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.detach() * len(idx)
            n += len(idx)
        history.append(float(total) / max(n, 1))  # one host sync per epoch
        log.info("%s: epoch %d/%d, loss %.4f", desc, epoch + 1, epochs, history[-1])
    model.eval()
    return encoder, history
