"""compare(): every method on one membership split per seed, each result audited afresh; resumable.

One module-wide comparison (four methods, two seeds, tiny MLP on blobs) feeds most tests; spies record what
every training run and every attacker saw, so data separation is checked on the real run."""

import csv
import hashlib
import json
import math
import shutil
import statistics

import pytest
import torch

import modelsafe.workflows.compare as compare_module
from modelsafe.compress import CompressOptions
from modelsafe.compress.methods import compress as real_compress
from modelsafe.data import MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.privacy import sharded
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.learned import LearnedAttack
from modelsafe.storage.io import read_json, write_json
from modelsafe.training import TrainConfig
from modelsafe.workflows.compare import audit_figures as real_audit
from modelsafe.workflows.compare import compare_run as compare

from ..conftest import make_blobs

METHODS = ["rigl", "bmia-safecompress", "dp-sgd-sparse", "label-smoothing"]
SEEDS = (0, 1)
DENSITY = 0.2
SPEC = SplitSpec(members=240, validation=60, nonmember_source="train", reference=120, eval_nonmembers=120)
OPTIONS = CompressOptions(
    density=DENSITY, train=TrainConfig(epochs=2, batch_size=48, lr=0.05), update_interval=3, end=0.9,
    extra={"safecompress": {"refresh_steps": 5, "attacker_batch_size": 16, "probe_steps": 2,
                            "validation_samples": 60, "minmax_start": 0.5},
           "dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}})
AUDIT_OPTIONS = {"blackbox-nn": {"epochs": 2, "batch_size": 128}, "whitebox": {"epochs": 2, "batch_size": 128}}


def digests(x: torch.Tensor) -> set[bytes]:
    return {hashlib.sha1(row.numpy().tobytes()).digest() for row in x.float().contiguous()}


def run_compare(data, out, methods=METHODS, seeds=SEEDS, options=OPTIONS, attack_options=AUDIT_OPTIONS, **kw):
    return compare(methods, data, "mlp", options=options, split=SPEC, seeds=seeds, width=0.25, out=out,
                   device="cpu", attack_options=attack_options, progress=False, **kw)


@pytest.fixture(scope="module")
def data():
    return make_blobs(n_train=700, n_test=100, num_classes=4, size=8, seed=1)


@pytest.fixture(scope="module")
def compared(data, tmp_path_factory):
    """(out folder, compare's return value, {(method, seed): what that run's training and attackers saw})."""
    out = tmp_path_factory.mktemp("compare")
    seen: dict[tuple, dict] = {}
    current: list = []
    original_compress = compare_module.compress
    original_fit, original_score_share = MembershipAttack.fit, sharded._score_share
    original_partial, original_score_model = LearnedAttack.partial_fit, LearnedAttack.score_model

    def record(key, *sets):
        entry = seen[current[-1]].setdefault(key, [])
        entry.append(tuple(digests(s.x) for s in sets))

    def spy_compress(method, model, train_data, options, *, seed, **kw):
        current.append((method, seed))
        seen[(method, seed)] = {"train": digests(train_data.x)}
        return original_compress(method, model, train_data, options, seed=seed, **kw)

    def spy_fit(self, target, members, nonmembers):
        record("audit_fit", members, nonmembers)
        return original_fit(self, target, members, nonmembers)

    def spy_score_share(attack, target, members, nonmembers, rank, world):  # the audit's evaluation
        record("audit_eval", members, nonmembers)
        return original_score_share(attack, target, members, nonmembers, rank, world)

    def spy_partial(self, target, members, nonmembers, steps=1):
        record("safety", members, nonmembers)
        return original_partial(self, target, members, nonmembers, steps)

    def spy_score_model(self, target, members, nonmembers):
        record("safety", members, nonmembers)
        return original_score_model(self, target, members, nonmembers)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare_module, "compress", spy_compress)
        mp.setattr(MembershipAttack, "fit", spy_fit)
        mp.setattr(sharded, "_score_share", spy_score_share)
        mp.setattr(LearnedAttack, "partial_fit", spy_partial)
        mp.setattr(LearnedAttack, "score_model", spy_score_model)
        result = run_compare(data, out)
    return out, result, seen


def test_writes_every_output_and_one_run_folder_per_method_and_seed(compared):
    out, result, _ = compared
    for name in ("table.md", "results.csv", "results.json", "tradeoff.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method in METHODS:
        for seed in SEEDS:
            run = out / method / f"seed{seed}"
            assert (run / "result.json").is_file() and (run / "model.sparse.safetensors").is_file()
            assert read_json(run / "result.json")["row"]["method"] == method
    assert (out / "bmia-safecompress" / "seed0" / "train" / "selection.json").is_file()
    assert [(r["method"], r["seed"]) for r in result["rows"]] == [(m, s) for s in SEEDS for m in METHODS]
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], int(r["seed"])) for r in rows] == [(m, s) for s in SEEDS for m in METHODS]
    saved = read_json(out / "results.json")
    assert saved["seeds"] == list(SEEDS) and saved["model"] == "mlp" and saved["dataset"] == "blobs"
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    table = (out / "table.md").read_text()
    assert all(f"| {m} |" in table for m in METHODS) and "bmia_advantage" in table and "±" in table
    # one membership split per seed, shared by every method of that seed
    splits = [MembershipSplit.load(out / f"split-seed{s}.json") for s in SEEDS]
    assert not torch.equal(splits[0]["members"].sort().values, splits[1]["members"].sort().values)


