"""Figures a researcher looks at: confusion matrices, training curves, augmentation grids.
matplotlib is optional (pip install affectfer[plots]); importing this module without it raises
ImportError with that hint. Every function saves to `path` when given and returns the Figure."""
from __future__ import annotations

import numpy as np

try:
    import matplotlib

    if not hasattr(matplotlib, "_affectfer_backend_checked"):
        import os

        if not os.environ.get("DISPLAY") and "ipykernel" not in __import__("sys").modules:
            matplotlib.use("Agg")
        matplotlib._affectfer_backend_checked = True
    import matplotlib.pyplot as plt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("affectfer.plots needs matplotlib: pip install 'affectfer[plots]'") from exc


def _finish(fig, path):
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def confusion_matrix(cm, class_names, path=None, title=None, normalize=True):
    """Rows = truth, columns = prediction; cells show row-normalised rates and raw counts."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(1.1 * len(class_names) + 2, 1.0 * len(class_names) + 1.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({cm[i, j]})" if normalize else str(cm[i, j]), ha="center", va="center",
                    fontsize=8, color="white" if rates[i, j] > 0.6 * (rates.max() or 1) else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def training_curves(history, path=None):
    """affectfer.train.fit's History: train loss per epoch (left); the validation metric, macro F1 and
    accuracy at each validation (right, against the optimizer step when fit recorded it)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax1.plot(epochs, history.train_loss, "o-", label="train loss")
    if getattr(history, "val_loss", None) and len(history.val_loss) == len(epochs):
        ax1.plot(epochs, history.val_loss, "s--", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend(loc="upper right")
    steps = getattr(history, "val_steps", None)
    n_val = max(len(history.val_macro_f1), len(getattr(history, "val_metric", []) or []))
    x = steps if steps and len(steps) == n_val else np.arange(1, n_val + 1)
    ax2.set_xlabel("optimizer step" if steps and len(steps) == n_val else "validation")
    metric = getattr(history, "metric", "macro_f1")
    if getattr(history, "val_metric", None) and metric not in ("macro_f1", "accuracy"):
        ax2.plot(x, history.val_metric, "d-", color="tab:red", label=f"val {metric}")
    if history.val_macro_f1:
        ax2.plot(x[:len(history.val_macro_f1)], history.val_macro_f1, "s-", color="tab:orange", label="val macro F1")
        ax2.plot(x[:len(history.val_accuracy)], history.val_accuracy, "^-", color="tab:green", label="val accuracy")
    if n_val:
        ax2.legend(loc="lower right")
    return _finish(fig, path)


def image_grid(images, titles=None, path=None, columns=8):
    """A grid of uint8 HWC images (e.g. before/after an augmentation)."""
    images = [np.asarray(im) for im in images]
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            im = images[k]
            ax.imshow(im.squeeze(), cmap="gray" if im.ndim == 2 or im.shape[-1] == 1 else None)
            if titles:
                ax.set_title(str(titles[k]), fontsize=7)
    return _finish(fig, path)
