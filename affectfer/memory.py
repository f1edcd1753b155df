"""affectfer.memory: the host (CPU) block cache behind every CPU tensor.

Freed buffers of 64 KiB and more are kept and reused by the next allocation of their size class
instead of being returned to the operating system, whose fresh pages would page-fault on first
touch (12-15% of a ResNet-50 CPU training step without the cache). The cache holds at most
AFFECTFER_HOST_CACHE_MB mebibytes (read at the first allocation; default 1/8 of physical memory,
at most 4 GiB; 0 disables it). A reused buffer keeps its previous bytes, as any `empty` tensor may.
AFFECTFER_HOST_CACHE_POISON=1 fills every new CPU buffer with 0xFF bytes (NaN in floats), to catch
code that reads memory it never wrote. The GPU's cache is `affectfer.cuda.empty_cache`."""
from . import _C

__all__ = ["memory_stats", "empty_cache", "reset_peak_memory_stats"]


def memory_stats() -> dict:
    """The host allocator's counters: allocated_bytes (held by live buffers, by size class),
    peak_allocated_bytes, cached_bytes (freed buffers kept for reuse), cache_limit_bytes (the cap;
    0: caching disabled), num_allocs, num_cache_hits, num_evictions (cached buffers freed to stay
    under the cap)."""
    return _C.host_memory_stats()


def empty_cache() -> int:
    """Returns every cached, unused host buffer to the operating system (tensors keep theirs);
    the number of bytes released."""
    return _C.host_empty_cache()


def reset_peak_memory_stats() -> None:
    """Restarts peak_allocated_bytes from the bytes allocated now."""
    _C.host_reset_peak()
