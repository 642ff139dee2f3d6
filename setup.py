"""Build the taylorglo extension: the C++ CPU kernels always, the CUDA kernels when there is a use for them.

The CUDA kernels are compiled when a GPU is visible, when ``TORCH_CUDA_ARCH_LIST`` is set (cross-
compiling for those architectures with no GPU), or when ``TAYLORGLO_CUDA=1`` asks for them (with no
GPU and no arch list: for ``8.0;9.0+PTX``; an error if torch or the toolkit cannot build them).
Otherwise the build is CPU-only and says in one line how to include CUDA. ``TAYLORGLO_CUDA=0``
forces a CPU-only build. The CPU kernels are six translation units (three CPU capabilities x hard
and soft labels), compiled in parallel by ninja, without debug information; the CUDA kernels are one
.cu file and the .cpp that registers them. Both backends include csrc/taylor_math.h, their shared
arithmetic.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import sys

from setuptools import setup

DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


# pip runs this file for metadata too; only the commands that compile say what they build, once.
_BUILDING = bool(
    {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"} & set(sys.argv[1:])
)


def _log(msg: str) -> None:
    if _BUILDING:
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
    """Whether to compile the CUDA kernels; sets CUDA_HOME (and the arch list) when so."""
    request = os.environ.get("TAYLORGLO_CUDA", "")
    if request not in ("", "0", "1"):
        raise SystemExit(
            f"taylorglo setup: TAYLORGLO_CUDA must be 0 (CPU only) or 1 (with CUDA), got {request!r}"
        )
    if request == "0":
        _log("TAYLORGLO_CUDA=0: building the CPU kernels only")
        return False
    import torch

    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if request == "1":
        reason = "TAYLORGLO_CUDA=1"
    elif arch_list:
        reason = f"TORCH_CUDA_ARCH_LIST={arch_list}"
    elif torch.version.cuda is not None and torch.cuda.is_available():
        reason = "a GPU is visible"
    else:
        _log(
            "no GPU visible and TORCH_CUDA_ARCH_LIST unset: building the CPU kernels only "
            "(to include the CUDA kernels, set TAYLORGLO_CUDA=1 or TORCH_CUDA_ARCH_LIST, e.g. '9.0')"
        )
        return False
    root = None if torch.version.cuda is None else _find_cuda_home()
    if root is None:
        problem = (
            f"torch {torch.__version__} has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA toolkit (nvcc) found"
        )
        if request == "1":
            raise SystemExit(f"taylorglo setup: TAYLORGLO_CUDA=1 asks for the CUDA kernels, but {problem}")
        _log(f"{reason}, but {problem}: building the CPU kernels only")
        return False
    os.environ["CUDA_HOME"] = root
    if not arch_list and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        arch_list = DEFAULT_CUDA_ARCHS
    _log(
        f"{reason}: building the CUDA kernels too, with the toolkit in {root}"
        + (f" for TORCH_CUDA_ARCH_LIST={arch_list}" if arch_list else " for the visible GPU")
    )
    return True


def _extensions():
    with_cuda = _configure_cuda()
    if not with_cuda:  # its "No CUDA runtime is found, using CUDA_HOME=..." concerns CUDA builds only
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # Import only after CUDA_HOME is set: torch reads it when the module is imported.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(
        glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp"))
    )
    # -g0: Python's CFLAGS carry -g, whose debug information was 40% of the kernels' compile time and
    # 90% of the library (65 MB). Torch's headers hold clang/nvcc pragmas, and their vector types
    # draw ABI notes under the AVX target pragmas (the kernels pass only tensors across files).
    cxx_flags = ["-O3", "-g0", "-Wno-unknown-pragmas", "-Wno-psabi", "-fdiagnostics-color=always"]
    if sys.platform.startswith("linux"):
        cxx_flags.append("-fopenmp")
    include_dirs = [os.path.join(here, "csrc")]
    if with_cuda:
        # The kernels (.cu: ATen and c10 headers only, for nvcc) and their registration (.cpp).
        sources += sorted(
            glob.glob(os.path.join("csrc", "cuda", "*.cu")) + glob.glob(os.path.join("csrc", "cuda", "*.cpp"))
        )
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
