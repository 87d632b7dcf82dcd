"""One iterative L-infinity attack loop, assembled from parts (the protocols of
:mod:`~modelsafe.adversarial.parts`; the loop knows no concrete part):

- a gradient estimator (:mod:`~modelsafe.adversarial.estimators`): plain, depth-first sampling, variance tuning;
- input transforms (:mod:`~modelsafe.adversarial.transforms`): scale copies (SI), input diversity (DI) and
  your own, applied to every model input; a gradient transform, translation smoothing (TI), applied to the
  estimated gradient;
- a model combination (:mod:`~modelsafe.adversarial.ensemble`): one model or a logit-averaging ensemble;
- an update rule (:class:`Momentum`): momentum mu on L1-normalised gradients, optional Nesterov look-ahead;
- a step direction (:mod:`~modelsafe.adversarial.directions`): sign, or FGRM rescaling.

Per iteration t (x_0 = clean image, g = 0)::

    c      = update.center(x_t)                              # x_t + alpha*mu*g with Nesterov, else x_t
    d      = estimator.estimate(grad_fn, x_t, c)             # grad_fn(P): gradients at (K, N, C, H, W) points
    grad_fn(P)_k = weighted mean over the views v of grad L(T_v(P_k), y)   # in chunks of chunk_size rows
    d      = TI(d)
    g      = update.update(d)                                # mu*g + d / mean|d|, per image
    x_t+1  = clip_[0,1](x_0 + clip_[-eps,eps](x_t + alpha*S*direction(g) - x_0))   # S = update.step_scale()
                                                             # (optional, per pixel; GRA), else 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from modelsafe._checks import (
    check_choice,
    check_fraction,
    check_images,
    check_labels,
    check_positive,
    check_positive_int,
)
from modelsafe.adversarial.compute import ComputeCount, counting
from modelsafe.adversarial.directions import SignStep
from modelsafe.adversarial.ensemble import SingleModel
from modelsafe.adversarial.estimators import PlainGradient
from modelsafe.adversarial.gradients import PointGradients
from modelsafe.adversarial.parts import (
    GradientEstimator,
    GradientTransform,
    InputTransform,
    ModelCombination,
    StepDirection,
    UpdateRule,
    check_part,
    follows,
)
from modelsafe.adversarial.updates import Momentum
from modelsafe.errors import ModelsafeError
from modelsafe.utils import derive_seed, eval_mode, make_generator, pick_device

LABEL_SOURCES = ("auto", "model", "given")
CPU_CHUNK = 50  # images per model call on CPU (benchmarks/attack_speed.py: 50 beat 100 on one CPU thread)
# field -> (protocol, may be None)
PART_PROTOCOLS = {"estimator": (GradientEstimator, False), "scales": (InputTransform, True),
                  "diversity": (InputTransform, True), "smoothing": (GradientTransform, True),
                  "update": (UpdateRule, False), "direction": (StepDirection, False)}


def quantize_in_ball(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Round to the 8-bit grid (k/255), then onto the grid points inside the eps-ball and [0, 1]. Where the
    ball holds no grid point (eps < 1/255 around an off-grid pixel) the clean pixel is kept."""
    q = torch.round(x * 255) / 255
    lo = torch.ceil(torch.clamp(x0 - eps, min=0) * 255 - 1e-6) / 255
    hi = torch.floor(torch.clamp(x0 + eps, max=1) * 255 + 1e-6) / 255
    return torch.where(lo <= hi, torch.minimum(torch.maximum(q, lo), hi), x0)