def test_summary_has_mean_and_std_per_method(compared):
    _, result, _ = compared
    summary = result["summary"]
    assert [e["method"] for e in summary] == METHODS
    for entry in summary:
        mine = [r for r in result["rows"] if r["method"] == entry["method"]]
        assert entry["seeds"] == len(SEEDS) == len(mine)
        for key in ("task_accuracy", "bmia_advantage", "wmia_advantage", "bmia_auc", "density", "export_bytes"):
            values = [r[key] for r in mine]
            assert entry[key] == pytest.approx(statistics.fmean(values)), key
            assert entry[key + "_std"] == pytest.approx(statistics.stdev(values)), key
        assert 0.0 <= entry["task_accuracy"] <= 1.0 and -1.0 <= entry["bmia_advantage"] <= 1.0


def test_sparse_methods_hold_the_target_density(compared):
    out, result, _ = compared
    for row in result["rows"]:
        assert row["density"] == pytest.approx(DENSITY, abs=2e-3), row["method"]
        assert row["export_bytes"] < row["dense_bytes"] / 2, row["method"]
        info = read_json(out / row["method"] / f"seed{row['seed']}" / "result.json")["info"]
        assert info["params"]["nonzero"] < 0.5 * info["params"]["total"]


def test_dp_rows_report_a_finite_epsilon(compared):
    out, result, _ = compared
    for row in result["rows"]:
        if row["method"] == "dp-sgd-sparse":
            assert isinstance(row["epsilon"], float) and math.isfinite(row["epsilon"]) and row["epsilon"] > 0
        else:
            assert row["epsilon"] is None
    by_method = {e["method"]: e for e in result["summary"]}
    assert math.isfinite(by_method["dp-sgd-sparse"]["epsilon"])
    assert "epsilon" not in by_method["rigl"]
    assert f"{by_method['dp-sgd-sparse']['epsilon']:.2f}" in (out / "table.md").read_text()


def test_audit_data_is_separated_from_attacker_and_training_data(data, compared):
    out, _, seen = compared
    pool = data.pool()
    assert set(seen) == {(m, s) for m in METHODS for s in SEEDS}
    for (method, seed), record in seen.items():
        split = MembershipSplit.load(out / f"split-seed{seed}.json")
        sets = {name: digests(pool.x[split[name]]) for name in
                ("members", "attack_known_members", "attack_reference", "eval_members", "eval_nonmembers")}
        train = record["train"]
        assert train == sets["members"], (method, seed)  # trained on exactly the split's members
        assert len(record["audit_fit"]) == len(record["audit_eval"]) == 2  # blackbox-nn and whitebox
        for known, reference in record["audit_fit"]:
            assert known == sets["attack_known_members"] and reference == sets["attack_reference"]
        for members, nonmembers in record["audit_eval"]:
            assert members == sets["eval_members"] and nonmembers == sets["eval_nonmembers"]
        attacker_known = sets["attack_known_members"] | sets["attack_reference"]
        evaluation = sets["eval_members"] | sets["eval_nonmembers"]
        assert not attacker_known & evaluation
        assert sets["eval_members"] <= train and not sets["eval_nonmembers"] & train
        assert sets["attack_known_members"] <= train and not sets["attack_reference"] & train
        safety = set().union(*(s for pair in record.get("safety", []) for s in pair))
        if method == "bmia-safecompress":  # SafeCompress's own attackers see attacker-known data only
            assert safety and safety <= attacker_known and not safety & evaluation
        else:
            assert not safety


