"""A small fit loop: epochs of (forward, loss, backward, step) with a tqdm bar, validation with macro
F1, and best-checkpoint keeping. Researchers who need more write their own loop with the same
pieces; this one is what the demo and notebooks use."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .autograd import no_grad
from .nn import functional as F


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    val_macro_f1: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: int = -1
    best_state: dict = None


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


def predict(model, loader, progress=False):
    """(probabilities (N, C) float32, labels (N,) int64) over a loader, in eval mode, without a graph."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    with no_grad():
        for batch in _progress(loader, len(loader), "predict", progress):
            images, y = batch[0], batch[1]
            probs.append(F.softmax(model(images), dim=1).numpy().copy())
            labels.append(np.asarray(y).copy())
    model.train(was_training)
    return np.concatenate(probs), np.concatenate(labels)


def fit(model, train_loader, optimizer, epochs, loss_fn=None, val_loader=None, num_classes=None, scheduler=None,
        progress=True, log=print):
    """Train `model`; after each epoch evaluate macro F1 on `val_loader` and keep the best weights
    (restored into the model at the end). A NaN or infinite loss stops training with
    FloatingPointError naming the epoch and step, instead of silently ruining the weights."""
    loss_fn = loss_fn or (lambda logits, y: F.cross_entropy(logits, y))
    history = History()
    best = -math.inf
    for epoch in range(epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        bar = _progress(train_loader, len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        for step, batch in enumerate(bar):
            images, y = batch[0], batch[1]
            optimizer.zero_grad()
            loss = loss_fn(model(images), y)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at epoch {epoch + 1}, step {step + 1}; lower the learning "
                                         f"rate or check the inputs (affectfer.detect_anomaly() names the op)")
            loss.backward()
            optimizer.step()
            total += value * len(y)
            count += len(y)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / count:.4f}")
        if scheduler is not None:
            scheduler.step()
        history.train_loss.append(total / max(count, 1))
        history.seconds.append(time.perf_counter() - start)
        line = f"epoch {epoch + 1}/{epochs}: train loss {history.train_loss[-1]:.4f} ({history.seconds[-1]:.1f} s)"
        if val_loader is not None:
            probs, labels = predict(model, val_loader)
            C = num_classes or probs.shape[1]
            f1 = metrics.macro_f1(labels, probs.argmax(1), C)
            acc = metrics.accuracy(labels, probs.argmax(1))
            history.val_macro_f1.append(f1)
            history.val_accuracy.append(acc)
            line += f", val macro F1 {f1:.4f}, accuracy {acc:.4f}"
            if f1 > best:
                best = f1
                history.best_epoch = epoch
                history.best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        if log:
            log(line)
    if history.best_state is not None:
        model.load_state_dict(history.best_state)
    return history
