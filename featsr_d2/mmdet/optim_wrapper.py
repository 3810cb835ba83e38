"""FeatSR's two optimizers in mmengine, as the Detectron2 trainer has them
(``featsr_d2/engine/trainer.py``): the detector's (SGD in the configs) for what the phase trains
but the discriminator D, and D's own (Adam, betas (0.5, 0.999): the paper gives no optimizer),
both stepped after each iteration's single backward pass. The FeatSR head arranges that each loss
reaches only its own module (the adversarial loss sees D through detached parameters, the
discriminator's loss sees G's output detached), so G and D are trained in alternation within
each iteration, as the paper trains them alternately.

- :class:`FeatSROptimWrapperConstructor` (``optim_wrapper=dict(constructor=
  'FeatSROptimWrapperConstructor', detector=dict(...), discriminator=dict(...))``) builds an
  ``OptimWrapperDict``: ``detector`` by mmengine's default constructor over the model without D's
  parameters (its own ``paramwise_cfg`` allowed), and ``discriminator`` over D's, only when D
  trains (stage 2 with a supervision that trains it). Schedule them with
  ``param_scheduler=dict(detector=[...], discriminator=[])`` (D's rate is constant, as in
  Detectron2); a name the dict lacks is ignored.
- :func:`featsr_train_step` is the detector's ``train_step``: the forward in the detector
  wrapper's ``optim_context``, ``update_params`` of the detector wrapper (backward, and the step
  when gradient accumulation says so), then D's step and ``zero_grad`` at the same moments. It
  refuses a plain optimizer wrapper when D trains (SGD would step D too) and runs only once the
  frozen weights were loaded.
- :class:`FeatSRDistributedDataParallel` (``model_wrapper_cfg=dict(type=
  'FeatSRDistributedDataParallel')``) is mmengine's ``MMDistributedDataParallel`` with that
  ``train_step``: mmengine's own would call ``update_params`` of the ``OptimWrapperDict``, which
  it does not implement. Every trained parameter gets a gradient in every iteration (empty sets of
  small proposals or SR pairs give zero gradients; a D that no loss reaches is frozen), so
  ``find_unused_parameters`` is not needed.

Mixed precision is refused: the loss scaler of an ``AmpOptimWrapper`` would scale D's gradients
too, which D's wrapper would not unscale.
"""

from __future__ import annotations

import copy

import torch
from mmdet.registry import MODEL_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper, OptimWrapperDict
from torch import nn

__all__ = [
    "FeatSRDistributedDataParallel",
    "FeatSROptimWrapperConstructor",
    "discriminator_of",
    "featsr_train_step",
]


def discriminator_of(model: nn.Module) -> nn.Module | None:
    """The FeatSR discriminator of ``model`` (wrapped or not), or None."""
    if is_model_wrapper(model):
        model = model.module
    branch = getattr(getattr(model, "roi_head", None), "featsr", None)
    return getattr(branch, "discriminator", None)


def _trains(module: nn.Module | None) -> bool:
    return module is not None and any(p.requires_grad for p in module.parameters())


