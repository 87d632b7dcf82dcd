"""The training loop every method shares: ``fit()``, ``evaluate()``, ``predict_logits()``.

``fit`` is an ordinary PyTorch loop (forward, cross-entropy, backward, optimizer step, per-step LR schedule)
with hooks for the things later methods add: masks (sparse training), defence losses (adversarial
regularisation), private optimizers. It checkpoints into ``run_dir/checkpoint`` after every epoch and, when
that folder already holds a checkpoint, resumes from it, so an interrupted run loses at most one epoch.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from modelsafe import distributed
from modelsafe._checks import (
    check_choice,
    check_fraction,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.utils import (
    batch_layout,
    derive_seed,
    eval_mode,
    host_to_device,
    is_channels_last,
    make_generator,
    pick_device,
    resolve_device,
    to_channels_last,
    use_channels_last,
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "multistep", "constant")
AUGMENTATIONS = ("none", "flip", "crop-flip")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``schedule``: ``cosine`` (to 0 over all steps), ``multistep`` (×``gamma`` at
    each fraction of training in ``milestones``) or ``constant``. ``augment`` applies to image batches:
    ``flip`` (horizontal), ``crop-flip`` (4-px zero-padded random crop + flip).

    ``autocast``: forward passes and losses of the training steps under bfloat16 autocast (parameters,
    gradients and optimizer state stay in their own dtype, so no loss scaling is needed; evaluation runs in
    full precision). It changes the results by rounding (tested on CPU against full precision), so it is part
    of a run's settings. ``channels_last``: keep 4-D weights and image batches in the NHWC memory format;
    ``None`` (automatic) turns it on for convolutional nets on CUDA. It changes the layout, not the values."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    augment: str = "none"
    label_smoothing: float = 0.0
    autocast: bool = False
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_fraction("momentum", self.momentum, closed_high=False)
        check_non_negative("weight_decay", self.weight_decay)
        check_choice("schedule", self.schedule, SCHEDULES)
        for m in self.milestones:
            check_fraction("milestones", m)
        check_positive("gamma", self.gamma)
        check_choice("augment", self.augment, AUGMENTATIONS)
        check_fraction("label_smoothing", self.label_smoothing, closed_high=False)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ModelsafeError("nesterov=True needs optimizer='sgd' with momentum > 0")

@dataclass
class TrainState:
    """What callbacks see. ``step`` counts optimizer steps taken so far; ``epoch`` is 0-based."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    epoch: int = 0
    generator: torch.Generator | None = None
    logs: dict = field(default_factory=dict)
    averager: distributed.GradientAverager | None = None