@dataclass(frozen=True)
class AttackSpec:
    """Everything that defines an attack except the model. ``alpha=None`` means eps/steps.

    Parts: ``estimator`` (:class:`~modelsafe.adversarial.parts.GradientEstimator`), ``scales`` and
    ``diversity`` (SI and DI slots) and ``transforms`` (a tuple) of
    :class:`~modelsafe.adversarial.parts.InputTransform` s, ``smoothing``
    (:class:`~modelsafe.adversarial.parts.GradientTransform`), ``update``
    (:class:`~modelsafe.adversarial.parts.UpdateRule`) and ``direction``
    (:class:`~modelsafe.adversarial.parts.StepDirection`). Any object with the protocol's methods fits its
    field. The model sees ``diversity(scales(t_m(... t_1(x))))`` for ``transforms = (t_1, ..., t_m)``.

    ``autocast=True`` runs the gradient evaluations (the transforms' views through the surrogates, forward and
    backward) under bfloat16 autocast; the gradients come back in the images' dtype, and everything after them
    (estimator, smoothing, update, the step direction with the rescale's log2 binning in float64, the
    projection) stays in full precision. The clean predictions that pick the labels stay in full precision."""

    eps: float = 16 / 255
    steps: int = 10
    alpha: float | None = None
    estimator: GradientEstimator = field(default_factory=PlainGradient)
    scales: InputTransform | None = None
    diversity: InputTransform | None = None
    smoothing: GradientTransform | None = None
    update: UpdateRule = field(default_factory=Momentum)
    direction: StepDirection = field(default_factory=SignStep)
    random_start: bool = False
    targeted: bool = False
    label_source: str = "auto"
    quantize: bool = False
    chunk_size: int | None = None
    transforms: tuple[InputTransform, ...] = ()
    autocast: bool = False

    def __post_init__(self) -> None:
        check_fraction("eps", self.eps)
        check_positive_int("steps", self.steps)
        if self.alpha is not None:
            check_positive("alpha", self.alpha)
        check_choice("label_source", self.label_source, LABEL_SOURCES)
        if self.chunk_size is not None:
            check_positive_int("chunk_size", self.chunk_size)
        for name, (protocol, optional) in PART_PROTOCOLS.items():
            if not (optional and getattr(self, name) is None):
                check_part(name, getattr(self, name), protocol)
        if not isinstance(self.transforms, (tuple, list)):
            raise ModelsafeError(f"transforms must be a tuple of InputTransform, got {type(self.transforms).__name__}")
        object.__setattr__(self, "transforms", tuple(self.transforms))
        for i, t in enumerate(self.transforms):
            check_part(f"transforms[{i}]", t, InputTransform)

    @property
    def step_size(self) -> float:
        return self.eps / self.steps if self.alpha is None else self.alpha

    @property
    def input_transforms(self) -> tuple[InputTransform, ...]:
        """The chain of input transforms, first applied first: ``transforms``, then ``scales``, ``diversity``."""
        return tuple(t for t in (*self.transforms, self.scales, self.diversity) if t is not None)

    def describe(self) -> dict:
        """Plain-data description (for JSON reports)."""
        out = {item.name: _describe(getattr(self, item.name)) for item in fields(self)}
        out["transforms"] = [_describe(t) for t in self.transforms]
        out["alpha"] = self.step_size
        return out


def _step_scale(update: UpdateRule, state: dict) -> torch.Tensor | None:
    """The update rule's optional per-pixel step multiplier (``UpdateRule.step_scale``); None without one."""
    method = getattr(update, "step_scale", None)
    return method(state) if callable(method) else None


