import numpy as np
import pytest

plots = pytest.importorskip("affectfer.plots", exc_type=ImportError)


def test_confusion_matrix_and_curves_write_png(tmp_path):
    from affectfer.train import History

    cm = np.array([[5, 1], [2, 7]])
    plots.confusion_matrix(cm, ["a", "b"], tmp_path / "cm.png", title="t")
    h = History(train_loss=[1.0, 0.5], val_macro_f1=[0.4, 0.6], val_accuracy=[0.5, 0.7])
    plots.training_curves(h, tmp_path / "curves.png")
    plots.image_grid([np.zeros((8, 8, 3), np.uint8)] * 3, ["x", "y", "z"], tmp_path / "grid.png", columns=2)
    for name in ("cm.png", "curves.png", "grid.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
