"""FeatSR on every layout (C4, DC5, FPN) at the padded sizes Detectron2 produces: the 0.5x pass, the
SR target extractor and the pooled pairs line up whatever the size (96 x 96 broke the FPN's top-down
sum before the 0.5x batch was padded to the size divisibility)."""

import math

import pytest
import torch
from detectron2 import model_zoo
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from test_enable_featsr import SMALL, ZOO, sample, train_step

from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.featsr import half_resolution

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny widths: the sizes, not the channels, are under test.
TINY = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "8",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "16",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "4",
    "MODEL.FPN.OUT_CHANNELS", "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
]  # fmt: skip
SIZES = [(96, 96), (416, 672), (800, 1344)]


@pytest.fixture(scope="module")
def models():
    built = {}
    for layout in ("C4", "DC5", "FPN"):
        cfg = get_featsr_cfg(
            model_zoo.get_config_file(ZOO[layout]), [*SMALL, *TINY], featsr_stage=2
        )
        torch.manual_seed(0)
        built[layout] = build_model(cfg)
    return built


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("layout", ["C4", "DC5", "FPN"])
def test_training_step_at_padded_size(models, layout, size):
    model = models[layout]
    model.zero_grad(set_to_none=True)
    losses = train_step(model, sample(*size))
    assert "loss_sr_content" in losses  # SR pairs were pooled from the 0.5x and target maps
    assert all(math.isfinite(v.item()) for v in losses.values())
    # The extractor's maps have the backbone's sizes on the 1.0x image.
    x = torch.zeros(1, 3, *size)
    with torch.no_grad():
        features = model.backbone(x)
        targets = model.backbone.extract_targets(x)
        half = model.backbone(half_resolution(x, model.backbone.size_divisibility))
    for name, target in targets.items():
        assert target.shape == features[name].shape, name
        # The 0.5x maps cover the 0.5x image (padding only adds rows and columns after it).
        for full, low in zip(features[name].shape[-2:], half[name].shape[-2:]):
            assert low >= math.ceil(full / 2), name


def test_half_resolution_pads_to_the_size_divisibility():
    x = torch.randn(2, 3, 96, 160)
    assert half_resolution(x).shape[-2:] == (48, 80)
    padded = half_resolution(x, 32)
    assert padded.shape[-2:] == (64, 96)
    assert torch.equal(padded[..., :48, :80], half_resolution(x))
    assert padded[..., 48:, :].abs().sum() == 0 and padded[..., :, 80:].abs().sum() == 0


@pytest.mark.parametrize("layout", ["C4", "FPN"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "inference"])
def test_an_empty_image_is_refused_at_the_boundary_naming_it(models, layout, training):
    """Issue 22.9: a 0x0 (or 0-row) image is named, not a convolution's "Kernel size can't be
    greater than actual input size"."""
    model = models[layout].train(training)
    good = sample(64, 64, with_gt=training)
    for shape in ((3, 0, 0), (3, 0, 64)):
        empty = dict(sample(64, 64, with_gt=training), image=torch.zeros(shape), file_name="e.jpg")
        with pytest.raises(ValueError, match=r"image e\.jpg is empty \(0x\d+ pixels"):
            with EventStorage(), torch.no_grad():
                model([good, empty])
