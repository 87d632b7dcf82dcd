"""Named attacks: each preset is one row of parts for :class:`AttackSpec`, not a class with its own loop.

``create_attack(name, model, eps=16/255, steps=None, **overrides)``. Overrides are either
:class:`AttackSpec` fields (``alpha``, ``random_start``, ``targeted``, ``label_source``, ``quantize``,
``chunk_size``, or whole parts, the library's or your own: ``estimator=``, ``scales=``, ``diversity=``,
``transforms=``, ``smoothing=``, ``update=``, ``direction=``), ``seed``/``device``, or the flat parameter names below, which change one field of a part
the preset already has (``samples=20`` on smi-fgrm; ``samples`` on mi-fgsm is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace

import torch
from torch import nn

from modelsafe._checks import check_choice
from modelsafe.adversarial.attack import AttackSpec, Momentum, TransferAttack
from modelsafe.adversarial.blocks import BlockShuffleRotation, StructureInvariance
from modelsafe.adversarial.directions import RescaleStep, SignStep
from modelsafe.adversarial.estimators import (
    DepthFirstSampling,
    GradientRelevance,
    MaximinExpectedFlatness,
    PenalizedGradientNorm,
    VarianceTuning,
)
from modelsafe.adversarial.transforms import InputDiversity, ScaleCopies, TranslationSmoothing
from modelsafe.adversarial.updates import DecayIndicator
from modelsafe.errors import ModelsafeError
from modelsafe.registry import Registry


@dataclass(frozen=True)
class Preset:
    """One named attack: its ``parts`` (fields of :class:`AttackSpec`) and default ``steps``."""

    name: str
    summary: str
    parts: dict
    steps: int = 10


MI, NI = Momentum(1.0), Momentum(1.0, nesterov=True)
DFS, FGRM = DepthFirstSampling(), RescaleStep()
CT = {"diversity": InputDiversity(), "smoothing": TranslationSmoothing(), "scales": ScaleCopies()}
PGN, BSR = PenalizedGradientNorm(), BlockShuffleRotation()
MEF, MEF_MOMENTUM = MaximinExpectedFlatness(), Momentum(0.5)

_ROWS = [
    Preset("fgsm", "one signed step of size eps (Goodfellow et al. 2015)", {"update": Momentum(0.0)}, steps=1),
    Preset("i-fgsm", "iterative FGSM / BIM (Kurakin et al. 2017)", {"update": Momentum(0.0)}),
    Preset("mi-fgsm", "momentum mu=1 on L1-normalised gradients (Dong et al. 2018)", {"update": MI}),
    Preset("ni-fgsm", "Nesterov look-ahead momentum (Lin et al. 2020)", {"update": NI}),
    Preset("di-mi-fgsm", "MI-FGSM + input diversity p=0.5 (Xie et al. 2019)",
           {"update": MI, "diversity": InputDiversity()}),
    Preset("ti-mi-fgsm", "MI-FGSM + 7x7 Gaussian gradient smoothing (Dong et al. 2019)",
           {"update": MI, "smoothing": TranslationSmoothing()}),
    Preset("si-ni-fgsm", "NI-FGSM + 5 scale copies (Lin et al. 2020)", {"update": NI, "scales": ScaleCopies()}),
    Preset("vmi-fgsm", "MI-FGSM + variance tuning N=20, beta=1.5 (Wang & He 2021)",
           {"update": MI, "estimator": VarianceTuning()}),
    Preset("vni-fgsm", "NI-FGSM + variance tuning N=20, beta=1.5 (Wang & He 2021)",
           {"update": NI, "estimator": VarianceTuning()}),
    Preset("fgrm", "MI-FGRM: MI-FGSM with FGRM rescaling instead of sign, no sampling (Han et al. 2023)",
           {"update": MI, "direction": FGRM}),
    Preset("smi-fgrm", "MI-FGRM + depth-first sampling N=12, beta=1.5, gamma=1 (Han et al. 2023)",
           {"update": MI, "direction": FGRM, "estimator": DFS}),
    Preset("sni-fgrm", "NI-FGRM + depth-first sampling (Han et al. 2023)",
           {"update": NI, "direction": FGRM, "estimator": DFS}),
    Preset("mi-fgsm-ct", "MI-FGSM + DI + TI + SI", {"update": MI, **CT}),
    Preset("ni-fgsm-ct", "NI-FGSM + DI + TI + SI", {"update": NI, **CT}),
    Preset("smi-fgrm-ct", "SMI-FGRM + DI + TI + SI (the S-FGRM CT setting)",
           {"update": MI, "direction": FGRM, "estimator": DFS, **CT}),
    Preset("sni-fgrm-ct", "SNI-FGRM + DI + TI + SI", {"update": NI, "direction": FGRM, "estimator": DFS, **CT}),
    Preset("pgn", "MI-FGSM + penalized gradient norm N=20, zeta=3, delta=0.5 (Ge et al. 2023)",
           {"update": MI, "estimator": PGN}),
    Preset("gra", "gradient relevance N=20, beta=3.5 + decay indicator eta=0.94 (Zhu et al. 2023)",
           {"update": DecayIndicator(), "estimator": GradientRelevance()}),
    Preset("mef", "maximin expected flatness N=20, gamma=2, kesai=0.15, inner decay 0.9 + momentum mu=0.5 "
           "(Qiu et al.)", {"update": MEF_MOMENTUM, "estimator": MEF}),
    Preset("bsr", "MI-FGSM + block shuffle and rotation 2x2, 24 deg, 20 copies (Wang et al. 2024)",
           {"update": MI, "diversity": BSR}),
    Preset("sia", "MI-FGSM + structure invariance 3x3, 20 copies (Wang et al. 2023)",
           {"update": MI, "diversity": StructureInvariance()}),
    Preset("pgn-fgrm", "PGN with the FGRM step instead of sign", {"update": MI, "estimator": PGN, "direction": FGRM}),
    Preset("gra-fgrm", "GRA with the FGRM step instead of sign (the decay indicator scales it)",
           {"update": DecayIndicator(), "estimator": GradientRelevance(), "direction": FGRM}),
    Preset("mef-fgrm", "MEF with the FGRM step instead of sign",
           {"update": MEF_MOMENTUM, "estimator": MEF, "direction": FGRM}),
    Preset("bsr-smi-fgrm", "SMI-FGRM with BSR views at every walk point",
           {"update": MI, "direction": FGRM, "estimator": DFS, "diversity": BSR}),
    Preset("sia-smi-fgrm", "SMI-FGRM with SIA views at every walk point",
           {"update": MI, "direction": FGRM, "estimator": DFS, "diversity": StructureInvariance()}),
]
PRESETS: Registry[Preset] = Registry("attack")  # entries() keeps the order of _ROWS (the order of tables)
for _row in _ROWS:
    PRESETS.register(_row.name, _row)

# flat override name -> (part, field)
PART_FIELDS: dict[str, tuple[str, str]] = {
    "samples": ("estimator", "samples"), "beta": ("estimator", "beta"), "gamma": ("estimator", "gamma"),
    "walk_start": ("estimator", "walk_start"), "delta": ("estimator", "delta"), "pgn_step": ("estimator", "step"),
    "xi": ("estimator", "xi"), "inner_decay": ("estimator", "inner_decay"),
    "momentum": ("update", "mu"), "eta": ("update", "eta"),
    "rescale": ("direction", "form"), "rescale_scale": ("direction", "scale"),
    "di_prob": ("diversity", "prob"), "di_resize_rate": ("diversity", "resize_rate"), "di_mode": ("diversity", "mode"),
    "di_resize_back": ("diversity", "resize_back"), "di_pad_value": ("diversity", "pad_value"),
    "si_copies": ("scales", "copies"), "si_center": ("scales", "center"),
    "ti_kernel": ("smoothing", "size"), "ti_nsig": ("smoothing", "nsig"),
    "blocks": ("diversity", "blocks"), "copies": ("diversity", "copies"), "bsr_angle": ("diversity", "angle"),
    "bsr_fill": ("diversity", "fill"), "sia_noise": ("diversity", "noise"),
}
STEP_KINDS = ("sign", "fgrm")


def list_attacks(pattern: str | None = None) -> list[str]:
    """Preset names, sorted; those matching the shell-style ``pattern`` (e.g. ``"*-fgrm*"``) when given.
    ``PRESETS.entries()`` gives the presets in table order."""
    return PRESETS.names(pattern)


def describe_attacks() -> list[dict]:
    """One row per preset, in table order: name, summary and its full spec at eps=16/255 (for docs and
    ``--help``)."""
    return [{"name": p.name, "summary": p.summary, "spec": preset_spec(p, 16 / 255, None, {}).describe()}
            for p in PRESETS.entries()]


def preset_spec(preset: Preset, eps: float, steps: int | None, overrides: dict) -> AttackSpec:
    """The :class:`AttackSpec` of ``preset`` at ``eps`` and ``steps`` (None: the preset's) with
    :func:`create_attack`'s ``overrides`` applied (consumed from the dict)."""
    steps = preset.steps if steps is None else steps
    if preset.name == "fgsm" and steps != 1:
        raise ModelsafeError(f"fgsm is a single-step attack (steps=1), got steps={steps}; use i-fgsm for more")
    parts = dict(preset.parts)
    spec_names = {f.name for f in fields(AttackSpec)}
    for key in list(overrides):
        if key in spec_names:
            parts[key] = overrides.pop(key)
    if "step" in overrides:
        kind = check_choice("step", overrides.pop("step"), STEP_KINDS)
        parts["direction"] = SignStep() if kind == "sign" else RescaleStep()
    by_part: dict[str, dict] = {}
    for key in list(overrides):
        if key not in PART_FIELDS:
            valid = sorted({*spec_names, *PART_FIELDS, "step", "seed", "device"} - {"eps", "steps"})
            raise ModelsafeError(f"unknown option {key!r} for attack {preset.name!r}; valid: {', '.join(valid)}")
        part, field = PART_FIELDS[key]
        by_part.setdefault(part, {})[field] = overrides.pop(key)
    defaults = AttackSpec()
    for part, changes in by_part.items():
        current = parts.get(part, getattr(defaults, part))
        names = {f.name for f in fields(current)} if is_dataclass(current) else set()
        missing = sorted(set(changes) - names)
        if current is None or missing:
            flat = [k for k, (p, f) in PART_FIELDS.items() if p == part and f in (missing or changes)]
            kind = "none" if current is None else type(current).__name__
            raise ModelsafeError(f"option(s) {', '.join(flat)} do not apply to {preset.name!r} (its {part} is "
                                 f"{kind}); pass {part}=... to change the part itself")
        parts[part] = replace(current, **changes)
    return AttackSpec(eps=eps, steps=steps, **parts)


def create_attack(name: str, model: nn.Module, eps: float = 16 / 255, steps: int | None = None, *, seed: int = 0,
                  device: str | torch.device | None = None, **overrides) -> TransferAttack:
    """The preset ``name`` on ``model`` (an ``nn.Module`` taking [0, 1] NCHW images, or an :class:`Ensemble`).

    ``steps=None`` uses the preset's (10; fgsm: 1); the step size defaults to eps/steps. See the module
    docstring for ``overrides``. Unknown names raise :class:`UnknownNameError`; bad values ModelsafeError."""
    spec = preset_spec(PRESETS.get(name), eps, steps, dict(overrides))
    return TransferAttack(model, spec, name=name, seed=seed, device=device)
