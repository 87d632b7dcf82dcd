"""``modelsafe compress`` and ``modelsafe compare`` with SafeCompress, through the real app on the offline
``digits`` dataset, and their bad-input paths (exit status 2 and one clear line, before any training)."""

import json

import pytest
from typer.testing import CliRunner

from modelsafe.cli import app

runner = CliRunner()
TINY = ["--dataset", "digits", "--model", "mlp", "--width", "0.5", "--density", "0.1", "--epochs", "2",
        "--batch-size", "32", "--lr", "0.1", "--no-progress", "--device", "cpu"]


def test_compress_with_bmia_safecompress(tmp_path):
    out = tmp_path / "run"
    # 20 steps, one mask update (the CLI keeps SafeCompress's default 100 attacker steps per selection)
    res = runner.invoke(app, ["compress", "--method", "bmia-safecompress", *TINY, "--update-interval", "10",
                              "--option", "safecompress.refresh_steps=7", "--split", "small", "--members", "300", "--validation", "100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "bmia-safecompress: test accuracy" in res.output and "sparse bytes" in res.output
    for name in ("config.json", "split.json", "metrics.json", "weights.safetensors", "weights.sparse.safetensors",
                 "selection.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "bmia-safecompress" and metrics["density"] == pytest.approx(0.1, abs=1e-3)
    log = json.loads((out / "selection.json").read_text())["log"]
    assert metrics["selections"] == len(log) >= 1 and metrics["config"]["tests"] == ["bmia"]
    assert metrics["config"]["refresh_steps"] == 7
    assert metrics["export"]["ratio"] > 3
    assert json.loads((out / "config.json").read_text())["method"] == "bmia-safecompress"


def test_compare_rigl_and_bmia_safecompress(tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", "--methods", "rigl, bmia-safecompress", *TINY, "--update-interval", "5",
                              "--seeds", "0",
                              "--members", "200", "--option", "safecompress.refresh_steps=5",
                              "--option", "safecompress.probe_steps=1", "--audit", "loss,blackbox-nn",
                              "--audit-epochs", "2", "--audit-repeats", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| rigl |" in res.output and "| bmia-safecompress |" in res.output and "table.md" in res.output
    for name in ("table.md", "results.csv", "results.json", "tradeoff.png", "split-seed0.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert [e["method"] for e in summary] == ["rigl", "bmia-safecompress"]
    assert all(e["density"] == pytest.approx(0.1, abs=1e-3) for e in summary)
    result = json.loads((out / "bmia-safecompress" / "seed0" / "result.json").read_text())
    assert result["info"]["config"]["refresh_steps"] == 5 and result["info"]["config"]["probe_steps"] == 1
    assert set(result["audit"]) == {"loss", "blackbox-nn"}
    assert result["audit"]["blackbox-nn"]["options"] == {"epochs": 2, "repeats": 2}
    assert len(result["audit"]["blackbox-nn"]["fits"]) == 2 and "fits" not in result["audit"]["loss"]
    assert "bmia_advantage" in (out / "table.md").read_text()


def must_not_run(*args, **kwargs):
    raise AssertionError("training started despite bad input")


@pytest.mark.parametrize("args, message", [
    (["compress", "--method", "prune"], "unknown compression method 'prune'; valid names: "),
    (["compress", "--density", "0"], "density must lie in (0, 1], got 0.0"),
    (["compress", "--density", "1.5"], "density must lie in (0, 1], got 1.5"),
    (["compare", "--methods", "rigl,prune"], "unknown compression method 'prune'; valid names: "),
    (["compare", "--methods", "rigl", "--density", "0"], "density must lie in (0, 1], got 0.0"),
    (["compare", "--methods", "rigl", "--density", "1.5"], "density must lie in (0, 1], got 1.5"),
    (["compare", "--methods", "rigl", "--audit", "xmia"], "unknown membership attack 'xmia'"),
    (["compare", "--methods", "rigl", "--audit-repeats", "0"], "--audit-repeats must be >= 1, got 0"),
    (["compare", "--methods", "rigl", "--audit", "lira-online", "--reference-models", "3"],
     "lira-online: num_models must be an even integer >= 2"),
    (["compare", "--methods", "rigl", "--audit", "lira", "--reference-models", "0"],
     "--reference-models must be >= 1, got 0"),
    (["compress", "--method", "bmia-safecompress", "--option", "safecompress.probe_step=3"], "probe_step"),
])
def test_bad_input_exits_2_before_training(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr("modelsafe.workflows.compress.run_method", must_not_run)
    monkeypatch.setattr("modelsafe.workflows.compare.compress", must_not_run)
    out = tmp_path / "out"
    res = runner.invoke(app, [*args, "--dataset", "digits", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert message in res.output
    if "unknown compression method" in message:
        assert "bmia-safecompress" in res.output and "rigl" in res.output
    assert not out.exists()  # nothing written: a corrected command can reuse the same --out
