"""csrc/fer: metrics against hand-computed vectors (scikit-learn semantics) and decision rules."""
import numpy as np
import pytest

import affectfer as af
from affectfer import decision, metrics

Y_TRUE = [0, 0, 1, 1, 2, 2, 3, 3]
Y_PRED = [0, 1, 1, 1, 2, 0, 3, 2]


def test_spec_vector_f1_accuracy_and_abaw_score():
    # scikit-learn f1_score(labels=range(6), average=None, zero_division=0): per-class F1 over C=6 = [0.5, 0.8, 0.5, 0.666667, 0, 0]
    f1 = metrics.f1_per_class(Y_TRUE, Y_PRED, 6)
    np.testing.assert_allclose(f1, [0.5, 0.8, 0.5, 2 / 3, 0, 0], atol=1e-12)
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 6) == pytest.approx(0.411111, abs=1e-6)
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 6, drop_absent=True) == pytest.approx(0.616667, abs=1e-6)
    assert metrics.accuracy(Y_TRUE, Y_PRED) == 0.625
    # 0.67 * 0.411111 + 0.33 * 0.625 = 0.481694
    assert metrics.abaw_expression_score(Y_TRUE, Y_PRED, 6) == pytest.approx(0.481694, abs=1e-6)


def test_confusion_matrix_by_hand_and_ignored_frames():
    cm = metrics.confusion_matrix([0, 1, 1, -1, 2], [0, 1, 0, 2, 2], 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert metrics.accuracy([0, 1, 1, -1, 2], [0, 1, 0, 2, 2]) == 0.75
    assert metrics.confusion_matrix(af.tensor([0, 1]), af.tensor([1, 1]), 2).tolist() == [[0, 1], [0, 1]]


def test_metric_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"y_pred\[1\] = 7"):
        metrics.confusion_matrix([0, 1], [0, 7], 3)
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 3"):
        metrics.confusion_matrix([0, 1], [0, 1, 1], 3)
    with pytest.raises(ValueError, match="2-D"):
        af._C.scores_from_confusion(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([-1], [0])


def test_ccc_spec_vectors():
    # Lin (1989) with population moments: CCC of x = [0.1,0.4,-0.2,0.8], y = [0.0,0.5,-0.5,0.6] is 0.891304347826
    assert metrics.ccc([0.1, 0.4, -0.2, 0.8], [0.0, 0.5, -0.5, 0.6]) == pytest.approx(0.891304347826, abs=1e-12)
    assert metrics.ccc([2.5, 0, 2, 8], [3, -0.5, 2, 7]) == pytest.approx(0.97678916827853, abs=1e-12)
    with pytest.raises(ValueError, match="same constant"):
        metrics.ccc([1.0, 1.0], [1.0, 1.0])


def test_hand_override_rule():
    happiness, fear = 3, 2
    expr = [0, 3, 4, 2, 5, 3]
    hand = [1, 1, 0, 1, 1, 0]
    # hand and not happy -> fear; hand and happy -> happy; no hand -> unchanged
    assert decision.hand_override(expr, hand, happiness, fear).tolist() == [2, 3, 4, 2, 2, 3]
    with pytest.raises(ValueError, match="hand has 2"):
        decision.hand_override([0, 1, 2], [1, 0], happiness, fear)


def test_soft_vote_mean_and_weights():
    p1 = np.array([[0.6, 0.4], [0.1, 0.9]], dtype=np.float32)
    p2 = np.array([[0.2, 0.8], [0.3, 0.7]], dtype=np.float32)
    np.testing.assert_allclose(decision.soft_vote([p1, p2]), (p1 + p2) / 2, rtol=1e-6)
    np.testing.assert_allclose(decision.soft_vote([p1, p2], weights=[3, 1]), (3 * p1 + p2) / 4, rtol=1e-6)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        decision.soft_vote([p1, p2], weights=[-1, 1])


def test_classification_report_lists_every_class():
    text = metrics.classification_report(Y_TRUE, Y_PRED, metrics.EXPRESSIONS_6)
    for name in metrics.EXPRESSIONS_6:
        assert name in text
    assert "0.4111" in text and "0.6250" in text


def test_confusion_table_rows_are_true_classes_columns_predictions():
    names = ("anger", "disgust", "fear")
    text = metrics.confusion_table([0, 0, 1, 2, 2, 2, -1], [0, 1, 1, 2, 0, 2, 2], names, title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and lines[1].split()[-3:] == ["anger", "disgu", "fear"]
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[2:]}
    assert rows == {"anger": [1, 1, 0], "disgust": [0, 1, 0], "fear": [1, 0, 2]}  # the -1 frame is skipped


# ---- action units, the ABAW criteria, class weights ----
AU_TRUE = [[1, 0], [1, -1], [0, 1], [0, 1]]
AU_SCORE = [[0.9, 0.2], [0.4, 0.7], [0.6, 0.5], [0.1, 0.49]]


def test_au_f1_by_hand():
    # AU0: truth 1,1,0,0 vs predicted 1,0,1,0 -> TP 1, FP 1, FN 1, TN 1: F1 0.5, accuracy 0.5.
    # AU1: frame 1 unannotated; truth 0,1,1 vs predicted 0,1 (0.5 >= 0.5),0 -> TP 1, FN 1, TN 1:
    # F1 2/3, accuracy 2/3.
    counts = af._C.multilabel_counts(np.array(AU_TRUE), np.array(AU_SCORE, dtype=np.float64), 0.5, -1)
    np.testing.assert_array_equal(counts, [[1, 1, 1, 1], [1, 0, 1, 1]])
    np.testing.assert_allclose(metrics.au_f1_per_class(AU_TRUE, AU_SCORE), [0.5, 2 / 3], atol=1e-12)
    assert metrics.au_macro_f1(AU_TRUE, AU_SCORE) == pytest.approx(7 / 12, abs=1e-12)
    assert metrics.abaw_au_score(AU_TRUE, AU_SCORE) == pytest.approx(7 / 12, abs=1e-12)
    # editions 1-2: 0.5 * mean F1 + 0.5 * mean accuracy = 0.5 * 7/12 + 0.5 * (1/2 + 2/3) / 2
    assert metrics.abaw_au_score(AU_TRUE, AU_SCORE, edition=2) == pytest.approx(7 / 24 + 7 / 24, abs=1e-12)
    # threshold 0.8: AU0 predicted 1,0,0,0 (TP 1, FN 1 -> F1 2/3); AU1 never predicted (TP 0 -> F1 0)
    np.testing.assert_allclose(metrics.au_f1_per_class(AU_TRUE, AU_SCORE, threshold=0.8), [2 / 3, 0.0], atol=1e-12)


def test_au_f1_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    truth = rng.integers(-1, 2, size=(200, 12))
    score = rng.random((200, 12))
    expected = []
    for l in range(12):
        keep = truth[:, l] != -1
        t, p = truth[keep, l] == 1, score[keep, l] >= 0.5
        tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
        expected.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
    np.testing.assert_allclose(metrics.au_f1_per_class(truth, score), expected, rtol=1e-12)


def test_au_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"y_true\[0, 1\] = 2"):
        metrics.au_macro_f1([[1, 2]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="y_score has"):
        metrics.au_macro_f1([[1, 0]], [[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="no annotated frame"):
        metrics.abaw_au_score([[1, -1]], [[0.5, 0.5]], edition=2)


def test_masked_ccc_and_va_score_skip_invalid_frames():
    t = np.array([0.1, 0.4, -0.2, 0.8, -5.0])
    p = np.array([0.0, 0.5, -0.5, 0.6, 3.0])
    # the spec vector once the unannotated frame (-5) is dropped
    assert metrics.ccc(p, t, mask=t != metrics.VA_INVALID) == pytest.approx(0.891304347826, abs=1e-12)
    assert metrics.ccc(p, t) != pytest.approx(0.891304347826, abs=1e-3)
    va_true = np.stack([t, [0.2, 0.3, -5.0, 0.4, 0.5]], 1)
    va_pred = np.stack([p, [0.2, 0.3, 9.0, 0.4, 0.5]], 1)  # arousal predicted exactly where annotated
    assert metrics.abaw_va_score(va_true, va_pred) == pytest.approx((0.891304347826 + 1.0) / 2, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        metrics.abaw_va_score(t, p)


def test_abaw_mtl_score_composition():
    va_true = np.array([[0.1, 0.2], [0.4, -0.3], [-0.2, 0.5], [-5.0, -5.0]])
    va_pred = va_true.copy()
    va_pred[3] = [0.9, 0.9]                      # unannotated frame: ignored, so both CCCs are 1
    expr_true = Y_TRUE + [-1]
    expr_pred = Y_PRED + [7]
    # 8-class F1 [0.5, 0.8, 0.5, 2/3, 0, 0, 0, 0] -> 37/120; AU macro F1 7/12 (above)
    expected = 1.0 + 37 / 120 + 7 / 12
    score = metrics.abaw_mtl_score(va_true, va_pred, expr_true, expr_pred, AU_TRUE, AU_SCORE)
    assert score == pytest.approx(expected, abs=1e-12)


def test_class_weights_spec_vectors():
    from affectfer.losses import class_weights
    counts = [18286, 15150, 10923, 73285, 144631, 14976]  # AffectNet-6 counts of the IXLab code
    np.testing.assert_allclose(class_weights(counts, "inverse", normalize=True),
                               [1.09528, 1.322, 1.833589, 0.273293, 0.138479, 1.337359], rtol=5e-6)
    np.testing.assert_allclose(class_weights(counts, "balanced"),
                               [2.526988, 3.050066, 4.230385, 0.630531, 0.319492, 3.085503], rtol=2e-6)
    np.testing.assert_allclose(class_weights(counts, "one_minus_frequency"),
                               [0.934045, 0.945356, 0.960602, 0.735673, 0.478339, 0.945984], rtol=2e-6)
    np.testing.assert_allclose(class_weights([10, 40, 20], "max_over_count"), [4.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="class 1 has no sample"):
        class_weights([3, 0], "inverse")
    with pytest.raises(ValueError, match="kind must be one of"):
        class_weights([3, 1], "sqrt")


# ---- scikit-learn as an extra reference (skipped where it is not installed) ----
@pytest.mark.parametrize("seed", [0, 1])
def test_f1_accuracy_confusion_match_scikit_learn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    C = 7
    truth = rng.integers(0, C - 1, 300)          # class 6 never true ...
    pred = np.where(rng.random(300) < 0.6, truth, rng.integers(0, C - 2, 300))  # ... nor predicted (absent)
    labels = list(range(C))
    np.testing.assert_array_equal(metrics.confusion_matrix(truth, pred, C), skm.confusion_matrix(truth, pred,
                                                                                                labels=labels))
    np.testing.assert_allclose(metrics.f1_per_class(truth, pred, C),
                               skm.f1_score(truth, pred, labels=labels, average=None, zero_division=0), rtol=1e-12)
    assert metrics.macro_f1(truth, pred, C) == pytest.approx(
        skm.f1_score(truth, pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
    assert metrics.macro_f1(truth, pred, C, drop_absent=True) == pytest.approx(
        skm.f1_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
    assert metrics.accuracy(truth, pred) == pytest.approx(skm.accuracy_score(truth, pred), abs=1e-12)
    f1, acc = skm.f1_score(truth, pred, labels=labels, average="macro", zero_division=0), skm.accuracy_score(truth, pred)
    assert metrics.abaw_expression_score(truth, pred, C) == pytest.approx(0.67 * f1 + 0.33 * acc, abs=1e-12)


def test_au_f1_matches_scikit_learn_per_column():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    truth = rng.integers(-1, 2, size=(150, 12))
    score = rng.random((150, 12))
    expected = [skm.f1_score(truth[truth[:, k] != -1, k], score[truth[:, k] != -1, k] >= 0.5, zero_division=0)
                for k in range(12)]
    np.testing.assert_allclose(metrics.au_f1_per_class(truth, score), expected, rtol=1e-12)
    assert metrics.au_macro_f1(truth, score) == pytest.approx(np.mean(expected), abs=1e-12)


def test_balanced_class_weights_match_scikit_learn():
    utils = pytest.importorskip("sklearn.utils")
    from affectfer.losses import class_weights

    y = np.repeat(np.arange(6), [18, 15, 11, 73, 145, 15])
    expected = utils.compute_class_weight("balanced", classes=np.arange(6), y=y)
    np.testing.assert_allclose(class_weights(np.bincount(y), "balanced"), expected, rtol=1e-6)
