"""Damaged inputs of every kind modelsafe reads: each ends in one line naming the file (and field), exit 2."""

from __future__ import annotations

import json

import pytest

from modelsafe.storage.manifest import MARKER

G = "tracebacks/damaged files"
TRAIN = ("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress", "--device", "cpu",
         "--split", "small", "--members", "200", "--validation", "100")
COMPRESS = ("compress", "--method", "dense", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
            "--no-progress", "--device", "cpu", "--split", "small", "--members", "200", "--validation", "100")


def audit(run):
    return ("audit", "--run", run, "--attacks", "loss", "--bootstrap", "0", "--no-progress", "--device", "cpu")


def attack(run, tmp):
    return ("attack", "--surrogate", run, "--images", "8", "--attacks", "fgsm", "--no-progress", "--device", "cpu",
            "--out", tmp / "attack-out", "--examples", "0")


CONFIGS = {
    "empty": ("", "is empty"),
    "truncated": ('{"kind": "train", "dataset": "dig', "not valid JSON"),
    "list": ("[1, 2, 3]", "must hold a JSON object"),
    "no model": (json.dumps({"dataset": "digits", "width": 1.0}), "field 'model' is missing"),
    "width text": (json.dumps({"dataset": "digits", "model": "mlp", "width": "wide"}), "field 'width'"),
    "binary": (b"\xff\xfe\x00garbage", "cannot be read"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
@pytest.mark.parametrize("command", ["audit", "attack", "train-resume", "compress-resume"])
def test_damaged_config(cli, run_copy, tmp_path, case, command):
    text, message = CONFIGS[case]
    path = run_copy / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    args = {"audit": audit(run_copy), "attack": attack(run_copy, tmp_path),
            "train-resume": (*TRAIN, "--out", run_copy), "compress-resume": (*COMPRESS, "--out", run_copy)}[command]
    if command.endswith("resume") and case in ("no model", "width text"):
        message = "different config"  # a well-formed config that is not this run's: named, not overwritten
    line = cli.fails(G, *args, match=message if command.endswith("resume") else (str(path), message))
    if command.endswith("resume") and message != "different config":
        assert "--overwrite" in line  # it is modelsafe's own folder: starting afresh is the fix
    assert not (tmp_path / "attack-out").exists()


WEIGHTS = {
    "truncated": lambda b: b[: len(b) // 2],
    "garbage": lambda b: b"\x00garbage" * 10,
    "empty": lambda b: b"",
    "header only": lambda b: b[:8],
}


@pytest.mark.parametrize("digest", [True, False])
@pytest.mark.parametrize("case", sorted(WEIGHTS))
@pytest.mark.parametrize("command", ["audit", "attack"])
def test_damaged_weights(cli, run_copy, tmp_path, case, command, digest):
    path = run_copy / "weights.safetensors"
    path.write_bytes(WEIGHTS[case](path.read_bytes()))
    if not digest:  # no recorded digest (e.g. a kill between writing the weights and recording it): parsed
        manifest = json.loads((run_copy / MARKER).read_text())
        manifest["files"]["weights.safetensors"] = None
        (run_copy / MARKER).write_text(json.dumps(manifest))
    args = audit(run_copy) if command == "audit" else attack(run_copy, tmp_path)
    cli.fails(G, *args, match=(str(path), "damaged" if digest else "not a safetensors file"))


@pytest.mark.parametrize("command", ["audit", "attack"])
def test_flipped_bytes_are_caught_by_the_manifest(cli, run_copy, tmp_path, command):
    path = run_copy / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte inside a tensor: still a valid safetensors file
    path.write_bytes(bytes(data))
    args = audit(run_copy) if command == "audit" else attack(run_copy, tmp_path)
    line = cli.fails("silently wrong", *args, match=(str(path), "SHA-256", "re-run"))
    assert "modelsafe.json" in line


def test_rerunning_train_repairs_damaged_weights(cli, run_copy):
    path = run_copy / "weights.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:100])
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0 and "resumed" in res.output, res.output
    assert path.read_bytes() == good
    cli.count(G)


CHECKPOINTS = {
    "garbage state.pt": ("state.pt", lambda b: b"not a zip file at all"),
    "truncated state.pt": ("state.pt", lambda b: b[: len(b) // 3]),
    "flipped state.pt": ("state.pt", lambda b: b[:-40] + bytes(x ^ 1 for x in b[-40:])),
    "garbage model": ("model.safetensors", lambda b: b"\x00" * 64),
    "flipped model": ("model.safetensors", lambda b: b[:-4] + bytes(x ^ 0x55 for x in b[-4:])),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
@pytest.mark.parametrize("command", ["train", "compress"])
def test_damaged_checkpoint(cli, run_copy, case, command):
    name, damage = CHECKPOINTS[case]
    path = run_copy / "checkpoint" / name
    path.write_bytes(damage(path.read_bytes()))
    if command == "compress":  # the compress command meets the same checkpoint (its config is written afresh)
        (run_copy / "config.json").unlink()
        args = (*COMPRESS, "--out", run_copy)
    else:
        args = (*TRAIN, "--epochs", "1", "--out", run_copy)
    cli.fails(G, *args, match=("checkpoint", "damaged", "delete"))


def test_damaged_checkpoint_falls_back_to_the_previous_one(cli, run_copy):
    import shutil

    shutil.copytree(run_copy / "checkpoint", run_copy / "checkpoint.old")
    (run_copy / "checkpoint" / "state.pt").write_bytes(b"garbage")
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0 and "resumed" in res.output, res.output
    cli.count(G)


SPLITS = {
    "nested lists": (lambda d: d["sets"].update(members=[[1, 2], [3]]), "flat list of integer indices"),
    "float indices": (lambda d: d["sets"].update(members=[float(i) + 0.5 for i in d["sets"]["members"]]),
                      "flat list of integer indices"),
    "bool index": (lambda d: d["sets"].update(members=[True, *d["sets"]["members"][1:]]), "flat list"),
    "missing set": (lambda d: d["sets"].pop("eval_members"), "eval_members"),
    "negative index": (lambda d: d["sets"].update(members=[-1, *d["sets"]["members"][1:]]), "outside"),
    "text count": (lambda d: d.update(num_train="1438"), "num_train"),
    "sets a list": (lambda d: d.update(sets=[]), "must be JSON objects"),
    "spec unknown key": (lambda d: d["spec"].update(bogus=1), "bogus"),
}


@pytest.mark.parametrize("case", sorted(SPLITS))
def test_damaged_split(cli, run_copy, case):
    path = run_copy / "split.json"
    data = json.loads(path.read_text())
    damage, message = SPLITS[case]
    damage(data)
    path.write_text(json.dumps(data))
    group = "silently wrong" if case == "float indices" else G
    cli.fails(group, *audit(run_copy), match=(str(path), message))


@pytest.mark.parametrize("text, message", [("", "is empty"), ("[]", "expected a JSON object"),
                                           ("{", "not valid JSON")])
def test_unparseable_split(cli, run_copy, text, message):
    (run_copy / "split.json").write_text(text)
    cli.fails(G, *audit(run_copy), match=("split", message))


@pytest.mark.parametrize("text, message", [("", "damaged"), ("[]", "not a modelsafe folder marker"),
                                           ('{"format": "modelsafe-folder", "version": 1, "files": {"/etc": null}}',
                                            "points outside")])
def test_damaged_marker(cli, run_copy, text, message):
    (run_copy / MARKER).write_text(text)
    before = cli.snapshot(run_copy)
    cli.fails(G, *TRAIN, "--out", run_copy, "--overwrite", match=message)
    cli.untouched(run_copy, before)


def test_missing_run_folder_and_files(cli, run_copy, tmp_path):
    cli.fails(G, *audit(tmp_path / "nope"), match="does not exist")
    (run_copy / "weights.safetensors").unlink()
    cli.fails(G, *audit(run_copy), match="does not exist")
    (run_copy / "split.json").unlink()
    cli.fails(G, *audit(run_copy), match="split file")
