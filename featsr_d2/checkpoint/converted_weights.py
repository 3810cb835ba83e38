"""The cache of converted weights, and the base of ``PathManager`` handlers for weights that ship
inside installed packages in another format and are converted into that cache on first use
(:class:`featsr_d2.checkpoint.path_handler.FeatSRPathHandler`): nothing is downloaded.

Each converted file has a ``.sha256`` file beside it, written after the conversion: a cached file
that no longer matches it (corrupted, truncated by a killed copy, edited), or that has none
(a conversion killed before its end, or a cache from before the check), is converted again,
with a warning, instead of failing later inside ``torch.load``. A conversion draws no random
numbers from the process's generators (it runs on its own), so making the cache does not change
what a seeded run trains.
"""

import abc
import logging
import os
from collections.abc import Collection

from detectron2.utils.file_io import PathHandler

from featsr_d2.data.rng_state import isolated_rng
from featsr_d2.utils.file_io import atomic_write_text, file_sha256

__all__ = ["ConvertedWeightsPathHandler", "cache_dir"]

logger = logging.getLogger(__name__)


def cache_dir() -> str:
    """Where converted weights are written: ``$FEATSR_CACHE`` or ``~/.cache/featsr_d2``."""
    return os.path.expanduser(os.environ.get("FEATSR_CACHE") or "~/.cache/featsr_d2")


def _cache_intact(local: str) -> bool:
    try:
        with open(local + ".sha256", encoding="ascii") as f:
            expected = f.read().strip()
        return file_sha256(local) == expected
    except (OSError, UnicodeDecodeError):
        return False


class ConvertedWeightsPathHandler(PathHandler, abc.ABC):
    """Resolves ``PREFIX + name`` (``name`` in ``NAMES``) to a converted checkpoint in
    :func:`cache_dir`, converting on first use (``force=True`` converts again). Read-only.

    A subclass sets ``PREFIX``, ``NAMES`` and ``WHAT`` (for error messages) and implements
    :meth:`_cache_file` (the file name in the cache, which should change with the source and the
    converted format) and :meth:`_convert` (write the checkpoint to a path, atomically).
    """

    PREFIX: str = ""
    NAMES: Collection[str] = ()
    WHAT: str = "weights"

    @abc.abstractmethod
    def _cache_file(self, name: str) -> str:
        """The file name in :func:`cache_dir` of the converted ``name``."""

    @abc.abstractmethod
    def _convert(self, name: str, out: str) -> None:
        """Convert ``name`` and write the checkpoint to ``out`` atomically."""

    def _get_supported_prefixes(self) -> list[str]:
        return [self.PREFIX]

    def _name(self, path: str) -> str:
        name = path[len(self.PREFIX) :]
        if name not in self.NAMES:
            known = ", ".join(self.PREFIX + n for n in self.NAMES)
            raise ValueError(f"Unknown {self.WHAT} {path!r}; known: {known}")
        return name

    def _get_local_path(self, path: str, force: bool = False, **kwargs) -> str:
        self._check_kwargs(kwargs)
        name = self._name(path)
        local = os.path.join(cache_dir(), self._cache_file(name))
        if not force and os.path.isfile(local) and not _cache_intact(local):
            logger.warning(
                "The cached %s %s does not match its checksum (%s.sha256; a killed or corrupted "
                "write?): converting it again",
                self.WHAT,
                local,
                local,
            )
            force = True
        if force or not os.path.isfile(local):
            # A conversion may build a model (random initialization): on generators of its own, so
            # that a run seeded with SEED draws the same numbers whether the cache existed or not.
            with isolated_rng():
                self._convert(name, local)
            atomic_write_text(local + ".sha256", file_sha256(local) + "\n")
        return local

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs):
        self._check_kwargs(kwargs)
        if any(c in mode for c in "wax+"):
            raise ValueError(f"{path} is read-only; got mode {mode!r}")
        return open(self._get_local_path(path), mode, buffering)

    def _exists(self, path: str, **kwargs) -> bool:
        self._check_kwargs(kwargs)
        return path[len(self.PREFIX) :] in self.NAMES

    def _isfile(self, path: str, **kwargs) -> bool:
        return self._exists(path, **kwargs)
