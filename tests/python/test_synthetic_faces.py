"""datasets.synthetic_faces: determinism, the hand switch, and the multi-task targets derived from
the drawing parameters (landmarks on the drawn parts, valence/arousal, action units)."""
import numpy as np
import pytest

from affectfer import datasets
from affectfer.datasets import AUS, CLASSES, synthetic_faces


def test_same_seed_same_faces_and_targets():
    a, b = synthetic_faces(18, 48, seed=5), synthetic_faces(18, 48, seed=5)
    for field in ("images", "labels", "hands", "landmarks", "valence_arousal", "aus", "intensity"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert not np.array_equal(a.images, synthetic_faces(18, 48, seed=6).images)
    assert a.images.shape == (18, 48, 48, 3) and a.landmarks.shape == (18, 68, 2) and a.aus.shape == (18, 12)


def test_hand_probability_switch():
    assert synthetic_faces(60, 32, seed=0, hand_probability=0).hands.sum() == 0
    d = synthetic_faces(60, 32, seed=0, hand_probability={"fear": 1.0, "other": 0.0})
    np.testing.assert_array_equal(d.hands, d.labels == CLASSES.index("fear"))
    with pytest.raises(ValueError, match="unknown classes"):
        synthetic_faces(6, 32, hand_probability={"joy": 0.5})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        synthetic_faces(6, 32, hand_probability=1.5)


def test_valence_arousal_and_aus_follow_the_drawing_parameters():
    d = synthetic_faces(60, 32, seed=3)
    assert np.all((d.intensity >= 0.5) & (d.intensity <= 1.0))
    base = np.array([datasets.VALENCE_AROUSAL[CLASSES[k]] for k in d.labels])
    np.testing.assert_allclose(d.valence_arousal, base * d.intensity[:, None], rtol=1e-6)
    for i in range(len(d)):
        full = np.array(datasets._FEATURES[CLASSES[d.labels[i]]])
        drawn = np.array(datasets.NEUTRAL) + d.intensity[i] * (full - np.array(datasets.NEUTRAL))
        for k, au in enumerate(AUS):
            index, op, threshold = datasets.AU_RULES[au]
            active = drawn[index] < threshold if op == "<" else drawn[index] > threshold
            assert d.aus[i, k] == int(active), (i, au)
    happy = d.labels == CLASSES.index("happiness")
    assert d.aus[happy, AUS.index("AU12")].all() and not d.aus[~happy, AUS.index("AU12")].any()


def test_landmarks_sit_on_the_drawn_parts():
    d = synthetic_faces(24, 96, seed=4, hand_probability=0)
    for i in range(len(d)):
        img, lm = d.images[i].astype(int), d.landmarks[i]
        for eye in (slice(36, 42), slice(42, 48)):
            x, y = lm[eye].mean(0)
            assert img[int(round(y)), int(round(x))].sum() < 200, f"face {i}: eye centre is not on the pupil"
        # the mouth corners lie on the lip line: darker than the skin beside them
        skin = img[int(lm[30, 1]), int(lm[30, 0])].sum()  # the nose tip is plain skin here
        for corner in (48, 54):
            x, y = lm[corner]
            patch = img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3).sum(1)
            assert patch.min() < 0.8 * skin, f"face {i}: mouth corner {corner} not on the lips"
    assert np.all(d.landmarks[:, 17:22, 0] < d.landmarks[:, 22:27, 0].min(1, keepdims=True))  # left brow left
