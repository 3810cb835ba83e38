#!/usr/bin/env python
"""Inference throughput of the SR networks (images per second at a fixed LR size) and its ratio to
MATLAB-bicubic upscaling measured in the same run, with parameter counts. Weights do not change the
speed: the networks are built at their configs' sizes with random weights (Real-ESRGAN's
architecture stands for its converted weights).

    python bench/sr_throughput.py [--size 48] [--scale 4] [--iters 3] [--warmup 1] [--json out.json]
"""

import argparse
import json
import time

import torch

from featsr_d2.core.sr import CAJNN, DBPN, Bicubic, RRDBNet
from featsr_d2.utils.file_io import atomic_write_json

NETWORKS = {
    "Bicubic": lambda s: Bicubic(scale=s),
    "DBPN": lambda s: DBPN(scale=s),
    "CAJNN": lambda s: CAJNN(scale=s),
    "RRDBNet (Real-ESRGAN x4plus)": lambda s: RRDBNet(scale=s),
}


@torch.no_grad()
def images_per_second(model, x, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    times.sort()
    return x.shape[0] / times[len(times) // 2]  # median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48, help="side of the LR input")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size)
    figures = {
        "threads": torch.get_num_threads(),
        "lr_size": args.size,
        "scale": args.scale,
        "networks": {},
    }
    reference = None
    for name, make in NETWORKS.items():
        model = make(args.scale).eval()
        ips = images_per_second(model, x, args.iters, args.warmup)
        reference = reference or ips
        figures["networks"][name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "images_per_s": round(ips, 4),
            "relative_to_bicubic": round(ips / reference, 6),
        }
        print(f"{name}: {ips:.4f} images/s ({ips / reference:.2e} x bicubic)", flush=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        atomic_write_json(args.json, figures, indent=2)


if __name__ == "__main__":
    main()
