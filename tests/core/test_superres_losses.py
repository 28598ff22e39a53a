"""The five super-resolution losses on a tiny graph, against values worked out by hand."""
import math

import pytest

torch = pytest.importorskip("torch")

from class_qgis_plugin.superres import losses as L  # noqa: E402

torch.set_num_threads(1)

# 3 nodes, 2 elements
PRED = torch.tensor([[1.0, 2.0], [3.0, 4.0], [2.0, 2.0]], dtype=torch.float64)
TARGET = torch.tensor([[2.0, 2.0], [float("nan"), float("nan")], [1.0, 4.0]], dtype=torch.float64)
MASK = torch.tensor([1, 0, 1])
NODE_W = torch.tensor([[2.0], [5.0], [1.0]], dtype=torch.float64)


def test_weighted_masked_mse_by_hand():
    # node 0 (w 2): diffs (-1, 0) -> 2 * 1 = 2 ; node 2 (w 1): diffs (1, -2) -> 5 ; node 1 masked out
    # denominator: sum of m_i w_ie = 2 + 2 + 1 + 1 = 6
    v = L.weighted_masked_mse(PRED, TARGET, MASK, NODE_W)
    assert float(v) == pytest.approx(7.0 / 6.0, rel=1e-12)
    # unweighted: (1 + 0 + 1 + 4) / 4
    assert float(L.weighted_masked_mse(PRED, TARGET, MASK)) == pytest.approx(1.5, rel=1e-12)


def test_weighted_masked_mse_per_element_weight():
    # element weights (1, 3): node 0: 1*1 + 3*0 = 1 ; node 2: 1*1 + 3*4 = 13 ; den = 2 * (1 + 3) = 8
    v = L.weighted_masked_mse(PRED, TARGET, MASK, torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert float(v) == pytest.approx(14.0 / 8.0, rel=1e-12)


def test_weighted_masked_log_loss_by_hand():
    # node 0: (ln1 - ln2)^2 = (ln 2)^2, (ln2 - ln2)^2 = 0, weight 2 ; node 2: (ln2 - ln1)^2 = (ln 2)^2,
    # (ln2 - ln4)^2 = (ln 2)^2, weight 1 -> numerator 4 (ln 2)^2, denominator 6
    v = L.weighted_masked_log_loss(PRED, TARGET, MASK, NODE_W, eps=0.0)
    assert float(v) == pytest.approx(4 * 0.4804530139182014 / 6, rel=1e-12)


def test_feature_similarity_loss_by_hand():
    # edges j -> i: 0->1, 2->1, 1->0 with similarities 0.5, 0.25, 1.0 ; scales (1, 2)
    # 0->1: (p1 - p0) / s = (2, 1) -> 5 ; 2->1: (1, 2) / s = (1, 1) -> 2 ; 1->0: (-2, -1) -> 5
    ei = torch.tensor([[0, 2, 1], [1, 1, 0]])
    sim = torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64)
    v = L.feature_similarity_loss(PRED, ei, sim, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert float(v) == pytest.approx((0.5 * 5 + 0.25 * 2 + 1.0 * 5) / 1.75, rel=1e-12)


def test_spatial_similarity_loss_by_hand():
    # a 1 x 3 grid: neighbours (0, 1) 2 km apart and (1, 2) 4 km apart, alpha = 0.1, both directions
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    e2, e4 = math.exp(-0.2), math.exp(-0.4)
    sim = torch.tensor([e2, e2, e4, e4], dtype=torch.float64)
    # |p0 - p1|^2 = 4 + 4 = 8 ; |p1 - p2|^2 = 1 + 4 = 5
    v = L.spatial_similarity_loss(PRED, ei, sim)
    assert float(v) == pytest.approx((8 * e2 + 5 * e4) / (e2 + e4), rel=1e-12)
    assert float(v) == pytest.approx(6.6495, abs=1e-4)


def test_deviation_from_100_by_hand():
    # row sums 3, 7, 4 against a total of 10: (0.7^2 + 0.3^2 + 0.6^2) / 3
    assert float(L.deviation_from_100_loss(PRED, total=10.0)) == pytest.approx(0.94 / 3, rel=1e-12)
    p = torch.tensor([[60.0, 40.0], [70.0, 40.0]])
    # sums 100 and 110: (0 + 0.1^2) / 2
    assert float(L.deviation_from_100_loss(p)) == pytest.approx(0.005, rel=1e-6)


def test_empty_mask_gives_zero_and_gradients_flow():
    p = PRED.clone().requires_grad_(True)
    zero = L.weighted_masked_mse(p, TARGET, torch.zeros(3))
    assert float(zero.detach()) == 0.0
    loss = L.weighted_masked_mse(p, TARGET, MASK, NODE_W)
    loss.backward()
    # d/dp00 of 2 (p00 - 2)^2 / 6 at p00 = 1: 2 * 2 * (-1) / 6
    assert float(p.grad[0, 0]) == pytest.approx(-4.0 / 6.0, rel=1e-12)
    assert float(p.grad[1, 0]) == 0.0          # masked node: no gradient, despite NaN target
