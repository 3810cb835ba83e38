"""SR weights: an unreadable file is named; MODEL.SR.WARM_START initializes CAJNN from an RRDBNet
(and is refused for a network without a warm start); building loads none of them."""

import pytest
import torch

from featsr_d2.checkpoint import WeightsFileError, load_initial_sr_weights, read_sr_state_dict
from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.sr import RRDBNet
from featsr_d2.modeling.sr import build_sr_network

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "DBPN": ["MODEL.SR.DBPN.FEAT", 8, "MODEL.SR.DBPN.BASE_FILTER", 4,
             "MODEL.SR.DBPN.NUM_STAGES", 2],
    "CAJNN": ["MODEL.SR.CAJNN.NUM_FEAT", 8, "MODEL.SR.CAJNN.GROWTH", 4],
}  # fmt: skip


def sr_cfg(name: str, *opts):
    cfg = get_featsr_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SR.NAME", name, *TINY[name], *opts])
    return cfg


def tiny_rrdbnet_state(num_blocks: int = 3) -> dict[str, torch.Tensor]:
    return RRDBNet(scale=4, num_feat=8, num_blocks=num_blocks, growth=4).state_dict()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_unreadable_sr_weights_are_named(tmp_path, content):
    path = tmp_path / "sr.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=r"sr\.pth: not a readable SR checkpoint"):
        read_sr_state_dict(str(path))


def test_warm_start_from_config_and_weights_take_precedence(tmp_path):
    path = str(tmp_path / "rrdb.pth")
    source = tiny_rrdbnet_state(num_blocks=2)
    torch.save({"model": source}, path)
    opts = ["MODEL.SR.CAJNN.NUM_BLOCKS", 2, "MODEL.SR.RESIDUAL", True]
    cfg = sr_cfg("CAJNN", *opts, "MODEL.SR.WARM_START", path)
    model = build_sr_network(cfg)
    load_initial_sr_weights(model, warm_start=cfg.MODEL.SR.WARM_START)
    torch.testing.assert_close(
        model.state_dict()["trunk.0.rdb1.conv1.weight"], source["body.0.rdb1.conv1.weight"]
    )
    with pytest.raises(ValueError, match="has no warm start"):
        load_initial_sr_weights(build_sr_network(sr_cfg("DBPN")), warm_start=path)


def test_building_loads_no_sr_weights(tmp_path):
    """A network whose MODEL.SR.WEIGHTS does not exist builds; loading them names the file."""
    cfg = sr_cfg("DBPN", "MODEL.SR.WEIGHTS", str(tmp_path / "missing.pth"))
    model = build_sr_network(cfg)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_initial_sr_weights(model, weights=cfg.MODEL.SR.WEIGHTS)
