"""What affectfer.train.fit needs to run on several ranks: each piece is the identity on one.

- prepare(model, *loaders): wraps the model in DistributedDataParallel and shards the loaders'
  samplers by rank (a sampler already sharded is left as it is);
- sum_over_ranks(*numbers): sums of per-rank totals (loss sums, sample counts);
- no_sync(model, skip): a context in which a backward does not synchronise (gradient accumulation);
- gather_predictions(outputs, targets, loader): every rank's validation outputs, back in the
  single-process order of the loader's sampler, so metrics are computed on the whole set;
- real_samples(loader): how many of this rank's samples are not the padding that evens out the
  shards, so that sums over the validation set count every sample once.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..data.samplers import Sampler
from . import all_gather_object, get_world_size
from .ddp import DistributedDataParallel


def prepare(model, *loaders):
    """(the model to call for training, the unwrapped model to save and evaluate)."""
    if get_world_size() == 1:
        return model, getattr(model, "module", model)
    for loader in loaders:
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, Sampler) and sampler.num_replicas == 1:
            sampler.shard()
    if isinstance(model, DistributedDataParallel):
        return model, model.module
    return DistributedDataParallel(model), model


def no_sync(model, skip: bool):
    return model.no_sync() if skip and isinstance(model, DistributedDataParallel) else contextlib.nullcontext()


def sum_over_ranks(*values) -> tuple:
    if get_world_size() == 1:
        return values
    return tuple(float(sum(v)) for v in zip(*all_gather_object(tuple(float(x) for x in values))))


def gather_predictions(outputs, targets, loader):
    """Shards were dealt out position by position (affectfer.data.samplers): rank r's i-th sample
    is position i * R + r of the whole order; the padding at the end is cut off again."""
    sampler = getattr(loader, "sampler", None)
    if get_world_size() == 1 or not isinstance(sampler, Sampler) or sampler.num_replicas == 1:
        return outputs, targets  # every rank saw the whole set
    parts = all_gather_object((outputs, targets))
    R = len(parts)

    def interleave(k, which):
        shards = [p[which][k] for p in parts]
        merged = np.empty((sum(len(s) for s in shards),) + shards[0].shape[1:], dtype=shards[0].dtype)
        for r, s in enumerate(shards):
            merged[r::R] = s
        return merged[:len(sampler)] if not sampler.drop_last else merged

    return (tuple(interleave(k, 0) for k in range(len(outputs))),
            tuple(interleave(k, 1) for k in range(len(targets))))


def real_samples(loader):
    """This rank's samples of `loader` before the padding (None: no padding). Shards are dealt out
    position by position and padded at the end of the order, so rank r's k-th sample is padding
    exactly when k * R + r >= len(sampler)."""
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, Sampler) or sampler.num_replicas == 1 or sampler.drop_last:
        return None
    R, r = sampler.num_replicas, sampler.rank
    return max(0, -(-(len(sampler) - r) // R))
