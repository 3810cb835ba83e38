"""Evaluate a checkpoint with an MMDetection config, as MMDetection's ``tools/test.py`` does, with
featsr_d2's components registered.

    python tools/mmdet_test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PRED.pkl]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]

The metrics are logged and written to the work dir (``--work-dir``, else the config's
``work_dir``, else ``work_dirs/<config name>``); ``--out`` also dumps the predictions.
"""

import argparse
import sys

import featsr_d2.mmdet  # noqa: F401  (registers featsr_d2's MMDetection components)
from featsr_d2.mmdet.runner import add_runner_arguments, load_config, parse_runner_args, test


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a detector (MMDetection)")
    parser.add_argument("config", help="test config file path, or mmdet::<path>")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="the dir to save the file with the metrics")
    parser.add_argument("--out", help="dump the predictions to this pickle file (.pkl)")
    add_runner_arguments(parser)
    return parse_runner_args(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(
        args.config, cfg_options=args.cfg_options, work_dir=args.work_dir, launcher=args.launcher
    )
    test(cfg, args.checkpoint, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
