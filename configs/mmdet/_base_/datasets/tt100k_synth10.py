# The demo's synthetic TT100K: TT100K's ten most frequent classes, 320 px images, in the TT100K
# layout under data_root (data/tt100k_synth10/), written by
#   python -m featsr_d2.core.synthetic --out data/tt100k_synth10 --num-train 1500 --num-test 600 \
#       --categories pn,pne,i5,p11,pl40,po,pl50,io,pl80,p26
# Its classes are the types of its annotations.json, in that order (class_set "all"), as the
# Detectron2 names tt100k_synth10_{train,test}; the protocol scores every class ("all").
_base_ = "./tt100k.py"

data_root = "data/tt100k_synth10/"
classes = ("pn", "pne", "i5", "p11", "pl40", "po", "pl50", "io", "pl80", "p26")

train_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(320, 320), keep_ratio=True),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="Resize", scale=(320, 320), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),  # after Resize: boxes as annotated
    dict(
        type="PackDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "tt100k_objects"),
    ),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        class_set="all",
        metainfo=dict(classes=classes),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        class_set="all",
        metainfo=dict(classes=classes),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(types="all")
test_evaluator = val_evaluator