class Callback:
    """Hooks into :func:`fit`. Override what you need; every hook defaults to doing nothing.

    Order within one step: ``replaces_step`` → ``loss`` → backward → ``before_optimizer_step`` →
    ``optimizer.step()`` → scheduler → ``after_optimizer_step``."""

    def on_fit_start(self, state: TrainState) -> None:
        """Called once, after the optimizer exists and before a checkpoint (if any) is restored."""

    def replaces_step(self, state: TrainState) -> bool:
        """True if this callback has already taken the coming optimizer step on the run's behalf (SafeCompress's
        kept probes): the loop then passes over the batch (no forward, backward or optimizer step), while the
        step count, the scheduler and ``after_optimizer_step`` advance as for a step taken. Default False."""
        return False

    def loss(self, state: TrainState, inputs: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to minimise (default: unchanged). Defences add their terms here."""
        return loss

    def before_optimizer_step(self, state: TrainState) -> None:
        """Gradients are ready; edit them here (e.g. mask them)."""

    def after_optimizer_step(self, state: TrainState) -> None:
        """The step was taken; ``state.step`` already counts it."""

    def on_epoch_end(self, state: TrainState) -> None:
        """``state.logs`` holds the epoch's figures; add to it to have them in the history."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


def make_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if config.schedule == "constant":
        return 1.0
    progress = step / max(1, total_steps)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.gamma ** sum(progress >= m for m in config.milestones)


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Random flips / padded crops of an (N, C, H, W) batch, drawn from ``generator`` (on the CPU)."""
    if kind == "none" or x.dim() != 4:
        return x
    n, _, h, w = x.shape
    if kind == "crop-flip":
        pad = 4
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = host_to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
        ox = host_to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    flip = host_to_device(torch.rand(n, generator=generator) < 0.5, x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def fit(model: nn.Module, train_data: TensorData, config: TrainConfig | None = None, *,
        val_data: TensorData | None = None, callbacks: Sequence[Callback] = (), seed: int = 0,
        device: str | torch.device | None = None, run_dir: str | os.PathLike | None = None,
        optimizer_factory: Callable[[Iterable[nn.Parameter], TrainConfig], torch.optim.Optimizer] | None = None,
        progress: bool = True, **overrides) -> list[dict]:
    """Train ``model`` on ``train_data`` and return the history (one dict per epoch).

    ``config`` fields can also be passed as keywords (``fit(model, data, epochs=3, lr=0.1)``). With ``run_dir``
    the state is checkpointed after each epoch and an existing checkpoint there is resumed (it must come from
    the same config). Randomness (shuffling, augmentation) comes from ``seed`` only. The model is left in
    eval mode.

    Under ``torchrun`` (:mod:`modelsafe.distributed`) the run is data-parallel: every rank draws the same
    shuffled global batches of ``batch_size`` samples and trains on its share (``rank::world``), gradients are
    averaged over the global batch (:class:`~modelsafe.distributed.GradientAverager`), so the weights follow
    the single-process run; only rank 0 writes checkpoints and shows progress, ``run_dir`` must be on a
    filesystem every rank sees."""
    config = replace(config or TrainConfig(), **overrides)
    if len(train_data) == 0:
        raise ModelsafeError("train_data is empty")
    dev = distributed.local_device(resolve_device(device))
    model.to(dev)
    if use_channels_last(model, dev, config.channels_last):
        to_channels_last(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelsafeError("the model has no trainable parameters")
    progress = progress and distributed.is_main()
    averager = _start_parallel(model, params)
    optimizer = (optimizer_factory or make_optimizer)(params, config)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s, total_steps))
    state = TrainState(model, optimizer, config, dev, total_steps, steps_per_epoch,
                       generator=make_generator(derive_seed(seed, "fit-shuffle")), averager=averager)
    for cb in callbacks:
        cb.on_fit_start(state)

    history: list[dict] = []
    ckpt = Checkpointer(Path(run_dir) / "checkpoint") if run_dir is not None else None
    fingerprint = {"config": asdict(config), "seed": seed, "n_train": len(train_data)}
    if ckpt is not None and _checkpoint_everywhere(ckpt):
        history = ckpt.restore(state, scheduler, callbacks, fingerprint)

    try:
        _run_epochs(state, train_data, val_data, scheduler, callbacks, history, progress,
                    None if ckpt is None else (ckpt, fingerprint))
    finally:
        if averager is not None:
            averager.remove()
    distributed.barrier()  # the last checkpoint is written when fit returns on any rank
    model.eval()
    return history


def _run_epochs(state: TrainState, train_data: TensorData, val_data: TensorData | None, scheduler,
                callbacks: Sequence[Callback], history: list[dict], progress: bool,
                checkpoint: tuple[Checkpointer, dict] | None) -> None:
    """The epochs from ``state.epoch`` on: train, validate, callbacks' epoch end, append to ``history``, and
    checkpoint (rank 0 only) when ``checkpoint`` = (checkpointer, fingerprint) is given."""
    config = state.config
    epochs = tqdm(range(state.epoch, config.epochs), desc="train", unit="epoch", disable=not progress,
                  initial=state.epoch, total=config.epochs)
    for epoch in epochs:
        state.epoch = epoch
        state.logs = _train_epoch(state, train_data, scheduler, callbacks, progress)
        if val_data is not None and len(val_data):
            val = evaluate(state.model, val_data, batch_size=max(config.batch_size, 512), device=state.device)
            state.logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        for cb in callbacks:
            cb.on_epoch_end(state)
        history.append(dict(state.logs))
        epochs.set_postfix({k: f"{v:.4f}" for k, v in state.logs.items() if k != "epoch" and isinstance(v, float)})
        state.epoch = epoch + 1
        if checkpoint is not None and distributed.is_main():
            checkpoint[0].save(state, scheduler, callbacks, checkpoint[1], history)


def _start_parallel(model: nn.Module, params: list[nn.Parameter]) -> distributed.GradientAverager | None:
    """Under ``torchrun``: rank 0's weights on every rank, and the gradient-averaging hooks (registered before
    any callback's, so those see the global gradient). None for a single process."""
    if not distributed.active():
        return None
    distributed.broadcast_module(model)
    return distributed.GradientAverager(params)


def _checkpoint_everywhere(ckpt: Checkpointer) -> bool:
    """Whether a checkpoint exists; under ``torchrun`` every rank must see the same answer."""
    seen = distributed.all_gather_objects(ckpt.exists())
    if len(set(seen)) > 1:
        raise ModelsafeError(f"ranks disagree on whether {ckpt.directory} holds a checkpoint ({seen}); the run "
                             "folder must be on a filesystem shared by every rank")
    return seen[0]



def _train_epoch(state: TrainState, train_data: TensorData, scheduler, callbacks: Sequence[Callback],
                 progress: bool) -> dict:
    """One epoch over ``train_data`` in shuffled batches, with the callbacks' hooks around each step; returns the
    epoch's logs (epoch, train loss and accuracy, lr). A non-finite mean loss is an error."""
    model, optimizer, config, dev = state.model, state.optimizer, state.config, state.device
    model.train()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen, nhwc = 0, is_channels_last(model)
    batches = tqdm(train_data.batches(config.batch_size, shuffle=True, generator=state.generator, device=dev),
                   total=state.steps_per_epoch, desc=f"epoch {state.epoch + 1}/{config.epochs}", unit="batch",
                   leave=False, disable=not progress)
    for inputs, labels in batches:
        inputs = augment_batch(inputs, config.augment, state.generator)  # drawn even when passed over
        replaced = [cb.replaces_step(state) for cb in callbacks]  # every callback asked: each counts its own
        if any(replaced):
            _advance(state, scheduler, callbacks)
            continue
        if state.averager is not None:
            inputs, labels = state.averager.shard(inputs, labels)
        inputs = batch_layout(inputs, nhwc)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.autocast):
            logits = model(inputs)
            loss, batch_sum = _batch_loss(state, callbacks, inputs, labels, logits)
        with torch.no_grad():
            loss_sum += batch_sum
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.shape[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for cb in callbacks:
            cb.before_optimizer_step(state)
        optimizer.step()
        _advance(state, scheduler, callbacks)
    totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=dev).double()])
    loss_sum, correct, seen = distributed.all_reduce_sum(totals).tolist()
    if seen == 0:  # every batch of the epoch was passed over (replaced steps)
        return {"epoch": state.epoch + 1, "train_loss": None, "train_accuracy": None,
                "lr": optimizer.param_groups[0]["lr"]}
    train_loss = loss_sum / seen
    if not math.isfinite(train_loss):
        raise ModelsafeError(f"training diverged at epoch {state.epoch + 1} (loss {train_loss}); lower the lr")
    return {"epoch": state.epoch + 1, "train_loss": train_loss, "train_accuracy": correct / seen,
            "lr": optimizer.param_groups[0]["lr"]}


