"""Config files are read with safe YAML: a Python tag is refused, naming the file and the line,
and its code never runs, directly or through a _BASE_ file; the one exception, an expression, is
evaluated by a restricted evaluator in the model zoo's configs and, with the opt-in, in a user's.
A duplicated key, a _BASE_ cycle, a file that is not UTF-8 and an unreadable _BASE_ are named."""

import logging
import re

import pytest

from featsr_d2.config import get_featsr_cfg, get_sr_cfg
from featsr_d2.config_files import (
    UnsafeConfigError,
    allow_config_expressions,
    evaluate_expression,
)


def _evil(tmp_path, name="evil.yaml", base=None):
    marker = tmp_path / "code_ran"
    lines = [f"_BASE_: {base}"] if base else []
    lines += [
        "MODEL:",
        f"  WEIGHTS: !!python/object/apply:os.system ['touch {marker}']",
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path, marker


@pytest.mark.parametrize("load", [get_featsr_cfg, get_sr_cfg], ids=["featsr", "sr"])
def test_python_tags_are_refused(tmp_path, load):
    evil, marker = _evil(tmp_path)
    with pytest.raises(UnsafeConfigError, match=r"evil\.yaml, line 2: .*python/object/apply"):
        load(str(evil))
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: evil.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    with pytest.raises(UnsafeConfigError, match=r"evil\.yaml, line 2"):
        load(str(leaf))
    assert not marker.exists()


def test_missing_config_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml does not exist"):
        get_featsr_cfg(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n"], ids=["empty", "list"])
def test_config_that_is_not_a_mapping_is_named(tmp_path, text):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"odd\.yaml .*is not a YAML mapping"):
        get_featsr_cfg(str(path))


# ------------------------------------------------------------------------------------------------
# Duplicate keys (issue 22.5)


def test_a_key_given_twice_is_refused_naming_file_key_and_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("SOLVER:\n  MAX_ITER: 3\nMODEL:\n  DEVICE: cpu\nSOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(ValueError, match=r"twice\.yaml: the key SOLVER is given twice, on lines 1 "
                       r"and 5"):  # fmt: skip
        get_featsr_cfg(str(path))
    nested = tmp_path / "nested.yaml"
    nested.write_text("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n    NUM_CLASSES: 5\n")
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: nested.yaml\n")
    with pytest.raises(ValueError, match=r"nested\.yaml: the key MODEL\.ROI_HEADS\.NUM_CLASSES is "
                       r"given twice, on lines 3 and 4"):  # fmt: skip
        get_featsr_cfg(str(leaf))


def test_the_same_key_in_a_base_and_its_leaf_is_no_duplicate(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  MAX_ITER: 3\n  BASE_LR: 0.5\n")
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    cfg = get_featsr_cfg(str(leaf))
    assert cfg.SOLVER.MAX_ITER == 3 and cfg.SOLVER.BASE_LR == 0.1


# ------------------------------------------------------------------------------------------------
# Files that cannot be read: each named (issue 22.10)


def test_a_base_cycle_is_named_with_its_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: c.yaml\n")
    (tmp_path / "c.yaml").write_text("_BASE_: b.yaml\n")
    with pytest.raises(ValueError, match=r"form a cycle: .*b\.yaml -> .*c\.yaml -> .*b\.yaml$"):
        get_featsr_cfg(str(tmp_path / "a.yaml"))
    (tmp_path / "self.yaml").write_text("_BASE_: self.yaml\n")
    with pytest.raises(ValueError, match=r"form a cycle: .*self\.yaml -> .*self\.yaml$"):
        get_featsr_cfg(str(tmp_path / "self.yaml"))


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("# réglages\nSOLVER:\n  MAX_ITER: 3\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.yaml: not UTF-8 text \(byte 3, line 1"):
        get_featsr_cfg(str(tmp_path / "latin1.yaml"))
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: latin1.yaml\n")
    with pytest.raises(ValueError, match=r"latin1\.yaml: not UTF-8"):
        get_featsr_cfg(str(leaf))


def test_an_unreachable_base_url_is_named_with_the_file(tmp_path):
    leaf = tmp_path / "leaf.yaml"
    url = "http://127.0.0.1:9/configs/Base.yaml"  # the discard port: the connection is refused
    leaf.write_text(f"_BASE_: {url}\n")
    with pytest.raises(ValueError, match=rf"leaf\.yaml: its _BASE_ {re.escape(url)} cannot be "
                       "fetched"):  # fmt: skip
        get_featsr_cfg(str(leaf))


def test_a_missing_base_is_named_with_the_file(tmp_path):
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: gone.yaml\n")
    with pytest.raises(ValueError, match=r"leaf\.yaml: its _BASE_ .*gone\.yaml cannot be read"):
        get_featsr_cfg(str(leaf))


# ------------------------------------------------------------------------------------------------
# Expressions: Detectron2's model zoo, and a user's file with the opt-in (issue 22.12)

ANCHORS = "[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in [32, 64, 128, 256, 512 ]]"


def _sizes_file(path, expression: str):
    """A config whose MODEL.ANCHOR_GENERATOR.SIZES (line 3) is the tagged ``expression``."""
    path.write_text(
        'MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:eval ["'
        + expression.replace('"', '\\"')
        + '"]\n'
    )
    return str(path)


def test_the_model_zoo_retinanet_config_loads_with_its_anchor_expression():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    cfg = get_featsr_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
    expected = [[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]]
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == expected


@pytest.fixture
def expressions_opt_in():
    yield allow_config_expressions
    allow_config_expressions(False)


def test_a_users_expression_needs_the_opt_in_and_then_warns(tmp_path, expressions_opt_in, caplog):
    path = _sizes_file(tmp_path / "mine.yaml", ANCHORS)
    with pytest.raises(UnsafeConfigError, match=r"mine\.yaml, line 3: .*allow-config-expressions"):
        get_featsr_cfg(path)
    expressions_opt_in()
    with caplog.at_level(logging.WARNING, logger="featsr_d2.config_files"):
        cfg = get_featsr_cfg(path)
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES[4][0] == 512
    assert "mine.yaml, line 3: evaluated the expression" in caplog.text
    evil, marker = _evil(tmp_path)  # every other Python tag stays refused with the opt-in
    with pytest.raises(UnsafeConfigError, match=r"evil\.yaml, line 2: .*python/object/apply"):
        get_featsr_cfg(str(evil))
    assert not marker.exists()


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch {marker}')",
        "open('{marker}', 'w')",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "(lambda: 1)()",
        "[1] * 10**9",
        "9**9**9",
        "[x for x in [1, 2] if x]",
    ],
)
def test_the_evaluator_refuses_everything_but_literals_and_arithmetic(
    tmp_path, expressions_opt_in, expression
):
    marker = tmp_path / "code_ran"
    path = _sizes_file(tmp_path / "evil.yaml", expression.format(marker=marker))
    expressions_opt_in()
    with pytest.raises(UnsafeConfigError, match=r"evil\.yaml, line 3: .*not allowed"):
        get_featsr_cfg(path)
    assert not marker.exists()


def test_evaluate_expression_values():
    assert evaluate_expression("[2**-1, -3 // 2, 7 % 4, (1, 'a')]") == [0.5, -2, 3, (1, "a")]
    assert evaluate_expression("[[a, b] for a in [1, 2] for b in [10]]") == [[1, 10], [2, 10]]
    with pytest.raises(ValueError, match="the name 'y'"):
        evaluate_expression("[y for x in [1]]")
