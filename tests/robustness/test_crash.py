"""Kills between writes, simulated by leaving the partial states a kill can leave: every one resumes."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from modelsafe.storage.lock import LOCK_NAME
from modelsafe.storage.manifest import MARKER

TRAIN = ("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress", "--device", "cpu",
         "--split", "small", "--members", "200", "--validation", "100")
G = "silently wrong"


def keep_only(run, names):
    for p in list(run.iterdir()):
        if p.name not in names:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


STATES = {
    "marker only (killed before the split)": {MARKER},
    "marker and lock of a dead process": {MARKER, LOCK_NAME},
    "split without config (killed between them)": {MARKER, "split.json"},
    "config without split (the old write order)": {MARKER, "config.json"},
    "checkpoint but no weights (killed in training)": {MARKER, "config.json", "split.json", "checkpoint"},
    "weights but no metrics (killed at the end)": {MARKER, "config.json", "split.json", "checkpoint",
                                                   "weights.safetensors"},
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_partial_run_folder_resumes(cli, run_copy, state):
    keep_only(run_copy, STATES[state])
    if LOCK_NAME in STATES[state]:
        (run_copy / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345}))  # beyond pid_max: never alive
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0, res.output
    for name in ("config.json", "split.json", "metrics.json", "weights.safetensors"):
        assert (run_copy / name).is_file(), name
    assert not (run_copy / LOCK_NAME).exists()
    cli.count(G)


def test_checkpoint_swap_interrupted(cli, run_copy):
    """Killed between moving checkpoint/ aside and moving the new one in: checkpoint.old is used."""
    os.replace(run_copy / "checkpoint", run_copy / "checkpoint.old")
    (run_copy / "checkpoint.tmp").mkdir()
    (run_copy / "checkpoint.tmp" / "state.pt").write_bytes(b"half")
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0 and "resumed" in res.output, res.output
    assert not (run_copy / "checkpoint.tmp").exists()
    cli.count(G)


def test_tmp_leftovers_are_cleaned(cli, run_copy):
    leftovers = [run_copy / ".metrics.json.abcd1234.tmp", run_copy / "checkpoint" / ".state.pt.zz99yy88.tmp",
                 run_copy / ".weights.safetensors.q1w2e3r4.tmp"]
    for p in leftovers:
        p.write_bytes(b"partial")
    (run_copy / "user.tmp").write_text("not one of modelsafe's temporary files")
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in leftovers)
    assert (run_copy / "user.tmp").read_text().startswith("not one")
    cli.count(G)


def test_audit_replaces_the_previous_report_whole(cli, run_copy):
    base = ("audit", "--run", run_copy, "--bootstrap", "0", "--no-progress", "--device", "cpu")
    res = cli(*base, "--attacks", "loss,entropy")
    assert res.exit_code == 0, res.output
    scores = run_copy / "audit" / "scores"
    assert any("entropy" in p.name for p in scores.iterdir())
    (run_copy / "audit" / ".report.md.abcdefgh.tmp").write_text("partial")
    res = cli(*base, "--attacks", "loss")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in scores.iterdir())
    assert names and not any("entropy" in n for n in names), names
    assert "entropy" not in (run_copy / "audit" / "report.md").read_text()
    assert not (run_copy / "audit" / ".report.md.abcdefgh.tmp").exists()
    cli.count(G)


def test_interrupted_audit_is_redone_cleanly(cli, run_copy, tmp_path):
    out = tmp_path / "report"
    base = ("audit", "--run", run_copy, "--bootstrap", "0", "--no-progress", "--device", "cpu", "--out", out)
    assert cli(*base, "--attacks", "loss,confidence").exit_code == 0
    (out / "report.md").unlink()  # killed after the scores, before the report
    (out / "scores" / "stale.json").write_text("{}")  # nothing of an earlier attempt may survive
    res = cli(*base, "--attacks", "loss")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "modelsafe.json", "report.md", "roc.png", "roc_log.png", "scores"]
    assert not (out / "scores" / "stale.json").exists()
    cli.count(G)
