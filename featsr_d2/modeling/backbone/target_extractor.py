"""FeatSR's super-resolution target extractor on Detectron2's backbones (Noh et al., ICCV 2019,
section 4.1): walkers that run a backbone's own layers, with its own weights, through the
extractor's version of each layer (:mod:`featsr_d2.core.featsr.extractor_layers`: dilated
convolutions, strided layers at stride 1 followed by max pooling, doubled pooling windows, placed
as the backbone's units sit on the 0.5x image with ``aligned``) on the 1.0x image. The maps come
out with the same names, channels and sizes as the backbone's on the 1.0x image.

:class:`FeatSRResNet` and :class:`FeatSRFPN` add ``extract_targets`` to Detectron2's ResNet and FPN;
MobileNetV2 has it natively. The builders ``FeatSRResNetBackbone`` and ``FeatSRResNetFPNBackbone``
build them from the usual ``MODEL.RESNETS`` / ``MODEL.FPN`` keys; ``MODEL.FEATSR.FUSED_EXTRACTOR``
and ``MODEL.FEATSR.EXTRACTOR_ALIGNED`` reach them.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock
from torch import nn

from featsr_d2.config import featsr_sub_features
from featsr_d2.core.featsr.extractor_layers import atrous_conv, atrous_max_pool

__all__ = [
    "FeatSRFPN",
    "FeatSRResNet",
    "FeatSRResNetBackbone",
    "FeatSRResNetFPNBackbone",
    "featsr_passthrough",
]


def _stem_targets(stem: nn.Module, x: torch.Tensor, fused: bool, aligned: bool) -> torch.Tensor:
    if not isinstance(stem, BasicStem):
        raise TypeError(f"the target extractor does not know the stem {type(stem).__name__}")
    x = F.relu_(atrous_conv(stem.conv1, x, fused=fused, aligned=aligned))
    return atrous_max_pool(x, 3, 2, 1, aligned=aligned)  # BasicStem's max pool


def _block_targets(block: nn.Module, x: torch.Tensor, fused: bool, aligned: bool) -> torch.Tensor:
    kw = {"fused": fused, "aligned": aligned}
    if isinstance(block, BottleneckBlock):
        out = F.relu_(atrous_conv(block.conv1, x, **kw))
        out = F.relu_(atrous_conv(block.conv2, out, **kw))
        out = atrous_conv(block.conv3, out, **kw)
    elif isinstance(block, BasicBlock):
        out = F.relu_(atrous_conv(block.conv1, x, **kw))
        out = atrous_conv(block.conv2, out, **kw)
    else:
        raise TypeError(
            f"the target extractor does not know the block {type(block).__name__} (deformable "
            "blocks are not supported)"
        )
    shortcut = x if block.shortcut is None else atrous_conv(block.shortcut, x, **kw)
    return F.relu_(out + shortcut)


class FeatSRResNet(ResNet):
    """Detectron2's ResNet with FeatSR's SR target extractor (:meth:`extract_targets`).

    ``fused_targets`` (an attribute, default False; ``MODEL.FEATSR.FUSED_EXTRACTOR`` in configs)
    runs the extractor's strided layers with the fused dilated convolution + max pool op;
    ``aligned_targets`` (default True; ``MODEL.FEATSR.EXTRACTOR_ALIGNED``) places its pooling
    windows as the backbone's units sit on the 0.5x image (the module docstring).
    """

    fused_targets: bool = False
    aligned_targets: bool = True

    def extract_targets(
        self, x: torch.Tensor, *, aligned: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """The features of :meth:`forward`, with the receptive field of the 0.5x image.

        Args:
            x: the 1.0x images, (N, C, H, W).
            aligned: the pooling windows' placement; None: ``aligned_targets``.
        """
        aligned = self.aligned_targets if aligned is None else aligned
        outputs = {}
        x = _stem_targets(self.stem, x, self.fused_targets, aligned)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            for block in stage:
                x = _block_targets(block, x, self.fused_targets, aligned)
            if name in self._out_features:
                outputs[name] = x
        return outputs


class FeatSRFPN(FPN):
    """Detectron2's FPN with FeatSR's SR target extractor; its bottom-up network must have
    ``extract_targets`` too. The lateral 1x1 convolutions are unchanged, the 3x3 output convolutions
    are dilated, and the p6 max pool (kernel 1, stride 2) gets a 2x2 window.

    ``passthrough`` names bottom-up features (e.g. "res2") that :meth:`forward` returns beside the
    pyramid, unchanged and without extra computation: the FeatSR heads' sub layers. They are in
    :meth:`output_shape` too; the targets are the pyramid's only.
    """

    def __init__(self, *args, passthrough: Sequence[str] = (), **kwargs):
        """
        Args:
            passthrough: bottom-up features to return beside the pyramid levels.
            args, kwargs: the arguments of Detectron2's :class:`FPN`.
        """
        super().__init__(*args, **kwargs)
        available = self.bottom_up.output_shape()
        missing = [f for f in passthrough if f not in available]
        if missing:
            raise ValueError(
                f"FeatSR sub layers {missing} are not outputs of the bottom-up network (it has "
                f"{sorted(available)}): add them to its OUT_FEATURES (MODEL.RESNETS / MODEL.MNV2; "
                "featsr_d2.enable_featsr does)"
            )
        self.passthrough = tuple(passthrough)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.passthrough:
            return super().forward(x)
        captured = {}
        handle = self.bottom_up.register_forward_hook(lambda _m, _i, out: captured.update(out))
        try:
            results = super().forward(x)
        finally:
            handle.remove()
        results.update({f: captured[f] for f in self.passthrough})
        return results

    def output_shape(self) -> dict[str, ShapeSpec]:
        shapes = super().output_shape()
        bottom_up = self.bottom_up.output_shape()
        shapes.update({f: bottom_up[f] for f in self.passthrough})
        return shapes

    def extract_targets(
        self, x: torch.Tensor, *, aligned: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """The pyramid's maps as the SR target extractor computes them (its bottom-up network's
        ``extract_targets``, then the FPN's own layers); ``aligned`` as the bottom-up network's
        (None: its ``aligned_targets``)."""
        aligned = self.bottom_up.aligned_targets if aligned is None else aligned
        bottom_up = self.bottom_up.extract_targets(x, aligned=aligned)
        prev = atrous_conv(self.lateral_convs[0], bottom_up[self.in_features[-1]])
        results = [atrous_conv(self.output_convs[0], prev)]
        for idx in range(1, len(self.lateral_convs)):
            lateral = atrous_conv(self.lateral_convs[idx], bottom_up[self.in_features[-idx - 1]])
            prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            if self._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, atrous_conv(self.output_convs[idx], prev))
        if self.top_block is not None:
            if not isinstance(self.top_block, LastLevelMaxPool):
                raise TypeError(
                    f"the target extractor does not know the FPN top block "
                    f"{type(self.top_block).__name__}"
                )
            source = self.top_block.in_feature
            if source in bottom_up:
                top_in = bottom_up[source]
            else:
                top_in = results[self._out_features.index(source)]
            results.append(atrous_max_pool(top_in, 1, 2, 0, aligned=aligned))
        return dict(zip(self._out_features, results))


def featsr_passthrough(cfg) -> list[str]:
    """The bottom-up features a FeatSR model's FPN returns beside its pyramid (the heads' sub
    layers); none for another meta-architecture (a stage-1 detector on a FeatSR backbone)."""
    if cfg.MODEL.META_ARCHITECTURE != "FeatSRRCNN":
        return []
    return list(dict.fromkeys(featsr_sub_features(cfg)))


def _as_featsr_resnet(
    resnet: ResNet, freeze_at: int, fused_targets: bool, aligned_targets: bool
) -> FeatSRResNet:
    featsr_resnet = FeatSRResNet(
        resnet.stem,
        [list(stage) for stage in resnet.stages],
        out_features=resnet._out_features,
        freeze_at=freeze_at,
    )
    featsr_resnet.fused_targets = fused_targets
    featsr_resnet.aligned_targets = aligned_targets
    return featsr_resnet


# Registry keys are the builders' names, prefixed FeatSR so that no other plugin collides.
@BACKBONE_REGISTRY.register()
def FeatSRResNetBackbone(cfg, input_shape: ShapeSpec) -> FeatSRResNet:
    """Detectron2's ResNet (``MODEL.RESNETS``; e.g. C4 with OUT_FEATURES ["res4"]) with
    ``extract_targets``."""
    return _as_featsr_resnet(
        build_resnet_backbone(cfg, input_shape),
        cfg.MODEL.BACKBONE.FREEZE_AT,
        cfg.MODEL.FEATSR.FUSED_EXTRACTOR,
        cfg.MODEL.FEATSR.EXTRACTOR_ALIGNED,
    )


@BACKBONE_REGISTRY.register()
def FeatSRResNetFPNBackbone(cfg, input_shape: ShapeSpec) -> FeatSRFPN:
    """Detectron2's ResNet-FPN (``MODEL.RESNETS``, ``MODEL.FPN``, p6 by max pooling) with
    ``extract_targets``."""
    return FeatSRFPN(
        bottom_up=FeatSRResNetBackbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        passthrough=featsr_passthrough(cfg),
    )
