"""Online LiRA and RMIA: scores equal the formulas computed by hand; IN and OUT models never share a sample's
role; on a memorising target both find several times the loss attack's TPR at low FPR, and shuffled in-masks
destroy online LiRA."""

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy import MetricAttack, ReferenceModels, create_mia
from modelsafe.privacy.inputs import sample_digests
from modelsafe.privacy.lira_online import OnlineLiRAAttack
from modelsafe.privacy.references import FitTrainer
from modelsafe.training import TrainConfig

from .conftest import tabular_model


class Table(nn.Module):
    """Returns row ``int(x[i, 0])`` of a fixed logit table: a model whose outputs are set by hand."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.table[x[:, 0].long()]


def phi(logits, y):
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    py = p[np.arange(len(y)), y]
    return np.log(py) - np.log(1 - py)


RNG = np.random.default_rng(0)
TARGET = RNG.normal(0, 2, (4, 3))
REFS = [RNG.normal(0, 2, (4, 3)) for _ in range(4)]
IN = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=bool)  # (models, samples)
DATA = TensorData(torch.arange(4.0)[:, None], torch.tensor([0, 2, 1, 0]))


def references():
    return ReferenceModels([Table(r) for r in REFS], DATA, torch.tensor(IN))


def expected(fixed: bool) -> np.ndarray:
    y = DATA.y.numpy()
    ref = np.stack([phi(r, y) for r in REFS])  # (models, samples)
    target = phi(TARGET, y)
    scores = []
    for i in range(4):
        ins, outs = ref[IN[:, i], i], ref[~IN[:, i], i]
        s_in, s_out = (ref[IN].std(), ref[~IN].std()) if fixed else (ins.std(), outs.std())
        scores.append(norm.logpdf(target[i], np.median(ins), s_in) - norm.logpdf(target[i], np.median(outs), s_out))
    return np.array(scores)


@pytest.mark.parametrize("fixed", [True, False])
def test_scores_equal_the_hand_computed_likelihood_ratio(fixed):
    attack = OnlineLiRAAttack(references=references(), fixed_variance=fixed, num_models=4)
    attack.fit(Table(TARGET), DATA.subset([0, 1]), DATA.subset([2, 3]))  # σ pooled over the fitted samples
    np.testing.assert_allclose(attack.score(Table(TARGET), DATA), expected(fixed), rtol=1e-6, atol=1e-6)


def test_online_rmia_is_the_log_ratio_to_the_mean_reference_probability():
    y = DATA.y.numpy()

    def prob(logits):
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return p[np.arange(len(y)), y]

    expected_scores = np.log(prob(TARGET)) - np.log(np.mean([prob(r) for r in REFS], axis=0))
    attack = create_mia("rmia-online", references=references(), num_models=4)
    attack.fit(Table(TARGET), DATA.subset([0, 1]), DATA.subset([2, 3]))
    np.testing.assert_allclose(attack.score(Table(TARGET), DATA), expected_scores, rtol=1e-6, atol=1e-6)


def test_mean_centre_by_option_and_the_order_of_samples_does_not_matter():
    attack = OnlineLiRAAttack(references=references(), fixed_variance=False, center="mean", num_models=4)
    attack.fit(Table(TARGET), DATA.subset([0, 1]), DATA.subset([2, 3]))
    shuffled = attack.score(Table(TARGET), DATA.subset([3, 1, 0, 2]))
    np.testing.assert_allclose(shuffled, attack.score(Table(TARGET), DATA)[[3, 1, 0, 2]])
    assert attack.label == "lira-online (per-sample variance, mean)"


def test_samples_outside_the_population_and_odd_model_counts_are_refused():
    attack = OnlineLiRAAttack(references=references(), num_models=4)
    stranger = TensorData(torch.tensor([[1.0]]), torch.tensor([1]))  # input 1 with another label
    with pytest.raises(ModelsafeError, match="not in the reference models' population"):
        attack.fit(Table(TARGET), stranger, DATA.subset([2]))
    with pytest.raises(ModelsafeError, match="even integer"):
        OnlineLiRAAttack(num_models=3)
    with pytest.raises(ModelsafeError, match="per-sample variance needs at least 2 IN and 2 OUT .* >= 4, got 2"):
        OnlineLiRAAttack(num_models=2, fixed_variance=False)  # refused before any reference model is trained
    with pytest.raises(ModelsafeError, match="needs reference models"):
        OnlineLiRAAttack().fit(Table(TARGET), DATA.subset([0]), DATA.subset([1]))


def test_every_sample_is_in_for_exactly_half_and_in_models_trained_on_it():
    seen = []

    def recording_trainer(model, data, seed):
        seen.append(set(sample_digests(data)))

    population = TensorData(torch.randn(30, 5), torch.randint(0, 3, (30,)))
    refs = ReferenceModels.train_balanced(population, lambda s: nn.Linear(5, 3), recording_trainer, num_models=6)
    assert refs.in_masks.sum(0).tolist() == [3] * 30
    digests = sample_digests(population)
    for j, trained_on in enumerate(seen):
        assert trained_on == {d for d, inside in zip(digests, refs.in_masks[j].tolist()) if inside}


@pytest.fixture(scope="module")
def online_references(memorised):
    m = memorised
    population = TensorData(torch.cat([m.known_members.x, m.eval_members.x, m.known_nonmembers.x, m.eval_nonmembers.x]),
                            torch.cat([m.known_members.y, m.eval_members.y, m.known_nonmembers.y, m.eval_nonmembers.y]))
    trainer = FitTrainer(TrainConfig(epochs=60, lr=0.05, batch_size=64, weight_decay=0.0), device="cpu")
    return ReferenceModels.train_balanced(population, tabular_model, trainer, num_models=4, seed=0)


def evaluate(attack, m):
    attack.fit(m.target, m.known_members, m.known_nonmembers)
    return attack.evaluate(m.target, m.eval_members, m.eval_nonmembers, n_bootstrap=0)


def test_detects_memorised_members_and_shuffled_in_masks_destroy_it(memorised, online_references):
    online = evaluate(create_mia("lira-online", references=online_references, num_models=4), memorised)
    loss = evaluate(MetricAttack("loss"), memorised)
    assert online.auc >= 0.8 and online.auc > loss.auc + 0.02, (online.auc, loss.auc)
    assert online.tpr_at_fpr[0.01] > 2 * max(loss.tpr_at_fpr[0.01], 0.01), (online.tpr_at_fpr, loss.tpr_at_fpr)
    gen = torch.Generator().manual_seed(0)
    masks = online_references.in_masks[:, torch.randperm(online_references.in_masks.shape[1], generator=gen)]
    shuffled = ReferenceModels(online_references.models, online_references.population, masks)
    broken = evaluate(OnlineLiRAAttack(references=shuffled, num_models=4), memorised)
    assert broken.auc < 0.6, broken.auc


def test_online_rmia_beats_the_loss_attack_at_low_fpr(memorised, online_references):
    rmia = evaluate(create_mia("rmia-online", references=online_references, num_models=4), memorised)
    loss = evaluate(MetricAttack("loss"), memorised)
    assert rmia.auc > loss.auc and rmia.tpr_at_fpr[0.01] > 2 * max(loss.tpr_at_fpr[0.01], 0.01), (
        rmia.auc, rmia.tpr_at_fpr, loss.auc, loss.tpr_at_fpr)


def test_shifted_views_move_pixels_and_fill_the_border_with_zeros():
    from modelsafe.privacy.online import hflip, query_views, shifted

    x = torch.arange(1, 10, dtype=torch.float32).reshape(1, 1, 3, 3)
    assert shifted(1, 0)(x)[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert shifted(0, -1)(x)[0, 0].tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]
    assert hflip(x)[0, 0, 0].tolist() == [3, 2, 1]
    assert len(query_views("flip-shift", TensorData(x, torch.tensor([0])))) == 10
    with pytest.raises(ModelsafeError, match="need images"):
        query_views("flip", DATA)


def test_flip_queries_average_the_per_view_likelihood_ratios():
    gen = torch.Generator().manual_seed(0)
    images = TensorData(torch.rand(6, 1, 4, 4, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2]))

    def linear(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    masks = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 1, 0, 0, 1, 1], [0, 0, 1, 1, 0, 0]],
                         dtype=torch.bool)
    refs = ReferenceModels([linear(s) for s in range(4)], images, masks)
    target = linear(9)
    attack = OnlineLiRAAttack(references=refs, num_models=4, queries="flip")
    attack.fit(target, images.subset([0, 1, 2]), images.subset([3, 4, 5]))
    y = images.y
    with torch.no_grad():
        views = [images.x, images.x.flip(-1)]
        t_phi = np.stack([phi(target(v).numpy(), y.numpy()) for v in views])            # (views, samples)
        r_phi = np.stack([[phi(m(v).numpy(), y.numpy()) for m in refs.models] for v in views])  # (views, k, N)
    inside = np.broadcast_to(masks.numpy(), r_phi.shape)
    s_in, s_out = r_phi[inside].std(), r_phi[~inside].std()
    expected_scores = np.mean([[norm.logpdf(t_phi[v, i], np.median(r_phi[v][masks[:, i], i]), s_in)
                                - norm.logpdf(t_phi[v, i], np.median(r_phi[v][~masks[:, i], i]), s_out)
                                for i in range(6)] for v in range(2)], axis=0)
    np.testing.assert_allclose(attack.score(target, images), expected_scores, rtol=1e-5, atol=1e-5)
    assert attack.label == "lira-online (queries flip)"


def test_online_references_train_on_as_many_samples_as_the_target():
    from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
    from modelsafe.privacy.audit import ONLINE_SETS, online_population_ids

    data = load_dataset("digits")
    split = MembershipSplit.create(data, SplitSpec(members=300, validation=100, reference=50, eval_nonmembers=100,
                                                   population=500), seed=0)
    ids = online_population_ids(split)
    assert ids.numel() == 600 and ids.unique().numel() == 600  # halves of 600: 300 samples, as the target
    assert set(torch.cat([split[n] for n in ONLINE_SETS]).tolist()) <= set(ids.tolist())
    assert set(ids.tolist()) <= set(torch.cat([split[n] for n in (*ONLINE_SETS, "population")]).tolist())
    wide = MembershipSplit.create(data, SplitSpec(members=300, validation=100, reference=150, eval_nonmembers=600,
                                                  population=100), seed=0)
    with pytest.warns(UserWarning, match="online reference models train on 525 samples .* the target on 300"):
        assert online_population_ids(wide).numel() == 1050  # every scored sample, no population on top


def test_the_first_k_offline_reference_models_are_the_k_model_set():
    population = TensorData(torch.randn(40, 5), torch.randint(0, 3, (40,)))
    trainer = FitTrainer(TrainConfig(epochs=1, batch_size=8), device="cpu")
    four = ReferenceModels.train(population, lambda s: torch.manual_seed(s) and nn.Linear(5, 3), trainer,
                                 num_models=4, seed=5)
    two = ReferenceModels.train(population, lambda s: torch.manual_seed(s) and nn.Linear(5, 3), trainer,
                                num_models=2, seed=5)
    first = four.first(2)
    assert torch.equal(first.in_masks, two.in_masks) and len(first) == 2
    for a, b in zip(first.models, two.models):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ModelsafeError, match="first\\(k\\) needs 1 <= k <= 4"):
        four.first(5)
