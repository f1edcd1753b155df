"""Optimizers and learning-rate schedulers with torch.optim's names, arguments and numbers.

The update arithmetic is C (csrc/ops/optim.c: sgd_step, adam_step); this package keeps the
param groups, the per-parameter state and the schedule.
"""
from . import lr_scheduler
from .optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
