#!/usr/bin/env python
"""Train or evaluate a featsr_d2 model.

python tools/train_net.py --config-file configs/faster_rcnn_MNV2_FPN_synth.yaml
python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
python tools/train_net.py --config-file ... --num-gpus 8 [--num-machines 2 --machine-rank 0 ...]
"""

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.engine import FeatSRTrainer, setup


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = FeatSRTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = FeatSRTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = FeatSRTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