def _describe(value):
    """A part as ``{"kind": class name, **its dataclass fields}``; plain values as they are."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {"kind": type(value).__name__, **{g.name: getattr(value, g.name) for g in fields(value)}}
    return {"kind": type(value).__name__}


class TransferAttack:
    """An L-infinity transfer attack on ``model`` (an ``nn.Module`` taking (N, C, H, W) images in [0, 1] and
    returning (N, classes) logits, or a :class:`~modelsafe.adversarial.parts.ModelCombination` such as
    :class:`Ensemble`). Build one from parts with :class:`AttackSpec` or by preset name with
    :func:`modelsafe.adversarial.create_attack`.

    ``attack(images, labels=None, seed=None)`` returns adversarial images of the same shape, dtype and device,
    in [0, 1] and within ``eps`` of ``images`` in every pixel. Labels: ``label_source="auto"`` uses ``labels``
    when given and otherwise the surrogate's clean prediction (the S-FGRM authors' choice); ``"model"``
    always uses the prediction; ``"given"`` requires labels. With ``targeted=True`` the labels are the target
    classes (required). Randomness (random start, sampling, input transforms) comes only from ``seed``: the
    same seed gives the same output. A model in train mode is switched to eval for the call and restored.

    Compute: ``last_compute`` (the latest call) and ``compute`` (all calls) are
    :class:`~modelsafe.adversarial.compute.ComputeCount` s of the passes through the surrogate(s), counted
    where the models run: ``forward_per_image`` (the clean prediction included), ``backward_per_image`` and
    ``gradient_evaluations_per_image``."""

    def __init__(self, model: nn.Module, spec: AttackSpec | None = None, *, name: str = "custom", seed: int = 0,
                 device: str | torch.device | None = None, **spec_fields):
        if not isinstance(model, nn.Module):
            raise ModelsafeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.spec = replace(spec or AttackSpec(), **spec_fields) if spec_fields else (spec or AttackSpec())
        self.model = model
        self.combination = model if not follows(model, ModelCombination) else SingleModel(model)
        if not isinstance(getattr(self.combination, "members", None), (list, tuple, nn.ModuleList)):
            raise ModelsafeError(f"model {type(model).__name__} has input_gradient but no members list")
        self.name = name
        self.seed = int(seed)
        self.device = pick_device(device, model)
        self.compute = ComputeCount()
        self.last_compute = ComputeCount()

    def __repr__(self) -> str:
        return f"TransferAttack(name={self.name!r}, seed={self.seed}, spec={self.spec})"

    @property
    def forward_rows(self) -> int:
        """Image rows evaluated for gradients, summed over calls (``compute.gradient_evaluations``)."""
        return self.compute.gradient_evaluations

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
        self.last_compute = ComputeCount(images=batch)
        if batch == 0:
            return images.clone()
        x0 = images.detach().to(self.device)
        seed = self.seed if seed is None else int(seed)
        with eval_mode(self.model), torch.enable_grad(), counting(self.combination.members, self.last_compute):
            clean_logits = self._logits(x0)
            if labels is not None:
                labels = check_labels(labels, batch, clean_logits.shape[1]).to(self.device)
            use_given = labels is not None and (spec.targeted or spec.label_source != "model")
            y = labels if use_given else clean_logits.argmax(1)
            adv = self._run(x0, y, seed, progress)
        self.compute = self.compute + self.last_compute
        return adv.to(images.device)

    # ------------------------------------------------------------------ the loop
    def _run(self, x0: torch.Tensor, y: torch.Tensor, seed: int, progress: bool) -> torch.Tensor:
        spec = self.spec
        eps, alpha = spec.eps, spec.step_size
        noise = make_generator(seed, self.device)
        # one CPU stream for the input transforms (named for DI, its first user, so seeded results stay)
        grad_fn = PointGradients(self.combination, spec.input_transforms, y, self._loss, self._chunk(x0.shape[0]),
                                 self.last_compute, make_generator(derive_seed(seed, "input-diversity")),
                                 autocast=spec.autocast)
        x = x0.clone()
        if spec.random_start:
            start = torch.empty_like(x0).uniform_(-eps, eps, generator=noise)
            x = torch.clamp(x0 + start, 0, 1)
        update_state, state = spec.update.init_state(x0), spec.estimator.init_state(x0)
        state.setdefault("alpha", alpha)  # the step size, for estimators that step (PGN's look-ahead)
        for _ in tqdm(range(spec.steps), desc=self.name, unit="step", leave=False, disable=not progress):
            center = spec.update.center(x, update_state, alpha)
            g = spec.estimator.estimate(grad_fn, x, center, eps, state, noise)
            if not isinstance(g, torch.Tensor) or g.shape != x.shape:
                got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
                raise ModelsafeError(f"estimator {type(spec.estimator).__name__} must return a gradient of "
                                     f"shape {tuple(x.shape)}, got {got}")
            if spec.smoothing is not None:
                g = spec.smoothing(g)
            buffer = spec.update.update(g, update_state)
            step = alpha * spec.direction(buffer)
            scale = _step_scale(spec.update, update_state)
            stepped = x + (step if scale is None else step * scale)
            delta = torch.clamp(stepped - x0, min=-eps, max=eps)
            x = torch.clamp(x0 + delta, min=0, max=1).detach()
        if spec.quantize:
            x = quantize_in_ball(x, x0, eps)
        return x

    # ------------------------------------------------------------------ helpers
    def _chunk(self, batch: int | None = None) -> int:
        """Rows per model call: ``chunk_size`` when set; on an accelerator everything at once; on the CPU
        ``CPU_CHUNK`` images, rounded up to whole views of the ``batch`` when input transforms give several
        views (their per-call cost outweighs smaller calls: BSR and SIA were 7-11% slower than one call per
        view at 50 images per call, no slower at whole views, in benchmarks/attack_speed.py)."""
        if self.spec.chunk_size is not None:
            return self.spec.chunk_size
        if self.device.type != "cpu":
            return 1 << 30
        views = math.prod(int(t.views()) for t in self.spec.input_transforms)
        if batch and views > 1:
            return batch * -(-CPU_CHUNK // batch)
        return CPU_CHUNK

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, y, reduction="sum")  # sum: each row's gradient is its own
        return -loss if self.spec.targeted else loss

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk()
        return torch.cat([self.model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
