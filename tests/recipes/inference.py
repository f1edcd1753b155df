"""The check every recipe's tiny run shares: its checkpoint loads for `python -m affectfer predict`."""
import csv

import numpy as np


def assert_predicts(checkpoint, classes, tmp_path, size=40):
    """`predict` (in process) on `checkpoint` over a folder of four faces writes one row per image
    with the probabilities of `classes`, in the recipe's order, summing to 1 and argmax = prediction.
    Returns the probabilities (4, C)."""
    from affectfer import cli
    from affectfer.datasets import synthetic_faces
    from tests.images import write_png

    folder = tmp_path / "predict_images"
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(synthetic_faces(4, size, seed=11).images):
        write_png(str(folder / f"face{i}.png"), image)
    table = tmp_path / "predictions.csv"
    assert cli.main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(table),
                     "--workers", "1"]) == 0
    rows = list(csv.reader(open(table)))
    assert rows[0] == ["path", "prediction", *classes] and [r[0] for r in rows[1:]] == [f"face{i}.png" for i in range(4)]
    probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert probs.shape == (4, len(classes))  # the classifier's output, not another head's
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert [r[1] for r in rows[1:]] == [classes[k] for k in probs.argmax(1)]
    return probs
