#!/usr/bin/env python
"""The fused dilated conv + affine + 2x2 max pool on MobileNetV2's depthwise stride-2 layers (the
demo extractor's strided layers at a 320 px image, batch 4) against the unfused F.conv2d + affine +
F.max_pool2d: medians of interleaved calls, and the outputs checked equal. The extractor's pooling:
2x2 windows {2o-1, 2o} (``pool_offset=1``, floor mode; unfused: max_pool2d's own -inf padding of
one, the surplus last row / column cut), as ``bench/ops.py``.

    python bench/depthwise_conv_pool.py [--threads 1] [--reps 5]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from featsr_d2.core.layers import dilated_conv_maxpool2d

# (channels, input side) of MobileNetV2's stride-2 depthwise 3x3 convolutions, run by the extractor
# at stride 1 with dilation 2 on a 320 px image.
LAYERS = [(96, 160), (144, 80), (192, 40), (576, 20)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| channels | input | unfused ms | fused ms | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for c, h in LAYERS:
        x = torch.randn(args.batch, c, h, h)
        w = torch.randn(c, 1, 3, 3)
        scale, shift = torch.rand(c), torch.rand(c)

        def unfused(x=x, w=w, scale=scale, shift=shift, c=c):
            y = F.conv2d(x, w, None, 1, 2, 2, c)
            y = y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            h, w = ((size + 1) // 2 for size in y.shape[-2:])
            return F.max_pool2d(y, 2, 2, padding=1)[:, :, :h, :w]

        def fused(x=x, w=w, scale=scale, shift=shift, c=c):
            return dilated_conv_maxpool2d(
                x, w, None, 2, 2, 2, scale=scale, shift=shift, groups=c, pool_offset=1
            )

        with torch.no_grad():
            torch.testing.assert_close(fused(), unfused(), rtol=1e-4, atol=1e-4)
            times = {"unfused": [], "fused": []}
            for _ in range(args.reps):
                for name, fn in (("unfused", unfused), ("fused", fused)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        u, f = (sorted(times[k])[len(times[k]) // 2] for k in ("unfused", "fused"))
        print(f"| {c} | {h}x{h} | {u * 1e3:.1f} | {f * 1e3:.1f} | {u / f:.2f} |")


if __name__ == "__main__":
    main()
