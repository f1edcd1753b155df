"""The short fine-tuning run the model tests share: a model trained a few Adam steps on one batch of
the synthetic faces, returning its losses."""
import numpy as np

import affectfer as af
import affectfer.nn.functional as F
from affectfer import optim
from affectfer.datasets import synthetic_faces


def synthetic_batch(n, size=32, seed=0):
    """(images (n, 3, size, size) float32 normalised around 0, labels int64) as tensors."""
    data = synthetic_faces(n, size=size, seed=seed)
    images = (data.images.transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5) / 0.25  # NHWC uint8 -> NCHW
    return af.tensor(np.ascontiguousarray(images)), af.tensor(data.labels), len(data.classes)


def adam_losses(model, x, y, steps=10, lr=1e-3):
    """The loss of each of `steps` Adam steps of cross-entropy training on (x, y)."""
    opt = optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
