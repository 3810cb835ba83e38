# SR-FT+ 4x on the synthetic TT100K: TDSR's schedule from the SR-FT model with beta 0.
_base_ = "./tdsr_dbpn_x4_synth10.py"

model = dict(beta=0.0)
work_dir = "work_dirs/srft_plus_dbpn_x4_synth10"
