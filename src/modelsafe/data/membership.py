"""Membership splits of a model trained elsewhere: the caller says which samples the model was trained on
(members) and, optionally, which it never saw (non-members); the attacker-known and evaluation sets are drawn
from those. Index files hold one integer a line, or a NumPy ``.npy`` array."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from modelsafe._checks import check_fraction, check_seed
from modelsafe.data.info import Dataset
from modelsafe.data.split import MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.utils import derive_seed, make_generator


def read_indices(path: str | os.PathLike, what: str) -> torch.Tensor:
    """The integers of an index file (one a line; blank lines and ``#`` comments skipped) or of a 1-D integer
    ``.npy`` array (read without pickles)."""
    path = Path(path)
    if not path.is_file():
        raise ModelsafeError(f"{what} file {path} does not exist")
    if path.suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ModelsafeError(f"{what} file {path} is not a readable .npy array: {exc}") from None
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ModelsafeError(f"{what} file {path} must hold a 1-D integer array, got {values.dtype} "
                                 f"{values.shape}")
        return torch.from_numpy(values.astype(np.int64))
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(int(text))
        except ValueError:
            raise ModelsafeError(f"{what} file {path}, line {number}: expected an integer, got {text!r}") from None
    return torch.tensor(out, dtype=torch.long)


def _checked(ids: torch.Tensor, limit: int, what: str) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if ids.numel() == 0:
        raise ModelsafeError(f"{what}: no indices")
    if int(ids.min()) < 0 or int(ids.max()) >= limit:
        raise ModelsafeError(f"{what}: indices must lie in [0, {limit}), got {int(ids.min())} .. {int(ids.max())}")
    if ids.unique().numel() != ids.numel():
        raise ModelsafeError(f"{what}: {ids.numel() - ids.unique().numel()} repeated indices")
    return ids


def split_from_membership(dataset: Dataset, members, non_members=None, *, known_fraction: float = 0.5,
                          seed: int = 0) -> MembershipSplit:
    """A split of ``dataset`` for a target trained on ``members`` (indices into the train split). Non-members
    (indices into ``dataset.pool()``: train samples first, then test) default to every sample not a member.
    ``known_fraction`` of the members (shuffled with ``seed``) are known to the attacker, the rest are
    evaluation members; as many non-members are attacker-known and as many evaluation non-members as there are
    known and evaluation members (fewer when there are fewer non-members); the non-members left over form the
    reference-model population. There is no validation set."""
    check_fraction("known_fraction", known_fraction, closed_low=False, closed_high=False)
    seed = check_seed("seed", seed)
    n_train, total = len(dataset.train), len(dataset.train) + len(dataset.test)
    members = _checked(members, n_train, "members (indices into the train split)")
    if non_members is None:
        free = torch.ones(total, dtype=torch.bool)
        free[members] = False
        non_members = free.nonzero().squeeze(1)
    non_members = _checked(non_members, total, "non-members (indices into train then test)")
    shared = np.intersect1d(members.numpy(), non_members.numpy())
    if shared.size:
        raise ModelsafeError(f"members and non-members share {shared.size} indices (e.g. {int(shared[0])})")
    if members.numel() < 2 or non_members.numel() < 2:
        raise ModelsafeError("need at least 2 members and 2 non-members")
    gen = make_generator(derive_seed(seed, "membership-from-indices"))
    members = members[torch.randperm(members.numel(), generator=gen)]
    non_members = non_members[torch.randperm(non_members.numel(), generator=gen)]
    n_known = max(1, min(members.numel() - 1, round(known_fraction * members.numel())))
    n_ref = min(n_known, non_members.numel() // 2)
    n_eval = min(members.numel() - n_known, non_members.numel() - n_ref)
    sets = {"members": members, "validation": torch.zeros(0, dtype=torch.long),
            "test": torch.arange(n_train, total), "attack_known_members": members[:n_known],
            "eval_members": members[n_known:], "attack_reference": non_members[:n_ref],
            "eval_nonmembers": non_members[n_ref:n_ref + n_eval], "population": non_members[n_ref + n_eval:]}
    spec = SplitSpec(members=members.numel(), validation=0, known_fraction=known_fraction, reference=n_ref,
                     eval_nonmembers=n_eval, population=sets["population"].numel())
    split = MembershipSplit(dataset.info.name, n_train, len(dataset.test), seed, spec, sets)
    split.validate()
    return split
