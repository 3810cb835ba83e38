#!/usr/bin/env python
"""Where FeatSR's SR targets sit: for each map the FeatSR heads of a config pool from (base levels
and sub layers), the pair offset T^1.0 - F^0.5 and the extent ratio of the SR target extractor with
aligned pooling windows and with the previous placement, and the naive target's offset, measured on
a linearized copy of the backbone (featsr_d2.core.receptive_field). Prints a Markdown table.

    python tools/extractor_geometry.py --config-file configs/featsr_MNV2_FPN_synth.yaml
"""

import argparse
import time

import torch
from detectron2.modeling import build_backbone

import featsr_d2  # noqa: F401  (registers the FeatSR backbones)
from featsr_d2.config import featsr_sub_features, get_featsr_cfg
from featsr_d2.evaluation.extractor_geometry import extractor_geometry


def main(args) -> None:
    start = time.perf_counter()
    cfg = get_featsr_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    maps = list(dict.fromkeys([*cfg.MODEL.ROI_HEADS.IN_FEATURES, *featsr_sub_features(cfg)]))
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    rows = {}
    for aligned in (True, False):
        print(f"[geometry] measuring the {'aligned' if aligned else 'previous'} extractor on "
              f"{', '.join(maps)}", flush=True)  # fmt: skip
        for f, g in extractor_geometry(backbone, maps, aligned=aligned).items():
            rows.setdefault(f, {})[aligned] = g
    print(f"\n{args.config_file} ({cfg.MODEL.BACKBONE.NAME}); px of the 1.0x image\n")
    print("| map | stride | T^1.0 - F^0.5, aligned | previous | naive F^1.0 - F^0.5 "
          "| extent T / (2 x F^0.5) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for f, g in rows.items():
        a, p = g[True], g[False]
        print(f"| {f} | {a.stride} | {a.pair_offset:+.1f} | {p.pair_offset:+.1f} | "
              f"{a.naive_offset:+.1f} | {a.extent_ratio:.3f} |")  # fmt: skip
    print(f"\n[geometry] {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="a FeatSR config")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    main(parser.parse_args())
