#!/usr/bin/env python
"""FeatSR's inference cost over its base detector at the paper's scale, on seeded random weights.

The demo's figures come from ``bench/featsr_cost.py``; this one times the paper-scale settings that
no CPU training here reaches: R50-C4 at 1600 px (``configs/featsr_R50_tt100k.yaml`` over
``faster_rcnn_R50_tt100k.yaml``, 1000 test proposals) and R50-FPN at 800 x 1333
(``featsr_R50_FPN_tt100k.yaml``). Base and FeatSR share one set of seeded random weights (FeatSR's
small predictor is the large one's copy, G the identity it starts as, which costs what a trained
one costs). The input is a seeded random image, on which a random RPN proposes no small box at
all; so the RPN runs (its cost counts) but its boxes are replaced by ``POST_NMS_TOPK_TEST`` seeded
boxes whose sides are log-uniform in [8, 256] px (40% below FeatSR's 32 px, about TT100K's share of
small objects), the same for every model. Times are medians over interleaved calls, after one
warm-up call each::

    python bench/featsr_cost_paper_scale.py [--setting r50_c4_1600 r50_fpn_1333] [--images 2]
        [--caps 16 64] [--threads 2] [--json out.json]
"""

import argparse
import json
import os

import torch
from detectron2.structures import Boxes, Instances
from featsr_cost import interleaved_medians, small_fraction  # bench/ is the script's folder
from torch import nn

import featsr_d2  # noqa: F401  (registers backbones and heads)
from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine import FeatSRTrainer
from featsr_d2.utils.file_io import atomic_write_json

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SETTINGS = {
    # name: (base config, FeatSR config, input (height, width), config overrides)
    "r50_c4_1600": ("faster_rcnn_R50_tt100k.yaml", "featsr_R50_tt100k.yaml", (1600, 1600), []),
    "r50_fpn_1333": (
        "faster_rcnn_R50_FPN_tt100k.yaml",
        "featsr_R50_FPN_tt100k.yaml",
        (800, 1333),
        ["INPUT.MIN_SIZE_TEST", "800", "INPUT.MAX_SIZE_TEST", "1333"],
    ),
}


class FixedProposals(nn.Module):
    """The model's RPN, run for its cost, with its boxes replaced by seeded boxes of log-uniform
    sides in [8, 256] px (sorted by a made-up objectness, as the RPN sorts)."""

    def __init__(self, rpn: nn.Module, count: int):
        super().__init__()
        self.rpn = rpn
        self.count = count

    def forward(self, images, features, gt_instances=None):
        _, losses = self.rpn(images, features, gt_instances)
        generator = torch.Generator().manual_seed(0)
        proposals = []
        for h, w in images.image_sizes:
            side = torch.exp(torch.empty(self.count).uniform_(2.079, 5.545, generator=generator))
            x0 = torch.rand(self.count, generator=generator) * (w - side).clamp(min=1)
            y0 = torch.rand(self.count, generator=generator) * (h - side).clamp(min=1)
            p = Instances((h, w))
            p.proposal_boxes = Boxes(torch.stack([x0, y0, x0 + side, y0 + side], dim=1))
            p.objectness_logits = torch.linspace(5, -5, self.count)
            proposals.append(p)
        return proposals, losses


def build(config: str, opts: list[str]):
    cfg = get_featsr_cfg(os.path.join(CONFIGS, config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS",
                                                          "", *opts])  # fmt: skip
    torch.manual_seed(0)
    model = FeatSRTrainer.build_model(cfg).eval()
    model.proposal_generator = FixedProposals(
        model.proposal_generator, cfg.MODEL.RPN.POST_NMS_TOPK_TEST
    )
    return model


def measure(setting: str, images: int, caps: list[int]) -> dict:
    base_config, featsr_config, (h, w), opts = SETTINGS[setting]
    models = {"base": build(base_config, opts)}
    state = models["base"].state_dict()
    for cap in [-1, *caps]:
        model = build(featsr_config, [*opts, "MODEL.FEATSR.MAX_SMALL_PER_IMAGE", str(cap)])
        model.load_state_dict(state, strict=False)  # G, D: their initialization
        models["featsr" if cap < 0 else f"featsr_k{cap}"] = model
    generator = torch.Generator().manual_seed(0)
    inputs = [
        [{"image": torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8),
          "height": h, "width": w}]
        for _ in range(images + 1)
    ]  # fmt: skip
    calls = {name: (lambda x, m=m: m(x)) for name, m in models.items()}
    with torch.no_grad():
        seconds = interleaved_medians(calls, inputs, warmup=1)
    return {
        "input": [h, w],
        "images_timed": images,
        "small_proposal_fraction": round(small_fraction(models["featsr"], inputs[1:]), 3),
        "s_per_image": {k: round(v, 3) for k, v in seconds.items()},
        "time_ratio": {k: round(v / seconds["base"], 3) for k, v in seconds.items() if k != "base"},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--images", type=int, default=2, help="images timed after one warm-up")
    parser.add_argument("--caps", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here too (atomically)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {"threads": args.threads}
    for setting in args.setting:
        figures[setting] = measure(setting, args.images, args.caps)
        print(json.dumps({setting: figures[setting]}, indent=2), flush=True)
    if args.json:
        atomic_write_json(args.json, figures, indent=2)


if __name__ == "__main__":
    main()
