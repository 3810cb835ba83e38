"""Builds featsr_d2 and its compiled extension featsr_d2._C from csrc/.

CPU kernels always; CUDA kernels when a GPU is visible or FORCE_CUDA=1 (TORCH_CUDA_ARCH_LIST is
honoured by torch's build helpers; CUDA_HOME names the toolkit). Install with
`pip install --no-build-isolation -e .` so the extension compiles against the installed torch.
"""

import glob
import os
import re
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "featsr_d2", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def want_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def get_extensions():
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    define_macros = []
    extra_compile_args = {"cxx": ["-O3"]}
    extra_link_args = []
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        # at::parallel_for is inline OpenMP: without -fopenmp the CPU kernels run on one thread.
        extra_compile_args["cxx"].append("-fopenmp")
        extra_link_args.append("-fopenmp")
    include_dirs = [os.path.join(HERE, "csrc")]
    extension = CppExtension
    if want_cuda():
        extension = CUDAExtension
        sources += cuda_sources
        define_macros += [("WITH_CUDA", None)]
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        header = os.path.join(CUDA_HOME or "", "include", "cuda_runtime_api.h")
        if not os.path.isfile(header):
            raise RuntimeError(
                f"Building the CUDA kernels needs the CUDA toolkit's headers, but {header} does "
                f"not exist (torch found CUDA_HOME={CUDA_HOME!r}). Set CUDA_HOME to the toolkit, "
                "e.g. CUDA_HOME=/usr/local/cuda FORCE_CUDA=1 pip install --no-build-isolation -e ."
            )
    return [
        extension(
            "featsr_d2._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]


setup(
    name="featsr_d2",
    version=read_version(),
    description="Super-resolution for small and low-resolution object detection in Detectron2 "
    "(FeatSR, TDSR, CAJNN)",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "bench")),
    python_requires=">=3.10",
    # Supported ranges; requirements.txt pins the versions CI tests (tests/test_readme.py checks
    # that they agree). Detectron2 is not on PyPI: install it as its README says.
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "Pillow>=9.0",
        "matplotlib>=3.7",
        "pycocotools>=2.0.6",
        "tqdm>=4.60",
        "fvcore>=0.1.5",
    ],
    # The MMDetection 3.x integration (`pip install -e .[mmdet]`; mmcv needs its compiled ops, see
    # docs/GETTING_STARTED.md). requirements.txt pins the tested versions ("#route:" lines).
    extras_require={"mmdet": ["mmdet>=3.0,<4", "mmcv>=2.0.0rc4,<2.2", "mmengine>=0.7.1,<1.0"]},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
