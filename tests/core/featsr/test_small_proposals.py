"""Which proposals are small, the inference cap and the SR pairs, on hand-computed boxes."""

import torch

from featsr_d2.core.featsr import box_size, cap_small, small_mask, sr_pair_boxes

# sizes 10, 30, 0 (inverted), 64, 40, 24
BOXES = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [5.0, 5.0, 23.0, 55.0],
        [20.0, 20.0, 10.0, 30.0],
        [0.0, 0.0, 64.0, 64.0],
        [10.0, 0.0, 42.0, 50.0],
        [0.0, 0.0, 24.0, 24.0],
    ]
)


def test_box_size_is_the_square_root_of_the_area():
    torch.testing.assert_close(box_size(BOXES), torch.tensor([10.0, 30.0, 0.0, 64.0, 40.0, 24.0]))
    assert box_size(BOXES[:0]).shape == (0,)


def test_small_split_and_cap():
    mask = small_mask(BOXES, 32)
    assert mask.tolist() == [True, True, True, False, False, True]
    assert small_mask(BOXES, 30).tolist() == [True, False, True, False, False, True]  # strictly
    assert cap_small(mask, -1) is mask
    assert cap_small(mask, 2).tolist() == [True, True, False, False, False, False]
    assert cap_small(mask, 0).tolist() == [False] * 6
    assert cap_small(mask, 10).tolist() == mask.tolist()
    assert mask.tolist() == [True, True, True, False, False, True]  # unchanged


def test_sr_pairs_are_small_at_half_size_and_large_enough_at_full_size():
    # 0.5x sizes 5, 15, 0, 32, 20, 12: small below 32 -> all but the 64 px box; 1.0x size >= 16
    # -> not the 10 px nor the empty box.
    pairs = sr_pair_boxes(BOXES, small_size=32, target_min_size=16)
    torch.testing.assert_close(pairs, BOXES[[1, 4, 5]] * 0.5)
    torch.testing.assert_close(sr_pair_boxes(BOXES, 32, 16, max_pairs=2), BOXES[[1, 4]] * 0.5)
    assert sr_pair_boxes(BOXES, 32, 16, max_pairs=0).shape == (0, 4)
    assert sr_pair_boxes(BOXES[:0], 32, 16).shape == (0, 4)
