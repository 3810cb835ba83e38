#!/usr/bin/env python
"""Train an image super-resolution network (D-DBPN, CAJNN, RRDBNet) on a folder of HR images.

python tools/train_sr.py --config-file configs/sr/cajnn_x4_jpeg.yaml
python tools/train_sr.py --config-file configs/sr/quick_schedules/cajnn_x4_jpeg_cpu.yaml  # CPU
python tools/train_sr.py --config-file ... --resume               # continue from OUTPUT_DIR
python tools/train_sr.py --config-file ... DATASETS.SR.TRAIN "['/data/DIV2K_train_HR']"

Progress goes to the console, OUTPUT_DIR/metrics.json and TensorBoard (OUTPUT_DIR); sample images
to OUTPUT_DIR/samples/. Evaluate with tools/eval_sr.py.
"""

from detectron2.engine import default_argument_parser

from featsr_d2.engine.sr_trainer import SRTrainer, setup_sr


def main(args):
    cfg = setup_sr(args)
    trainer = SRTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    if args.eval_only or args.num_gpus > 1 or args.num_machines > 1:
        raise SystemExit("train_sr.py trains on one device; evaluate with tools/eval_sr.py")
    print("Command Line Args:", args)
    main(args)
