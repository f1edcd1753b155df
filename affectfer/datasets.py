"""The embedded demo set: procedurally drawn cartoon faces of the six basic expressions.

No files ship with the package: `synthetic_faces(n, seed)` draws them, so `make demo`, notebooks and
tests have labelled faces on any machine. Each class changes what a real expression changes
(eyebrow angle and height, eye opening, mouth curvature and opening, asymmetry), with random face
position, size, skin tone, background and noise so that a model has to learn the parts, not a pixel.
A hand over the face (palm on the mouth, fingers across eyes and brows) appears in half of the fear
images and rarely elsewhere, as in the synthetic ABAW training data the hand-assisted method was
built for: it hides the cues that tell fear from surprise, which is what a hand detector plus the
rule `hand and not happy -> fear` is for.
`hands` gives that label.

Drawing is vectorised over a coordinate grid per image (no per-pixel Python loop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

# per class: eyebrow inner-end tilt (+ = inner end lower, a frown), eyebrow lift, eye opening,
# mouth curvature (+ = smile), mouth opening, left/right asymmetry
_FEATURES = {
    "anger": (0.9, -0.02, 0.55, -0.2, 0.0, 0.0),
    "disgust": (0.4, 0.0, 0.5, -0.5, 0.05, 0.9),
    "fear": (-0.6, 0.08, 1.25, -0.3, 0.5, 0.0),
    "happiness": (0.0, 0.02, 0.65, 1.0, 0.25, 0.0),
    "sadness": (-0.9, 0.03, 0.7, -0.9, 0.0, 0.0),
    "surprise": (-0.1, 0.12, 1.35, 0.0, 0.9, 0.0),
}
HAND_PROBABILITY = {"fear": 0.5}
HAND_PROBABILITY_OTHER = 0.04


@dataclass
class SyntheticFaces:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64 index into CLASSES
    hands: np.ndarray  # (N,) uint8: a hand covers part of the face
    classes: tuple = CLASSES

    def __len__(self):
        return len(self.labels)


def synthetic_faces(n: int = 600, size: int = 64, seed: int = 0, balanced: bool = True) -> SyntheticFaces:
    """`n` faces of `size` x `size`. balanced=False draws an imbalanced set (happiness common, disgust
    and fear rare), the case the methods' weighted sampling and oversampling exist for."""
    if n < 1 or size < 24:
        raise ValueError(f"need n >= 1 and size >= 24, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    if balanced:
        labels = np.arange(n) % len(CLASSES)
        rng.shuffle(labels)
    else:
        p = np.array([0.15, 0.05, 0.07, 0.4, 0.18, 0.15])
        labels = rng.choice(len(CLASSES), size=n, p=p)
    images = np.empty((n, size, size, 3), np.uint8)
    hands = np.zeros(n, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i, label in enumerate(labels):
        name = CLASSES[label]
        hands[i] = rng.random() < HAND_PROBABILITY.get(name, HAND_PROBABILITY_OTHER)
        images[i] = _draw_face(rng, yy, xx, _FEATURES[name], bool(hands[i]))
    return SyntheticFaces(images, labels.astype(np.int64), hands)


def _stroke(dist, width):
    """Antialiased coverage of a stroke of half-width `width` at distance `dist`."""
    return np.clip(1.5 - np.abs(dist) / width, 0.0, 1.0)


def _draw_face(rng, yy, xx, features, hand):
    tilt, lift, eye_open, curve, mouth_open, asym = features
    jitter = lambda s: rng.normal(0.0, s)
    canvas = np.empty(yy.shape + (3,), np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    canvas[:] = top + (bottom - top) * yy[..., None]

    cx, cy = 0.5 + jitter(0.04), 0.52 + jitter(0.04)
    rx, ry = 0.32 + jitter(0.02), 0.4 + jitter(0.02)
    skin = np.array([rng.uniform(150, 240), rng.uniform(110, 190), rng.uniform(80, 160)])
    face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    canvas[face] = skin
    ink = skin * 0.25

    def paint(coverage, color):
        canvas[:] = canvas * (1 - coverage[..., None]) + color * coverage[..., None]

    scale = rx / 0.32
    for side in (-1, 1):
        ex, ey = cx + side * 0.13 * scale, cy - 0.1 * scale
        a = 1 + side * asym * 0.35
        # eyes: ellipses whose height is the class's eye opening
        eh = 0.035 * eye_open * a * (1 + jitter(0.08))
        eye = ((xx - ex) / 0.05) ** 2 + ((yy - ey) / max(eh, 0.006)) ** 2 <= 1.0
        canvas[eye] = (245, 245, 245)
        pupil = ((xx - ex) / 0.02) ** 2 + ((yy - ey) / max(min(eh, 0.02), 0.005)) ** 2 <= 1.0
        canvas[pupil] = (30, 20, 20)
        # eyebrows: segments above the eyes; the inner end drops for anger, rises for sadness/fear
        bx0, bx1 = ex - 0.07, ex + 0.07
        t = np.clip((xx - bx0) / (bx1 - bx0), 0, 1)
        inner_weight = t if side < 0 else 1 - t
        brow_y = ey - 0.075 - lift * a + tilt * a * 0.04 * inner_weight + jitter(0.005)
        on = (xx >= bx0) & (xx <= bx1)
        paint(_stroke(yy - brow_y, 0.012) * on, ink)
    # mouth: a parabola with the class's curvature, opened into a dark region when mouth_open > 0
    my = cy + 0.2 * scale + jitter(0.01)
    half = 0.12 * scale * (1 + jitter(0.05))
    u = (xx - cx) / half
    inside = np.abs(u) <= 1
    lip = my - curve * 0.05 * (1 - u ** 2) * -1 + asym * 0.03 * u
    upper = lip - mouth_open * 0.05 * (1 - u ** 2)
    lower = lip + mouth_open * 0.07 * (1 - u ** 2)
    if mouth_open > 0.05:
        opening = inside & (yy >= upper) & (yy <= lower)
        canvas[opening] = (60, 15, 25)
        paint(_stroke(yy - upper, 0.01) * inside, ink)
        paint(_stroke(yy - lower, 0.01) * inside, ink)
    else:
        paint(_stroke(yy - lip, 0.012) * inside, ink)

    if hand:  # a palm with four fingers over the mouth
        hx, hy = cx + rng.uniform(-0.08, 0.08), my + rng.uniform(0.0, 0.06)
        hand_skin = skin * rng.uniform(0.85, 1.1)
        palm = ((xx - hx) / 0.2) ** 2 + ((yy - hy) / 0.13) ** 2 <= 1.0
        fingers = np.zeros_like(palm)
        for k in range(4):  # long enough to reach over the eyes and brows, as in a fearful gesture
            fx = hx - 0.15 + k * 0.1
            fingers |= (np.abs(xx - fx) <= 0.04) & (yy <= hy) & (yy >= hy - 0.5 + abs(k - 1.5) * 0.04)
        region = palm | fingers
        canvas[region] = hand_skin
        # finger gaps drawn as dark lines: the edges the hand detector learns from
        for k in range(3):
            gx = hx - 0.1 + k * 0.1
            paint(_stroke(xx - gx, 0.006) * ((yy <= hy) & (yy >= hy - 0.42)), hand_skin * 0.5)

    canvas += rng.normal(0.0, 6.0, canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)
