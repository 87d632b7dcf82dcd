"""Attacks by name: ``create_mia(name, **options)`` and ``list_mias()``, from the rows of :data:`MIAS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.learned import BlackBoxNNAttack, WhiteBoxAttack
from modelsafe.privacy.lira import LiRAAttack
from modelsafe.privacy.lira_online import OnlineLiRAAttack
from modelsafe.privacy.metric_attacks import SIGNALS, MetricAttack
from modelsafe.privacy.rmia import RMIAAttack
from modelsafe.privacy.rmia_online import OnlineRMIAAttack
from modelsafe.privacy.shadow import ShadowAttack
from modelsafe.registry import Registry


@dataclass(frozen=True)
class MIAEntry:
    name: str
    family: str  # "metric", "learned", "shadow" or "reference"
    description: str
    factory: Callable[..., MembershipAttack]

    @property
    def needs_references(self) -> bool:
        """Whether the attack trains (or needs) reference/shadow models on population data."""
        return self.family in ("shadow", "reference", "online")


MIAS: Registry[MIAEntry] = Registry("membership attack")


def register_mia(name: str, family: str, description: str, factory: Callable[..., MembershipAttack]) -> None:
    """Add ``factory(**options) -> MembershipAttack`` under ``name``; a name already registered is refused."""
    MIAS.register(name, MIAEntry(name, family, description, factory))


for _signal, (_, _text) in SIGNALS.items():
    register_mia(_signal, "metric", f"threshold on {_text}; global or per_class=True",
                 lambda _s=_signal, **options: MetricAttack(_s, **options))
register_mia("blackbox-nn", "learned", "Nasr/SafeCompress attack net on output + ±1 label", BlackBoxNNAttack)
register_mia("whitebox", "learned", "SafeCompress WMIA: logits, loss, label, last-layer per-sample gradients",
             WhiteBoxAttack)
register_mia("shadow", "shadow", "Shokri shadow models; global or per-class attack model", ShadowAttack)
register_mia("lira", "reference", "offline LiRA with k reference models (fixed or per-sample variance)", LiRAAttack)
register_mia("rmia", "reference", "offline RMIA with k reference models", RMIAAttack)
register_mia("lira-online", "online", "online LiRA: IN and OUT reference models per sample (Carlini et al. 2022)",
             OnlineLiRAAttack)
register_mia("rmia-online", "online", "online RMIA: likelihood ratio against IN and OUT reference models "
             "(Zarifzadeh et al. 2024)", OnlineRMIAAttack)


def list_mias(pattern: str | None = None) -> list[str]:
    """Registered attack names, sorted; those matching the shell-style ``pattern`` when given."""
    return MIAS.names(pattern)


def mia_entry(name: str) -> MIAEntry:
    """The row of attack ``name`` (family, description, factory); :class:`UnknownNameError` if unknown."""
    return MIAS.get(name)


def create_mia(name: str, **options) -> MembershipAttack:
    """A new attack by registered name. Options common to all: ``seed``, ``device``, ``progress``,
    ``inference_batch_size``; the rest are the attack class's keyword arguments."""
    return mia_entry(name).factory(**options)