def must_not_run(*args, **kwargs):
    raise AssertionError("training or auditing started when nothing should run")


def test_second_call_reuses_result_json(data, compared, tmp_path, monkeypatch):
    source, first, _ = compared
    out = tmp_path / "again"
    shutil.copytree(source, out)
    monkeypatch.setattr(compare_module, "compress", must_not_run)
    monkeypatch.setattr(compare_module, "audit_figures", must_not_run)
    again = run_compare(data, out)
    assert again["rows"] == json.loads(json.dumps(first["rows"]))
    # a missing result.json is the only run redone
    (out / "rigl" / "seed1" / "result.json").unlink()
    calls = []

    def counting(method, *args, seed, **kwargs):
        calls.append((method, seed))
        return real_compress(method, *args, seed=seed, **kwargs)

    monkeypatch.setattr(compare_module, "compress", counting)
    monkeypatch.setattr(compare_module, "audit_figures", real_audit)
    third = run_compare(data, out)
    assert calls == [("rigl", 1)]
    assert (out / "rigl" / "seed1" / "result.json").is_file()
    assert len(third["rows"]) == len(first["rows"])


def test_a_finished_run_with_other_settings_is_refused(data, compared, tmp_path):
    source, _, _ = compared
    out = tmp_path / "changed"
    shutil.copytree(source, out)
    longer = CompressOptions(**{**OPTIONS.to_dict(), "train": TrainConfig(epochs=3, batch_size=48, lr=0.05)})
    with pytest.raises(ModelsafeError, match=r"other settings \(options\.train\.epochs: 2 -> 3\)"):
        run_compare(data, out, options=longer)


def test_an_option_only_other_methods_read_does_not_invalidate_a_run(data, compared, tmp_path, monkeypatch):
    source, first, _ = compared
    out = tmp_path / "other-lambda"
    shutil.copytree(source, out)
    extra = {**OPTIONS.extra, "safecompress": {**OPTIONS.extra["safecompress"], "minmax_lambda": 0.5}}
    changed = CompressOptions(**{**OPTIONS.to_dict(), "train": OPTIONS.train, "extra": extra})
    monkeypatch.setattr(compare_module, "compress", must_not_run)
    monkeypatch.setattr(compare_module, "audit_figures", must_not_run)
    others = ["rigl", "dp-sgd-sparse", "label-smoothing"]
    again = run_compare(data, out, methods=others, options=changed)
    assert again["rows"] == json.loads(json.dumps([r for r in first["rows"] if r["method"] in others]))
    with pytest.raises(ModelsafeError, match=r"options\.extra\.safecompress\.minmax_lambda: None -> 0\.5"):
        run_compare(data, out, methods=["bmia-safecompress"], options=changed)


def test_missing_audit_attacks_run_on_the_saved_weights(data, compared, tmp_path, monkeypatch):
    source, first, _ = compared
    out = tmp_path / "more-audits"
    shutil.copytree(source, out)
    monkeypatch.setattr(compare_module, "compress", must_not_run)
    again = run_compare(data, out, methods=["rigl"], seeds=(0,), audit_attacks=["blackbox-nn", "whitebox", "loss"])
    row = again["rows"][0]
    old = next(r for r in first["rows"] if r["method"] == "rigl" and r["seed"] == 0)
    assert row["bmia_advantage"] == old["bmia_advantage"]  # kept, not recomputed
    assert 0.0 <= row["loss_auc"] <= 1.0 and -1.0 <= row["loss_advantage"] <= 1.0
    assert set(read_json(out / "rigl" / "seed0" / "result.json")["audit"]) == {"blackbox-nn", "whitebox", "loss"}
    table = (out / "table.md").read_text()
    assert "loss_advantage" in table and "bmia_advantage" in table


