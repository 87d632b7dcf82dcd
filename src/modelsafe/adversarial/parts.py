"""The parts a transfer attack is assembled from, as small abstract bases. :class:`AttackSpec` checks each of
its fields against one of them by structure (the methods it must have), so a part of your own needs no
registration and need not subclass these; subclassing gives the defaults and documents the contract.

Shapes: images and gradients are (N, C, H, W) with pixels in [0, 1]; a set of K gradient points is
(K, N, C, H, W). Randomness comes only from the ``torch.Generator`` objects the attack passes in.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from modelsafe.errors import ModelsafeError

GradFn = Callable[[torch.Tensor], torch.Tensor]
"""``grad_fn(points)``: loss gradients at (K, N, C, H, W) points, same shape, evaluated in chunks (each the
weighted mean over the input transforms' views). Every call counts as K gradient evaluations per image."""
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(logits (n, classes), labels (n,)) -> scalar``: the attack's loss, summed over rows (so each row's
input gradient is its own), negated for targeted attacks (the loop always ascends it)."""


class Part(metaclass=ABCMeta):
    """Base of every part: ``methods`` names what :func:`check_part` requires of an object in its place."""

    methods: ClassVar[tuple[str, ...]] = ()


class GradientEstimator(Part):
    """Where an iteration takes loss gradients and how it turns them into one (N, C, H, W) gradient.

    ``estimate`` may call ``grad_fn`` as often as it needs, one call after another (an estimator can take a
    gradient at a point that depends on an earlier gradient); pass all points of one call together, so they
    are evaluated in chunks rather than one model call each. ``state`` is the dict from ``init_state``, kept
    across the iterations of one attack call (per-image memory such as the variance of VMI)."""

    methods = ("init_state", "estimate")

    def init_state(self, x: torch.Tensor) -> dict:
        """State for clean images ``x`` (N, C, H, W); default: none."""
        return {}

    @abstractmethod
    def estimate(self, grad_fn: GradFn, x: torch.Tensor, center: torch.Tensor, eps: float, state: dict,
                 generator: torch.Generator) -> torch.Tensor:
        """The gradient for iterate ``x`` (N, C, H, W); ``center`` is the update rule's point (``x`` itself, or a
        Nesterov look-ahead); ``eps`` the L-infinity radius; ``generator`` lives on the images' device.
        ``state`` is ``init_state``'s dict, to which the attack adds ``state["alpha"]``, its step size."""


