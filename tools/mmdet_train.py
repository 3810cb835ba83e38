"""Train an MMDetection config, as MMDetection's ``tools/train.py`` does, with featsr_d2's
components registered (TT100K datasets and metric, TDSR, the SR pre-processor).

    python tools/mmdet_train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]

CONFIG is a file or ``mmdet::<path>`` (a config MMDetection ships). Checkpoints and logs go to the
work dir (``--work-dir``, else the config's ``work_dir``, else ``work_dirs/<config name>``);
``--resume`` continues from the work dir's last checkpoint, ``--resume CKPT`` from that one.
"""

import argparse
import sys

import featsr_d2.mmdet  # noqa: F401  (registers featsr_d2's MMDetection components)
from featsr_d2.mmdet.runner import add_runner_arguments, load_config, parse_runner_args, train


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a detector (MMDetection) with featsr_d2")
    parser.add_argument("config", help="train config file path, or mmdet::<path>")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (CUDA)")
    parser.add_argument("--auto-scale-lr", action="store_true", help="scale the LR to the batch")
    parser.add_argument(
        "--resume", nargs="?", type=str, const="auto",
        help="resume from this checkpoint, or, without a value, from the work dir's last one",
    )  # fmt: skip
    add_runner_arguments(parser)
    return parse_runner_args(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(
        args.config, cfg_options=args.cfg_options, work_dir=args.work_dir, launcher=args.launcher
    )
    train(cfg, resume=args.resume, amp=args.amp, auto_scale_lr=args.auto_scale_lr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
