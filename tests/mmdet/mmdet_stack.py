"""The MMDetection stack that tools/setup_mmdet.sh installs: its pins and the check every test in
tests/mmdet runs first.

A missing or broken stack fails the test (never skips it) with the reason the set-up step wrote to
``<venv>/.featsr_mmdet_status`` and the command that retries it.
"""

import importlib
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
RETRY = "make setup-mmdet"


def status_path() -> str:
    """Where tools/setup_mmdet.sh writes its outcome: in the venv that runs the tests."""
    return os.path.join(sys.prefix, ".featsr_mmdet_status")


def pinned_versions(requirements: str = REQUIREMENTS) -> dict[str, str]:
    """{name: version} of the "#route:mmcv-sdist:" and "#route:mmdet:" lines of requirements.txt."""
    pins = {}
    with open(requirements) as f:
        for line in f:
            match = re.match(r"#route:(?:mmdet|mmcv-sdist):\s*([A-Za-z0-9_.-]+)==(\S+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def stack_problem() -> str | None:
    """Why mmcv (with its compiled ops), mmengine and mmdet cannot be used here, or None."""
    try:
        for name in ("mmcv", "mmengine", "mmdet", "mmcv.ops"):
            module = importlib.import_module(name)
            # tests/ is on sys.path (pytest's rootdir-relative imports): without an installed mmdet,
            # `import mmdet` finds the folder tests/mmdet as a namespace package.
            if getattr(module, "__file__", None) is None:
                return f"{name} is not installed (only the namespace package {module.__path__})"
        from mmcv.ops import nms, roi_align  # noqa: F401  (the compiled ops load)
    except Exception as e:  # ImportError, or mmdet's assertion on the mmcv / mmengine versions
        return f"{type(e).__name__}: {e}"
    return None


def read_status(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return f"no {path}: tools/setup_mmdet.sh never ran for this environment"


def require_mmdet_stack(status: str | None = None) -> None:
    """Fails the calling test, naming the set-up's reason, unless the stack imports."""
    problem = stack_problem()
    if problem is None:
        return
    report = read_status(status or status_path())
    pytest.fail(
        f"The MMDetection stack is not usable: {problem}\n"
        f"tools/setup_mmdet.sh reported:\n    " + report.replace("\n", "\n    ") + "\n"
        f"Retry: {RETRY}",
        pytrace=False,
    )
