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

Every face also carries the targets of the multi-task methods, each a function of the parameters
it was drawn with: 68 landmarks in the iBUG 300-W layout (pixel coordinates of the jaw line, brows,
nose, eyes and lips as drawn), valence/arousal (the class's place on Russell's circumplex, 1980,
scaled by the expression's intensity, which also scales how far the face departs from neutral), and
12 action units (AUS, the ABAW set) active when the drawn feature crosses the threshold in
`AU_RULES`.

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
NEUTRAL = (0.0, 0.02, 0.75, 0.0, 0.0, 0.0)  # the face every expression departs from, by its intensity

# (valence, arousal) of each class at full intensity: its approximate place on Russell's circumplex
VALENCE_AROUSAL = {
    "anger": (-0.51, 0.59), "disgust": (-0.60, 0.35), "fear": (-0.64, 0.60),
    "happiness": (0.81, 0.51), "sadness": (-0.63, -0.27), "surprise": (0.40, 0.67),
}
AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
# AU -> (feature index into (tilt, lift, eye_open, curve, mouth_open, asym), comparison, threshold),
# read from the drawn (intensity-scaled) features: e.g. AU1 (inner brow raiser) when the inner brow
# end rises (tilt < -0.3), AU12 (lip corner puller) when the mouth curves up.
AU_RULES = {
    "AU1": (0, "<", -0.3), "AU2": (1, ">", 0.06), "AU4": (0, ">", 0.3), "AU6": (3, ">", 0.5),
    "AU7": (2, "<", 0.6), "AU10": (5, ">", 0.5), "AU12": (3, ">", 0.5), "AU15": (3, "<", -0.4),
    "AU23": (0, ">", 0.6), "AU24": (0, ">", 0.6), "AU25": (4, ">", 0.05), "AU26": (4, ">", 0.6),
}


@dataclass
class SyntheticFaces:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64 index into CLASSES
    hands: np.ndarray  # (N,) uint8: a hand covers part of the face
    landmarks: np.ndarray = None  # (N, 68, 2) float32 pixel (x, y), iBUG 300-W order
    valence_arousal: np.ndarray = None  # (N, 2) float32 in [-1, 1]
    aus: np.ndarray = None  # (N, 12) int64 0/1, columns AUS
    intensity: np.ndarray = None  # (N,) float32 in [0.5, 1]
    classes: tuple = CLASSES

    def __len__(self):
        return len(self.labels)


def synthetic_faces(n: int = 600, size: int = 64, seed: int = 0, balanced: bool = True,
                    hand_probability=None) -> SyntheticFaces:
    """`n` faces of `size` x `size`. balanced=False draws an imbalanced set (happiness common, disgust
    and fear rare), the case the methods' weighted sampling and oversampling exist for.

    `hand_probability`: None for the default (half of the fear faces, 4% of the others); a number for
    every class (0: no hands at all, as in the hand-assisted method's synthetic training set); or a
    dict class -> probability with an optional "other" entry for the classes it does not name."""
    if n < 1 or size < 24:
        raise ValueError(f"need n >= 1 and size >= 24, got n={n}, size={size}")
    hand_p = _hand_probabilities(hand_probability)
    rng = np.random.default_rng(seed)
    # intensities come from their own stream so that the rest of the drawing is the seed's alone
    intensity = np.random.default_rng([seed, 1]).uniform(0.5, 1.0, n).astype(np.float32)
    if balanced:
        labels = np.arange(n) % len(CLASSES)
        rng.shuffle(labels)
    else:
        p = np.array([0.15, 0.05, 0.07, 0.4, 0.18, 0.15])
        labels = rng.choice(len(CLASSES), size=n, p=p)
    images = np.empty((n, size, size, 3), np.uint8)
    hands = np.zeros(n, np.uint8)
    landmarks = np.empty((n, 68, 2), np.float32)
    aus = np.zeros((n, len(AUS)), np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i, label in enumerate(labels):
        name = CLASSES[label]
        hands[i] = rng.random() < hand_p[name]
        features = tuple(a + intensity[i] * (b - a) for a, b in zip(NEUTRAL, _FEATURES[name]))
        images[i], points = _draw_face(rng, yy, xx, features, bool(hands[i]))
        landmarks[i] = points * size
        aus[i] = [_au_active(features, *AU_RULES[au]) for au in AUS]
    va = np.array([VALENCE_AROUSAL[CLASSES[k]] for k in labels], np.float32) * intensity[:, None]
    return SyntheticFaces(images, labels.astype(np.int64), hands, landmarks, va, aus, intensity)


def _hand_probabilities(spec):
    if spec is None:
        return {c: HAND_PROBABILITY.get(c, HAND_PROBABILITY_OTHER) for c in CLASSES}
    if isinstance(spec, (int, float)):
        spec = {"other": float(spec)}
    if not isinstance(spec, dict):
        raise TypeError(f"hand_probability must be None, a number or a dict, got {type(spec).__name__}")
    unknown = set(spec) - set(CLASSES) - {"other"}
    if unknown:
        raise ValueError(f"hand_probability names unknown classes {sorted(unknown)}; classes are {CLASSES}")
    probs = {c: float(spec.get(c, spec.get("other", 0.0))) for c in CLASSES}
    bad = {c: p for c, p in probs.items() if not 0.0 <= p <= 1.0}
    if bad:
        raise ValueError(f"hand probabilities must be in [0, 1], got {bad}")
    return probs


def _au_active(features, index, comparison, threshold):
    value = features[index]
    return int(value < threshold if comparison == "<" else value > threshold)


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
    points = np.empty((68, 2), np.float32)  # normalised (x, y); iBUG 300-W order
    jaw = np.pi - np.arange(17) * np.pi / 16  # from the left ear down round the chin to the right
    points[0:17] = np.stack([cx + rx * np.cos(jaw), cy + ry * np.sin(jaw)], 1)
    points[27:31] = np.stack([np.full(4, cx), cy - 0.1 * scale + np.arange(4) * 0.06 * scale], 1)
    points[31:36] = np.stack([cx + np.linspace(-0.05, 0.05, 5) * scale, np.full(5, cy + 0.1 * scale)], 1)
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
        brow_base = ey - 0.075 - lift * a
        brow_jitter = jitter(0.005)
        brow_y = brow_base + tilt * a * 0.04 * inner_weight + brow_jitter
        on = (xx >= bx0) & (xx <= bx1)
        paint(_stroke(yy - brow_y, 0.012) * on, ink)
        brow = slice(17, 22) if side < 0 else slice(22, 27)
        bt = np.linspace(0, 1, 5)
        b_inner = bt if side < 0 else 1 - bt
        points[brow] = np.stack([bx0 + bt * (bx1 - bx0), brow_base + brow_jitter + tilt * a * 0.04 * b_inner], 1)
        eye_pts = slice(36, 42) if side < 0 else slice(42, 48)
        h = max(eh, 0.006)
        points[eye_pts] = [(ex - 0.05, ey), (ex - 0.02, ey - 0.92 * h), (ex + 0.02, ey - 0.92 * h),
                           (ex + 0.05, ey), (ex + 0.02, ey + 0.92 * h), (ex - 0.02, ey + 0.92 * h)]
    # mouth: a parabola with the class's curvature, opened into a dark region when mouth_open > 0
    my = cy + 0.2 * scale + jitter(0.01)
    half = 0.12 * scale * (1 + jitter(0.05))
    u = (xx - cx) / half
    inside = np.abs(u) <= 1
    lip = my - curve * 0.05 * (1 - u ** 2) * -1 + asym * 0.03 * u
    upper = lip - mouth_open * 0.05 * (1 - u ** 2)
    lower = lip + mouth_open * 0.07 * (1 - u ** 2)
    mouth_u = np.array([-1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0])  # corners and the upper/lower lip points
    lip_at = lambda u: my - curve * 0.05 * (1 - u ** 2) * -1 + asym * 0.03 * u
    open_at = max(mouth_open, 0.0)
    up_at = lambda u: lip_at(u) - open_at * 0.05 * (1 - u ** 2)
    low_at = lambda u: lip_at(u) + open_at * 0.07 * (1 - u ** 2)
    mx = cx + mouth_u * half
    points[48:55] = np.stack([mx, up_at(mouth_u) - 0.012], 1)  # outer lip: corner, upper lip, corner
    points[55:60] = np.stack([mx[5:0:-1], low_at(mouth_u[5:0:-1]) + 0.012], 1)
    inner_u = mouth_u[[0, 2, 3, 4, 6]]
    points[60:65] = np.stack([cx + inner_u * half, up_at(inner_u)], 1)
    points[65:68] = np.stack([cx + inner_u[3:0:-1] * half, low_at(inner_u[3:0:-1])], 1)
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
    return np.clip(canvas, 0, 255).astype(np.uint8), points
