"""An audit's attacks on the processes of a ``torchrun`` job (one process works alone, unchanged).

Rank r fits attacks r, r + W, ... (W processes; each attack has its own seed, so its fit is that of one process).
Each fitted attack is then sent to every rank (``_fitted_state`` / ``_load_fitted_state``, tensors placed
on the receiving rank's device), every rank scores its share of the evaluation samples (members and
non-members ``rank::W``) with every attack, and the rank that fitted an attack turns the gathered scores into
its report. Every attack scores each sample on its own, so the shares put together are the scores of one
process."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from modelsafe import distributed
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.inputs import check_disjoint
from modelsafe.privacy.learned import LearnedAttack
from modelsafe.privacy.report import MIAReport

#: attributes each rank keeps its own of: the device option and the progress switch
LOCAL_ATTRIBUTES = ("device", "progress")


def run_attacks(built: list[MembershipAttack], model: nn.Module, data: tuple, n_bootstrap: int,
                sample_ids: np.ndarray, device: torch.device, progress: bool) -> list[MIAReport]:
    """Fit every attack on ``data`` = (known members, known non-members, evaluation members, evaluation
    non-members), all :class:`TensorData`, and return the reports in the order of ``built`` (on every rank).
    ``device``: where this rank's tensors belong."""
    eval_m, eval_u = data[2], data[3]
    check_disjoint(eval_m, eval_u, "evaluate")
    world, rank = distributed.world_size(), distributed.rank()
    owned = range(rank, len(built), world)
    bar = tqdm(total=len(owned) + len(built), desc="audit (fit, then score)", unit="step",
               disable=not progress or not distributed.is_main())
    shares = {}
    with bar:
        with distributed.alone():
            for i in owned:
                _fit(built[i], model, data)
                bar.update(1)
        if world > 1:
            _share_fitted(built, owned, device)
        with distributed.alone():
            for i, attack in enumerate(built):
                shares[i] = _score_share(attack, model, eval_m, eval_u, rank, world)
                bar.update(1)
    gathered = distributed.all_gather_objects(shares)
    mine = {i: _report(built[i], [part[i] for part in gathered], n_bootstrap, sample_ids) for i in owned}
    if world > 1:
        for part in distributed.all_gather_objects(mine):
            mine.update(part)
    return [mine[i] for i in range(len(built))]


def _fit(attack: MembershipAttack, model: nn.Module, data: tuple) -> None:
    known_m, known_u, eval_m, eval_u = data
    if isinstance(attack, LearnedAttack) and attack.select_on == "eval":
        attack.fit(model, known_m, known_u, eval_members=eval_m, eval_nonmembers=eval_u)
    else:
        attack.fit(model, known_m, known_u)


def _share_fitted(built: list[MembershipAttack], owned: range, device: torch.device) -> None:
    """Give every rank every fitted attack: each rank sends those it fitted and loads the others'."""
    payloads = distributed.all_gather_objects({i: _fitted_state(built[i]) for i in owned})
    for part in payloads:
        for i, payload in part.items():
            if i not in owned:
                _load_fitted_state(built[i], payload, device)


def _score_share(attack: MembershipAttack, model: nn.Module, members: TensorData, nonmembers: TensorData,
                 rank: int, world: int) -> tuple[np.ndarray, np.ndarray, float]:
    """This rank's scores of members ``rank::world`` and non-members ``rank::world`` (float64, possibly empty)
    and the seconds they took."""
    start = time.perf_counter()
    scores = []
    for samples in (members, nonmembers):
        share = samples.subset(torch.arange(rank, len(samples), world))
        scores.append(attack.score(model, share) if len(share) else np.zeros(0))
    return scores[0], scores[1], time.perf_counter() - start


def _report(attack: MembershipAttack, shares: list[tuple], n_bootstrap: int, sample_ids: np.ndarray) -> MIAReport:
    """The report of ``attack`` from every rank's share (by rank) of the scores."""
    return attack.report(_interleave([s[0] for s in shares]), _interleave([s[1] for s in shares]),
                         score_seconds=sum(s[2] for s in shares), n_bootstrap=n_bootstrap, sample_ids=sample_ids)


def _interleave(shares: list[np.ndarray]) -> np.ndarray:
    """Put the shares of ranks 0..W-1 (rank r holds samples r, r + W, ...) back into sample order."""
    out = np.empty(sum(s.size for s in shares), dtype=np.float64)
    for r, share in enumerate(shares):
        out[r::len(shares)] = share
    return out


def _fitted_state(attack: MembershipAttack) -> bytes:
    """The fitted ``attack`` as bytes for another process of the same job: every attribute except its
    ``unsent_attributes`` (which every rank sets up alike) and :data:`LOCAL_ATTRIBUTES`, tensors, networks and
    optimizers included. An attribute that cannot be serialised (e.g. a lambda) is an error naming the
    attack."""
    kept = (*LOCAL_ATTRIBUTES, *attack.unsent_attributes)
    state = {k: v for k, v in vars(attack).items() if k not in kept}
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except Exception as exc:  # pickle raises many types (PicklingError, AttributeError, TypeError)
        raise ModelsafeError(f"attack {attack.label!r} cannot be sent to the other ranks of a torchrun audit "
                             f"({type(exc).__name__}: {exc}); list attributes every rank sets up alike in its "
                             "class's `unsent_attributes`") from exc
    return buffer.getvalue()


def _load_fitted_state(attack: MembershipAttack, payload: bytes, device: torch.device) -> None:
    """Make ``attack`` (built like the sender's) the fitted attack of ``_fitted_state``. Tensors that were on
    an accelerator are placed on ``device`` (this rank's), CPU tensors stay on the CPU. The bytes come from
    another rank of this job (never from a file or a user), as with every object collective of
    ``torch.distributed``, hence the full unpickling; private, so that nothing else can feed it bytes.
    Top-level device attributes on an accelerator (e.g. where a learned attack keeps its network) become
    ``device``."""
    state = torch.load(io.BytesIO(payload), map_location=placement(device), weights_only=False)
    vars(attack).update({k: device if isinstance(v, torch.device) and v.type != "cpu" else v
                         for k, v in state.items()})


def placement(device: torch.device) -> Callable:
    """``torch.load``'s ``map_location`` that keeps CPU storages on the CPU and puts every other storage on
    ``device`` (the CPU when ``device`` is the CPU)."""
    def place(storage, location: str):
        return storage if location == "cpu" else storage.to(device=device)
    return place
