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


@pytest.fixture(scope="session")
def tiny_synth10(tmp_path_factory):
    """The root of a tiny synthetic TT100K of the demo's ten classes (its configs' data): 4 train
    and 3 test images of 128 px."""
    from featsr_d2.core.synthetic import generate_synthetic_tt100k
    from featsr_d2.core.tt100k_categories import DEMO_CATEGORIES

    root = str(tmp_path_factory.mktemp("tiny_synth10"))
    generate_synthetic_tt100k(
        root, num_train=4, num_test=3, image_size=128, seed=0, workers=1,
        categories=DEMO_CATEGORIES, progress=False,
    )  # fmt: skip
    return root
