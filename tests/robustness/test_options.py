"""Bad options for each of the seven commands, usage errors, silently-wrong inputs and the Python API: every
one is refused before any work starts, in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ..conftest import write_idx

G = "tracebacks/damaged files"
W = "silently wrong"
DIGITS = ("--dataset", "digits", "--no-progress", "--device", "cpu")


def must_not_run(*args, **kwargs):
    raise AssertionError("work started before the options were checked")


@pytest.fixture
def no_work(monkeypatch):
    for target in ("modelsafe.workflows.compress.run_method", "modelsafe.workflows.compare.compress",
                   "modelsafe.workflows.compare.run_one", "modelsafe.workflows.train.fit",
                   "modelsafe.adversarial.transfer_matrix", "modelsafe.workflows.attack.load_model_spec"):
        monkeypatch.setattr(target, must_not_run)


USAGE = [
    (["train", "--bogus"], "No such option: --bogus"),
    (["train", "--epochs"], "requires an argument"),
    (["train", "--epochs", "x"], "--epochs"),
    (["attack"], "Missing option '--surrogate'"),
    (["attack", "--surrogate", "r", "--eps"], "requires an argument"),
    (["audit"], "give either --run (a run folder) or --weights"),
    (["audit", "--run", "r", "--bootstrap", "many"], "--bootstrap"),
    (["compress", "--density", "dense"], "--density"),
    (["compress", "--nope", "1"], "No such option"),
    (["compare", "--epochs", "1.5"], "--epochs"),
    (["compare", "--unknown"], "No such option"),
    (["datasets", "--all"], "No such option"),
    (["datasets", "extra"], "unexpected extra argument"),
    (["demo", "--images", "many"], "--images"),
    (["demo", "--fast"], "No such option"),
    (["nosuch"], "No such command 'nosuch'"),
]


@pytest.mark.parametrize("args, message", USAGE)
def test_usage_errors_are_one_line(cli, args, message):
    cli.fails(G, *args, match=message)


BIG = "99999999999999999999999"
BAD = [
    (["train", *DIGITS, "--seed", BIG], "--seed"),
    (["attack", "--surrogate", "timm:resnet18", *DIGITS, "--seed", BIG], "--seed"),
    (["audit", "--run", "r", "--seed", BIG], "--seed"),
    (["compress", *DIGITS, "--seed", BIG], "--seed"),
    (["demo", "--dataset", "digits", "--seed", BIG], "--seed"),
    (["compare", *DIGITS, "--methods", "dense", "--seeds", f"0,{BIG}"], "seeds must be an integer in"),
    (["compare", *DIGITS, "--methods", "dense", "--seeds", "0,0"], "repeats seed(s) 0"),
    (["compare", *DIGITS, "--methods", "dense,rigl", "--seeds", "1,2,1"], "repeats seed(s) 1"),
    (["compare", *DIGITS, "--methods", "dense", "--seeds", ","], "names no seed"),
    (["compress", *DIGITS, "--method", "rigl", "--option", "nosuch=3"], "nosuch not read by rigl"),
    (["compress", *DIGITS, "--method", "rigl", "--option", "label_smoothing=0.2"], "label_smoothing"),
    (["compare", *DIGITS, "--methods", "dense,rigl", "--option", "nosuch=3"], "nosuch not read by dense, rigl"),
    (["demo", "--dataset", "digits", "--images", "0"], "--images must be a positive integer"),
    (["demo", "--dataset", "digits", "--images", "100000"], "more than the 359 test images"),
    (["demo", "--dataset", "digits", "--epochs", "0"], "--epochs must be a positive integer"),
    (["demo", "--dataset", "digits", "--density", "0"], "--density must lie in"),
    (["attack", "--surrogate", "timm:resnet18", *DIGITS, "--images", "100000"], "more than the 359 test images"),
    (["attack", "--surrogate", "timm:resnet18", *DIGITS, "--images", "0"], "--images must be >= 1"),
    (["train", *DIGITS, "--model", "mlp", "--width", "nan"], "width must be"),
    (["train", *DIGITS, "--dataset-option", "nosuch=1"], "does not take that option"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_options_fail_before_work(cli, tmp_path, no_work, args, message):
    out = tmp_path / "out"
    extra = [] if args[0] == "audit" else ["--out", out]
    group = W if any(k in message for k in ("repeats", "not read", "more than", "--images must")) else G
    cli.fails(group, *args, *extra, match=message)
    assert not out.exists()


YAML = [
    ("train", "epochs: true\n", "epochs must be int, got True"),
    ("train", "lr: false\n", "lr must be float"),
    ("train", "seed: [1, 2]\n", "seed must be a single int"),
    ("compress", "update_interval: yes\n", "update_interval must be int"),
    ("compare", "epochs: on\n", "epochs must be int"),
    ("audit", "bootstrap: true\n", "bootstrap must be int"),
    ("attack", "images: true\n", "images must be int"),
    ("train", "- a\n- b\n", "must hold a mapping"),
    ("train", "epochs: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("command, text, message", YAML)
def test_yaml_booleans_and_shapes(cli, tmp_path, no_work, command, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    cli.fails(W if "true" in text or "yes" in text or "on" in text else G, command, "--config", cfg,
              match=message)


def test_yaml_booleans_still_work_for_flags(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("progress: false\ndataset: digits\nmodel: mlp\nepochs: 1\nmembers: 200\nvalidation: 100\n"
                   "split: small\n")
    res = cli("train", "--config", cfg, "--out", tmp_path / "run", "--device", "cpu")
    assert res.exit_code == 0, res.output
    cli.count(W)


def fashion_folder(tmp_path, labels=None, truncate=False):
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        y = (np.arange(n) % 10).astype(np.uint8)
        if labels is not None and prefix == "train":
            y[3] = labels
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
    if truncate:
        p = d / "t10k-images-idx3-ubyte.gz"
        p.write_bytes(p.read_bytes()[:200])
    return d


@pytest.mark.parametrize("case", ["label out of range", "truncated gzip"])
def test_damaged_idx(cli, tmp_path, no_work, case):
    d = fashion_folder(tmp_path, labels=12 if case == "label out of range" else None,
                       truncate=case == "truncated gzip")
    message = ("train-labels-idx1-ubyte.gz", "[0, 10)") if case.startswith("label") else ("t10k-images", "damaged")
    cli.fails(G, "train", "--dataset", "fashion-mnist", "--data-root", tmp_path, "--out", tmp_path / "r",
              "--no-progress", match=message)
    assert d.is_dir() and not (tmp_path / "r").exists()


TEXT = {
    "binary csv": ("train.csv", b"text,label\n\xff\xfe\x00\x01,1\n", "cannot be read"),
    "jsonl list": ("train.jsonl", b'[1, 2]\n', "expected a JSON object"),
    "jsonl garbage": ("train.jsonl", b'{"text": \n', "not valid JSON"),
    "missing column": ("train.csv", b"words,label\nhello,1\n", "no column 'text'"),
    "huge label": ("train.csv", b"text,label\nhello,99999999999\nbye,0\n", "too large for a class index"),
}


@pytest.mark.parametrize("case", sorted(TEXT))
def test_damaged_text_files(cli, tmp_path, no_work, case):
    name, data, message = TEXT[case]
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / name).write_bytes(data)
    cli.fails(G, "train", "--dataset", "text", "--data-root", folder, "--model", "text", "--out", tmp_path / "r",
              "--no-progress", match=(name, message))


# ------------------------------------------------------------------------------------------- Python API
def api_cases(tmp_path, run):
    """(name, callable) pairs: each must raise a ModelsafeError subclass, catchable as ValueError."""
    from modelsafe.data import MembershipSplit, load_dataset
    from modelsafe.data.idx import read_idx
    from modelsafe.sparse import load_sparse
    from modelsafe.storage.io import load_weights, read_json
    from modelsafe.storage.manifest import Manifest
    from modelsafe.training import fit
    from modelsafe.workflows import load_target, train_run

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00garbage" * 8)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    (tmp_path / MARK).mkdir()
    (tmp_path / MARK / "modelsafe.json").write_text("not json")
    import torch

    return [
        ("load_target missing", lambda: load_target(tmp_path / "missing")),
        ("load_target file", lambda: load_target(garbage)),
        ("load_weights garbage", lambda: load_weights(garbage, torch.nn.Linear(2, 2))),
        ("load_weights wrong model", lambda: load_weights(run / "weights.safetensors", torch.nn.Linear(2, 2))),
        ("load_sparse garbage", lambda: load_sparse(garbage)),
        ("read_json bad", lambda: read_json(bad_json)),
        ("split load bad", lambda: MembershipSplit.load(bad_json)),
        ("split from list", lambda: MembershipSplit.from_dict([])),
        ("read_idx garbage", lambda: read_idx(garbage)),
        ("read_idx bad gzip", lambda: read_idx(garbage.rename(tmp_path / "g.gz"))),
        ("manifest damaged", lambda: Manifest.load(tmp_path / MARK)),
        ("train_run seed", lambda: train_run("digits", "mlp", out=tmp_path / "t", seed=-1)),
        ("train_run seed overflow", lambda: train_run("digits", "mlp", out=tmp_path / "t", seed=2**70)),
        ("train_run width", lambda: train_run("digits", "mlp", out=tmp_path / "t", width=0)),
        ("split seed", lambda: MembershipSplit.create(load_dataset("digits"), "small", seed=True)),
        ("fit empty", lambda: fit(torch.nn.Linear(2, 2), load_dataset("digits").train.subset([]))),
        ("load_dataset option", lambda: load_dataset("digits", bogus=1)),
    ]


MARK = "marked"


def test_python_api_raises_modelsafe_errors(tmp_path, run_copy, cli):
    from modelsafe.errors import ModelsafeError

    for name, call in api_cases(tmp_path, run_copy):
        with pytest.raises(ModelsafeError) as info:
            call()
        assert isinstance(info.value, ValueError), name
        assert "\n" not in str(info.value), (name, str(info.value))
        cli.count(G)
    assert not (tmp_path / "t").exists()


def test_sparse_export_is_deterministic(tmp_path, cli):
    import torch

    from modelsafe.sparse import export_sparse, load_sparse

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Linear(30, 5))
    with torch.no_grad():
        model[0].weight[model[0].weight.abs() < 0.15] = 0
    meta = {f"key{i}": str(i) for i in range(8)}
    blobs = set()
    for i in range(4):
        export_sparse(model, tmp_path / f"{i}.safetensors", metadata=dict(reversed(list(meta.items()))
                                                                          if i % 2 else meta))
        blobs.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    restored = load_sparse(tmp_path / "0.safetensors")
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
    blob = blobs.pop()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert list(header) == sorted(header)
    cli.count(W)
