"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one."""

import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def atomic_write(path: str, write: Callable[[IO], Any], *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str, obj: Any, *, indent: int | None = None) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=indent))
