"""Whole jobs as Python functions: each takes typed options and a run folder, writes the folder and returns
its results. Every ``modelsafe`` command is argument parsing plus one call into this package.

* :func:`train_run`: train a target model (``modelsafe train``);
* :func:`compress_run`: compress a model with a registered method (``modelsafe compress``);
* :func:`attack_run`: transfer attacks between run folders and model specs (``modelsafe attack``);
* :func:`audit_run`: membership-inference audit of a run folder (``modelsafe audit --run``);
* :func:`audit_weights_run`: the same for a model trained elsewhere (``modelsafe audit --weights``);
* :func:`compare_run`: many compression methods over seeds, each audited afresh (``modelsafe compare``);
* :func:`demo_run`: SafeCompress and transfer attacks end to end (``modelsafe demo``);
* :func:`init_model` / :func:`load_target`: a fresh model by name and seed / a trained one from its folder.
"""

from modelsafe.workflows.attack import AttackRunOptions, attack_run
from modelsafe.workflows.audit import audit_run, audit_weights_run
from modelsafe.workflows.compare import compare_run
from modelsafe.workflows.compress import compress_run
from modelsafe.workflows.demo import demo_run
from modelsafe.workflows.recipe import Recipe
from modelsafe.workflows.targets import default_run_dir, init_model, load_target
from modelsafe.workflows.train import train_run

__all__ = ["AttackRunOptions", "Recipe", "attack_run", "audit_run", "audit_weights_run", "compare_run", "compress_run", "default_run_dir",
           "demo_run", "init_model", "load_target", "train_run"]
