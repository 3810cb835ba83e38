"""Every config under configs/mmdet builds its model and optimizers (a dataset base this branch
lacks is replaced by a stand-in: the model needs no data), and the FeatSR ones chain as the
paper's phases: stage 2 loads stage 1's final checkpoint and stage 3 stage 2's, each phase
trains what it should, the sub layers are the documented ones, the demo's supervision is one
field."""

import glob
import os

import pytest
from featsr_mmdet import CONFIGS, LAYOUTS, build, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.py")))
SUB_LAYERS = {
    "R50-FPN": ["layer1", "layer2", "layer3"],
    "R50-C4": ["layer2"],
    "MNV2-FPN": ["layer2", "layer3", "layer5"],
}


def test_every_config_is_a_layout_of_the_table():
    assert ALL == sorted(c for configs in LAYOUTS.values() for c in configs)


@pytest.mark.parametrize("name", ALL)
def test_each_config_builds_its_model_and_optimizers(name):
    from mmengine.optim import OptimWrapperDict, build_optim_wrapper

    cfg = load_config(name)
    cfg.model.backbone.init_cfg = None  # no ImageNet file to read (or fetch) for building
    if cfg.model.roi_head.get("shared_head"):
        cfg.model.roi_head.shared_head.init_cfg = None
    model = build(cfg)
    wrappers = build_optim_wrapper(model, cfg.optim_wrapper)
    featsr = name.startswith("featsr_")
    assert type(model).__name__ == ("FeatSRFasterRCNN" if featsr else "FasterRCNN")
    assert isinstance(wrappers, OptimWrapperDict) == featsr
    num_classes = 10 if "synth10" in name else 45
    assert model.roi_head.bbox_head.num_classes == num_classes
    if not featsr:
        return
    stage = model.roi_head.stage
    assert stage == (3 if name.endswith("_stage3.py") else 2)
    names = ["detector", "discriminator"] if stage == 2 else ["detector"]
    assert sorted(wrappers.keys()) == names
    assert set(cfg.param_scheduler) == {"detector", "discriminator"}
    assert cfg.model_wrapper_cfg.type == "FeatSRDistributedDataParallel"
    assert "featsr_d2.mmdet" in cfg.custom_imports.imports
    layout = next(k for k, v in LAYOUTS.items() if name in v)
    assert model.sub_layers == SUB_LAYERS[layout]
    assert model.roi_head.small_size == 32 and model.roi_head.target_min_size == 16


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_phase_loads_the_previous_phases_final_checkpoint(layout):
    configs = [load_config(name) for name in LAYOUTS[layout]]
    for previous, current in zip(configs, configs[1:]):
        final = f"{previous.work_dir}/iter_{previous.train_cfg.max_iters}.pth"
        assert current.load_from == final
        assert current.model.backbone.init_cfg is None  # every weight comes from load_from
    names = [os.path.splitext(n)[0] for n in LAYOUTS[layout]]
    assert [os.path.basename(c.work_dir) for c in configs] == names


def test_the_demos_supervision_is_one_field():
    """The stage-2 demo config sets it (as MODEL.FEATSR.SUPERVISION of the Detectron2 demo);
    stage 3 inherits it."""
    stage2, stage3 = (load_config(n) for n in LAYOUTS["MNV2-FPN"][1:])
    assert stage2.model.roi_head.supervision == "extractor"
    assert stage3.model.roi_head.supervision == "extractor"
    with open(os.path.join(CONFIGS, LAYOUTS["MNV2-FPN"][2])) as f:
        assert "supervision" not in f.read()
