"""affectfer.cuda: the GPU as torch.cuda presents it.

`is_available()` is True when this build has CUDA (setup.py compiled the .cu files because nvcc was
found) and the driver reports at least one device. Tensors move with `Tensor.to("cuda")` / `.cuda()`,
modules with `Module.to("cuda")`. Memory comes from a caching allocator (freed blocks are reused by
the next allocation of their size class); `empty_cache()` returns the cached blocks to the driver,
`memory_stats()` reports its counters. Set AFFECTFER_CUDA_CACHING=0 before the import to free every
block at once (for compute-sanitizer)."""
from . import _C

__all__ = ["is_available", "is_built", "device_count", "synchronize", "memory_stats", "empty_cache", "check_device"]


def is_built() -> bool:
    """True when this affectfer._C was compiled with CUDA."""
    return _C.cuda_built()


def is_available() -> bool:
    """True when built with CUDA and at least one GPU is visible."""
    return _C.cuda_available()


def device_count() -> int:
    """Visible GPUs; 0 without CUDA support or without a device."""
    return _C.cuda_device_count()


def check_device(index: int = 0) -> None:
    """RuntimeError naming why device `index` cannot be used: a build without CUDA, no device visible,
    or an index beyond the visible devices."""
    if not is_built():
        raise RuntimeError("affectfer was built without CUDA: rebuild where the CUDA toolkit is found "
                           "(AFFECTFER_CUDA=1 makes setup.py insist), or use device='cpu'")
    n = device_count()
    if n == 0:
        raise RuntimeError("no CUDA device visible: affectfer was built with CUDA but the driver reports no GPU "
                           "(check nvidia-smi and CUDA_VISIBLE_DEVICES), or use device='cpu'")
    if not 0 <= index < n:
        raise RuntimeError(f"CUDA device {index} does not exist ({n} visible)")


def _index(device) -> int:
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind == "cuda" and (not index or index.isdigit()):
            return int(index or 0)
    raise ValueError(f"device must be an int or 'cuda[:N]', got {device!r}")


def synchronize(device=None) -> None:
    """Waits until every kernel queued on the device's stream has finished."""
    index = _index(device)
    check_device(index)
    _C.cuda_synchronize(index)


def memory_stats(device=None) -> dict:
    """The caching allocator's counters for one device: allocated_bytes (held by tensors),
    reserved_bytes (obtained from the driver: allocated + cached), peak_allocated_bytes, num_allocs,
    num_cache_hits, num_device_allocs, num_ooms, caching (False under AFFECTFER_CUDA_CACHING=0)."""
    index = _index(device)
    check_device(index)
    return _C.cuda_memory_stats(index)


def empty_cache() -> None:
    """Returns every cached, unused block of every device to the driver (tensors keep theirs)."""
    check_device(0)
    _C.cuda_empty_cache(-1)
