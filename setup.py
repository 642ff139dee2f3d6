"""Build the taylorglo extension: C++ CPU kernels always, CUDA kernels whenever a toolkit is found.

The CUDA kernels are compiled even when no GPU is visible (cross-compiling for the architectures in
``TORCH_CUDA_ARCH_LIST``, default below). Set ``TAYLORGLO_CUDA=0`` to force a CPU-only build.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

from setuptools import setup

DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def _log(msg: str) -> None:
    print(f"taylorglo setup: {msg}", file=sys.stderr)


def _find_cuda_home() -> str | None:
    """Locate the CUDA toolkit root, seeing through ``nvcc`` wrapper scripts on PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return root
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        try:
            with open(real, "rb") as f:
                head = f.read(4096)
        except OSError:
            head = b""
        if head.startswith(b"#!"):  # a wrapper script: find the nvcc it runs
            for target in re.findall(rb"(/[^\s\"']+)/bin/nvcc\b", head):
                root = target.decode()
                if os.path.isfile(os.path.join(root, "bin", "nvcc")):
                    return root
        root = os.path.dirname(os.path.dirname(real))
        if os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    for root in sorted(glob.glob("/usr/local/cuda*"), reverse=True):
        if os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return root
    return None


def _configure_cuda() -> bool:
    if os.environ.get("TAYLORGLO_CUDA", "1") == "0":
        _log("TAYLORGLO_CUDA=0: building the CPU kernels only")
        return False
    import torch

    if torch.version.cuda is None:
        _log(f"torch {torch.__version__} has no CUDA support: building the CPU kernels only")
        return False
    root = _find_cuda_home()
    if root is None:
        _log("no CUDA toolkit (nvcc) found: building the CPU kernels only")
        return False
    os.environ["CUDA_HOME"] = root
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        _log(f"no GPU visible: compiling CUDA kernels for TORCH_CUDA_ARCH_LIST={DEFAULT_CUDA_ARCHS}")
    _log(f"building CUDA kernels with the toolkit in {root}")
    return True


def _extensions():
    with_cuda = _configure_cuda()
    # Import only after CUDA_HOME is set: torch reads it when the module is imported.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(
        glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp"))
    )
    cxx_flags = ["-O3", "-fdiagnostics-color=always"]
    if sys.platform.startswith("linux"):
        cxx_flags.append("-fopenmp")
    include_dirs = [os.path.join(here, "csrc")]
    if with_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        return [
            CUDAExtension(
                "taylorglo._C",
                sources,
                include_dirs=include_dirs,
                define_macros=[("TAYLORGLO_WITH_CUDA", "1")],
                extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
                extra_link_args=["-fopenmp"] if sys.platform.startswith("linux") else [],
            )
        ]
    return [
        CppExtension(
            "taylorglo._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"] if sys.platform.startswith("linux") else [],
        )
    ]


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None or _has_ninja_module())


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


setup(ext_modules=_extensions(), cmdclass={"build_ext": _build_ext()})