def test_audits_made_with_other_options_are_rerun_and_repeats_are_averaged(data, compared, tmp_path,
                                                                            monkeypatch):
    source, _, _ = compared
    out = tmp_path / "re-audit"
    shutil.copytree(source, out)
    monkeypatch.setattr(compare_module, "compress", must_not_run)
    stronger = {**AUDIT_OPTIONS, "blackbox-nn": {"epochs": 3, "batch_size": 128, "repeats": 2}}
    again = run_compare(data, out, methods=["rigl"], seeds=(0,), attack_options=stronger)
    saved = read_json(out / "rigl" / "seed0" / "result.json")["audit"]
    old = read_json(source / "rigl" / "seed0" / "result.json")["audit"]
    assert saved["whitebox"] == old["whitebox"]  # same options: kept
    bmia = saved["blackbox-nn"]
    assert bmia["options"] == stronger["blackbox-nn"] and len(bmia["fits"]) == 2
    assert bmia["fits"][0] != bmia["fits"][1]  # two attackers with different seeds
    for key in ("accuracy", "advantage", "auc"):
        assert bmia[key] == pytest.approx(statistics.fmean(f[key] for f in bmia["fits"]))
    assert again["rows"][0]["bmia_advantage"] == pytest.approx(bmia["advantage"])
    # the same options again: nothing is recomputed
    monkeypatch.setattr(compare_module, "audit_figures", must_not_run)
    assert run_compare(data, out, methods=["rigl"], seeds=(0,), attack_options=stronger)["rows"] == again["rows"]


@pytest.mark.parametrize("density", [0.0, 1.5])
def test_bad_options_fail_when_they_are_made(density):
    with pytest.raises(ModelsafeError, match="density"):
        CompressOptions(density=density)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"methods": ["rigl", "prune"]}, UnknownNameError,
     r"unknown compression method 'prune'; valid names: .*bmia-safecompress.*dp-sgd-sparse.*rigl"),
    ({"methods": []}, ModelsafeError, "at least one method"),
    ({"seeds": ()}, ModelsafeError, "at least one seed"),
    ({"audit_attacks": ["blackbox-nn", "xmia"]}, UnknownNameError,
     r"unknown membership attack 'xmia'.*whitebox"),
    ({"attack_options": {"blackbox-nn": {"repeats": 0}}}, ModelsafeError,
     "audit attack 'blackbox-nn': repeats must be a positive integer, got 0"),
    ({"attack_options": {"whitebox": {"repeats": 1.5}}}, ModelsafeError, "repeats must be a positive integer"),
    ({"attack_options": {"loss": {}}}, ModelsafeError,
     r"attack options given for loss, which the audit does not run \(audit attacks: blackbox-nn, whitebox\)"),
])
def test_bad_input_fails_before_any_training(data, tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.setattr(compare_module, "compress", must_not_run)
    monkeypatch.setattr(compare_module, "init_model", must_not_run)
    with pytest.raises(error, match=match):
        run_compare(data, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_non_finite_numbers_are_written_as_null(tmp_path):
    """ε is inf for DP-SGD without noise; results.json/result.json must still be written (as null)."""
    path = write_json(tmp_path / "r.json", {"epsilon": float("inf"), "auc": [0.5, float("nan")],
                                            "t": torch.tensor([1.0, float("-inf")])})
    assert read_json(path) == {"epsilon": None, "auc": [0.5, None], "t": [1.0, None]}


def test_compare_audits_with_references_trained_by_each_methods_recipe(data, tmp_path, monkeypatch):
    import modelsafe.workflows.recipe as recipe_module

    methods = []
    real = recipe_module.compress

    def spy(method, model, train_data, options, **kw):
        methods.append((method, options))
        return real(method, model, train_data, options, **kw)

    monkeypatch.setattr(recipe_module, "compress", spy)
    spec = SplitSpec(members=240, validation=60, nonmember_source="train", reference=120, eval_nonmembers=120,
                     population=160)
    result = compare(["bmia-safecompress", "rigl"], data, "mlp", options=OPTIONS, split=spec, seeds=(0,), width=0.25,
                     out=tmp_path, device="cpu", audit_attacks=["lira"], attack_options={"lira": {"num_models": 2}},
                     progress=False)
    assert [m for m, _ in methods] == ["bmia-safecompress"] * 2 + ["rigl"] * 2
    assert all(options == OPTIONS for _, options in methods)
    for method in ("bmia-safecompress", "rigl"):
        assert len(list((tmp_path / method / "seed0" / "references").glob("*/ref-*.safetensors"))) == 2
    assert all(math.isfinite(row["lira_auc"]) for row in result["rows"])
