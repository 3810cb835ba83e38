"""Reading config files: the one way featsr_d2 merges a YAML file into a config.

Detectron2's ``CfgNode.merge_from_file`` falls back to ``yaml.unsafe_load`` by default, so a tag
such as ``!!python/object/apply:os.system`` in a config (or in one of its ``_BASE_`` files) runs
code. :func:`merge_config_file` reads each file of the ``_BASE_`` chain itself, with safe YAML, and
merges them as Detectron2 does. Every config featsr_d2 reads (``--config-file``,
``MODEL.TDSR.DETECTOR_CONFIG``, the tools' ``--model`` and ``--row`` configs) goes through it. Each
problem is a :class:`ConfigFileError` naming the file (and the line, where there is one):

- a Python tag is refused (:class:`UnsafeConfigError`), with the line;
- a key given twice in one mapping (two ``SOLVER:`` blocks; YAML would keep the second silently),
  naming the key and both lines;
- a ``_BASE_`` cycle, with the chain; a file that is not UTF-8 (byte and line); a ``_BASE_`` file
  or URL that cannot be read, with the file that names it; a file that is empty or not a mapping.

A config key that names another file (:data:`PATH_KEYS`) is relative to the folder of the config
file that sets it (the file of the ``_BASE_`` chain whose value wins), as ``_BASE_`` itself is;
:func:`merge_config_file` makes it absolute. A value given by ``opts`` is left as it is (relative
to the working directory).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from detectron2.utils.file_io import PathManager

__all__ = ["PATH_KEYS", "ConfigFileError", "UnsafeConfigError", "merge_config_file"]

logger = logging.getLogger(__name__)

# Keys whose value is a file path, relative to the config file that sets it.
PATH_KEYS = ("MODEL.TDSR.DETECTOR_CONFIG",)


class ConfigFileError(ValueError):
    """A config file that cannot be read as it is; the message names it."""


class UnsafeConfigError(ConfigFileError):
    """A config file that safe YAML cannot read because it asks to construct Python objects."""


# ------------------------------------------------------------------------------------------------
# One file


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag}>"


def _refuse_duplicate_keys(node: yaml.Node, path: str, prefix: str = "", seen=None) -> None:
    """A key given twice in one mapping, at any depth: YAML keeps the second silently."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = _key_text(key)
            if name == "<<":  # a YAML merge key
                continue
            if name in first:
                raise ConfigFileError(
                    f"{path}: the key {prefix}{name} is given twice, on lines {first[name]} and "
                    f"{key.start_mark.line + 1}; YAML would keep only the second and silently drop "
                    "what the first sets. Merge the two into one."
                )
            first[name] = key.start_mark.line + 1
            _refuse_duplicate_keys(value, path, f"{prefix}{name}.", seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, prefix, seen)


def _read_text(path: str, named_by: str | None) -> str:
    try:
        with PathManager.open(path, "rb") as f:
            data = f.read()
    except Exception as e:  # FileNotFoundError, URLError, HTTPError, ...
        if named_by is None:
            raise ConfigFileError(f"config file {path} cannot be read ({e})") from e
        what = "fetched" if "://" in path else "read"
        raise ConfigFileError(
            f"{named_by}: its _BASE_ {path} cannot be {what} ({type(e).__name__}: {e})."
        ) from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigFileError(
            f"{path}: not UTF-8 text (byte {e.start}, line {line}: {data[e.start : e.end]!r}). "
            "Save the config as UTF-8."
        ) from None


