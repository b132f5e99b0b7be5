"""The Bayes-error estimator: gradient, chunking, and agreement with a case whose Bayes error is known."""

import math

import pytest
import torch

from unlearnable.bayes_error import bayes_error, loo_sigma, median_sigma, posterior


def dense_reference(z, y, sigma, classes, partner=None):
    d2 = torch.cdist(z, z) ** 2
    k = torch.exp(-d2 / (2 * sigma**2)) * (1 - torch.eye(len(z), dtype=z.dtype))
    if partner is not None:
        k = k * ((y[None] == y[:, None]) | (y[None] == partner[y][:, None]))
    post = k @ torch.nn.functional.one_hot(y, classes).to(z.dtype) / k.sum(1, keepdim=True)
    return (1 - post.max(1).values).mean()


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    z = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (30,))
    assert torch.autograd.gradcheck(
        lambda z: bayes_error(z, y, sigma=1.2, chunk=7), (z,), eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_value_and_gradient_match_dense_autograd(chunk):
    torch.manual_seed(1)
    z = torch.randn(50, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (50,))
    ours = bayes_error(z, y, sigma=0.9, chunk=chunk)
    ref = dense_reference(z, y, 0.9, 4)
    (g_ours,) = torch.autograd.grad(ours, z)
    (g_ref,) = torch.autograd.grad(ref, z)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), abs=1e-12)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)


@pytest.mark.parametrize("chunk", [3, 64])
def test_pairwise_estimate_matches_dense_autograd_and_finite_differences(chunk):
    torch.manual_seed(2)
    z = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    y = torch.arange(40) % 4
    partner = torch.tensor([1, 0, 3, 2])
    ours = bayes_error(z, y, sigma=1.1, chunk=chunk, partner=partner)
    ref = dense_reference(z, y, 1.1, 4, partner)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), abs=1e-12)
    assert torch.allclose(torch.autograd.grad(ours, z)[0], torch.autograd.grad(ref, z)[0], atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda z: bayes_error(z, y, sigma=1.1, chunk=chunk, partner=partner), (z,), eps=1e-6, atol=1e-7
    )


def test_pairwise_ascent_moves_a_class_towards_its_partner_only():
    # three well-separated classes; classes 0 and 1 are partners, class 2 has none (its own): ascending the pairwise
    # estimate moves class 0 towards class 1 and not towards class 2
    torch.manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    y = torch.arange(60) % 3
    z = (centres[y] + 0.5 * torch.randn(60, 2, dtype=torch.float64)).requires_grad_(True)
    partner = torch.tensor([1, 0, 2])
    bayes_error(z, y, sigma=1.0, partner=partner).backward()
    step = z.grad[y == 0].mean(0)
    assert float(step @ (centres[1] - centres[0])) > 5 * abs(float(step @ (centres[2] - centres[0])))
    assert float(z.grad[y == 2].abs().max()) == 0


def test_a_sample_with_nobody_to_compare_with_counts_as_unconfused():
    z = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(
        [0, 1, 2]
    )  # class 2 is its own partner and has a single sample: nobody to compare it with
    err = bayes_error(z, y, sigma=1.0, partner=torch.tensor([1, 0, 2]))
    err.backward()
    assert torch.isfinite(err) and torch.isfinite(z.grad).all()


def test_estimate_recovers_known_bayes_error_of_two_gaussians():
    # Two unit-variance Gaussians at -1 and +1 with equal priors: Bayes error = Phi(-1) = 0.1587.
    gen = torch.Generator().manual_seed(0)
    n = 3000
    y = torch.arange(n) % 2
    z = torch.randn(n, 1, generator=gen, dtype=torch.float64) + (2.0 * y - 1).unsqueeze(1)
    truth = 0.5 * (1 + math.erf(-1 / math.sqrt(2)))
    assert float(bayes_error(z, y, sigma=0.25)) == pytest.approx(truth, abs=0.03)


def test_loo_width_keeps_the_estimate_near_the_truth_in_many_dimensions_where_the_median_rule_does_not():
    # Two Gaussians 2 apart along one axis, with 15 pure-noise dimensions: Bayes error is still Phi(-1) = 0.1587.
    gen = torch.Generator().manual_seed(0)
    n = 1500
    y = torch.arange(n) % 2
    z = torch.randn(n, 16, generator=gen, dtype=torch.float64)
    z[:, 0] += 2.0 * y - 1
    truth = 0.5 * (1 + math.erf(-1 / math.sqrt(2)))
    loo = float(bayes_error(z, y, sigma=loo_sigma(z, y, num_classes=2)))
    median = float(bayes_error(z, y, sigma=median_sigma(z)))
    # noise dimensions bias every kernel estimate upwards (0.28 here); the median rule's posterior is near uniform
    assert abs(loo - truth) < 0.15 and abs(median - truth) > 0.25


def test_separable_classes_have_zero_error_and_identical_ones_maximal():
    z = torch.cat([torch.zeros(20, 2), torch.full((20, 2), 50.0)]).double()
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    assert float(bayes_error(z, y, sigma=1.0)) == pytest.approx(0.0, abs=1e-9)
    same = torch.randn(40, 2, dtype=torch.float64)
    assert float(bayes_error(same, y, sigma=100.0)) == pytest.approx(0.5, abs=0.06)


def test_far_apart_points_do_not_underflow():
    z = torch.randn(20, 3, dtype=torch.float64) * 1e3
    y = torch.arange(20) % 2
    post = posterior(z, y, sigma=0.1, num_classes=2)
    assert torch.isfinite(post).all()
    assert torch.allclose(post.sum(1), torch.ones(20, dtype=torch.float64))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        bayes_error(torch.randn(5, 2), torch.zeros(4).long(), sigma=1.0)
    assert median_sigma(torch.randn(10, 3)) > 0
