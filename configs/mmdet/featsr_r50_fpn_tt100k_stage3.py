# FeatSR stage 3 (section 4.3): both predictors fine-tuned, the large one on large proposals only;
# G, D, backbone and RPN frozen. From stage 2's weights (featsr_r50_fpn_tt100k.py).
# Mirrors configs/featsr_R50_FPN_tt100k_stage3.yaml (Detectron2).
_base_ = "./featsr_r50_fpn_tt100k.py"
model = dict(roi_head=dict(stage=3))
load_from = "output/mmdet/featsr_r50_fpn_tt100k/iter_14000.pth"
# The paper gives no stage-3 schedule; ours: about a third of stage 2's iterations at its rate.
param_scheduler = dict(
    _delete_=True,
    detector=[
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=5000, milestones=[4000]),
    ],
    discriminator=[],
)
train_cfg = dict(max_iters=5000)
work_dir = "output/mmdet/featsr_r50_fpn_tt100k_stage3"