def _parse(path: str, named_by: str | None) -> dict:
    loader = yaml.SafeLoader(_read_text(path, named_by))
    loader.name = path  # for the marks in messages
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else path
        raise UnsafeConfigError(
            f"Refusing to read the config {where}: {e.problem}. Such a YAML tag constructs Python "
            "objects, which can run any code; featsr_d2 reads configs as plain YAML only. Replace "
            "the tagged value with a plain one (a config holds numbers, strings and lists)."
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a YAML {type(data).__name__}"
        raise ConfigFileError(
            f"{path} is not a YAML mapping of config keys to values (it is {kind})."
        )
    return data


# ------------------------------------------------------------------------------------------------
# The _BASE_ chain


@dataclass
class _File:
    path: str
    own: dict  # the file's keys, _BASE_ left out
    bases: list[_File] = field(default_factory=list)


def _base_path(base: Any, child: str) -> str:
    if not isinstance(base, str) or not base:
        raise ConfigFileError(
            f"{child}: _BASE_ must name a file (or a list of files), not {base!r}"
        )
    base = os.path.expanduser(base)
    if base.startswith(("/", "https://", "http://")):
        return base
    return os.path.join(os.path.dirname(child), base)


def _identity(path: str) -> str:
    return path if "://" in path else os.path.realpath(path)


def _load(path: str, chain: tuple[str, ...] = (), named_by: str | None = None) -> _File:
    seen = [_identity(p) for p in chain]
    if _identity(path) in seen:
        cycle = " -> ".join([*chain[seen.index(_identity(path)) :], path])
        raise ConfigFileError(f"{chain[-1]}: its _BASE_ files form a cycle: {cycle}")
    data = _parse(path, named_by)
    bases = data.pop("_BASE_", None)
    node = _File(path, data)
    for base in bases if isinstance(bases, list) else ([] if bases is None else [bases]):
        node.bases.append(_load(_base_path(base, path), (*chain, path), path))
    return node


def _merge_into(a: dict, b: dict, where: str) -> None:
    """Merge ``a`` into ``b`` (``a`` wins), as Detectron2's ``load_yaml_with_base``."""
    for k, v in a.items():
        if isinstance(v, dict) and k in b:
            if not isinstance(b[k], dict):
                raise ConfigFileError(
                    f"{where}: {k} is a mapping here but a plain value in a _BASE_ file"
                )
            _merge_into(v, b[k], where)
        else:
            b[k] = v


def _merged(node: _File) -> dict:
    out: dict = {}
    for base in node.bases:
        _merge_into(_merged(base), out, base.path)
    _merge_into(_copy(node.own), out, node.path)
    return out


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def _merge_versioned(cfg, data: dict, path: str) -> None:
    """Merge the loaded keys into ``cfg`` as ``CfgNode.merge_from_file`` does after loading,
    upgrading a config of an older Detectron2 version."""
    from detectron2.config.compat import downgrade_config, guess_version, upgrade_config

    loaded = type(cfg)(data)
    version = loaded.get("VERSION", None)
    if version is None:
        version = guess_version(loaded, path)
    if version > cfg.VERSION:
        raise ConfigFileError(f"{path}: a config of VERSION {version}, newer than {cfg.VERSION}")
    if version == cfg.VERSION:
        cfg.merge_from_other_cfg(loaded)
        return
    logger.warning("Upgrading %s from Detectron2 config version %d to %d", path, version,
                   cfg.VERSION)  # fmt: skip
    old = downgrade_config(cfg, to_version=version)
    old.merge_from_other_cfg(loaded)
    new = upgrade_config(old)
    cfg.clear()
    cfg.update(new)


def merge_config_file(cfg, path: str) -> None:
    """Merge the config file ``path`` and its ``_BASE_`` chain into ``cfg``, reading each file
    with safe YAML (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeConfigError: a file of the chain holds a Python tag (it would run code), or an
            expression it may not hold.
        ConfigFileError: a duplicated key, a ``_BASE_`` cycle, a file that is not UTF-8, a
            ``_BASE_`` that cannot be read, a file that is empty or not a mapping.
        yaml.YAMLError: the file is not valid YAML (the message names file, line and column).
    """
    if not PathManager.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    root = _load(path)
    _merge_versioned(cfg, _merged(root), path)
    _resolve_path_keys(cfg, root)


def _setting_file(node: _File, keys: list[str]) -> str | None:
    """The file of the chain whose value of ``keys`` wins (the file itself, else its last base
    that sets them), or None."""
    value = node.own
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            break
        value = value[key]
    else:
        return node.path
    for base in reversed(node.bases):
        found = _setting_file(base, keys)
        if found is not None:
            return found
    return None


def _resolve_path_keys(cfg, root: _File) -> None:
    for name in PATH_KEYS:
        *parents, leaf = name.split(".")
        node = cfg
        for key in parents:
            node = node.get(key) if node is not None else None
        value = node.get(leaf) if node is not None else None
        if not value or os.path.isabs(os.path.expanduser(value)) or "://" in value:
            continue
        setter = _setting_file(root, name.split("."))
        if setter is not None:
            node[leaf] = os.path.abspath(os.path.join(os.path.dirname(setter), value))
