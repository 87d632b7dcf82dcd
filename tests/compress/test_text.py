"""SafeCompress on the text classifier (token ids → embedding → linear layers), through the method registry,
on a small CSV dataset written here in the ``text`` reader's format."""

import csv
import random

import pytest
import torch

from modelsafe.compress import CompressOptions, compress
from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.models import create_model_for
from modelsafe.storage.io import read_json
from modelsafe.training import TrainConfig, evaluate

WORDS = {"pos": ["good", "great", "fine", "happy"], "neg": ["bad", "awful", "poor", "sad"],
         "colour": ["blue", "red", "green", "grey"]}
NOISE = [f"filler{i}" for i in range(40)]
SPEC = SplitSpec(members=240, validation=60, nonmember_source="train", reference=120, eval_nonmembers=120)
DENSITY = 0.2
OPTIONS = CompressOptions(
    density=DENSITY, train=TrainConfig(epochs=2, batch_size=16, lr=0.2), update_interval=6, end=0.9,
    extra={"safecompress": {"refresh_steps": 5, "attacker_batch_size": 16, "probe_steps": 2,
                            "validation_samples": 60, "minmax_start": 0.5}})


def write_csv(path, n, seed):
    """``text,label`` rows: two words of the class's own list among four filler words, string labels."""
    rng = random.Random(seed)
    labels = list(WORDS)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = labels[i % len(labels)]
            words = rng.sample(WORDS[label], 2) + rng.sample(NOISE, 4)
            rng.shuffle(words)
            writer.writerow([" ".join(words).capitalize() + ".", label])


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    write_csv(root / "train.csv", 600, seed=0)
    write_csv(root / "test.csv", 150, seed=1)
    data = load_dataset("text", root=root, max_len=12)
    assert data.info.kind == "text" and data.info.classes == ("colour", "neg", "pos")
    assert data.train.x.dtype == torch.int64 and data.train.x.shape == (600, 12)
    return data, MembershipSplit.create(data, SPEC, seed=0)


def linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("method, tests", [("bmia-safecompress", {"bmia"}),
                                           ("mmia-safecompress", {"bmia", "wmia"})])
def test_safecompress_on_the_text_classifier(problem, tmp_path, method, tests):
    data, split = problem
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model_for("text", data.info, width=0.5)
    embedding = model.embedding.weight.detach().clone()
    members = split.data(data, "members")
    model, info = compress(method, model, members, OPTIONS, seed=0, device="cpu", run_dir=tmp_path,
                           progress=False, dataset=data, split=split)
    # density holds over the sparse (linear) layers; the embedding table is trained, not pruned
    weights = linear_weights(model)
    total = sum(w.numel() for w in weights)
    assert info["density"] == pytest.approx(DENSITY, abs=1e-3)
    assert info["nnz"] == round(DENSITY * total) >= sum(int((w != 0).sum()) for w in weights)
    assert not torch.equal(model.embedding.weight, embedding)
    assert all(not w._backward_hooks for w in weights) and not model.training
    # one selection per mask update, all logged with every safety test's risk
    log = read_json(tmp_path / "selection.json")["log"]
    assert info["selections"] == len(log) >= 2
    for entry in log:
        assert len(entry["candidates"]) == 4 and 0 <= entry["chosen"] < 4
        assert all(set(c["risks"]) == tests for c in entry["candidates"])
    assert len(info["history"]) == 2 and info["history"][-1]["minmax"]  # the min-max phase was reached
    assert evaluate(model, data.test)["accuracy"] > 0.7  # three classes: chance is 1/3
