import math

import pytest
import torch
import torch.nn.functional as F

from clothes_retrieval.retrieval.center_loss import CenterLoss
from clothes_retrieval.retrieval.config import LossConfig
from clothes_retrieval.retrieval.losses import RetrievalLoss, softmax_loss


def test_center_loss_matches_a_hand_loop():
    torch.manual_seed(0)
    loss = CenterLoss(num_classes=4, dim=5)
    e = F.normalize(torch.randn(6, 5), dim=1)
    y = torch.tensor([0, 1, 1, 3, 2, 0])
    total = 0.0
    for i in range(6):
        sq = sum((e[i, d].item() - loss.centers[y[i], d].item()) ** 2 for d in range(5))
        total += 0.5 * sq
    assert loss(e, y).item() == pytest.approx(total / 6, rel=1e-6)


def test_center_loss_gradient_pulls_centres_to_their_samples():
    loss = CenterLoss(2, 3)
    e = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    y = torch.tensor([0, 0])
    loss(e, y).backward()
    # d/dc 0.5·mean||e - c||² = -(mean e - c) over the class's samples / B · count
    expected = -(e - loss.centers[0]).sum(0) / 2
    torch.testing.assert_close(loss.centers.grad[0], expected.detach())
    assert torch.all(loss.centers.grad[1] == 0)


def test_softmax_loss_smoothing_and_temperature_closed_form():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    t, s = 0.5, 0.1
    logp = torch.log_softmax(logits / t, dim=1)[0]
    expected = -((1 - s) * logp[0] + s / 3 * logp.sum())
    assert softmax_loss(logits, y, smoothing=s, temperature=t).item() == pytest.approx(
        expected.item()
    )


