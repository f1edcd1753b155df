"""DistributedDataParallel: one model replica per rank, gradients averaged during backward.

    model = DistributedDataParallel(model)            # after dist.init(), before the optimizer
    loss_fn(model(images), labels).backward()         # buckets all-reduced while backward runs
    optimizer.step()                                  # every rank applies the same mean gradient

At construction, rank 0's parameters and buffers are broadcast to every rank, so all replicas
start equal, and the gradient reducer (csrc/dist/reducer.c) groups the parameters into buckets of
about `bucket_mb` megabytes in reverse registration order. A forward in training mode with grad
enabled arms it; the backward that follows all-reduces each bucket as soon as its gradients are
final, and before backward returns every .grad holds the mean over ranks. The reduction order is
fixed (buckets in index order, each one MPI call on the same sizes), so a run is bitwise
reproducible. BatchNorm statistics stay local to each rank (its running statistics are its own;
rank 0's are the ones checkpoints keep): convert with affectfer.nn.SyncBatchNorm for global ones.
"""
from __future__ import annotations

import contextlib

from .. import _C
from ..autograd import is_grad_enabled
from ..nn.module import Module
from . import DistributedError, _require, broadcast


class DistributedDataParallel(Module):
    def __init__(self, module: Module, bucket_mb: float = 25.0, timeout: float | None = None):
        """timeout: how long backward waits for the gradient all-reduce before it fails on its own
        (default: a backstop behind the group's watchdog, which names the faulty rank first)."""
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module must be an affectfer.nn.Module, got {type(module).__name__}")
        if not bucket_mb > 0:
            raise ValueError(f"bucket_mb must be > 0, got {bucket_mb!r}")
        group = _require()
        self.module = module
        self.bucket_mb = float(bucket_mb)
        self._sync = True
        for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
            broadcast(t, 0)
        params = [p for p in module.parameters() if p.requires_grad]
        if group.size > 1:
            # reverse registration order: the gradients backward produces first come first
            object.__setattr__(self, "_reducer", _C.reducer_new(params[::-1], int(bucket_mb * 2**20),
                                                                 timeout if timeout is not None else group.backstop))
        else:
            object.__setattr__(self, "_reducer", None)

    def forward(self, *args, **kwargs):
        if self._reducer is not None and self.training and self._sync and is_grad_enabled():
            try:
                _C.reducer_prepare(self._reducer)
            except RuntimeError as e:
                raise DistributedError(str(e)) from None
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside this block accumulate local gradients without communication (gradient
        accumulation); the first synchronised backward after it averages the accumulated sums."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def buckets(self) -> list:
        """Each bucket as a list of parameter names, in the order they are reduced."""
        if self._reducer is None:
            return []
        names = [n for n, p in self.module.named_parameters() if p.requires_grad][::-1]
        ranges = _C.reducer_info(self._reducer)[0]
        return [names[a:b] for a, b in ranges]

    def buckets_started_in_backward(self) -> int:
        """How many buckets of the last step started during backward (the rest at its end)."""
        return 0 if self._reducer is None else _C.reducer_info(self._reducer)[1]

    def last_sync_seconds(self) -> float:
        """How long the end of the last backward waited for communication (starting the buckets
        not started yet, waiting for all, writing the mean back): the part overlap did not hide."""
        return 0.0 if self._reducer is None else _C.reducer_info(self._reducer)[2]

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
