"""Against a peer: on the same target and split, blackbox-nn's AUC is at least ART's MembershipInferenceBlackBox
AUC minus 0.02."""

import pytest
import torch

from modelsafe.privacy import BlackBoxNNAttack
from modelsafe.privacy.metrics import auc_from_groups
from modelsafe.training import predict_logits

from .conftest import CLASSES, FEATURES


@pytest.mark.compare
def test_blackbox_nn_matches_or_beats_art(memorised):
    pytest.importorskip("art")
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import PyTorchClassifier

    s = memorised
    ours = BlackBoxNNAttack(seed=0).fit(s.target, s.known_members, s.known_nonmembers)
    ours_auc = ours.evaluate(s.target, s.eval_members, s.eval_nonmembers, n_bootstrap=0).auc

    def probs(data):
        return torch.softmax(predict_logits(s.target, data), dim=1).numpy()

    classifier = PyTorchClassifier(s.target, loss=torch.nn.CrossEntropyLoss(), input_shape=(FEATURES,),
                                   nb_classes=CLASSES)
    with torch.random.fork_rng(devices=[]):  # ART draws from the global generator
        torch.manual_seed(0)
        art = MembershipInferenceBlackBox(classifier, input_type="prediction", attack_model_type="nn")
        art.fit(y=s.known_members.y.numpy(), test_y=s.known_nonmembers.y.numpy(), pred=probs(s.known_members),
                test_pred=probs(s.known_nonmembers))
        member = art.infer(None, s.eval_members.y.numpy(), pred=probs(s.eval_members), probabilities=True)
        nonmember = art.infer(None, s.eval_nonmembers.y.numpy(), pred=probs(s.eval_nonmembers), probabilities=True)
    art_auc = auc_from_groups(member.ravel(), nonmember.ravel())
    assert art_auc > 0.7  # the peer sees the signal too, so the comparison means something
    assert ours_auc >= art_auc - 0.02, (ours_auc, art_auc)
