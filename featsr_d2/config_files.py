"""Reading config files: the one way featsr_d2 merges a YAML file into a config.

Detectron2's ``CfgNode.merge_from_file`` falls back to ``yaml.unsafe_load`` by default, so a tag
such as ``!!python/object/apply:os.system`` in a config (or in one of its ``_BASE_`` files) runs
code. :func:`merge_config_file` reads with safe YAML only and refuses such a file, naming it and
the line. Every config featsr_d2 reads (``--config-file``, ``MODEL.TDSR.DETECTOR_CONFIG``, the
tools' ``--model`` and ``--row`` configs) goes through it.

A config key that names another file (:data:`PATH_KEYS`) is relative to the folder of the config
file that sets it (the file of the ``_BASE_`` chain whose value wins), as ``_BASE_`` itself is;
:func:`merge_config_file` makes it absolute. A value given by ``opts`` is left as it is (relative
to the working directory).
"""

import os

import yaml
from detectron2.utils.file_io import PathManager

__all__ = ["PATH_KEYS", "UnsafeConfigError", "merge_config_file"]

# Keys whose value is a file path, relative to the config file that sets it.
PATH_KEYS = ("MODEL.TDSR.DETECTOR_CONFIG",)


class UnsafeConfigError(ValueError):
    """A config file that safe YAML cannot read because it asks to construct Python objects."""


def merge_config_file(cfg, path: str) -> None:
    """``cfg.merge_from_file(path)`` with safe YAML: plain values only, ``_BASE_`` files too.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeConfigError: a file of the chain holds a Python tag (it would run code).
        ValueError: a file of the chain is empty or not a mapping.
        yaml.YAMLError: the file is not valid YAML (the message names file, line and column).
    """
    if not PathManager.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        cfg.merge_from_file(path, allow_unsafe=False)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else path
        raise UnsafeConfigError(
            f"Refusing to read the config {where}: {e.problem}. Such a YAML tag constructs Python "
            "objects, which can run any code; featsr_d2 reads configs as plain YAML only. Replace "
            "the tagged value with a plain one (a config holds numbers, strings and lists)."
        ) from None
    except (AttributeError, TypeError) as e:  # Detectron2's merge on an empty file or a list
        raise ValueError(
            f"{path} (or one of its _BASE_ files) is not a YAML mapping of config keys to values "
            f"(empty, or a list?): {e}"
        ) from e
    _resolve_path_keys(cfg, path)


def _setting_file(path: str, keys: list[str]) -> str | None:
    """The file of ``path``'s ``_BASE_`` chain that sets ``keys`` last (``path`` itself when it
    sets them), or None; bases are found as Detectron2 finds them."""
    with PathManager.open(path, "r") as f:
        data = yaml.safe_load(f)
    node = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            break
        node = node[key]
    else:
        return path
    base = data.get("_BASE_") if isinstance(data, dict) else None
    if not base:
        return None
    base = os.path.expanduser(base)
    if not base.startswith(("/", "https://", "http://")):
        base = os.path.join(os.path.dirname(path), base)
    return _setting_file(base, keys)


def _resolve_path_keys(cfg, path: str) -> None:
    for name in PATH_KEYS:
        *parents, leaf = name.split(".")
        node = cfg
        for key in parents:
            node = node.get(key) if node is not None else None
        value = node.get(leaf) if node is not None else None
        if not value or os.path.isabs(os.path.expanduser(value)) or "://" in value:
            continue
        setter = _setting_file(path, name.split("."))
        if setter is not None:
            node[leaf] = os.path.abspath(os.path.join(os.path.dirname(setter), value))
