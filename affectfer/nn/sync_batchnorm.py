"""SyncBatchNorm: batch normalisation with the statistics of the global batch of every rank.

With DistributedDataParallel each rank normalises its own share of the batch; with small per-rank
batches those statistics are noisy, and the model differs from one trained on the whole batch.
SyncBatchNorm (Peng et al., "MegDet: A Large Mini-Batch Object Detector", CVPR 2018; PyTorch's
torch.nn.SyncBatchNorm) sums the per-channel statistics over the ranks, so R ranks on batches of
N/R compute exactly BatchNorm over the batch of N (to float rounding), forward and gradients.

    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # before DistributedDataParallel

The sums travel through nn.functional.all_reduce, a differentiable op: its backward sums the
gradients over the ranks, which is what the global batch's mean and variance need. The variance is
taken in two passes (sum of squared deviations from the global mean) for the same rounding as
BatchNorm. Outside training, or in a single process, it is BatchNorm2d.
"""
from __future__ import annotations

from ..autograd import no_grad
from ..tensor import _call, cat, tensor
from . import functional as F
from . import init
from .layers import _BatchNorm


class SyncBatchNorm(_BatchNorm):
    """Batch norm over (N, C, *) with statistics over every rank's batch (see the module docstring)."""

    def forward(self, input):
        from .. import distributed

        if input.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (got {input.ndim}D input)")
        training = self.training and not self.frozen_stats
        if not training or distributed.get_world_size() == 1:
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            tracked = int(self.num_batches_tracked.item()) + 1
            init.constant_(self.num_batches_tracked, tracked)
            if self.momentum is None:
                factor = 1.0 / tracked
        C = input.shape[1]
        dims = (0,) + tuple(range(2, input.ndim))
        shape = (1, C) + (1,) * (input.ndim - 2)
        local_count = tensor([float(input.numel() // C)], dtype=input.dtype)
        sums = F.all_reduce(cat([input.sum(dims), local_count]))  # (C + 1): channel sums, then N
        count = float(sums[C].item())
        mean = sums[:C] / count
        centred = input - mean.reshape(*shape)
        var = F.all_reduce((centred * centred).sum(dims)) / count
        out = centred / (var + self.eps).sqrt().reshape(*shape)
        if self.affine:
            out = out * self.weight.reshape(*shape) + self.bias.reshape(*shape)
        if self.track_running_stats:
            with no_grad():  # as BatchNorm: the running variance is the unbiased one
                unbiased = var * (count / max(count - 1.0, 1.0))
                _call("copy_", [self.running_mean, self.running_mean * (1.0 - factor) + mean * factor])
                _call("copy_", [self.running_var, self.running_var * (1.0 - factor) + unbiased * factor])
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """`module` with every BatchNorm1d/2d inside it replaced by a SyncBatchNorm that shares its
        parameters and buffers (the module itself when it is one). Returns the converted module."""
        converted = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
            for name in ("weight", "bias"):
                converted.register_parameter(name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted.register_buffer(name, getattr(module, name))
            converted.frozen_stats = module.frozen_stats
            converted.train(module.training)
        for name, child in list(module._modules.items()):
            if child is not None:
                converted.add_module(name, cls.convert_sync_batchnorm(child))
        return converted
