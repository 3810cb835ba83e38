"""The trainer behind ``tools/train_net.py``: Detectron2's DefaultTrainer with featsr_d2's
evaluators, atomic checkpoints, exact resume, CPU data parallelism, and FeatSR's discriminator
optimizer.

For a model with a FeatSR discriminator (``roi_heads.featsr.discriminator``), the SGD optimizer of
``SOLVER`` leaves the discriminator out, and the discriminator gets its own Adam optimizer
(``MODEL.FEATSR.DISCRIMINATOR_LR``), stepped after every iteration from the same backward pass
(the ROI heads arrange that each loss reaches only its own module; see
``featsr_d2.modeling.roi_heads.featsr_roi_heads``).

Exact resume: the checkpoint holds the model, both optimizers, the scheduler, the iteration and,
through :class:`featsr_d2.engine.training_state.TrainingStateHook`, every rank's random number
generators and data-stream position. The training data come from
:func:`featsr_d2.data.resumable_loader.build_resumable_train_loader`, whose batches are a function
of (seed, position). Training N iterations, stopping after a checkpoint and resuming
(``resume_or_load(resume=True)``) gives bit-identical parameters and optimizer states to an
uninterrupted run of N (``tests/engine/test_resume.py``, stage 1 and stage 2 on CPU). Evaluation
runs on isolated generators so that it does not change the training's random draws. Limits:

- the same world size and the same number of intra-op threads (floating-point reductions);
- on GPUs the generators and the data are restored exactly, but kernels with atomic additions
  (RoIAlign's backward, some cuDNN algorithms) differ from run to run anyway, resumed or not;
- PreciseBN's own loader (``TEST.PRECISE_BN``, off in every config) restarts at its beginning;
- a subclass whose ``build_train_loader`` returns another loader keeps the generator states but
  restarts its data stream (``build_resumable_train_loader(cfg, mapper)`` keeps it exact);
- the stream's own limits are in ``featsr_d2.data.resumable_loader``.

Data parallelism: under Detectron2's ``launch`` the model is wrapped in DistributedDataParallel
as DefaultTrainer wraps it (``broadcast_buffers=False``), with ``device_ids`` only for a CUDA
model: on a CPU-only machine ``launch`` starts gloo processes and a CPU model must be wrapped
without them. Gradients of every trained module, the discriminator included, are all-reduced in
the one backward pass; frozen parameters (stage 2's backbone and RPN) have no gradients and are
not reduced. Every trained parameter is reached by the loss in every iteration (an empty set of
small proposals or of SR pairs still gives a zero gradient; with ``MODEL.FEATSR.SUPERVISION: none``
the discriminator, which no loss reaches, is frozen), so DDP runs without
``find_unused_parameters``.
"""

import contextlib
import logging
import os
import weakref

import torch
from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_test_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from featsr_d2.checkpoint import build_checkpointer
from featsr_d2.data.checked_mapper import CheckedMapper
from featsr_d2.data.resumable_loader import build_resumable_train_loader
from featsr_d2.data.rng_state import isolated_rng
from featsr_d2.engine.setup import hold_output_folder
from featsr_d2.engine.training_state import TrainingStateHook
from featsr_d2.evaluation.tt100k_evaluator import build_tt100k_evaluator

logger = logging.getLogger(__name__)


def build_featsr_evaluator(cfg, dataset_name: str, output_folder: str | None = None):
    """The official TT100K protocol for TT100K-format datasets; COCO-style AP (AP, AP50, AP75,
    AP-S/M/L) for every other registered dataset, VOC included."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if MetadataCatalog.get(dataset_name).get("evaluator_type") == "tt100k":
        return build_tt100k_evaluator(cfg, dataset_name, output_folder)
    return COCOEvaluator(dataset_name, output_dir=output_folder)


def discriminator_of(model: torch.nn.Module) -> torch.nn.Module | None:
    """The FeatSR discriminator of ``model`` (DDP-wrapped or not), or None."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    branch = getattr(getattr(model, "roi_heads", None), "featsr", None)
    return getattr(branch, "discriminator", None)