_REFUSED_WRAPPERS = ("AmpOptimWrapper",)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FeatSROptimWrapperConstructor:
    """Builds ``OptimWrapperDict(detector=..., discriminator=...)`` for a FeatSR detector (the
    module docstring)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        """
        Args:
            optim_wrapper_cfg: ``detector`` and ``discriminator``, each an optimizer wrapper
                config (``type``, ``optimizer``, and for ``detector`` optionally
                ``paramwise_cfg``); ``discriminator`` may be absent when D never trains.
            paramwise_cfg: must be None: give it inside ``detector``.
        """
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.detector_cfg = cfg.pop("detector", None)
        self.discriminator_cfg = cfg.pop("discriminator", None)
        if self.detector_cfg is None or cfg or paramwise_cfg:
            raise ValueError(
                "FeatSROptimWrapperConstructor takes optim_wrapper=dict(constructor=..., "
                "detector=<optimizer wrapper>, discriminator=<optimizer wrapper>), got the keys "
                f"{sorted(optim_wrapper_cfg)}{' and a paramwise_cfg' if paramwise_cfg else ''} "
                "(a paramwise_cfg goes inside detector)"
            )
        for name, wrapper in (
            ("detector", self.detector_cfg),
            ("discriminator", self.discriminator_cfg),
        ):
            if isinstance(wrapper, dict) and wrapper.get("type") in _REFUSED_WRAPPERS:
                raise ValueError(
                    f"FeatSR's {name} optimizer cannot be an {wrapper['type']}: the two optimizers "
                    "share one backward pass, whose loss scaler would scale the discriminator's "
                    "gradients too"
                )

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        if is_model_wrapper(model):
            model = model.module
        detector_cfg = dict(self.detector_cfg)
        paramwise = detector_cfg.pop("paramwise_cfg", None)
        detector = DefaultOptimWrapperConstructor(detector_cfg, paramwise)(model)
        discriminator = discriminator_of(model)
        if discriminator is not None:  # D has its own optimizer (or none when frozen)
            own = {id(p) for p in discriminator.parameters()}
            groups = detector.optimizer.param_groups
            for group in groups:
                group["params"] = [p for p in group["params"] if id(p) not in own]
            groups[:] = [g for g in groups if g["params"]]
        wrappers = {"detector": detector}
        if _trains(discriminator):
            if self.discriminator_cfg is None:
                raise ValueError(
                    "This FeatSR phase trains the discriminator: give optim_wrapper a "
                    "discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', "
                    "lr=1e-4, betas=(0.5, 0.999)))"
                )
            wrappers["discriminator"] = DefaultOptimWrapperConstructor(
                dict(self.discriminator_cfg)
            )(discriminator)
        return OptimWrapperDict(**wrappers)


def _split(module: nn.Module, optim_wrapper) -> tuple[OptimWrapper, OptimWrapper | None]:
    """The detector's and the discriminator's wrappers."""
    if isinstance(optim_wrapper, OptimWrapperDict):
        names = set(optim_wrapper.keys())
        if "detector" not in names or names - {"detector", "discriminator"}:
            raise ValueError(
                "FeatSR's optimizer wrappers are 'detector' and 'discriminator', got "
                f"{sorted(names)}"
            )
        wrappers = dict(optim_wrapper.items())
        detector, discriminator = wrappers["detector"], wrappers.get("discriminator")
    else:
        detector, discriminator = optim_wrapper, None
    if _trains(discriminator_of(module)) and discriminator is None:
        raise ValueError(
            "This FeatSR phase trains the discriminator with its own optimizer: build the "
            "optimizer wrappers with optim_wrapper=dict(constructor="
            "'FeatSROptimWrapperConstructor', detector=..., discriminator=...)"
        )
    return detector, discriminator


def featsr_train_step(model: nn.Module, module: nn.Module, data, optim_wrapper) -> dict:
    """One training iteration of the FeatSR detector ``module``, run through ``model`` (the module
    itself, or its distributed wrapper): the forward, one backward pass, the detector's optimizer
    step and, where D trains, D's. Returns the log variables."""
    module.require_frozen_weights()
    detector, discriminator = _split(module, optim_wrapper)
    with detector.optim_context(model):
        data = module.data_preprocessor(data, True)
        losses = model._run_forward(data, mode="loss")
    parsed_losses, log_vars = module.parse_losses(losses)
    detector.update_params(parsed_losses)
    if discriminator is not None and detector.should_update():
        discriminator.step()
        discriminator.zero_grad()
    return log_vars


@MODEL_WRAPPERS.register_module()
class FeatSRDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` with FeatSR's two-optimizer training step."""

    def train_step(self, data, optim_wrapper) -> dict[str, torch.Tensor]:
        return featsr_train_step(self, self.module, data, optim_wrapper)