def _advance(state: TrainState, scheduler, callbacks: Sequence[Callback]) -> None:
    """What follows an optimizer step: the scheduler, the step count, buffer averaging under ``torchrun``,
    ``after_optimizer_step``."""
    scheduler.step()
    state.step += 1
    if state.averager is not None:
        state.averager.sync_buffers(state.model)
    for cb in callbacks:
        cb.after_optimizer_step(state)


def _batch_loss(state: TrainState, callbacks: Sequence[Callback], inputs: torch.Tensor, labels: torch.Tensor,
                logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to backpropagate (cross-entropy, then each callback's ``loss``) and the batch's summed
    cross-entropy (for the log). A rank's empty share of a short last batch (under ``torchrun``) gives a zero
    loss that still reaches every parameter, and no callback terms."""
    if labels.shape[0] == 0:
        return logits.sum() * 0.0, torch.zeros((), device=logits.device)
    loss = F.cross_entropy(logits, labels, label_smoothing=state.config.label_smoothing)
    batch_sum = loss.detach() * labels.shape[0]
    for cb in callbacks:
        loss = cb.loss(state, inputs, labels, logits, loss)
    return loss, batch_sum


_STATE_KEYS = ("fingerprint", "epoch", "step", "history", "optimizer", "scheduler", "generator", "callbacks")


class Checkpointer:
    """Writes the whole training state into ``directory`` atomically: the new checkpoint is assembled in a
    sibling folder and swapped in with renames, so a crash leaves either the old or the new one. Each
    checkpoint carries ``digests.json`` (the SHA-256 of its files); restoring verifies it and falls back to the
    previous checkpoint (``directory.old``) when the newest one is damaged."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.old = directory.with_name(directory.name + ".old")

    def exists(self) -> bool:
        return (self.directory / "state.pt").is_file() or (self.old / "state.pt").is_file()

    def save(self, state: TrainState, scheduler, callbacks: Sequence[Callback], fingerprint: dict,
             history: list[dict]) -> None:
        from modelsafe.storage.io import save_weights, write_json
        from modelsafe.storage.manifest import sha256_file

        tmp = self.directory.with_name(self.directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(tmp / "model.safetensors", state.model)
        torch.save({
            "fingerprint": fingerprint, "epoch": state.epoch, "step": state.step, "history": history,
            "optimizer": state.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": state.generator.get_state(),
            "callbacks": [cb.state_dict() for cb in callbacks],
        }, tmp / "state.pt")
        write_json(tmp / "digests.json", {n: sha256_file(tmp / n) for n in ("model.safetensors", "state.pt")})
        if self.directory.exists():
            shutil.rmtree(self.old, ignore_errors=True)
            os.replace(self.directory, self.old)
        os.replace(tmp, self.directory)
        shutil.rmtree(self.old, ignore_errors=True)

    @staticmethod
    def _read(directory: Path) -> dict:
        """The saved state of one checkpoint folder, after checking its digests and structure."""
        from modelsafe.storage.manifest import DamagedFileError, sha256_file
        from modelsafe.storage.readers import load_torch_file, read_json_object

        digests = directory / "digests.json"
        if digests.is_file():
            recorded = read_json_object(digests, "checkpoint digests")
            for name in ("model.safetensors", "state.pt"):
                path = directory / name
                if not path.is_file() or recorded.get(name) != sha256_file(path):
                    raise DamagedFileError(f"checkpoint file {path} is damaged (missing, or its SHA-256 differs "
                                           f"from {digests})")
        saved = load_torch_file(directory / "state.pt")
        if not isinstance(saved, dict) or any(k not in saved for k in _STATE_KEYS):
            raise DamagedFileError(f"checkpoint file {directory / 'state.pt'} does not hold a modelsafe "
                                   "training state")
        return saved

    def _newest_intact(self) -> tuple[Path, dict]:
        from modelsafe.storage.manifest import DamagedFileError

        damage = None
        for directory in (self.directory, self.old):
            if (directory / "state.pt").is_file():
                try:
                    return directory, self._read(directory)
                except DamagedFileError as exc:
                    damage = damage or exc
        raise DamagedFileError(f"{damage}; no intact checkpoint is left: delete {self.directory} to restart "
                               "training from epoch 0, or re-run with --overwrite")

    def restore(self, state: TrainState, scheduler, callbacks: Sequence[Callback], fingerprint: dict) -> list[dict]:
        from modelsafe.storage.io import load_weights

        directory, saved = self._newest_intact()
        if saved["fingerprint"] != fingerprint:
            raise ModelsafeError(f"checkpoint in {directory} comes from different training settings; "
                                 "remove it or use another run folder")
        if len(saved["callbacks"]) != len(callbacks):
            raise ModelsafeError(f"checkpoint in {directory} was written with {len(saved['callbacks'])} callbacks, "
                                 f"this run has {len(callbacks)}")
        load_weights(directory / "model.safetensors", state.model)
        try:
            state.optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state.generator.set_state(saved["generator"])
            for cb, cb_state in zip(callbacks, saved["callbacks"]):
                cb.load_state_dict(cb_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelsafeError(f"checkpoint in {directory} does not fit this run ({exc}); delete it to restart "
                                 "training, or re-run with --overwrite") from None
        state.epoch, state.step = saved["epoch"], saved["step"]
        return list(saved["history"])


@torch.no_grad()
def predict_logits(model: nn.Module, data: TensorData | torch.Tensor, batch_size: int = 512,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Logits (N, C) on the CPU, computed in eval mode (the model's previous mode is restored)."""
    dev = pick_device(device, model)
    with eval_mode(model):
        if isinstance(data, torch.Tensor):
            chunks = [model(data[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(data), batch_size)]
        else:
            chunks = [model(x).float().cpu() for x, _ in data.batches(batch_size, device=dev)]
    if not chunks:
        raise ModelsafeError("no samples to predict")
    return torch.cat(chunks)


def evaluate(model: nn.Module, data: TensorData, batch_size: int = 512,
             device: str | torch.device | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``data``."""
    if len(data) == 0:
        raise ModelsafeError("cannot evaluate on an empty dataset")
    logits = predict_logits(model, data, batch_size, device)
    return {"accuracy": float((logits.argmax(1) == data.y).float().mean()),
            "loss": float(F.cross_entropy(logits, data.y)), "n": len(data)}
