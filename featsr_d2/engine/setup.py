"""Config set-up shared by the tools: Detectron2 defaults, featsr_d2 keys, file, overrides."""

from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from featsr_d2.config import add_featsr_config
from featsr_d2.data import set_bad_record_policy


def get_featsr_cfg(config_file: str | None = None, opts: list[str] | None = None):
    """A config with featsr_d2's keys, merged from ``config_file`` and ``opts``; not frozen."""
    cfg = get_cfg()
    add_featsr_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    return cfg


def setup(args):
    """The config for a tool run from Detectron2's ``default_argument_parser`` arguments."""
    cfg = get_featsr_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers; ours report tables and skips.
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="featsr_d2", abbrev_name="featsr"
    )
    set_bad_record_policy(cfg.DATASETS.TRAIN + cfg.DATASETS.TEST, cfg.DATASETS.TT100K.ON_BAD_RECORD)
    return cfg
