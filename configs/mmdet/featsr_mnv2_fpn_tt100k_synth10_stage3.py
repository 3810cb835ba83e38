# FeatSR stage 3 of the CPU demo (section 4.3): both predictors fine-tuned, the large one on large
# proposals only; G, D, backbone, neck and RPN frozen. From stage 2's weights
# (featsr_mnv2_fpn_tt100k_synth10.py). Mirrors configs/featsr_MNV2_FPN_synth_stage3.yaml.
_base_ = "./featsr_mnv2_fpn_tt100k_synth10.py"
model = dict(roi_head=dict(stage=3))
load_from = "output/mmdet/featsr_mnv2_fpn_tt100k_synth10/iter_800.pth"
# The paper gives no stage-3 schedule; ours: a third of stage 2's iterations, at the rate the base
# detector ended its first step at (the large predictor is fine-tuned, not retrained).
optim_wrapper = dict(detector=dict(optimizer=dict(lr=0.002)))
param_scheduler = dict(
    _delete_=True,
    detector=[
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=10),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=400, milestones=[320]),
    ],
    discriminator=[],
)
train_cfg = dict(max_iters=400, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=100))
work_dir = "output/mmdet/featsr_mnv2_fpn_tt100k_synth10_stage3"
