"""FeatSR's SR feature discriminator D and the losses of eqs. 4-6."""

import pytest
import torch

from featsr_d2.core.featsr import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)


def test_discriminator_is_a_three_layer_mlp():
    d = SRFeatureDiscriminator(input_shape=(8, 6, 6), hidden_dim=16, pool_size=3)
    linears = [m for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(72, 16), (16, 16), (16, 1)]
    assert d(torch.randn(5, 8, 6, 6)).shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        d(torch.randn(5, 8, 7, 7))


def test_losses_match_the_papers_equations():
    s = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]])
    t = torch.tensor([[[[0.0, 0.0]]], [[[3.0, 4.0]]]])
    # mean_i ||T_i - S_i||^2 / (C H W), C H W = 2
    assert content_loss(s, t).item() == pytest.approx((5.0 + 25.0) / 2 / 2)
    logits = torch.tensor([0.3, -1.2])
    d_s = torch.sigmoid(logits)
    assert generator_adversarial_loss(logits).item() == pytest.approx(-torch.log(d_s).mean().item())
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-0.4, 1.0])
    expected = -(torch.log(torch.sigmoid(real)) + torch.log(1 - torch.sigmoid(fake))).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = torch.zeros(0, 1, 1, 2, requires_grad=True)
    assert content_loss(empty, empty.detach()).item() == 0.0
    assert generator_adversarial_loss(torch.zeros(0)).item() == 0.0
