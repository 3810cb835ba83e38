"""Tests of the MMDetection 3.x integration. Each first checks the stack that `make setup-mmdet`
installs and fails, naming the set-up's reason, when it is missing (see mmdet_stack.py).

Import mmcv, mmdet and mmengine inside the tests, never at module level: an ImportError while
collecting would stop the whole test session instead of failing these tests with the reason.
This folder has no __init__.py on purpose: as a package named ``mmdet`` it would shadow the real
one.
"""

import pytest
from mmdet_stack import require_mmdet_stack


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """Before each test here runs (in its call phase, so that it is reported as failed)."""
    require_mmdet_stack()
