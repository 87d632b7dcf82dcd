"""Per-sample signals computed from a target's logits (N, C) and labels (N,), in float64 so that confident
predictions stay distinguishable (float32 probabilities round to exactly 1.0 long before float64 ones do).

Every signal is oriented so that higher = more likely member."""

from __future__ import annotations

import torch


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=1)


def correctness(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 where the prediction is right, else 0 (Yeom et al.'s gap attack)."""
    return (logits.argmax(dim=1) == labels).double()


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Probability of the true class, p_y (Song & Mittal)."""
    return _log_probs(logits).gather(1, labels[:, None]).squeeze(1).exp()


def negative_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−CE = log p_y (Yeom et al.'s loss attack). Ranks samples exactly as :func:`confidence` does."""
    return _log_probs(logits).gather(1, labels[:, None]).squeeze(1)


def wrong_mass(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 − p_y, computed as Σ_{i≠y} p_i so that it stays accurate when p_y is within 1e-16 of 1."""
    logp = _log_probs(logits).scatter(1, labels[:, None], float("-inf"))
    return torch.logsumexp(logp, dim=1).exp()


def negative_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−H(p) = Σ p_i log p_i (low entropy = member). Ignores the label."""
    del labels
    logp = _log_probs(logits)
    return (logp.exp() * logp).sum(dim=1)


def negative_modified_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−Mentr (Song & Mittal 2021), Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i).
    Low Mentr = member; unlike entropy it is large for confidently wrong predictions."""
    logp = _log_probs(logits)
    p = logp.exp()
    log1mp = torch.log1p(-p.clamp(max=1.0 - 1e-16))  # log(1 - p_i); p_i < 1 in float64 unless saturated
    onehot = torch.zeros_like(p).scatter_(1, labels[:, None], 1.0)
    true_term = (1.0 - p) * logp * onehot
    other_terms = p * log1mp * (1.0 - onehot)
    return (true_term + other_terms).sum(dim=1)


def scaled_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's logit-scaled confidence log(p_y / (1 − p_y)) = z_y − logsumexp_{i≠y} z_i (stable form)."""
    z = logits.double()
    true = z.gather(1, labels[:, None]).squeeze(1)
    others = z.scatter(1, labels[:, None], float("-inf"))
    return true - torch.logsumexp(others, dim=1)


def plus_minus_one(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The label as a ±1 vector (N, C): +1 at the true class, −1 elsewhere (SafeCompress's label encoding)."""
    out = torch.full((labels.shape[0], num_classes), -1.0, dtype=dtype, device=labels.device)
    return out.scatter_(1, labels[:, None], 1.0)
