"""Reading config files: the one way featsr_d2 merges a YAML file into a config.

Detectron2's ``CfgNode.merge_from_file`` falls back to ``yaml.unsafe_load`` by default, so a tag
such as ``!!python/object/apply:os.system`` in a config (or in one of its ``_BASE_`` files) runs
code. :func:`merge_config_file` reads each file of the ``_BASE_`` chain itself, with safe YAML, and
merges them as Detectron2 does. Every config featsr_d2 reads (``--config-file``,
``MODEL.TDSR.DETECTOR_CONFIG``, the tools' ``--model`` and ``--row`` configs) goes through it. Each
problem is a :class:`ConfigFileError` naming the file (and the line, where there is one):

- a Python tag is refused (:class:`UnsafeConfigError`), with one exception: the
  ``!!python/object/apply:eval ["<expression>"]`` of Detectron2's own RetinaNet configs (anchor
  sizes). Such an expression is evaluated by :func:`evaluate_expression`, a restricted evaluator
  (numbers, strings, lists and tuples, arithmetic, list comprehensions; never Python's ``eval``),
  in the configs shipped inside the installed detectron2 package (its model zoo), and in another
  file only when the process opted in (:func:`allow_config_expressions`, the tools'
  ``--allow-config-expressions``: a flag, not a config key, as for ``.pkl`` weights), with a
  warning. Every other tag is refused whatever the opt-in;
- a key given twice in one mapping (two ``SOLVER:`` blocks; YAML would keep the second silently),
  naming the key and both lines;
- a ``_BASE_`` cycle, with the chain; a file that is not UTF-8 (byte and line); a ``_BASE_`` file
  or URL that cannot be read, with the file that names it; a file that is empty or not a mapping.

A config key that names another file (:data:`PATH_KEYS`) is relative to the folder of the config
file that sets it (the file of the ``_BASE_`` chain whose value wins), as ``_BASE_`` itself is;
:func:`merge_config_file` makes it absolute. A value given by ``opts`` is left as it is (relative
to the working directory, where :func:`featsr_d2.config.resolve_tdsr_detector` reads it).
"""

from __future__ import annotations

import ast
import logging
import math
import operator
import os
from dataclasses import dataclass, field
from typing import Any

import detectron2
import yaml
from detectron2.utils.file_io import PathManager

__all__ = [
    "ALLOW_CONFIG_EXPRESSIONS_FLAG",
    "PATH_KEYS",
    "ConfigFileError",
    "UnsafeConfigError",
    "allow_config_expressions",
    "config_expressions_allowed",
    "evaluate_expression",
    "merge_config_file",
]

logger = logging.getLogger(__name__)

# Keys whose value is a file path, relative to the config file that sets it.
PATH_KEYS = ("MODEL.TDSR.DETECTOR_CONFIG",)
# The command-line flag of the tools that opts in to expressions in a user's config.
ALLOW_CONFIG_EXPRESSIONS_FLAG = "--allow-config-expressions"
# The one Python tag that may be read: an expression, evaluated by evaluate_expression.
EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"
_EXPRESSIONS_ALLOWED = False


class ConfigFileError(ValueError):
    """A config file that cannot be read as it is; the message names it."""


class UnsafeConfigError(ConfigFileError):
    """A config file that safe YAML cannot read because it asks to construct Python objects."""


def allow_config_expressions(allowed: bool = True) -> None:
    """Let this process evaluate ``!!python/object/apply:eval`` expressions in any config file
    (only for files you trust), with the restricted evaluator and a warning. The model zoo's
    configs never need it."""
    global _EXPRESSIONS_ALLOWED
    _EXPRESSIONS_ALLOWED = bool(allowed)


def config_expressions_allowed() -> bool:
    return _EXPRESSIONS_ALLOWED


def _model_zoo_dir() -> str:
    return os.path.realpath(os.path.join(os.path.dirname(detectron2.__file__), "model_zoo"))


def _is_model_zoo_file(path: str) -> bool:
    if "://" in path:
        return False
    return os.path.realpath(path).startswith(_model_zoo_dir() + os.sep)