class PointEstimator(GradientEstimator):
    """An estimator whose points do not depend on gradients: ``points`` draws all K of them up front and
    ``combine`` reduces the K gradients; ``estimate`` is one ``grad_fn`` call between the two."""

    @abstractmethod
    def points(self, x: torch.Tensor, center: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        """The (K, N, C, H, W) points of one iteration."""

    @abstractmethod
    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        """(K, N, C, H, W) gradients at the points -> one (N, C, H, W) gradient."""

    def estimate(self, grad_fn: GradFn, x: torch.Tensor, center: torch.Tensor, eps: float, state: dict,
                 generator: torch.Generator) -> torch.Tensor:
        return self.combine(grad_fn(self.points(x, center, eps, generator)), state)


class InputTransform(Part):
    """A transform of the model's input that gives ``views()`` views of every gradient point; the point's
    gradient is the mean of the views' gradients (chain rule included), weighted by ``weights()``.

    Transforms compose: with several, every view of one is fed to the next, so the view counts multiply. The
    attack calls ``prepare`` once per ``grad_fn`` call, in the order of the chain, with a CPU generator shared
    by the chain (draw there, never in ``apply``, so results do not depend on the chunk size), then ``apply``
    on chunks of rows, once per ensemble member. Rows come ordered by gradient point, then view, then image.

    A transform whose randomness differs between the images of a batch sets ``per_image = True``: ``prepare``
    then also gets ``images=N`` (the batch size) and ``apply`` gets ``image=`` (n,) CPU long tensor, each row's
    image index in [0, N)."""

    methods = ("views", "weights", "prepare", "apply")
    per_image: bool = False

    @abstractmethod
    def views(self) -> int:
        """Number of views V >= 1 of each input."""

    def weights(self) -> torch.Tensor:
        """(V,) non-negative float64 weights of the views (normalised by the attack); default: equal."""
        return torch.ones(self.views(), dtype=torch.float64)

    def prepare(self, points: int, members: int, shape: torch.Size, generator: torch.Generator) -> Any:
        """Randomness for one ``grad_fn`` call of ``points`` gradient points, ``members`` surrogate models and
        images of ``shape`` (C, H, W); handed back to ``apply``. Default: none."""
        return None

    @abstractmethod
    def apply(self, x: torch.Tensor, view: torch.Tensor, point: torch.Tensor, member: int,
              draw: Any) -> torch.Tensor:
        """The views of rows ``x`` (n, C, H, W) as surrogate ``member`` sees them: ``view`` and ``point`` are
        (n,) long tensors on the CPU (this transform's view index and the gradient point of each row), so that
        splitting rows by them never waits for the device; move what ``x`` needs with
        :func:`modelsafe.utils.host_to_device`. Returns n rows, differentiable in ``x``; their size may change
        if the model takes it."""


class GradientTransform(Part):
    """A map of the estimated gradient, (N, C, H, W) -> (N, C, H, W), before the update (TI smoothing)."""

    methods = ("__call__",)

    @abstractmethod
    def __call__(self, g: torch.Tensor) -> torch.Tensor: ...


class UpdateRule(Part):
    """How gradients accumulate: ``center`` is where the next gradient is taken (x, or a look-ahead) and
    ``update`` folds the new gradient into ``state`` and returns the (N, C, H, W) buffer the step direction
    is taken from. ``state`` comes from ``init_state(clean images)`` and lives for one attack call.

    Optional: ``step_scale(state)``, called after ``update``, returns a per-pixel (N, C, H, W) multiplier of
    the step (``x + alpha * step_scale * direction``), or None for none (the default; a part without the
    method has none). GRA's decay indicator is one."""

    methods = ("init_state", "center", "update")

    @abstractmethod
    def init_state(self, x: torch.Tensor) -> dict: ...

    @abstractmethod
    def center(self, x: torch.Tensor, state: dict, alpha: float) -> torch.Tensor: ...

    @abstractmethod
    def update(self, g: torch.Tensor, state: dict) -> torch.Tensor: ...

    def step_scale(self, state: dict) -> torch.Tensor | None:
        """A non-negative (N, C, H, W) multiplier of the step, or None (default): the step is alpha * direction."""
        return None


class StepDirection(Part):
    """Buffer (N, C, H, W) -> step direction of the same shape, entries of the buffer's sign, magnitudes of
    order 1 (the step is ``alpha * direction``); zeros map to 0, never NaN."""

    methods = ("__call__",)

    @abstractmethod
    def __call__(self, g: torch.Tensor) -> torch.Tensor: ...


class ModelCombination(nn.Module, metaclass=ABCMeta):
    """One or more surrogate models seen as one: ``forward`` gives the combined (N, classes) logits (the clean
    prediction), ``members`` the models, and ``input_gradient`` the gradient of the loss of the combined
    logits with respect to ``leaf``. The attack counts the passes through ``members``."""

    methods: ClassVar[tuple[str, ...]] = ("input_gradient",)
    members: Sequence[nn.Module]

    @abstractmethod
    def input_gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor], y: torch.Tensor,
                       loss: Loss) -> torch.Tensor:
        """d loss(combined logits, y) / d leaf for rows ``leaf`` (n, C, H, W); ``inputs(j)`` is the (n, ...)
        input of member j (the input transforms applied to ``leaf``, differentiable in it)."""


def follows(part: object, protocol: type[Part | ModelCombination]) -> list[str]:
    """The methods of ``protocol`` that ``part`` lacks (empty: it follows the protocol)."""
    return [m for m in protocol.methods if not callable(getattr(part, m, None))]


def check_part(field: str, part: object, protocol: type[Part]) -> None:
    """Raise ModelsafeError naming ``field`` unless ``part`` is an object with ``protocol``'s methods."""
    kind = ("an " if protocol.__name__[0] in "AEIOU" else "a ") + protocol.__name__
    if isinstance(part, type):
        raise ModelsafeError(f"{field} must be {kind} instance, got the class {part.__name__} "
                             f"(call it: {part.__name__}())")
    missing = follows(part, protocol)
    if missing:
        raise ModelsafeError(f"{field} must be {kind} (methods {', '.join(protocol.methods)}); "
                             f"{type(part).__name__} has no method {', '.join(missing)}")
