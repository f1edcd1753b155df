"""affectfer: facial expression recognition research on a C/CUDA core.

    import affectfer as af
    x = af.randn(8, 3, 112, 112)
    model = af.models.resnet18(num_classes=7)
"""
import os as _os

# OpenMP threads sleep instead of spinning between parallel regions. A training step runs hundreds of
# short regions while loader threads (and, in a notebook, everything else) share the cores; spinning
# threads then steal the CPU the others need (measured here: a ResNet-18 step at 48x48, 2 threads on
# a busy 2-core machine, 6.1 s with spinning, 0.9 s without). libgomp reads this when _C loads it,
# so it is set before that import; an explicit OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _C  # noqa: E402
from ._C import CudaError, OutOfMemoryError
from .autograd import detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .tensor import (Tensor, bfloat16, bool_, empty, float16, float32, float64, from_dlpack, from_numpy, full, int32,
                     int64, ones, rand, randn, tensor, uint8, zeros)
from .tensor import cat, matmul, split, stack

__version__ = "0.1.0"


def manual_seed(seed: int) -> None:
    """Seed every random draw (initialisation, dropout, augmentation): a run becomes repeatable.

    `seed` is an int in [-2**63, 2**64 - 1]; a negative seed stands for seed + 2**64 (two's
    complement, as torch.manual_seed's implementation treats it). Outside that range: ValueError."""
    _C.manual_seed(int(seed))


def use_deterministic_algorithms(mode: bool) -> None:
    """As torch.use_deterministic_algorithms: with True, CUDA kernels that have a choice take only
    algorithms whose results are the same on every run (cuDNN convolution algorithms without
    floating-point atomics), possibly slower. CPU kernels are deterministic whatever the mode."""
    _C.set_deterministic(bool(mode))


def are_deterministic_algorithms_enabled() -> bool:
    return _C.deterministic()


def set_num_threads(n: int) -> None:
    """Threads used by CPU kernels (OpenMP), 1 to `_C.MAX_THREADS` (1024; ValueError outside). The
    BLAS stays single-threaded: GEMMs are parallelised over shape-determined tiles so results do not
    depend on this number."""
    _C.set_num_threads(n)


def get_num_threads() -> int:
    return _C.get_num_threads()


def info() -> dict:
    """What this build runs on: `cpu_path`, the instruction set of the hot kernels (a portable wheel
    chooses x86-64-v4 / -v3 / baseline when it loads, a source build is "native (-march=native)");
    `blas`, the CBLAS linked in (the scipy-openblas32 wheel or the system's OpenBLAS), with its build
    `blas_config` and `blas_core`, the kernel family it chose for this CPU (OPENBLAS_CORETYPE
    overrides it); `stb`, the stb_image version the decoder was compiled with; `threads` and `cuda`."""
    return dict(_C.build_info(), version=__version__, threads=get_num_threads(), cuda=cuda.is_available())


# Submodules that build on the names above. affectfer.plots (matplotlib) is imported on first use.
from . import checkpoint, cuda, data, datasets, decision, io, losses, memory, metrics, models, nn, optim, testing, train, transforms, weights  # noqa: E402,F401,E501
