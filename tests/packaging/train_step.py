"""One training step of a small ResNet-18 and one augmentation pipeline, written to an .npz with
affectfer.info(): run by test_wheel.py under the installed wheel and under the in-tree build, whose
results it compares bit for bit.

    python train_step.py OUT.npz
"""
import sys

import numpy as np

import affectfer as af
from affectfer import models, nn, optim
from affectfer import transforms as T
from affectfer.datasets import synthetic_faces


def main(out):
    af.manual_seed(0)
    faces = synthetic_faces(n=4, size=32, seed=0)
    tf = T.Compose([T.RandAugment(num_ops=2, magnitude=9), T.RandomHorizontalFlip(), T.Resize(28), T.ToTensor(),
                    T.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])
    batch = np.stack([tf(img, seed=0, stream=i) for i, img in enumerate(faces.images)])
    model = models.resnet18(num_classes=6)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(af.tensor(batch)), af.tensor(faces.labels))
    loss.backward()
    grads = {f"grad.{name}": np.array(p.grad) for name, p in model.named_parameters()}
    opt.step()
    params = {f"param.{name}": np.array(p) for name, p in model.named_parameters()}
    info = af.info()
    np.savez(out, batch=batch, loss=np.array(loss), **grads, **params,
             **{f"info.{k}": np.array(str(v)) for k, v in info.items()}, module=np.array(af.__file__))


if __name__ == "__main__":
    main(sys.argv[1])
