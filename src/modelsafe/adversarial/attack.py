"""One iterative L-infinity attack loop, assembled from parts:

- a gradient estimator (:mod:`~modelsafe.adversarial.estimators`): plain, depth-first sampling, variance tuning;
- input transforms (:mod:`~modelsafe.adversarial.transforms`): scale copies (SI) and input diversity (DI)
  applied to every model input, translation smoothing (TI) applied to the combined gradient;
- an update rule (:class:`Momentum`): momentum mu on L1-normalised gradients, optional Nesterov look-ahead;
- a step direction (:mod:`~modelsafe.adversarial.directions`): sign, or FGRM rescaling.

Per iteration t (x_0 = clean image, g = 0)::

    c      = x_t + alpha*mu*g  if nesterov else x_t       # centre point
    P      = estimator.points(x_t, c)                       # K points, drawn up front
    G_k    = mean over SI copies of grad L(DI(SI(P_k)), y)   # evaluated in chunks of chunk_size images
    d      = TI(estimator.combine(G))
    g      = mu*g + d / mean|d|                              # per image
    x_t+1  = clip_[0,1](x_0 + clip_[-eps,eps](x_t + alpha*direction(g) - x_0))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from modelsafe._checks import (
    check_choice,
    check_fraction,
    check_images,
    check_labels,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from modelsafe.adversarial.directions import RescaleStep, SignStep
from modelsafe.adversarial.ensemble import Ensemble
from modelsafe.adversarial.estimators import DepthFirstSampling, PlainGradient, VarianceTuning
from modelsafe.adversarial.transforms import InputDiversity, ScaleCopies, TranslationSmoothing
from modelsafe.errors import ModelsafeError
from modelsafe.utils import derive_seed, eval_mode, make_generator, pick_device

Estimator = PlainGradient | DepthFirstSampling | VarianceTuning
Direction = SignStep | RescaleStep
LABEL_SOURCES = ("auto", "model", "given")
CPU_CHUNK = 100  # images per model call on CPU (50-100 measured fastest on a 2-core CPU)


@dataclass(frozen=True)
class Momentum:
    """MI update: ``g <- mu*g + d/mean|d|`` (``mu=0``: no memory, I-FGSM). ``nesterov=True`` takes the
    gradient at the look-ahead ``x + alpha*mu*g`` (NI-FGSM)."""

    mu: float = 1.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_non_negative("momentum", self.mu)


def quantize_in_ball(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Round to the 8-bit grid (k/255), then onto the grid points inside the eps-ball and [0, 1]. Where the
    ball holds no grid point (eps < 1/255 around an off-grid pixel) the clean pixel is kept."""
    q = torch.round(x * 255) / 255
    lo = torch.ceil(torch.clamp(x0 - eps, min=0) * 255 - 1e-6) / 255
    hi = torch.floor(torch.clamp(x0 + eps, max=1) * 255 + 1e-6) / 255
    return torch.where(lo <= hi, torch.minimum(torch.maximum(q, lo), hi), x0)


@dataclass(frozen=True)
class AttackSpec:
    """Everything that defines an attack except the model. ``alpha=None`` means eps/steps."""

    eps: float = 16 / 255
    steps: int = 10
    alpha: float | None = None
    estimator: Estimator = field(default_factory=PlainGradient)
    scales: ScaleCopies | None = None
    diversity: InputDiversity | None = None
    smoothing: TranslationSmoothing | None = None
    update: Momentum = field(default_factory=Momentum)
    direction: Direction = field(default_factory=SignStep)
    random_start: bool = False
    targeted: bool = False
    label_source: str = "auto"
    quantize: bool = False
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        check_fraction("eps", self.eps)
        check_positive_int("steps", self.steps)
        if self.alpha is not None:
            check_positive("alpha", self.alpha)
        check_choice("label_source", self.label_source, LABEL_SOURCES)
        if self.chunk_size is not None:
            check_positive_int("chunk_size", self.chunk_size)
        for name, kinds in (("estimator", (PlainGradient, DepthFirstSampling, VarianceTuning)),
                            ("direction", (SignStep, RescaleStep)), ("update", (Momentum,)),
                            ("scales", (ScaleCopies, type(None))), ("diversity", (InputDiversity, type(None))),
                            ("smoothing", (TranslationSmoothing, type(None)))):
            if not isinstance(getattr(self, name), kinds):
                raise ModelsafeError(f"{name} must be one of {', '.join(k.__name__ for k in kinds)}, "
                                     f"got {type(getattr(self, name)).__name__}")

    @property
    def step_size(self) -> float:
        return self.eps / self.steps if self.alpha is None else self.alpha

    def describe(self) -> dict:
        """Plain-data description (for JSON reports)."""
        out = {}
        for item in fields(self):
            v = getattr(self, item.name)
            out[item.name] = ({"kind": type(v).__name__, **{g.name: getattr(v, g.name) for g in fields(v)}}
                              if hasattr(v, "__dataclass_fields__") else v)
        out["alpha"] = self.step_size
        return out


