#!/usr/bin/env python
"""Train or evaluate a featsr_d2 model.

python tools/train_net.py --config-file configs/faster_rcnn_MNV2_FPN_synth.yaml
python tools/train_net.py --config-file ... --resume   (exactly from OUTPUT_DIR's last checkpoint)
python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
python tools/train_net.py --config-file ... --num-gpus 8 [--num-machines 2 --machine-rank 0 ...]

``--num-gpus N`` is Detectron2's: N processes per machine under ``detectron2.engine.launch``, one
per GPU with NCCL. On a machine without CUDA the same flag starts N CPU processes that communicate
with gloo (Detectron2's ``launch`` picks the backend; the trainer wraps a CPU model in DDP without
device ids); the config must then say ``MODEL.DEVICE cpu``, and ``SOLVER.IMS_PER_BATCH`` is the
total over the processes, as on GPUs.
"""

import torch
from detectron2.engine import launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.engine import argument_parser, setup, trainer_class


def main(args):
    cfg = setup(args)
    trainer_cls = trainer_class(cfg)  # TDSRTrainer for TaskDrivenSR configs, else FeatSRTrainer
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        # Refuses weights that leave parameters missing or mis-shaped (another architecture's).
        AtomicDetectionCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, require_all_weights=True
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    if args.num_gpus > 1 and not torch.cuda.is_available():
        print(
            f"No CUDA device: --num-gpus {args.num_gpus} starts {args.num_gpus} CPU processes "
            "(gloo)"
        )
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
