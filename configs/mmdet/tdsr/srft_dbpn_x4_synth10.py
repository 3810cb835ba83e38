# SR-FT 4x on the synthetic TT100K: the pretrained D-DBPN (Detectron2's tools/train_sr.py
# --config-file configs/sr/dbpn_x4.yaml, or any checkpoint of this DBPN) fine-tuned on the
# detection images with the reconstruction loss only (beta 0), 100k iterations at 1e-4.
_base_ = "./tdsr_dbpn_x4_synth10.py"

model = dict(beta=0.0, sr_checkpoint="output/sr/dbpn_x4/model_final.pth")
train_cfg = dict(max_iters=100000)
param_scheduler = []  # a constant learning rate
work_dir = "work_dirs/srft_dbpn_x4_synth10"