def _batch():
    torch.manual_seed(0)
    e = F.normalize(torch.randn(8, 16), dim=1).requires_grad_()
    logits = torch.randn(8, 4, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    return e, logits, y


def test_combined_loss_weights_and_parts():
    e, logits, y = _batch()
    unit = LossConfig.model_validate({
        "softmax": {"weight": 1.0}, "center": {"weight": 1.0},
        "triplet": {"weight": 1.0}, "multi_similarity": {"weight": 1.0},
    })  # fmt: skip
    weighted = LossConfig.model_validate({
        "softmax": {"weight": 2.0}, "center": {"weight": 0.5},
        "triplet": {"weight": 3.0}, "multi_similarity": {"weight": 0.25},
    })  # fmt: skip
    torch.manual_seed(1)
    a = RetrievalLoss(unit, num_classes=4, dim=16)
    torch.manual_seed(1)
    b = RetrievalLoss(weighted, num_classes=4, dim=16)
    out_a, out_b = a(e, logits, y), b(e, logits, y)
    assert set(out_a.parts) == {"softmax", "center", "triplet", "multi_similarity"}
    for name, w in {
        "softmax": 2.0,
        "center": 0.5,
        "triplet": 3.0,
        "multi_similarity": 0.25,
    }.items():
        assert out_b.parts[name].item() == pytest.approx(w * out_a.parts[name].item(), rel=1e-6)
    assert out_b.total.item() == pytest.approx(
        sum(p.item() for p in out_b.parts.values()), rel=1e-6
    )
    out_b.total.backward()
    assert e.grad is not None and logits.grad is not None


def test_zero_weight_parts_are_not_built():
    cfg = LossConfig.model_validate({"softmax": {"weight": 0}, "center": {"weight": 0}})
    loss = RetrievalLoss(cfg, num_classes=4, dim=16)
    assert loss.center is None and loss.softmax is None and not list(loss.parameters())
    e, _, y = _batch()
    assert set(loss(e, None, y).parts) == {"triplet", "multi_similarity"}
    assert math.isfinite(loss(e, None, y).total.item())


def _dist(e: torch.Tensor) -> list[list[float]]:
    n = len(e)
    return [[float(torch.linalg.norm(e[i] - e[j])) for j in range(n)] for i in range(n)]


def _triplet_by_hand(e: torch.Tensor, y: torch.Tensor, miner: str, margin: float) -> float:
    """pml's TripletMarginLoss (L2 distance, mean over the non-zero terms) on the triplets
    each miner keeps, written as loops."""
    d, lab, n = _dist(e.detach()), y.tolist(), len(y)
    triplets = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and lab[p] == lab[a]]
        neg = [q for q in range(n) if lab[q] != lab[a]]
        if miner == "batch_hard":  # the farthest positive and the closest negative
            triplets.append((a, max(pos, key=lambda p: d[a][p]), min(neg, key=lambda q: d[a][q])))
        else:
            for p in pos:
                for q in neg:
                    semihard = d[a][p] < d[a][q] <= d[a][p] + 0.1  # the miner's own margin
                    if miner == "none" or semihard:
                        triplets.append((a, p, q))
    terms = [max(d[a][p] - d[a][q] + margin, 0.0) for a, p, q in triplets]
    nonzero = [t for t in terms if t > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


@pytest.mark.parametrize("miner", ["none", "batch_hard", "triplet_margin"])
def test_triplet_loss_uses_the_triplets_its_miner_chooses(miner):
    cfg = LossConfig.model_validate(
        {
            "softmax": {"weight": 0},
            "center": {"weight": 0},
            "multi_similarity": {"weight": 0},
            "triplet": {"margin": 0.2, "miner": {"name": miner, "margin": 0.1}},
        }
    )
    e, _, y = _batch()
    got = RetrievalLoss(cfg, 4, 16)(e, None, y).parts["triplet"].item()
    assert got == pytest.approx(_triplet_by_hand(e, y, miner, 0.2), rel=1e-5)
    others = {m for m in ("none", "batch_hard", "triplet_margin") if m != miner}
    # the miners choose different triplets here, so a miner that was ignored would show
    assert all(abs(got - _triplet_by_hand(e, y, other, 0.2)) > 1e-4 for other in others), (
        miner,
        got,
    )


def _ms_by_hand(e, y, alpha, beta, base, epsilon: float | None) -> float:
    """Multi-similarity loss (Wang et al. 2019) as loops; with ``epsilon``, the MS miner's
    pairs first: negatives harder than the easiest positive, positives harder than the
    hardest negative, each by epsilon."""
    s = (e @ e.T).detach().tolist()
    lab, n = y.tolist(), len(y)
    total = 0.0
    for a in range(n):
        pos = [s[a][p] for p in range(n) if p != a and lab[p] == lab[a]]
        neg = [s[a][q] for q in range(n) if lab[q] != lab[a]]
        if epsilon is not None:
            pos, neg = (
                [v for v in pos if v - epsilon < max(neg)],
                [v for v in neg if v + epsilon > min(pos)],
            )
        if pos:
            total += math.log1p(sum(math.exp(-alpha * (v - base)) for v in pos)) / alpha
        if neg:
            total += math.log1p(sum(math.exp(beta * (v - base)) for v in neg)) / beta
    return total / n


@pytest.mark.parametrize("miner", ["none", "multi_similarity"])
def test_multi_similarity_loss_matches_the_formula_on_the_mined_pairs(miner):
    ms = {"alpha": 2.0, "beta": 10.0, "base": 0.5, "miner": {"name": miner, "epsilon": 0.1}}
    cfg = LossConfig.model_validate(
        {
            "softmax": {"weight": 0},
            "center": {"weight": 0},
            "triplet": {"weight": 0},
            "multi_similarity": ms,
        }
    )
    e, _, y = _batch()
    got = RetrievalLoss(cfg, 4, 16)(e, None, y).parts["multi_similarity"].item()
    eps = 0.1 if miner == "multi_similarity" else None
    assert got == pytest.approx(_ms_by_hand(e, y, 2.0, 10.0, 0.5, eps), rel=1e-5)
    other = None if eps is not None else 0.1
    assert abs(got - _ms_by_hand(e, y, 2.0, 10.0, 0.5, other)) > 1e-4