# ------------------------------------------------------------------------------------------------
# The restricted evaluator

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_ITEMS = 100_000  # items a comprehension may make, in all
_MAX_EXPONENT = 64


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Evaluator:
    def __init__(self):
        self.items = 0

    def refuse(self, node: ast.AST, what: str):
        raise ValueError(f"{what} is not allowed (column {getattr(node, 'col_offset', 0) + 1})")

    def __call__(self, node: ast.AST, names: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            if _is_number(node.value) or isinstance(node.value, (str, bool, type(None))):
                return node.value
            self.refuse(node, f"the constant {node.value!r}")
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [self(e, names) for e in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load) and node.id in names:
                return names[node.id]
            self.refuse(node, f"the name {node.id!r} (only a comprehension's own variables)")
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            value = self(node.operand, names)
            if not _is_number(value):
                self.refuse(node, "a sign on a non-number")
            return _UNARY[type(node.op)](value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self(node.left, names), self(node.right, names)
            if not (_is_number(left) and _is_number(right)):
                self.refuse(node, "arithmetic on non-numbers (no list repetition or joining)")
            if isinstance(node.op, ast.Pow) and (
                abs(right) > _MAX_EXPONENT or (isinstance(left, int) and abs(left) > 2**32)
            ):
                self.refuse(node, f"a power beyond {_MAX_EXPONENT}")
            try:
                return _BINARY[type(node.op)](left, right)
            except (ArithmeticError, ValueError) as e:
                raise ValueError(f"{e} (column {node.col_offset + 1})") from None
        if isinstance(node, ast.ListComp):
            return self.comprehension(node, node.generators, names)
        self.refuse(node, f"the construct {type(node).__name__}")

    def comprehension(self, node: ast.ListComp, generators, names: dict[str, Any]) -> list:
        if not generators:
            self.items += 1
            if self.items > _MAX_ITEMS:
                self.refuse(node, f"a comprehension of more than {_MAX_ITEMS} items")
            return [self(node.elt, names)]
        first, rest = generators[0], generators[1:]
        if first.is_async or first.ifs or not isinstance(first.target, ast.Name):
            self.refuse(node, "a comprehension other than `for <name> in <list>`")
        values = self(first.iter, names)
        if not isinstance(values, (list, tuple)):
            self.refuse(node, "a comprehension over a non-list")
        out = []
        for value in values:
            out += self.comprehension(node, rest, {**names, first.target.id: value})
        return out


def evaluate_expression(text: str) -> Any:
    """The value of ``text``, an expression of literals (numbers, strings, ``True``, ``False``,
    ``None``), lists and tuples, arithmetic on numbers (``+ - * / // % **``, signs) and list
    comprehensions ``[<expr> for <name> in <list> ...]``: what Detectron2's configs write, e.g.
    ``[[x, x * 2**(1.0/3), x * 2**(2.0/3)] for x in [32, 64, 128, 256, 512]]``. Nothing else:
    no name but a comprehension's variables, no call, no attribute. Never Python's ``eval``.

    Raises:
        ValueError: the expression uses anything else, or does not evaluate.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a Python expression ({e.msg})") from None
    value = _Evaluator()(tree.body, {})
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the value {value} is not finite")
    return value


# ------------------------------------------------------------------------------------------------
# One file


class _Loader(yaml.SafeLoader):
    """Safe YAML; ``!!python/object/apply:eval`` only where the file may hold expressions."""

    expressions = "refuse"  # "zoo", "opt-in" or "refuse"; set per file


def _construct_eval(loader: _Loader, node: yaml.Node) -> Any:
    mark = node.start_mark
    where = f"{mark.name}, line {mark.line + 1}"
    if loader.expressions == "refuse":
        raise UnsafeConfigError(
            f"Refusing to read the config {where}: the tag !!python/object/apply:eval asks to "
            "evaluate Python. featsr_d2 evaluates such expressions only in Detectron2's own "
            "configs (its model zoo). If you trust this file, add "
            f"{ALLOW_CONFIG_EXPRESSIONS_FLAG} to the command line (in Python: "
            "featsr_d2.config_files.allow_config_expressions()): the expression is then evaluated "
            "by a restricted evaluator (numbers, lists, arithmetic, list comprehensions). "
            "Otherwise write the value out as a plain list."
        )
    args = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None
    if not args or len(args) != 1 or not isinstance(args[0], str):
        raise UnsafeConfigError(
            f"{where}: !!python/object/apply:eval takes one string, the expression, e.g. "
            '!!python/object/apply:eval ["[x * 2 for x in [16, 32]]"]'
        )
    try:
        value = evaluate_expression(args[0])
    except ValueError as e:
        raise UnsafeConfigError(
            f"Refusing the expression {args[0]!r} in {where}: {e}. featsr_d2 evaluates "
            "literals, lists, arithmetic and list comprehensions only; write the value out."
        ) from None
    if loader.expressions == "opt-in":
        logger.warning(
            "%s: evaluated the expression %r (%s) to %r", where, args[0],
            ALLOW_CONFIG_EXPRESSIONS_FLAG, value,
        )  # fmt: skip
    return value


_Loader.add_constructor(EVAL_TAG, _construct_eval)


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
    loader = _Loader(_read_text(path, named_by))
    loader.name = path  # for the marks in messages
    if _is_model_zoo_file(path):
        loader.expressions = "zoo"
    elif _EXPRESSIONS_ALLOWED:
        loader.expressions = "opt-in"
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
