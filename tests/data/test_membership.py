"""Membership splits of a model trained elsewhere, drawn from member / non-member index sets."""

import numpy as np
import pytest
import torch

from modelsafe.data import MembershipSplit, read_indices, split_from_membership
from modelsafe.errors import ModelsafeError


def test_sets_come_from_the_given_indices_and_stay_disjoint(blobs):
    members = torch.arange(0, 120)
    non_members = torch.arange(200, 300)
    split = split_from_membership(blobs, members, non_members, seed=3)
    assert sorted(split["members"].tolist()) == members.tolist()
    known, evals = set(split["attack_known_members"].tolist()), set(split["eval_members"].tolist())
    assert len(known) == 60 and known | evals == set(members.tolist()) and not known & evals
    outside = set(split["attack_reference"].tolist()) | set(split["eval_nonmembers"].tolist()) | set(
        split["population"].tolist())
    assert outside == set(non_members.tolist())
    assert split.sizes()["attack_reference"] == 50 and split.sizes()["eval_nonmembers"] == 50
    assert split.sizes()["validation"] == 0


def test_default_non_members_are_every_other_sample_and_the_split_round_trips(blobs, tmp_path):
    split = split_from_membership(blobs, torch.arange(0, 100), seed=0)
    total = len(blobs.train) + len(blobs.test)
    used = sum(split.sizes()[k] for k in ("members", "attack_reference", "eval_nonmembers", "population"))
    assert used == total
    split.save(tmp_path / "split.json")
    again = MembershipSplit.load(tmp_path / "split.json")
    assert all(torch.equal(again[k], split[k]) for k in split.sets)


@pytest.mark.parametrize("members, non_members, match", [
    (torch.tensor([0, 1, 1, 2]), None, "repeated"),
    (torch.tensor([0, 1, 10**6]), None, "must lie in"),
    (torch.tensor([-1, 1, 2]), None, "must lie in"),
    (torch.arange(0, 10), torch.arange(5, 30), "share 5 indices"),
    (torch.tensor([], dtype=torch.long), None, "no indices"),
])
def test_bad_index_sets_are_refused(blobs, members, non_members, match):
    with pytest.raises(ModelsafeError, match=match):
        split_from_membership(blobs, members, non_members)


def test_index_files_text_and_npy(tmp_path):
    (tmp_path / "m.txt").write_text("3\n# a comment\n\n5  # inline\n7\n")
    assert read_indices(tmp_path / "m.txt", "members").tolist() == [3, 5, 7]
    np.save(tmp_path / "m.npy", np.array([4, 2], dtype=np.int32))
    assert read_indices(tmp_path / "m.npy", "members").tolist() == [4, 2]
    (tmp_path / "bad.txt").write_text("1\nx\n")
    with pytest.raises(ModelsafeError, match="line 2: expected an integer"):
        read_indices(tmp_path / "bad.txt", "members")
    np.save(tmp_path / "f.npy", np.array([1.5]))
    with pytest.raises(ModelsafeError, match="1-D integer array"):
        read_indices(tmp_path / "f.npy", "members")
    with pytest.raises(ModelsafeError, match="does not exist"):
        read_indices(tmp_path / "none.txt", "members")


def test_a_recipe_split_still_needs_a_validation_set(blobs):
    from modelsafe.data import SplitSpec

    with pytest.raises(ModelsafeError, match="'validation' is empty"):
        MembershipSplit.create(blobs, SplitSpec(members=100, validation=0), seed=0)
