"""Set-up shared by the tools: the config of a run (:func:`featsr_d2.config.get_featsr_cfg`, which
reads the file with safe YAML and checks every key featsr_d2 adds), the argument parser, the
output folder's lock, logging, and the CPU fallback of the SR tools.
"""

import logging

import torch
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from featsr_d2.checkpoint import ALLOW_PICKLE_FLAG, allow_pickle_weights
from featsr_d2.config import FEATSR_STAGES, get_featsr_cfg
from featsr_d2.config_files import ALLOW_CONFIG_EXPRESSIONS_FLAG, allow_config_expressions
from featsr_d2.data import set_bad_record_policy
from featsr_d2.utils.output_lock import claim_output_dir

__all__ = ["argument_parser", "cpu_without_cuda", "hold_output_folder", "setup"]

logger = logging.getLogger(__name__)


def argument_parser(epilog: str | None = None):
    """Detectron2's ``default_argument_parser`` plus featsr_d2's ``--allow-pickle-weights``,
    ``--allow-config-expressions`` and ``--featsr-stage``."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        ALLOW_PICKLE_FLAG,
        action="store_true",
        help="allow .pkl weights (e.g. Detectron2's model zoo detectron2://...R-50.pkl). They are "
        "read with pickle, which RUNS ANY CODE the file holds: use only files from a source you "
        "trust. Without it .pkl weights are refused; .pth files never need it",
    )
    parser.add_argument(
        ALLOW_CONFIG_EXPRESSIONS_FLAG,
        action="store_true",
        help="evaluate !!python/object/apply:eval expressions in your own config files (with a "
        "restricted evaluator: numbers, lists, arithmetic, list comprehensions; other Python "
        "tags stay refused). Detectron2's model-zoo configs never need it",
    )
    parser.add_argument(
        "--featsr-stage",
        type=int,
        choices=FEATSR_STAGES,
        default=None,
        help="turn the config (any Detectron2 Faster R-CNN: C4, DC5 or FPN) into FeatSR's model "
        "of this phase of the paper: 2 trains the generator, discriminator and small predictor "
        "from the stage-1 detector's MODEL.WEIGHTS; 3 fine-tunes both predictors from stage 2's",
    )
    return parser


def setup(args):
    """The config for a tool run from :func:`argument_parser`'s (or Detectron2's
    ``default_argument_parser``'s) arguments."""
    if getattr(args, "allow_pickle_weights", False):  # the flag; never a config key
        allow_pickle_weights()
    if getattr(args, "allow_config_expressions", False):  # likewise
        allow_config_expressions()
    cfg = get_featsr_cfg(
        args.config_file, args.opts, featsr_stage=getattr(args, "featsr_stage", None)
    )
    cfg.freeze()
    hold_output_folder(cfg)  # before default_setup writes config.yaml and the log there
    default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers; ours report tables and skips.
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="featsr_d2", abbrev_name="featsr"
    )
    set_bad_record_policy(cfg.DATASETS.TRAIN + cfg.DATASETS.TEST, cfg.DATASETS.TT100K.ON_BAD_RECORD)
    return cfg


def hold_output_folder(cfg) -> None:
    """The main process holds ``cfg.OUTPUT_DIR`` until it exits: a second run into the folder
    stops at once, naming the holder (:mod:`featsr_d2.utils.output_lock`)."""
    if comm.is_main_process():
        claim_output_dir(cfg.OUTPUT_DIR)


def cpu_without_cuda(cfg):
    """Set ``cfg.MODEL.DEVICE`` to "cpu" (saying so) when it names CUDA and no CUDA device is
    available, so that the SR tools run on any machine by default; returns ``cfg``."""
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but no CUDA device is available: using cpu",
                       cfg.MODEL.DEVICE)  # fmt: skip
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        if was_frozen:
            cfg.freeze()
    return cfg
