import pytest
import torch

from clothes_retrieval.retrieval.pooling import MAC, GeM, SPoC, create_pool, gem, mac, spoc


def closed_form_gem(x: torch.Tensor, p: float) -> torch.Tensor:
    b, c = x.shape[:2]
    out = torch.empty(b, c, dtype=torch.float64)
    for i in range(b):
        for k in range(c):
            values = x[i, k].flatten().double().clamp(min=1e-6)
            out[i, k] = (values.pow(p).sum() / values.numel()) ** (1 / p)
    return out


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(2, 3, 4, 5) * 4  # (B, C, H, W), non-negative like post-ReLU maps


def test_spoc_is_the_spatial_mean(x):
    expected = x.sum(dim=(2, 3)) / 20
    torch.testing.assert_close(spoc(x), expected)
    torch.testing.assert_close(SPoC()(x), expected)


def test_mac_is_the_spatial_max(x):
    expected = torch.tensor([[x[i, k].max().item() for k in range(3)] for i in range(2)])
    torch.testing.assert_close(mac(x), expected)
    torch.testing.assert_close(MAC()(x), expected)


@pytest.mark.parametrize("p", [1.0, 2.5, 3.0, 6.0])
def test_gem_matches_closed_form(x, p):
    expected = closed_form_gem(x, p).float()
    torch.testing.assert_close(gem(x, p), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(GeM(p)(x), expected, rtol=1e-5, atol=1e-5)


def test_gem_limits(x):
    torch.testing.assert_close(gem(x, 1.0), spoc(x), rtol=1e-5, atol=1e-5)
    # (mean x^p)^(1/p) lies in [max · (1/HW)^(1/p), max]: within 10 % of MAC at p = 30
    assert (gem(x, 30.0) <= mac(x) + 1e-5).all() and (gem(x, 30.0) >= 0.9 * mac(x)).all()


def test_gem_p_fixed_or_learnable(x):
    fixed = GeM(3.0)
    assert not list(fixed.parameters()) and "p" in dict(fixed.named_buffers())
    learnable = GeM(3.0, learnable=True)
    (p,) = learnable.parameters()
    learnable(x).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    with pytest.raises(ValueError):
        GeM(0.0)


def test_pooling_runs_in_float32_under_half_inputs(x):
    assert gem(x.half() * 30, 3.0).dtype == torch.float32  # 90^3 would overflow float16 sums


def test_create_pool_names():
    assert isinstance(create_pool("gem", gem_p=4.0), GeM)
    with pytest.raises(ValueError, match="unknown descriptor"):
        create_pool("avg")
