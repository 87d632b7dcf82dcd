"""Run-folder ownership: --overwrite removes only what modelsafe wrote; foreign folders are refused; one writer
at a time; an interrupted start can be resumed; nothing is left behind by a refused command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modelsafe.storage.folder import OwnedFolder
from modelsafe.storage.lock import LOCK_NAME, FolderLock
from modelsafe.storage.manifest import MARKER

TRAIN = ("train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress", "--device", "cpu",
         "--split", "small", "--members", "200", "--validation", "100")
G = "overwrite/ownership"


def user_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("my notes")
    (path / "config.json").write_text('{"theirs": true}')  # another tool's config.json
    (path / "metrics.json").write_text('{"mine": 1}')
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return path


def test_overwrite_dot_leaves_every_user_file_untouched(cli, tmp_path, monkeypatch):
    folder = user_folder(tmp_path / "home")
    before = cli.snapshot(folder)
    monkeypatch.chdir(folder)
    line = cli.fails(G, *TRAIN, "--out", ".", "--overwrite", match="did not write")
    assert "--overwrite" not in line
    cli.untouched(folder, before)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "notes.txt", "sub"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_folder_refused_with_or_without_overwrite(cli, tmp_path, overwrite):
    folder = user_folder(tmp_path / "theirs")
    before = cli.snapshot(folder)
    cli.fails(G, *TRAIN, "--out", folder, *(["--overwrite"] if overwrite else []), match=(str(folder), "new folder"))
    cli.untouched(folder, before)


@pytest.mark.parametrize("command", [
    ["compress", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress"],
    ["compare", "--methods", "dense", "--dataset", "digits", "--epochs", "1", "--no-progress"],
    ["attack", "--surrogate", "timm:x", "--dataset", "digits", "--no-progress"],
    ["demo", "--dataset", "digits", "--epochs", "1", "--no-progress"],
])
def test_every_writer_refuses_a_foreign_folder(cli, tmp_path, monkeypatch, command):
    monkeypatch.setattr("modelsafe.workflows.attack.load_model_spec", lambda *a, **k: pytest.fail("work started"))
    folder = user_folder(tmp_path / "theirs")
    before = cli.snapshot(folder)
    cli.fails(G, *command, "--out", folder, match="did not write")
    cli.untouched(folder, before)


def test_audit_refuses_a_foreign_report_folder(cli, run_copy, tmp_path):
    folder = user_folder(tmp_path / "theirs")
    before = cli.snapshot(folder)
    cli.fails(G, "audit", "--run", run_copy, "--attacks", "loss", "--out", folder, "--no-progress",
              match="did not write")
    cli.untouched(folder, before)


def test_overwrite_removes_only_listed_files(cli, run_copy):
    (run_copy / "my-analysis.ipynb").write_text("keep me")
    (run_copy / "checkpoint" / "note.txt").write_text("inside an owned folder")
    res = cli(*TRAIN, "--epochs", "2", "--out", run_copy, "--overwrite")
    assert res.exit_code == 0, res.output
    cli.count(G)
    assert (run_copy / "my-analysis.ipynb").read_text() == "keep me"
    assert json.loads((run_copy / "config.json").read_text())["train"]["epochs"] == 2
    manifest = json.loads((run_copy / MARKER).read_text())
    assert "my-analysis.ipynb" not in manifest["files"] and len(manifest["files"]["weights.safetensors"]) == 64


@pytest.mark.parametrize("where", ["cwd", "parent", "home"])
def test_overwrite_never_clears_cwd_parent_or_home(cli, run_copy, monkeypatch, where):
    if where == "home":
        monkeypatch.setenv("HOME", str(run_copy))
        monkeypatch.chdir(run_copy.parent)
    else:
        monkeypatch.chdir(run_copy if where == "cwd" else run_copy / "checkpoint")
    before = cli.snapshot(run_copy)
    target = "." if where == "cwd" else ".." if where == "parent" else str(run_copy)
    cli.fails(G, *TRAIN, "--epochs", "2", "--out", target, "--overwrite", match="never clears")
    cli.untouched(run_copy, before)


def test_different_config_in_own_folder_names_the_difference(cli, run_copy):
    before = cli.snapshot(run_copy)
    cli.fails(G, *TRAIN, "--epochs", "3", "--out", run_copy, match="differs in: train")
    cli.untouched(run_copy, before)


def test_hostile_manifest_cannot_reach_outside(cli, run_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    manifest = json.loads((run_copy / MARKER).read_text())
    manifest["files"]["../victim.txt"] = None
    (run_copy / MARKER).write_text(json.dumps(manifest))
    cli.fails(G, *TRAIN, "--epochs", "2", "--out", run_copy, "--overwrite", match="points outside")
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("bad, message", [
    (["--model", "nosuch"], "unknown model 'nosuch'"), (["--width", "-1"], "width must be"),
    (["--width", "0"], "width must be"), (["--device", "tpu"], "device 'tpu'"),
    (["--epochs", "0"], "epochs must be"), (["--seed", "-3"], "--seed"),
])
def test_rejected_options_leave_no_folder(cli, tmp_path, bad, message):
    out = tmp_path / "run"
    cli.fails("silently wrong", *TRAIN, "--out", out, *bad, match=message)
    assert not out.exists()
    res = cli(*TRAIN, "--out", out)  # the corrected command is not blocked
    assert res.exit_code == 0, res.output


def test_out_is_a_file_or_cannot_be_created(cli, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    cli.fails("tracebacks/damaged files", *TRAIN, "--out", f, match="is a file")
    assert f.read_text() == "x"
    cli.fails("tracebacks/damaged files", *TRAIN, "--out", f / "sub", match="cannot create folder")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # running as root: permissions do not apply
            pytest.skip("permissions are not enforced for this user")
        cli.fails("tracebacks/damaged files", *TRAIN, "--out", locked / "run", match="cannot create folder")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------- two writers
def test_second_writer_gets_one_line(cli, run_copy):
    with FolderLock(run_copy):
        before = cli.snapshot(run_copy)
        line = cli.fails("two writers", *TRAIN, "--out", run_copy, match=("in use by process", str(os.getpid())))
        assert LOCK_NAME in line
        cli.untouched(run_copy, {k: v for k, v in before.items() if k != LOCK_NAME})
    assert not (run_copy / LOCK_NAME).exists()


def test_second_writer_in_another_process(cli, run_copy):
    code = ("import sys, time; from modelsafe.storage.lock import FolderLock; l = FolderLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_copy)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        cli.fails("two writers", *TRAIN, "--out", run_copy, match=f"process {proc.pid}")
        cli.fails("two writers", "compress", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--out",
                  run_copy, "--no-progress", match="in use by")
    finally:
        proc.kill()
        proc.wait()
    res = cli(*TRAIN, "--out", run_copy)  # the killed owner's lock is stale: taken over
    assert res.exit_code == 0 and "resumed" in res.output, res.output
    cli.count("two writers")


def test_stale_lock_with_dead_pid_is_taken_over(cli, run_copy):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_copy / LOCK_NAME).write_text(json.dumps({"pid": dead.pid}))
    res = cli(*TRAIN, "--out", run_copy)
    assert res.exit_code == 0 and "resumed" in res.output, res.output
    assert not (run_copy / LOCK_NAME).exists()
    cli.count("two writers")


def test_owned_folder_api_refuses_second_claim(tmp_path):
    first = OwnedFolder(tmp_path / "f", "attack").claim()
    with pytest.raises(ValueError, match="in use"):
        OwnedFolder(tmp_path / "f", "attack").claim()
    first.release()
    OwnedFolder(tmp_path / "f", "attack").claim().release()
    with pytest.raises(ValueError, match="modelsafe attack output"):
        OwnedFolder(tmp_path / "f", "audit").claim()


@pytest.mark.parametrize("kind, command", [
    ("run", ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress"]),
    ("run", ["compress", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress"]),
    ("compare", ["compare", "--methods", "dense", "--dataset", "digits", "--epochs", "1", "--members", "200",
                 "--no-progress"]),
    ("attack", ["attack", "--surrogate", "timm:x", "--dataset", "digits", "--no-progress"]),
    ("demo", ["demo", "--dataset", "digits", "--epochs", "1", "--no-progress"]),
])
def test_every_writer_waits_for_the_lock(cli, tmp_path, monkeypatch, kind, command):
    monkeypatch.setattr("modelsafe.workflows.attack.load_model_spec", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr("modelsafe.workflows.compare.compress", lambda *a, **k: pytest.fail("work started"))
    folder = tmp_path / "busy"
    holder = OwnedFolder(folder, kind).claim()  # another writer, mid-way
    try:
        before = cli.snapshot(folder)
        cli.fails("two writers", *command, "--out", folder, match=("in use by process", "wait for it"))
        cli.untouched(folder, before)
    finally:
        holder.release()


def test_audit_waits_for_the_lock(cli, run_copy):
    holder = OwnedFolder(run_copy / "audit", "audit").claim()
    try:
        cli.fails("two writers", "audit", "--run", run_copy, "--attacks", "loss", "--no-progress",
                  match="in use by process")
    finally:
        holder.release()
