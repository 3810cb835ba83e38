# TDSR 4x on PASCAL VOC, the paper's Table 1 setting (Haris et al., ICONIP 2021): D-DBPN trained
# through the frozen SSD300 (VGG16) of MMDetection's pascal_voc/ssd300_voc0712.py, the paper's
# detector, for 200k iterations of eq. 3, L = 1.0 * MSE(x_h, S(x_l)) + 0.01 * SSD's losses, from the
# SR-FT model (srft_dbpn_x4_voc.py). Train the detector first (MMDetection's own config):
#   python tools/mmdet_train.py mmdet::pascal_voc/ssd300_voc0712.py
# LR inputs: MATLAB-bicubic 1/4 of the 300x300 image SSD's own augmentations make (section 4.1:
# photometric distortion, expansion, random crops, flips: the SSD training pipeline, restated
# below with the LR step at its end). Section 4.1's training: batch 6, Adam (beta1 0.9) at 1e-4,
# divided by 10 after 200k of the 300k iterations (100k SR-FT + 200k TDSR), so this phase divides
# it at its 100k-th iteration.
_base_ = "mmdet::pascal_voc/ssd300_voc0712.py"
custom_imports = dict(imports=["featsr_d2.mmdet"], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type="FeatSRTaskDrivenSR",
    detector={{_base_.model}},
    sr=dict(type="DBPN", scale=4, feat=256, base_filter=64, num_stages=7),
    alpha=1.0,
    beta=0.01,
    reconstruction_loss="MSE",
    sr_checkpoint="work_dirs/srft_dbpn_x4_voc/iter_100000.pth",
    detector_checkpoint="work_dirs/ssd300_voc0712/epoch_24.pth",
)

input_size = 300
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(
        type="Expand",
        mean={{_base_.model.data_preprocessor.mean}},
        to_rgb={{_base_.model.data_preprocessor.bgr_to_rgb}},
        ratio_range=(1, 4),
    ),
    dict(type="MinIoURandomCrop", min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type="Resize", scale=(input_size, input_size), keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="PhotoMetricDistortion",
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ),
    dict(type="FeatSRMakeLRImage", scale=4, degradations=["bicubic"]),
    dict(type="FeatSRPackLRDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="Resize", scale=(input_size, input_size), keep_ratio=False),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="FeatSRMakeLRImage", scale=4, degradations=["bicubic"], seed=0),
    dict(
        type="FeatSRPackLRDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
    ),
]
train_dataloader = dict(
    batch_size=6,
    dataset=dict(
        dataset=dict(
            datasets=[
                dict(
                    type="VOCDataset",
                    data_root={{_base_.data_root}},
                    ann_file="VOC2007/ImageSets/Main/trainval.txt",
                    data_prefix=dict(sub_data_root="VOC2007/"),
                    filter_cfg=dict(filter_empty_gt=True, min_size=32),
                    pipeline=train_pipeline,
                ),
                dict(
                    type="VOCDataset",
                    data_root={{_base_.data_root}},
                    ann_file="VOC2012/ImageSets/Main/trainval.txt",
                    data_prefix=dict(sub_data_root="VOC2012/"),
                    filter_cfg=dict(filter_empty_gt=True, min_size=32),
                    pipeline=train_pipeline,
                ),
            ]
        )
    ),
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=200000, val_interval=10000)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="Adam", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0),
)
param_scheduler = [
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=200000, milestones=[100000], gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=6)
