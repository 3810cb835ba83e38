"""FeatSR's SR feature generator G (section 4.2, Fig. 5): shapes, the identity it starts as, the
kept channels and chunks, the bottleneck blocks."""

import pytest
import torch

from featsr_d2.core.featsr import SRFeatureGenerator


def test_generator_shapes_identity_at_init_and_slicing():
    g = SRFeatureGenerator(base_channels=6, sub_channels=4, num_blocks=3, hidden_channels=5)
    base, sub = torch.randn(7, 6, 5, 5), torch.randn(7, 4, 5, 5)
    assert torch.equal(g(base, sub), base)  # zero-initialized residuals: starts as the identity
    for block in g.blocks:
        torch.nn.init.normal_(block.conv2.weight)
    out = g(base, sub)
    assert out.shape == base.shape and not torch.allclose(out, base)
    sub2 = sub + 1.0  # the sub-layer feature reaches the output
    assert not torch.allclose(g(base, sub2), out)
    assert g(base[:0], sub[:0]).shape == (0, 6, 5, 5)
    with pytest.raises(ValueError, match="sub"):
        g(base, sub[:, :3])
    with pytest.raises(ValueError, match="differ"):
        g(base, sub[:3])


def _reference_generator(g, base, sub):
    """Fig. 5 computed naively: every block on every channel, the base channels sliced at the
    end."""
    x = torch.cat([base, sub], dim=1)
    for block in g.blocks:
        convs = [getattr(block, f"conv{i}") for i in range(1, block._num_convs + 1)]
        h = x
        for conv in convs[:-1]:
            h = torch.relu(conv(h))
        x = x + convs[-1](h)
    return x[:, : g.base_channels]


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_generator_computes_only_the_kept_channels_and_chunks_alike(block):
    torch.manual_seed(0)
    g = SRFeatureGenerator(
        base_channels=6, sub_channels=4, num_blocks=3, hidden_channels=5, block=block
    )
    base, sub = torch.randn(11, 6, 5, 5), torch.randn(11, 4, 5, 5)
    assert torch.equal(g(base, sub), base)  # the identity at initialization, both blocks
    last = "conv2" if block == "basic" else "conv3"
    for b in g.blocks:
        torch.nn.init.normal_(getattr(b, last).weight, std=0.1)
        torch.nn.init.normal_(getattr(b, last).bias, std=0.1)
    reference = _reference_generator(g, base, sub)
    torch.testing.assert_close(g(base, sub), reference, rtol=1e-5, atol=1e-6)
    g.chunk_size = 4  # 11 RoIs in chunks of 4, 4 and 3
    torch.testing.assert_close(g(base, sub), reference, rtol=1e-5, atol=1e-6)
    assert g(base[:0], sub[:0]).shape == (0, 6, 5, 5)
    with pytest.raises(ValueError, match="block"):
        SRFeatureGenerator(base_channels=6, sub_channels=4, block="dense")


def test_bottleneck_generator_is_lighter():
    kwargs = {"base_channels": 256, "sub_channels": 256, "num_blocks": 2, "hidden_channels": 64}
    basic = SRFeatureGenerator(**kwargs)
    bottleneck = SRFeatureGenerator(**kwargs, block="bottleneck")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(bottleneck) < count(basic) / 3
