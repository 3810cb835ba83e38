"""Config files are read with safe YAML: a Python tag is refused, naming the file and the line,
and its code never runs, directly or through a _BASE_ file."""

import pytest

from featsr_d2.config import get_featsr_cfg, get_sr_cfg
from featsr_d2.config_files import UnsafeConfigError


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
