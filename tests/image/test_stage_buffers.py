"""Ping-pong stage buffers (csrc/image/decode.c af_image_alloc/af_image_free): each thread reuses the
last two pixel buffers it freed for its next images, so a loader worker's stages allocate nothing
after the first sample. A reused buffer holds an earlier image's pixels: every stage must still
write all of its output. Here white images fill the worker's buffers between real ones, and the
real ones must come out as they do alone."""
import numpy as np

from affectfer import transforms as T
from affectfer.data import ArrayDataset, Loader


def batches(images, transform):
    ds = ArrayDataset(images, np.zeros(len(images), np.int64))
    return np.concatenate([np.asarray(b[0]).copy() for b in Loader(ds, batch_size=4, transform=transform, workers=1)])


def test_reused_stage_buffers_give_the_same_images(rng):
    # every stage makes a new image (no randomness, so positions do not matter); the padding ones write zeros
    # (RandomCrop to exactly the padded size: no random offset)
    transform = T.Compose([T.CenterCrop((23, 21)), T.Resize((15, 17)), T.RandomCrop((19, 21), padding=2), T.Grayscale(3),
                           T.SobelEdges(out_channels=3), T.CenterCrop(24), T.ToTensor()])
    real = rng.integers(0, 256, (5, 20, 18, 3), dtype=np.uint8)
    white = np.full((5, 20, 18, 3), 255, np.uint8)
    mixed = np.stack([im for pair in zip(white, real) for im in pair])  # white, real, white, real, ...
    alone = batches(real, transform)
    together = batches(mixed, transform)
    assert np.array_equal(together[1::2], alone)
    assert (alone == 0).any() and (together[::2] != 0).any()  # padding zeros next to non-zero images
