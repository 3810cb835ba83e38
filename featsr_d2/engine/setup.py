"""Config set-up shared by the tools: Detectron2 defaults, featsr_d2 keys, file, overrides.

The file is read with safe YAML (:func:`featsr_d2.config_files.merge_config_file`) and every key
featsr_d2 adds is checked against its allowed range
(:func:`featsr_d2.config_validation.validate_config`) before anything is built.
"""

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from featsr_d2.checkpoint import ALLOW_PICKLE_FLAG, allow_pickle_weights
from featsr_d2.config import FEATSR_STAGES, add_featsr_config, enable_featsr
from featsr_d2.config_files import merge_config_file
from featsr_d2.config_validation import validate_config
from featsr_d2.data import set_bad_record_policy


def get_featsr_cfg(
    config_file: str | None = None,
    opts: list[str] | None = None,
    *,
    featsr_stage: int | None = None,
):
    """A config with featsr_d2's keys, merged from ``config_file`` (safe YAML) and ``opts``, turned
    into FeatSR's model of ``featsr_stage`` (:func:`featsr_d2.config.enable_featsr`) when given,
    its featsr_d2 keys validated; not frozen."""
    cfg = get_cfg()
    add_featsr_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    cfg.merge_from_list(list(opts or []))
    if featsr_stage is not None:
        enable_featsr(cfg, stage=featsr_stage)
    validate_config(cfg)
    return cfg


def argument_parser(epilog: str | None = None):
    """Detectron2's ``default_argument_parser`` plus featsr_d2's ``--allow-pickle-weights``."""
    parser = default_argument_parser(epilog)
    parser.add_argument(
        ALLOW_PICKLE_FLAG,
        action="store_true",
        help="allow .pkl weights (e.g. Detectron2's model zoo detectron2://...R-50.pkl). They are "
        "read with pickle, which RUNS ANY CODE the file holds: use only files from a source you "
        "trust. Without it .pkl weights are refused; .pth files never need it",
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
    cfg = get_featsr_cfg(
        args.config_file, args.opts, featsr_stage=getattr(args, "featsr_stage", None)
    )
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers; ours report tables and skips.
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="featsr_d2", abbrev_name="featsr"
    )
    set_bad_record_policy(cfg.DATASETS.TRAIN + cfg.DATASETS.TEST, cfg.DATASETS.TT100K.ON_BAD_RECORD)
    return cfg