@contextlib.contextmanager
def _without_grad(module: torch.nn.Module):
    """Temporarily mark ``module``'s parameters as not trainable."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class DiscriminatorStep(HookBase):
    """Steps the discriminator's optimizer after each iteration's backward pass."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def after_step(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class FeatSRTrainer(DefaultTrainer):
    """DefaultTrainer with TT100K/COCO-style evaluation, atomic checkpoints, exact resume, DDP on
    CPU or GPU, and the discriminator's own optimizer for FeatSR models."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__ in the same order, but with build_ddp_model (Detectron2's
        # create_ddp_model gives CPU models device_ids, which DDP rejects) and the atomic
        # checkpointer.
        TrainerBase.__init__(self)
        hold_output_folder(cfg)  # one run per OUTPUT_DIR (setup() holds it already for the tools)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = self.build_ddp_model(cfg, model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = build_checkpointer(
            cfg,
            model,
            cfg.OUTPUT_DIR,
            require_weights=self._frozen_weights(cfg, model),
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _frozen_weights(cfg, model: torch.nn.Module) -> tuple[list[str], str] | None:
        """What a FeatSR phase must load (it freezes it), and why; None for other models."""
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not hasattr(model, "frozen_weight_prefixes"):
            return None
        stage = cfg.MODEL.FEATSR.STAGE
        previous = "the stage-1 base detector" if stage == 2 else "FeatSR stage 2"
        if not cfg.MODEL.WEIGHTS:
            logger.warning(
                "FeatSR stage %d without MODEL.WEIGHTS: the parts it freezes (%s) keep their "
                "random initialization. Only a smoke run should do this; set MODEL.WEIGHTS to the "
                "weights of %s.",
                stage,
                ", ".join(model.frozen_weight_prefixes()),
                previous,
            )
        return model.frozen_weight_prefixes(), (
            f"FeatSR stage {stage} freezes these parts, so MODEL.WEIGHTS must hold them: use the "
            f"final weights of {previous} of this architecture (the _stage{stage} configs name "
            "them), not ImageNet weights or another model's checkpoint."
        )

    def resume_or_load(self, resume: bool = True):
        """As DefaultTrainer's; a changed ``MODEL.FEATSR.DISCRIMINATOR_LR`` replaces the rate
        restored with the discriminator optimizer's state (and says so)."""
        super().resume_or_load(resume=resume)
        if getattr(self, "optimizer_d", None) is None:
            return
        lr = self.cfg.MODEL.FEATSR.DISCRIMINATOR_LR
        for group in self.optimizer_d.param_groups:
            if group["lr"] != lr:
                logger.warning(
                    "MODEL.FEATSR.DISCRIMINATOR_LR is %g; the checkpoint's discriminator "
                    "optimizer had %g: continuing with %g",
                    lr,
                    group["lr"],
                    lr,
                )
                group["lr"] = lr

    @classmethod
    def build_ddp_model(cls, cfg, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel when there are several processes."""
        if comm.get_world_size() == 1:
            return model
        device = next(model.parameters()).device
        return DistributedDataParallel(
            model,
            device_ids=[comm.get_local_rank()] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )

    def build_hooks(self):
        ret = super().build_hooks()
        # Before the checkpointer (rank 0) and the evaluation (every rank, same place in the list).
        savers = (hooks.PeriodicCheckpointer, hooks.EvalHook)
        first = next((i for i, h in enumerate(ret) if isinstance(h, savers)), len(ret))
        ret.insert(first, TrainingStateHook(self.cfg.SOLVER.CHECKPOINT_PERIOD))
        self.optimizer_d = self.build_discriminator_optimizer(self.cfg, self.model)
        if self.optimizer_d is not None:
            self.checkpointer.add_checkpointable("optimizer_d", self.optimizer_d)
            ret.insert(0, DiscriminatorStep(self.optimizer_d))
        return ret

    @classmethod
    def build_train_loader(cls, cfg):
        """The resumable loader (:func:`build_resumable_train_loader`)."""
        return build_resumable_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's test loader, with an image that does not decode named (an evaluation
        cannot skip one: its ground truth would count as missed)."""
        mapper = CheckedMapper(DatasetMapper(cfg, is_train=False), "error")
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test on isolated generators: evaluating does not change training."""
        with isolated_rng():
            return super().test(cfg, model, evaluators)

    @classmethod
    def build_discriminator_optimizer(cls, cfg, model) -> torch.optim.Optimizer | None:
        """The FeatSR discriminator's own Adam optimizer (``MODEL.FEATSR.DISCRIMINATOR_LR``,
        betas (0.5, 0.999) as usual for GAN discriminators: the paper gives no optimizer), or None
        for a model without a discriminator."""
        discriminator = discriminator_of(model)
        if discriminator is None or not any(p.requires_grad for p in discriminator.parameters()):
            return None  # no discriminator, or a frozen one (stage 3, SUPERVISION detection_only)
        return torch.optim.Adam(
            discriminator.parameters(), lr=cfg.MODEL.FEATSR.DISCRIMINATOR_LR, betas=(0.5, 0.999)
        )

    @classmethod
    def build_optimizer(cls, cfg, model):
        discriminator = discriminator_of(model)
        if discriminator is None:
            return super().build_optimizer(cfg, model)
        with _without_grad(discriminator):  # the discriminator has its own optimizer
            return super().build_optimizer(cfg, model)

    def train(self):
        """Train, then return the final evaluation's results (DefaultTrainer returns them only when
        TEST.EXPECTED_RESULTS is set)."""
        super().train()
        return getattr(self, "_last_eval_results", None)  # set by DefaultTrainer's EvalHook

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_featsr_evaluator(cfg, dataset_name, output_folder)
