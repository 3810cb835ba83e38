#!/usr/bin/env python
"""Paired bootstrap intervals of COCO AP for tools/tdsr_table_cpu.sh's table, from the detections
its evaluation saved (output/tdsr_res_cpu/table_x4/inference/*/coco_instances_results.json), for
when the table's own --compare was not run or was stopped (docs/RESULTS.md, issue 15).

OMP_NUM_THREADS=1 python tools/tdsr_table_bootstrap.py 300   # resamples
"""

import json
import sys
import time

from detectron2.data import DatasetCatalog

import featsr_d2  # noqa: F401
from featsr_d2.data.dataset_views import first_images
from featsr_d2.evaluation.lr_detection import ground_truth_boxes
from featsr_d2.evaluation.paired_bootstrap import CocoAP, format_interval, paired_bootstrap

T = "output/tdsr_res_cpu/table_x4/inference/"
name = first_images("tt100k_synth10_test", 100)
ids = [str(d["image_id"]) for d in DatasetCatalog.get(name)]
truth = ground_truth_boxes(name)
gt = [truth[i] for i in ids]
folders = {
    "Bicubic": "Bicubic",
    "SR-FT+_s0": "SR-FT__s0-a78c19d5",
    "SR-FT+_s1": "SR-FT__s1-2d40b0ec",
    "TDSR_b0.01_s0": "TDSR_b0.01_s0",
    "TDSR_b0.01_s1": "TDSR_b0.01_s1",
}
index = {i: k for k, i in enumerate(ids)}
aps = {}
for label, folder in folders.items():
    dets = [[] for _ in ids]
    for r in json.load(open(T + folder + "/coco_instances_results.json")):
        x, y, w, h = r["bbox"]
        dets[index[str(r["image_id"])]].append(([x, y, x + w, y + h], r["category_id"], r["score"]))
    aps[label] = CocoAP(gt, dets)
    print(label, "AP", round(aps[label](), 3), flush=True)
N = int(sys.argv[1])
out = {}
for a, b in [
    ("SR-FT+_s0", "Bicubic"),
    ("SR-FT+_s1", "Bicubic"),
    ("TDSR_b0.01_s0", "SR-FT+_s0"),
    ("TDSR_b0.01_s1", "SR-FT+_s1"),
    ("TDSR_b0.01_s0", "Bicubic"),
]:
    t = time.time()
    fa, fb = aps[a], aps[b]
    r = paired_bootstrap(
        len(ids), lambda idx, fa=fa, fb=fb: fa.on_indices(idx) - fb.on_indices(idx), num_samples=N
    )
    out[f"{a} - {b}"] = r
    print(
        f"{a} - {b}: {format_interval(r)} p>0 {r['p_above_0']:.3f} ({time.time() - t:.0f} s)",
        flush=True,
    )
json.dump(out, open("output/tdsr_res_cpu/table_x4/ap_bootstrap.json", "w"), indent=1)
