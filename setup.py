"""Build seqkernels and its compiled extension seqkernels._C.

The C++ CPU kernels are always built. The CUDA kernels are built when nvcc and
a CUDA build of torch are present. Environment variables:

  SEQKERNELS_CUDA        "1": CUDA kernels required (fail without a toolkit);
                         "0": skip them; unset: build them if possible.
  SEQKERNELS_CUDA_ARCHS  comma-separated targets, e.g. "90a" or "80,90a,ptx90"
                         (default "80,90a,ptx90": sm_80, sm_90a, and PTX for
                         compute_90 so newer GPUs can JIT it).
  MAX_JOBS               parallel compile jobs (ninja).

Nothing is downloaded at build or import time.
"""

import glob
import os
import re
import shutil
import subprocess

from setuptools import setup


def _toolkit_root():
    """The CUDA toolkit root of the nvcc on PATH, or None.

    nvcc may be a wrapper script outside the toolkit; torch would then guess
    the wrong CUDA_HOME and fail to link cudart. nvcc's dry run names the
    real root on its '#$ TOP=' line.
    """
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    out = subprocess.run(
        [nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True
    )
    match = re.search(r"^#\$ TOP=(.*)$", out.stdout + out.stderr, re.M)
    return os.path.realpath(match.group(1).strip()) if match else None


_want_cuda = os.environ.get("SEQKERNELS_CUDA", "")
if _want_cuda not in ("", "0", "1"):
    raise SystemExit(f"SEQKERNELS_CUDA must be 0 or 1, got {_want_cuda!r}")
_cuda_home = _toolkit_root() if _want_cuda != "0" else None
if _cuda_home:
    # Must be set before torch.utils.cpp_extension is imported: it reads
    # CUDA_HOME once, at import.
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

_with_cuda = bool(_cuda_home) and torch.version.cuda is not None
if _want_cuda == "1" and not _with_cuda:
    raise SystemExit(
        "SEQKERNELS_CUDA=1 but no CUDA build is possible: "
        f"nvcc toolkit={_cuda_home!r}, torch.version.cuda={torch.version.cuda!r}"
    )


def _gencode_flags(archs):
    flags = []
    for arch in archs:
        if arch.startswith("ptx"):
            num = arch[3:]
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
        else:
            flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
    return flags


_archs = [
    a.strip()
    for a in os.environ.get("SEQKERNELS_CUDA_ARCHS", "80,90a,ptx90").split(",")
    if a.strip()
]
for _a in _archs:
    if not re.fullmatch(r"(ptx)?\d+a?", _a):
        raise SystemExit(f"SEQKERNELS_CUDA_ARCHS: bad target {_a!r}")

_sources = [
    "csrc/ops.cpp",
    "csrc/recurrent_host.cpp",
    "csrc/persistent_plan.cpp",
    "csrc/persistent_bindings.cpp",
    "csrc/attention_bindings.cpp",
    "csrc/gemm.cpp",
] + sorted(glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/emulation/*.cpp"))
# The C++ standard is the one torch asks for. -fno-trapping-math lets the
# compiler turn the selects of csrc/include/seqkernels/cpu_math.h into vector
# blends (no value changes: no reassociation, NaN and infinities as before).
_cxx = ["-O3", "-fno-trapping-math"]
# at::parallel_for is a header template: under torch's OpenMP backend its
# parallel region is an `omp parallel` pragma compiled into this extension,
# and without -fopenmp every parallel_for of csrc/cpu runs on one thread.
# Compiled with it, the GOMP calls bind at load time to the OpenMP runtime
# torch itself loaded (libtorch_cpu's libgomp): no -fopenmp at the link, so
# that a second runtime with its own threads never comes in.
if "parallel backend: OpenMP" in torch.__config__.parallel_info():
    _cxx.append("-fopenmp")
_include = [os.path.abspath("csrc/include")]
if _with_cuda:
    _sources += sorted(glob.glob("csrc/cuda/*.cu"))
    _defines = ["-DSEQKERNELS_WITH_CUDA", f'-DSEQKERNELS_CUDA_ARCHS="{",".join(_archs)}"']
    ext = CUDAExtension(
        "seqkernels._C",
        _sources,
        include_dirs=_include,
        extra_compile_args={
            "cxx": _cxx + _defines,
            "nvcc": ["-O3", "-lineinfo", "-DSEQKERNELS_WITH_CUDA"]
            + _gencode_flags(_archs),
        },
    )
else:
    ext = CppExtension(
        "seqkernels._C", _sources, include_dirs=_include,
        extra_compile_args={"cxx": _cxx},
    )

setup(
    packages=[
        "seqkernels",
        "seqkernels.functional",
        "seqkernels.nn",
        "seqkernels.ops",
        "seqkernels.reference",
        "seqkernels.triton_kernels",
    ],
    package_dir={"seqkernels.triton_kernels": "triton_kernels"},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
