"""Running under ``torchrun``: the process group, this process's rank, and the few collectives modelsafe uses.

``torchrun`` starts one process per worker and gives each the environment variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. The first call of :func:`world_size` (or :func:`rank`,
:func:`init`, any collective) in such a process joins the process group once: ``nccl`` when CUDA is
available, else ``gloo``. Without those variables everything here is a no-op for one process (rank 0 of a
world of 1), so every caller works unchanged outside ``torchrun``.

:class:`GradientAverager` is how :func:`modelsafe.training.fit` trains data-parallel: each rank takes its share of
every global batch, and a gradient hook on each parameter replaces the rank's gradient by the mean over the
whole global batch before any other hook (sparse masks, gradient observers) sees it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from modelsafe.errors import ModelsafeError

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_alone = [0]  # depth of nested alone() blocks


def launched() -> bool:
    """True when this process was started by ``torchrun`` (or with its environment variables set)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE"))


def _dist():
    import torch.distributed as dist

    return dist


def _joined() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def init(backend: str | None = None) -> bool:
    """Join the process group of a ``torchrun`` launch (once; later calls return at once) and return whether
    this process runs with others. ``backend``: ``gloo``/``nccl`` (default: ``nccl`` when CUDA is available,
    else ``gloo``). A launch with missing or malformed variables is an error naming them."""
    if _joined():
        return _dist().get_world_size() > 1
    if not launched():
        return False
    missing = [name for name in _ENV if not os.environ.get(name)]
    if missing:
        raise ModelsafeError(f"torchrun environment incomplete: {', '.join(missing)} not set (launch with "
                             "`torchrun --nproc_per_node N ...`)")
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise ModelsafeError(f"RANK={os.environ['RANK']!r} and WORLD_SIZE={os.environ['WORLD_SIZE']!r} must be "
                             "integers") from None
    if not 0 <= rank < world:
        raise ModelsafeError(f"RANK must be in [0, WORLD_SIZE={world}), got {rank}")
    dist = _dist()
    if not dist.is_available():
        raise ModelsafeError("this PyTorch build has no torch.distributed; cannot run under torchrun")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return world > 1


@contextmanager
def alone() -> Iterator[None]:
    """Inside the block this process acts as a single one (world 1, rank 0, collectives are no-ops): for work
    each rank does on its own, such as training its share of the reference models with :func:`fit`."""
    _alone[0] += 1
    try:
        yield
    finally:
        _alone[0] -= 1


def world_size() -> int:
    """How many processes run together (1 outside ``torchrun`` and inside :func:`alone`)."""
    if _alone[0]:
        return 1
    init()
    return _dist().get_world_size() if _joined() else 1


def rank() -> int:
    """This process's rank in [0, world_size) (0 outside ``torchrun`` and inside :func:`alone`)."""
    if _alone[0]:
        return 0
    init()
    return _dist().get_rank() if _joined() else 0


def local_rank() -> int:
    """This process's rank on its own machine (``LOCAL_RANK``; 0 outside ``torchrun``)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def active() -> bool:
    """True when more than one process runs together."""
    return world_size() > 1


def local_device(device: torch.device) -> torch.device:
    """``device`` with the CUDA index of this process under ``torchrun`` (``cuda`` → ``cuda:LOCAL_RANK``)."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    """Wait until every process has reached this point."""
    if active():
        _dist().barrier()


def finish() -> None:
    """The end of a ``torchrun`` job that went well: wait for every process, then leave the process group, so
    that no process exits (taking the rendezvous store with it) while another still talks to it."""
    if _joined():
        barrier()
        _dist().destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors must live for the group's backend."""
    return torch.device("cuda", torch.cuda.current_device()) if _dist().get_backend() == "nccl" else torch.device("cpu")


def broadcast_tensor(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` (any shape; same shape and dtype on every rank) in place with rank ``src``'s."""
    if active():
        moved = tensor.to(_comm_device())
        _dist().broadcast(moved, src=src)
        if moved is not tensor:
            tensor.copy_(moved)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` in place by its sum over all ranks."""
    if active():
        moved = tensor.to(_comm_device())
        _dist().all_reduce(moved)
        if moved is not tensor:
            tensor.copy_(moved)
    return tensor


def broadcast_object(obj: object = None, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` (picklable), returned on every rank; other ranks' arguments are ignored."""
    if not active():
        return obj
    holder = [obj]
    _dist().broadcast_object_list(holder, src=src, device=_comm_device())
    return holder[0]


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (picklable), by rank, on every rank."""
    if not active():
        return [obj]
    out = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def gather_objects(obj: object, dst: int = 0) -> list | None:
    """Every rank's ``obj`` by rank on rank ``dst``; None on the other ranks."""
    if not active():
        return [obj]
    out = [None] * world_size() if rank() == dst else None
    _dist().gather_object(obj, out, dst=dst)
    return out


def broadcast_module(module: nn.Module, src: int = 0) -> nn.Module:
    """Give every rank rank ``src``'s parameters and buffers (the module must have the same structure)."""
    if active():
        with torch.no_grad():
            for tensor in (*module.parameters(), *module.buffers()):
                broadcast_tensor(tensor.data, src)
    return module


def check_same(value: object, what: str) -> None:
    """Raise on every rank when ``value`` (picklable) differs between ranks; ``what`` names it."""
    if not active():
        return
    digests = all_gather_objects(hashlib.sha256(pickle.dumps(value)).hexdigest())
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise ModelsafeError(f"{what} differ between ranks (rank 0 vs ranks {differ})")


class GradientAverager:
    """Data-parallel gradients without a wrapper module. :meth:`shard` keeps this rank's share of a global batch
    (samples ``rank::world``) and records its weight ``n_rank / n_global``; a hook on each parameter in
    ``params`` then replaces the rank's gradient ``g_r`` (of the mean loss over its share) by
    ``sum_r n_r / n_global * g_r``, the gradient of the mean over the global batch. The hooks are registered
    at construction, so build the averager before anything else hooks the parameters: later hooks (sparse
    masks, gradient observers) see the global gradient. Parameters must get a gradient on every rank in every
    step (as for DistributedDataParallel); hooks fire in the same order on every rank because the graphs match.
    """

    def __init__(self, params: Iterable[nn.Parameter]):
        self.world = world_size()
        self.rank = rank()
        self.weight = 1.0 / self.world
        self._hooks = [p.register_hook(self._average) for p in params]

    def _average(self, grad: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(grad * self.weight)

    def shard(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's samples ``rank::world`` of a global batch (N, ...) and (N,); may be empty when N < world."""
        self.weight = len(range(self.rank, labels.shape[0], self.world)) / labels.shape[0]
        return inputs[self.rank::self.world], labels[self.rank::self.world]

    def sync_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's floating buffers (batch-norm running statistics) after a step."""
        with torch.no_grad():
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    broadcast_tensor(buffer.data, 0)

    def remove(self) -> None:
        """Detach the gradient hooks."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
