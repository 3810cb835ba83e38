# SR-FT+ 4x on PASCAL VOC (Table 1, "100k:1:0+200k:1:0"): TDSR's schedule from the SR-FT model with
# beta 0 (the detector is not run), the control that isolates the detection loss's effect from the
# longer training.
_base_ = "./tdsr_dbpn_x4_voc.py"

model = dict(beta=0.0)
