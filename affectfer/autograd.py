"""Grad-mode switches. The tape itself is C (csrc/autograd/tape.c)."""
import contextlib
import functools

from . import _C


class no_grad(contextlib.ContextDecorator):
    """Within this block (or decorated function) no op records a graph node: inference without the
    memory of saved tensors. Per thread, like PyTorch."""

    def __enter__(self):
        self._previous = _C.set_grad_enabled(False)

    def __exit__(self, *exc):
        _C.set_grad_enabled(self._previous)
        return False


class enable_grad(contextlib.ContextDecorator):
    def __enter__(self):
        self._previous = _C.set_grad_enabled(True)

    def __exit__(self, *exc):
        _C.set_grad_enabled(self._previous)
        return False


class detect_anomaly(contextlib.ContextDecorator):
    """Within this block every op checks its outputs and raises FloatingPointError, naming the op,
    at the first NaN or infinity (slower: one extra pass over each output)."""

    def __enter__(self):
        self._previous = _C.set_anomaly_mode(True)

    def __exit__(self, *exc):
        _C.set_anomaly_mode(self._previous)
        return False


def is_grad_enabled() -> bool:
    return _C.is_grad_enabled()
