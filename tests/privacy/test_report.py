"""Reports on disk, audit() on a real split, and the `modelsafe audit --run` command."""

import json
from dataclasses import replace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from modelsafe.commands.audit import audit as audit_command
from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.errors import ModelsafeError
from modelsafe.privacy import MIAReport, audit, create_mia
from modelsafe.privacy.references import FitTrainer
from modelsafe.report import write_audit_report
from modelsafe.training import TrainConfig, fit
from modelsafe.workflows import init_model, train_run

SPEC = SplitSpec(members=400, validation=100, population=600, reference=150, eval_nonmembers=150)
TRAIN = TrainConfig(epochs=15, lr=0.05, batch_size=64, weight_decay=0.0)


def test_report_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    r = MIAReport.from_scores("loss (per-class)", rng.normal(1, 1, 50), rng.normal(0, 1, 60), threshold=float("inf"),
                              n_bootstrap=50, sample_ids=np.arange(110), details={"k": 1})
    json_path, npz_path = r.save(tmp_path)
    assert json_path.name == "loss-per-class.json" and npz_path.name == "loss-per-class.npz"
    summary = json.loads(json_path.read_text())
    assert summary["threshold"] == "inf" and summary["tpr@0.1%"] == r.tpr_at_fpr[0.001]
    back = MIAReport.load(json_path)
    np.testing.assert_array_equal(back.scores, r.scores)
    np.testing.assert_array_equal(back.sample_ids, r.sample_ids)
    assert back.summary() == r.summary()
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ModelsafeError, match="does not exist"):
        MIAReport.load(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def digits_target():
    data = load_dataset("digits")
    split = MembershipSplit.create(data, SPEC, seed=0)
    model = init_model("mlp", data, 0.5, 0)
    fit(model, split.data(data, "members"), TRAIN, progress=False, device="cpu")
    return model, data, split


def test_audit_runs_every_family_and_writes_a_report(digits_target, tmp_path):
    model, data, split = digits_target
    attacks = ["correctness", "loss", "blackbox-nn", "shadow", "lira", "rmia",
               create_mia("loss", per_class=True)]
    reports = audit(model, data, split, attacks, options={"blackbox-nn": {"epochs": 3}, "shadow": {"epochs": 3}},
                    model_factory=lambda s: init_model("mlp", data, 0.5, s), trainer=FitTrainer(TRAIN, device="cpu"),
                    num_reference_models=2, n_bootstrap=20, out_dir=tmp_path, device="cpu", progress=False)
    assert list(reports) == ["correctness", "loss", "blackbox-nn", "shadow", "lira", "rmia", "loss (per-class)"]
    ids = np.concatenate([split["eval_members"].numpy(), split["eval_nonmembers"].numpy()])
    for r in reports.values():
        assert r.n_members == 200 and r.n_nonmembers == 150
        np.testing.assert_array_equal(r.sample_ids, ids)
        assert 0.0 <= r.auc <= 1.0 and r.seconds is not None
    assert reports["lira"].details["num_models"] == 2
    assert reports["lira"].details["reference_seconds"] > 0
    path = write_audit_report(reports, tmp_path, context={"task accuracy": 0.9})
    text = path.read_text()
    assert "| loss (per-class) |" in text and "## rmia" in text and "TPR at 0.1% FPR" in text
    assert len(list((tmp_path / "references").glob("*/ref-1.safetensors"))) == 1
    for name in ("roc.png", "roc_log.png", "scores/lira.npz", "scores/loss-per-class.json"):
        assert (tmp_path / name).stat().st_size > 0
    # a second audit reuses the cached reference models
    again = audit(model, data, split, ["lira"], model_factory=lambda s: init_model("mlp", data, 0.5, s),
                  trainer=FitTrainer(TRAIN, device="cpu"), num_reference_models=2, n_bootstrap=0, out_dir=tmp_path,
                  device="cpu", progress=False)
    assert again["lira"].details["reference_seconds"] is None
    np.testing.assert_allclose(again["lira"].scores, reports["lira"].scores)


def test_audit_errors(digits_target):
    model, data, split = digits_target
    with pytest.raises(ModelsafeError, match="model_factory"):
        audit(model, data, split, ["lira"], progress=False)
    with pytest.raises(ModelsafeError, match="not run: whitebox"):
        audit(model, data, split, ["loss"], options={"whitebox": {}}, progress=False)
    no_population = MembershipSplit.create(data, SplitSpec(members=400, validation=100), seed=0)
    with pytest.raises(ModelsafeError, match="population"):
        audit(model, data, no_population, ["rmia"], model_factory=lambda s: init_model("mlp", data, 0.5, s),
              progress=False)


def test_audit_command_on_a_run_folder(tmp_path):
    run = tmp_path / "run"
    train_run("digits", "mlp", out=run, split=SPEC, train=TrainConfig(epochs=3), width=0.5, seed=0, device="cpu",
                 progress=False)
    app = typer.Typer()
    app.command()(audit_command)
    result = CliRunner().invoke(app, ["--run", str(run), "--attacks", "loss,entropy,rmia", "--per-class",
                                      "--reference-models", "1", "--bootstrap", "10", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "loss (per-class)" in result.output and "report:" in result.output
    report = (run / "audit" / "report.md").read_text()
    assert "task accuracy (test)" in report and "## rmia" in report
    bad = CliRunner().invoke(app, ["--run", str(run), "--attacks", "nope", "--no-progress"])
    assert bad.exit_code != 0 and "unknown membership attack 'nope'" in str(bad.exception)


def test_audit_trains_online_references_once_and_reuses_them(digits_target, tmp_path):
    model, data, split = digits_target
    trained = []

    def trainer(net, samples, seed):
        trained.append(seed)
        FitTrainer(TRAIN, device="cpu")(net, samples, seed)

    kwargs = dict(options={"lira-online": {"num_models": 2}, "rmia-online": {"num_models": 2}},
                  model_factory=lambda s: init_model("mlp", data, 0.5, s), trainer=trainer, n_bootstrap=0,
                  out_dir=tmp_path, device="cpu", progress=False)
    reports = audit(model, data, split, ["lira-online", "rmia-online"], **kwargs)
    first = reports["lira-online"]
    assert len(trained) == 2 and reports["rmia-online"].details["num_models"] == 2  # one set of 2, shared
    assert len(list((tmp_path / "references").glob("*/ref-1.safetensors"))) == 1
    second = audit(model, data, split, ["lira-online", "rmia-online"], **kwargs)["lira-online"]
    assert len(trained) == 2  # the second audit trained nothing
    np.testing.assert_array_equal(first.scores, second.scores)
    assert first.details["num_models"] == 2 and first.auc > 0.5


def test_reference_store_is_shared_by_key_and_resumes_after_a_kill(digits_target, tmp_path):
    model, data, split = digits_target
    store = tmp_path / "store"
    calls = []

    def trainer(net, samples, seed):
        if len(calls) == 1 and not killed:
            raise KeyboardInterrupt  # the run dies while training the second model
        calls.append(seed)
        FitTrainer(TRAIN, device="cpu")(net, samples, seed)

    kwargs = dict(model_factory=lambda s: init_model("mlp", data, 0.5, s), trainer=trainer, num_reference_models=3,
                  n_bootstrap=0, reference_store=store, device="cpu", progress=False)
    killed = False
    with pytest.raises(KeyboardInterrupt):
        audit(model, data, split, ["lira"], out_dir=tmp_path / "a", **kwargs)
    assert len(list(store.glob("*/ref-*.safetensors"))) == 1  # the finished model was kept
    killed = True
    first = audit(model, data, split, ["lira"], out_dir=tmp_path / "b", **kwargs)["lira"]
    assert len(calls) == 3  # model 0 reused: only models 1 and 2 were trained after the restart
    again = audit(model, data, split, ["lira"], out_dir=tmp_path / "c", **kwargs)["lira"]  # another audit folder
    assert len(calls) == 3 and np.array_equal(first.scores, again.scores)
    clean = audit(model, data, split, ["lira"], out_dir=tmp_path / "d",
                  **{**kwargs, "trainer": FitTrainer(TRAIN, device="cpu"), "reference_store": tmp_path / "other"})["lira"]
    np.testing.assert_allclose(first.scores, clean.scores)  # resuming changes nothing


def test_a_store_written_for_another_recipe_is_kept_and_not_reused(digits_target, tmp_path):
    model, data, split = digits_target
    store = tmp_path / "store"
    kwargs = dict(model_factory=lambda s: init_model("mlp", data, 0.5, s), num_reference_models=2, n_bootstrap=0,
                  reference_store=store, device="cpu", progress=False)
    audit(model, data, split, ["lira"], trainer=FitTrainer(TRAIN, device="cpu"), **kwargs)
    before = {p: p.read_bytes() for p in store.glob("*/*")}
    other = FitTrainer(replace(TRAIN, lr=TRAIN.lr / 2), device="cpu")
    audit(model, data, split, ["lira"], trainer=other, **kwargs)
    slots = sorted(p.name for p in store.iterdir())
    assert len(slots) == 2  # a slot per recipe
    assert all(p.read_bytes() == data_ for p, data_ in before.items())  # the first recipe's models are untouched