class TransferAttack:
    """An L-infinity transfer attack on ``model`` (an ``nn.Module`` or :class:`Ensemble` taking (N, C, H, W)
    images in [0, 1] and returning (N, classes) logits). Build one from parts with :class:`AttackSpec` or by
    preset name with :func:`modelsafe.adversarial.create_attack`.

    ``attack(images, labels=None, seed=None)`` returns adversarial images of the same shape, dtype and device,
    in [0, 1] and within ``eps`` of ``images`` in every pixel. Labels: ``label_source="auto"`` uses ``labels``
    when given and otherwise the surrogate's clean prediction (the S-FGRM authors' choice); ``"model"``
    always uses the prediction; ``"given"`` requires labels. With ``targeted=True`` the labels are the target
    classes (required). Randomness (random start, sampling, DI) comes only from ``seed``: the same seed gives
    the same output. A model in train mode is switched to eval for the call and restored afterwards."""

    def __init__(self, model: nn.Module, spec: AttackSpec | None = None, *, name: str = "custom", seed: int = 0,
                 device: str | torch.device | None = None, **spec_fields):
        if not isinstance(model, nn.Module):
            raise ModelsafeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.spec = replace(spec or AttackSpec(), **spec_fields) if spec_fields else (spec or AttackSpec())
        self.model = model
        self.name = name
        self.seed = int(seed)
        self.device = pick_device(device, model)
        if isinstance(model, Ensemble):
            self.members, self.weights, self.memory_saving = list(model.members), model.weights, model.memory_saving
        else:
            self.members, self.weights, self.memory_saving = [model], [1.0], False
        self.forward_rows = 0  # images passed through the surrogate(s) for gradients, summed over calls

    def __repr__(self) -> str:
        return f"TransferAttack(name={self.name!r}, seed={self.seed}, spec={self.spec})"

    # ------------------------------------------------------------------ public
    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *, seed: int | None = None,
                 progress: bool = False) -> torch.Tensor:
        spec = self.spec
        check_images(images)
        batch = images.shape[0]
        if labels is not None and not isinstance(labels, torch.Tensor):
            raise ModelsafeError(f"labels must be a torch.Tensor or None, got {type(labels).__name__}")
        if labels is None and (spec.targeted or spec.label_source == "given"):
            raise ModelsafeError("this attack needs labels (targeted attacks need the target classes; "
                                 "label_source='given' needs the true labels)")
        if batch == 0:
            return images.clone()
        x0 = images.detach().to(self.device)
        seed = self.seed if seed is None else int(seed)
        with eval_mode(self.model), torch.enable_grad():
            clean_logits = self._logits(x0)
            if labels is not None:
                labels = check_labels(labels, batch, clean_logits.shape[1]).to(self.device)
            use_given = labels is not None and (spec.targeted or spec.label_source != "model")
            y = labels if use_given else clean_logits.argmax(1)
            adv = self._run(x0, y, seed, progress)
        return adv.to(images.device)

    # ------------------------------------------------------------------ the loop
    def _run(self, x0: torch.Tensor, y: torch.Tensor, seed: int, progress: bool) -> torch.Tensor:
        spec = self.spec
        eps, alpha, mu = spec.eps, spec.step_size, spec.update.mu
        noise = make_generator(seed, self.device)
        geometry = make_generator(derive_seed(seed, "input-diversity"))
        x = x0.clone()
        if spec.random_start:
            start = torch.empty_like(x0).uniform_(-eps, eps, generator=noise)
            x = torch.clamp(x0 + start, 0, 1)
        momentum = torch.zeros_like(x0)
        state = spec.estimator.init_state(x0)
        for _ in tqdm(range(spec.steps), desc=self.name, unit="step", leave=False, disable=not progress):
            center = x + alpha * mu * momentum if spec.update.nesterov else x
            points = spec.estimator.points(x, center, eps, noise)
            grads = self._point_gradients(points, y, geometry)
            g = spec.estimator.combine(grads, state)
            if spec.smoothing is not None:
                g = spec.smoothing(g)
            scale = g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True)
            momentum = mu * momentum + g / scale.clamp_min(torch.finfo(g.dtype).tiny)
            stepped = x + alpha * spec.direction(momentum)
            delta = torch.clamp(stepped - x0, min=-eps, max=eps)
            x = torch.clamp(x0 + delta, min=0, max=1).detach()
        if spec.quantize:
            x = quantize_in_ball(x, x0, eps)
        return x

    # ------------------------------------------------------------------ gradients
    def _chunk(self) -> int:
        if self.spec.chunk_size is not None:
            return self.spec.chunk_size
        return CPU_CHUNK if self.device.type == "cpu" else 1 << 30

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, y, reduction="sum")  # sum: each row's gradient is its own
        return -loss if self.spec.targeted else loss

    def _point_gradients(self, points: torch.Tensor, y: torch.Tensor, geometry: torch.Generator) -> torch.Tensor:
        """Loss gradients at (K, N, C, H, W) points, each averaged over the SI copies; chunked over images."""
        spec = self.spec
        k_points, batch = points.shape[:2]
        copies = spec.scales.copies if spec.scales is not None else 1
        draws = None
        if spec.diversity is not None:
            flat = spec.diversity.draw(k_points * len(self.members), points.shape[-2], points.shape[-1], geometry)
            draws = [flat[k * len(self.members):(k + 1) * len(self.members)] for k in range(k_points)]
        flat_points = points.reshape(k_points * batch, *points.shape[2:])
        out = torch.zeros_like(flat_points)
        total, chunk = k_points * copies * batch, self._chunk()
        for start in range(0, total, chunk):
            rows = torch.arange(start, min(start + chunk, total), device=points.device)
            k, copy, b = rows // (copies * batch), (rows // batch) % copies, rows % batch
            index = k * batch + b
            leaf = flat_points[index].detach().requires_grad_(True)
            scaled = leaf
            if spec.scales is not None:
                factors = spec.scales.factors(copy).to(leaf.dtype).view(-1, 1, 1, 1)
                scaled = spec.scales.center + (leaf - spec.scales.center) * factors
            inputs = self._member_inputs(scaled, k, draws)
            grad = self._input_gradient(leaf, inputs, y[b])
            out.index_add_(0, index, grad / copies if copies > 1 else grad)
            self.forward_rows += rows.numel()
        return out.view_as(points)

    def _member_inputs(self, x: torch.Tensor, k: torch.Tensor, draws) -> Callable[[int], torch.Tensor]:
        """``inputs(j)``: the chunk as member j sees it (DI applied per gradient point, per member)."""
        if draws is None:
            return lambda j: x
        keys, counts = torch.unique_consecutive(k, return_counts=True)
        pieces = list(torch.split(x, counts.tolist()))
        diversity = self.spec.diversity

        def inputs(j: int) -> torch.Tensor:
            return torch.cat([diversity(p, draws[int(key)][j]) for p, key in zip(pieces, keys)])

        return inputs

    def _input_gradient(self, leaf: torch.Tensor, inputs: Callable[[int], torch.Tensor],
                        y: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            loss = self._loss(self.members[0](inputs(0)), y)
            return torch.autograd.grad(loss, leaf)[0]
        if not self.memory_saving:
            logits = sum(w * m(inputs(j)) for j, (w, m) in enumerate(zip(self.weights, self.members)))
            return torch.autograd.grad(self._loss(logits, y), leaf)[0]
        with torch.no_grad():
            mean_logits = sum(w * m(inputs(j)) for j, (w, m) in enumerate(zip(self.weights, self.members)))
        mean_logits.requires_grad_(True)
        logit_grad = torch.autograd.grad(self._loss(mean_logits, y), mean_logits)[0]
        grad = torch.zeros_like(leaf)
        for j, (w, m) in enumerate(zip(self.weights, self.members)):
            grad += torch.autograd.grad(m(inputs(j)), leaf, grad_outputs=w * logit_grad)[0]
        return grad

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk()
        return torch.cat([self.model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])


