"""The fit loop the recipes, the demo and the notebooks share: epochs of (forward, loss, backward,
step) with gradient accumulation, validation every epoch or every N steps on a selection metric,
best-weights keeping, early stopping, schedulers stepped per step or per epoch, multi-output models
and losses, checkpoints that resume bit for bit, a tqdm bar (loss, metric, images/s) and history
plots. Researchers who need more write their own loop with the same pieces.

Batches are tuples `(images, target, ...)` as the Loader yields them. `loss_fn(outputs, *targets)`
gets the model's output (a tensor or a tuple) and every target of the batch, and returns a scalar
tensor or a dict of named scalar tensors (summed into the loss; each is logged).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import metrics
from .autograd import no_grad
from .nn import functional as F


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    val_metric: list = field(default_factory=list)   # the selection metric at each validation
    val_loss: list = field(default_factory=list)
    val_macro_f1: list = field(default_factory=list)  # classification outputs only
    val_accuracy: list = field(default_factory=list)
    val_steps: list = field(default_factory=list)     # global step of each validation
    seconds: list = field(default_factory=list)       # per epoch
    images_per_second: list = field(default_factory=list)
    components: dict = field(default_factory=dict)   # per-epoch means of a dict loss's terms
    metric: str = "macro_f1"
    best_epoch: int = -1
    best_step: int = -1
    best_metric: float = float("nan")
    best_state: dict = None
    stopped_early: bool = False
    last_confusion: list = None

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("best_state")
        return d


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def predict_outputs(model, loader, progress=False):
    """Every model output and every batch target over a loader, concatenated, in eval mode without a
    graph: (outputs tuple of float32 arrays, targets tuple of arrays)."""
    was_training = model.training
    model.eval()
    outs, targets = [], []
    with no_grad():
        for batch in _progress(loader, len(loader), "predict", progress):
            outs.append([np.asarray(o).copy() for o in _as_tuple(model(batch[0]))])
            targets.append([np.asarray(t).copy() for t in batch[1:]])
    model.train(was_training)
    return (tuple(np.concatenate(k) for k in zip(*outs)) if outs else (),
            tuple(np.concatenate(k) for k in zip(*targets)) if targets else ())


def predict(model, loader, progress=False, output_index: int = 0):
    """(probabilities (N, C) float32, labels (N,) int64) over a loader, in eval mode, without a graph.
    For a multi-output model, `output_index` names the logits output."""
    outputs, targets = predict_outputs(model, loader, progress)
    logits = outputs[output_index]
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(1, keepdims=True)).astype(np.float32), targets[0]


def _metric_value(name, outputs, targets, num_classes, output_index):
    """Higher is better for every metric but val_loss."""
    if callable(name):
        return float(name(outputs, targets))
    if name == "abaw_mtl":  # outputs (va (N, 2), expression logits, AU logits); targets likewise, or the two of
        va, expr, au = outputs[:3]  # an ABAWMTLDataset batch: expression labels, (valence, arousal, 12 AUs)
        if len(targets) == 2:
            from .data.readers import mtl_targets

            split = mtl_targets(*targets)
            targets = (split["va"], split["expression"], split["au"])
        return metrics.abaw_mtl_score(targets[0], va, targets[1], expr.argmax(1), targets[2], 1 / (1 + np.exp(-au)),
                                      num_expressions=num_classes or expr.shape[1])
    logits, labels = outputs[output_index], targets[0]
    C = num_classes or logits.shape[1]
    pred = logits.argmax(1)
    if name == "macro_f1":
        return metrics.macro_f1(labels, pred, C)
    if name == "accuracy":
        return metrics.accuracy(labels, pred)
    if name == "abaw_expression":
        return metrics.abaw_expression_score(labels, pred, C)
    raise ValueError(f"unknown metric {name!r}: use macro_f1, accuracy, abaw_expression, abaw_mtl, val_loss or a callable")


def _loss_terms(value):
    if isinstance(value, dict):
        if not value:
            raise ValueError("loss_fn returned an empty dict")
        total = None
        for term in value.values():
            total = term if total is None else total + term
        return total, value
    return value, None


def _default_loss(outputs, target, *rest):
    return F.cross_entropy(_as_tuple(outputs)[0], target)


def _best_path(path):
    root, ext = os.path.splitext(os.fspath(path))
    return root + ".best" + (ext or ".safetensors")


def _save_state(path, model, optimizer, scheduler, history, epoch, step, bad_validations):
    from . import checkpoint

    if history.best_state is not None:
        checkpoint.save_file(history.best_state, _best_path(path), {"format": "affectfer"})

    config = {"fit": {"epoch": epoch, "step": step, "bad_validations": bad_validations,
                      "scheduler": scheduler.state_dict() if scheduler is not None else None,
                      "history": history.to_json()}}
    checkpoint.save(model, path, optimizer=optimizer, config=config, epoch=epoch)


def _restore_state(path, model, optimizer, scheduler, history):
    from . import checkpoint

    ckpt = checkpoint.load(path, model=model, optimizer=optimizer)
    state = (ckpt.config or {}).get("fit")
    if state is None:
        raise ValueError(f"{path}: not a checkpoint written by train.fit (no 'fit' state in its config)")
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    for key, value in state["history"].items():
        setattr(history, key, value)
    if os.path.exists(_best_path(path)):
        history.best_state = {k: np.asarray(v).copy() for k, v in checkpoint.load_file(_best_path(path))[0].items()}
    return state["epoch"], state["step"], state["bad_validations"]


def fit(model, train_loader, optimizer, epochs, loss_fn=None, val_loader=None, num_classes=None, scheduler=None,
        progress=True, log=print, *, metric="macro_f1", output_index: int = 0, accumulate_steps: int = 1,
        val_every: int | None = None, patience: int | None = None, scheduler_interval: str = "epoch",
        checkpoint_path=None, resume=None, plot_dir=None, class_names=None):
    """Train `model` and return its History.

    - `metric`: what selects the best weights on `val_loader`: "macro_f1" (default), "accuracy",
      "abaw_expression" (0.67 F1 + 0.33 accuracy), "abaw_mtl" (outputs (VA, expression logits, AU
      logits); targets the same three, or an affectfer.data.ABAWMTLDataset's batches: expression labels
      and (valence, arousal, 12 AUs) with their invalid markers; the log's F1, accuracy and confusion
      matrix are then the expression head's), "val_loss" (lower is better), or a
      callable(outputs, targets) -> float (higher is better).
      The best weights are restored into the model at the end.
    - `accumulate_steps=k`: gradients of k batches are summed (each loss divided by k) before one
      optimizer step, as a k-times larger batch would give for a mean loss.
    - `val_every=N`: validate every N optimizer steps as well as at each epoch's end (None: epochs only).
    - `patience=P`: stop after P validations without improvement.
    - `scheduler_interval`: "epoch" steps the scheduler after each epoch, "step" after each optimizer step.
    - `checkpoint_path`: after each epoch the full training state (weights, optimizer, RNG, scheduler,
      history) is written there, atomically; `resume=path` continues from such a file exactly as
      the uninterrupted run would have (same bits, for the same loaders).
    - `plot_dir`: the loss/metric curves and the last validation confusion matrix as PNGs.
    A NaN or infinite loss stops training with FloatingPointError naming the epoch and step.
    """
    if accumulate_steps < 1:
        raise ValueError(f"accumulate_steps must be >= 1, got {accumulate_steps}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if val_every is not None and val_every < 1:
        raise ValueError(f"val_every must be >= 1 steps, got {val_every}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 validations, got {patience}")
    if (patience is not None or val_every is not None) and val_loader is None:
        raise ValueError("patience and val_every need a val_loader")
    loss_fn = loss_fn or _default_loss
    from .distributed import barrier, is_main_process, loop as ranks  # several processes: see affectfer.distributed
    if not is_main_process():
        progress, log = False, None
    history = History(metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"))
    lower_is_better = metric == "val_loss"
    start_epoch, step, bad_validations = 0, 0, 0
    if resume is not None:
        start_epoch, step, bad_validations = _restore_state(resume, model, optimizer, scheduler, history)
        start_epoch += 1
        if log:
            log(f"resumed from {resume} after epoch {start_epoch} (step {step})")
    net, model = ranks.prepare(model, train_loader, val_loader)

    def validate(epoch):
        nonlocal bad_validations
        outputs, targets = ranks.gather_predictions(*predict_outputs(model, val_loader), val_loader)
        with no_grad():
            val_loss = _validation_loss(model, val_loader, loss_fn)
        value = val_loss if lower_is_better else _metric_value(metric, outputs, targets, num_classes, output_index)
        history.val_metric.append(value)
        history.val_loss.append(val_loss)
        history.val_steps.append(step)
        line = f"val {history.metric} {value:.4f}"
        # abaw_mtl's outputs are (VA, expression logits, AU logits): its F1 and confusion are the expression head's
        head = 1 if metric == "abaw_mtl" else output_index
        logits = outputs[head] if len(outputs) > head else None
        if logits is not None and logits.ndim == 2 and targets and targets[0].ndim == 1:
            C = num_classes or logits.shape[1]
            pred = logits.argmax(1)
            history.val_macro_f1.append(metrics.macro_f1(targets[0], pred, C))
            history.val_accuracy.append(metrics.accuracy(targets[0], pred))
            history.last_confusion = metrics.confusion_matrix(targets[0], pred, C).tolist()
            if history.metric != "macro_f1":
                line += f", macro F1 {history.val_macro_f1[-1]:.4f}"
            line += f", accuracy {history.val_accuracy[-1]:.4f}"
        improved = math.isnan(history.best_metric) or (value < history.best_metric if lower_is_better
                                                        else value > history.best_metric)
        if improved:
            history.best_metric, history.best_epoch, history.best_step = value, epoch, step
            history.best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
            bad_validations = 0
        else:
            bad_validations += 1
        return line

    for epoch in range(start_epoch, epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        start, total, count, terms = time.perf_counter(), 0.0, 0, {}
        bar = _progress(train_loader, len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        optimizer.zero_grad()
        pending, line = 0, ""
        for batch_index, batch in enumerate(bar):
            images, targets = batch[0], batch[1:]
            last_of_step = pending + 1 == accumulate_steps or batch_index == len(train_loader) - 1
            with ranks.no_sync(net, not last_of_step):
                loss, parts = _loss_terms(loss_fn(net(images), *targets))
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at epoch {epoch + 1}, step {batch_index + 1}; lower the "
                                         f"learning rate or check the inputs (affectfer.detect_anomaly() names the op)")
            (loss * (1.0 / accumulate_steps) if accumulate_steps > 1 else loss).backward()
            pending += 1
            n = len(images)
            total += value * n
            count += n
            for name, term in (parts or {}).items():
                terms[name] = terms.get(name, 0.0) + term.item() * n
            if pending == accumulate_steps or batch_index == len(train_loader) - 1:
                optimizer.step()
                optimizer.zero_grad()
                pending = 0
                step += 1
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                if val_every is not None and step % val_every == 0:
                    line = validate(epoch)
                    model.train()
                    if patience is not None and bad_validations >= patience:
                        break
            if hasattr(bar, "set_postfix"):
                postfix = {"loss": f"{total / count:.4f}", "img/s": f"{count / (time.perf_counter() - start):.0f}"}
                if history.val_metric:
                    postfix[history.metric] = f"{history.val_metric[-1]:.4f}"
                bar.set_postfix(postfix)
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        seconds = time.perf_counter() - start
        total, count = ranks.sum_over_ranks(total, count)
        history.train_loss.append(total / max(count, 1))
        history.seconds.append(seconds)
        history.images_per_second.append(count / seconds if seconds > 0 else float("nan"))
        for name, value in terms.items():
            history.components.setdefault(name, []).append(value / max(count, 1))
        line = (f"epoch {epoch + 1}/{epochs}: train loss {history.train_loss[-1]:.4f} "
                f"({seconds:.1f} s, {history.images_per_second[-1]:.0f} images/s)")
        stop = patience is not None and bad_validations >= patience
        if val_loader is not None and not stop and (val_every is None or step not in history.val_steps):
            line += ", " + validate(epoch)
            stop = patience is not None and bad_validations >= patience
        if log:
            log(line)
        if checkpoint_path is not None:
            if is_main_process():
                _save_state(checkpoint_path, model, optimizer, scheduler, history, epoch, step, bad_validations)
            barrier()
        if stop:
            history.stopped_early = True
            if log:
                log(f"early stop: {history.metric} did not improve for {patience} validations")
            break
    if history.best_state is not None and val_loader is not None:
        model.load_state_dict(history.best_state)
    if plot_dir is not None:
        save_plots(history, plot_dir, class_names)
    return history


def _validation_loss(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    from .distributed.loop import real_samples, sum_over_ranks

    total, count, seen, real = 0.0, 0, 0, real_samples(loader)
    for batch in loader:
        n = len(batch[0])
        if real is not None:  # a sharded loader: its padded duplicates are not counted
            n, seen = max(0, min(n, real - seen)), seen + n
            if n == 0:
                continue
            if n < len(batch[0]):
                batch = [t[:n] for t in batch]
        loss, _ = _loss_terms(loss_fn(model(batch[0]), *batch[1:]))
        total += loss.item() * n
        count += n
    model.train(was_training)
    total, count = sum_over_ranks(total, count)
    return total / max(count, 1)


def save_plots(history: History, folder, class_names=None) -> list:
    """history.png (train loss, validation loss and metric) and, when a classification validation
    ran, confusion.png. Returns the paths written."""
    from . import plots

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "history.png")]
    plots.training_curves(history, paths[0])
    if history.last_confusion is not None:
        cm = np.asarray(history.last_confusion)
        names = list(class_names) if class_names is not None else [str(c) for c in range(len(cm))]
        paths.append(os.path.join(folder, "confusion.png"))
        plots.confusion_matrix(cm, names, paths[-1], title=f"validation (best {history.metric} "
                                                             f"{history.best_metric:.4f})")
    with open(os.path.join(folder, "history.json"), "w") as f:
        json.dump(history.to_json(), f, indent=1)
    paths.append(os.path.join(folder, "history.json"))
    return paths
