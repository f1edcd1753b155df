"""csrc/fer: metrics against the spec's hand-computed vectors (section 6) and decision rules."""
import numpy as np
import pytest

import affectfer as af
from affectfer import decision, metrics

Y_TRUE = [0, 0, 1, 1, 2, 2, 3, 3]
Y_PRED = [0, 1, 1, 1, 2, 0, 3, 2]


def test_spec_vector_f1_accuracy_and_abaw_score():
    # spec 6.1: per-class F1 over C=6 = [0.5, 0.8, 0.5, 0.666667, 0, 0]
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
    # spec 5.5: population CCC of x = [0.1,0.4,-0.2,0.8], y = [0.0,0.5,-0.5,0.6] is 0.891304347826
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
