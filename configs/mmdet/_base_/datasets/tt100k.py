# Tsinghua-Tencent 100K (the official 2016 release), the official 45 classes ("type45"), for
# MMDetection 3.x. Layout under data_root (MMDetection's convention: data/tt100k/ relative to the
# working directory; override train_dataloader.dataset.data_root and val/test_dataloader's):
# annotations.json, train/ids.txt, test/ids.txt, and the images, whose paths in annotations.json
# are relative to data_root. featsr_d2.mmdet.datasets.FeatSRTT100KDataset reads it with the same
# reader and bad-record policy as the Detectron2 loader (on_bad_record: "error" or "skip").
# Evaluation: the official TT100K protocol (featsr_d2.mmdet.tt100k_metric.FeatSRTT100KMetric), which
# scores each test image's ground truth as loaded ("tt100k_objects", packed as a meta key).
custom_imports = dict(imports=["featsr_d2.mmdet"], allow_failed_imports=False)

dataset_type = "FeatSRTT100KDataset"
data_root = "data/tt100k/"
backend_args = None

# The FeatSR paper's input: 1600 px (the 2048 px images scaled by 0.78). No random flip: traffic
# signs are not mirror-symmetric (a left turn mirrored is a right turn).
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(1600, 1600), keep_ratio=True),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale=(1600, 1600), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),  # after Resize: boxes as annotated
    dict(
        type="PackDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "tt100k_objects"),
    ),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations.json",
        split_file="train/ids.txt",
        data_prefix=dict(img=""),
        class_set="type45",
        on_bad_record="error",
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations.json",
        split_file="test/ids.txt",
        data_prefix=dict(img=""),
        class_set="type45",
        on_bad_record="error",
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader

# The official protocol: IoU strictly above 0.5, detections scoring at least 0.5, the 45 classes.
val_evaluator = dict(type="FeatSRTT100KMetric", iou=0.5, min_score=0.5, types="type45")
test_evaluator = val_evaluator
