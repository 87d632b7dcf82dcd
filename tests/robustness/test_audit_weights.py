"""``modelsafe audit --weights``: a model trained elsewhere, its member indices in a file; bad input fails in one
line before any attack is fitted."""

import json

import pytest

from modelsafe.data import SplitSpec
from modelsafe.training import TrainConfig
from modelsafe.workflows import train_run

SPEC = SplitSpec(members=300, validation=100, population=300, reference=100, eval_nonmembers=100)
FAST = ("--attacks", "loss,entropy", "--bootstrap", "0", "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP trained outside any audit; its weights file and its member indices as a text file."""
    root = tmp_path_factory.mktemp("external")
    train_run("digits", "mlp", out=root / "run", split=SPEC, train=TrainConfig(epochs=3), width=0.5, seed=0,
              device="cpu", progress=False)
    members = json.loads((root / "run" / "split.json").read_text())["sets"]["members"]
    (root / "members.txt").write_text("\n".join(map(str, members)) + "\n")
    return root, root / "run" / "weights.safetensors", root / "members.txt"


def test_audits_a_weights_file_and_saves_the_split(cli, trained, tmp_path):
    _, weights, members = trained
    out = tmp_path / "report"
    res = cli("audit", "--weights", weights, "--model", "mlp", "--width", "0.5", "--dataset", "digits",
              "--members", members, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert (out / "report.md").is_file() and "loss" in res.output
    split = json.loads((out / "split.json").read_text())["sets"]
    assert sorted(split["members"]) == sorted(map(int, members.read_text().split()))


@pytest.mark.parametrize("extra, match", [
    ((), "--weights needs --members"),
    (("--members", "MEMBERS", "--non-members", "MEMBERS"), "members and non-members share"),
    (("--members", "MEMBERS", "--model", "cnn"), "do not fit the model"),
    (("--members", "MISSING"), "does not exist"),
    (("--members", "MEMBERS", "--run", "RUN"), "either --run"),
])
def test_bad_input_fails_in_one_line(cli, trained, tmp_path, extra, match):
    root, weights, members = trained
    args = [{"MEMBERS": members, "MISSING": tmp_path / "none.txt", "RUN": root / "run"}.get(a, a) for a in extra]
    model = [] if "--model" in extra else ["--model", "mlp"]
    cli.fails("silently wrong", "audit", "--weights", weights, *model, "--width", "0.5", "--dataset", "digits",
              *args, "--out", tmp_path / "r", *FAST, match=match)
    assert not (tmp_path / "r" / "report.md").exists()
