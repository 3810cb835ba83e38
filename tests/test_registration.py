"""`import featsr_d2` registers every component, and importing it twice is safe."""

import subprocess
import sys

from detectron2.data import DatasetCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, ROI_HEADS_REGISTRY

import featsr_d2

BACKBONES = (
    "FeatSRMobileNetV2",
    "FeatSRMobileNetV2FPN",
    "FeatSRResNetBackbone",
    "FeatSRResNetFPNBackbone",
)
REGISTRIES = {
    BACKBONE_REGISTRY: BACKBONES,
    META_ARCH_REGISTRY: ("FeatSRRCNN", "TaskDrivenSR"),
    ROI_HEADS_REGISTRY: (
        "FeatSRMobileNetV2Res5ROIHeads",
        "FeatSRRes5ROIHeads",
        "FeatSRStandardROIHeads",
    ),
}
# Names of a paper's method rather than FeatSR-prefixed (STYLE.md allows them).
PAPER_NAMES = ("TaskDrivenSR",)
DATASETS = (
    "tt100k_2016_train",
    "tt100k_2016_test",
    "tt100k_2016_all_train",
    "tt100k_2016_all_test",
    "tt100k_synth_train",
    "tt100k_synth_test",
)


def test_registered_names_resolve():
    for registry, names in REGISTRIES.items():
        for name in names:
            assert callable(registry.get(name))
    registered = set(DatasetCatalog.list())
    assert set(DATASETS) <= registered


def test_registered_names_are_prefixed():
    for registry, names in REGISTRIES.items():
        ours = [n for n, obj in registry if obj.__module__.startswith("featsr_d2")]
        assert sorted(ours) == sorted(names)
        assert all(n.startswith("FeatSR") or n in PAPER_NAMES for n in ours)


def test_import_twice_in_fresh_process():
    code = (
        "import importlib, featsr_d2, featsr_d2.data.builtin as b\n"
        "import featsr_d2\n"
        "importlib.reload(b)\n"
        "from detectron2.data import DatasetCatalog\n"
        "assert DatasetCatalog.list().count('tt100k_synth_train') == 1\n"
        "print('ok', featsr_d2.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {featsr_d2.__version__}"


def test_build_info_reports_the_extension():
    # `make test` builds featsr_d2._C first (pip install -e . in tools/setup_env.sh).
    info = featsr_d2.build_info()
    assert info["compiled"] is True and featsr_d2.has_compiled_ops()
    assert info["has_cuda"] in (True, False) and info["compiler"]


def test_package_works_without_extension():
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "sys.modules['featsr_d2._C'] = None  # makes `from featsr_d2 import _C` raise ImportError\n"
        "import featsr_d2\n"
        "assert featsr_d2.build_info()['compiled'] is False\n"
        "assert not featsr_d2.has_compiled_ops()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("featsr_d2._C is not available") == 1  # said once
