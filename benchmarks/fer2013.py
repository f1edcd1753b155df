"""FER2013 with one fixed recipe, affectfer beside PyTorch in the same run; or a paper recipe on FER2013.

    python benchmarks/fer2013.py [--data PATH] [--epochs 12] [--subset N] [--val-subset N] [--threads T]
    python benchmarks/fer2013.py --recipe hust_lsd|hand_assisted [--set key=value ...]

Data: FER2013 (Goodfellow et al., "Challenges in Representation Learning", arXiv 1307.0414), the
official Training split for training and PublicTest for validation, as `train/<class>/*.jpg` and
`val/<class>/*.jpg` (classes angry, disgust, fear, happy, neutral, sad, surprise): either that folder
or a .tar.gz holding it, read in memory (nothing is extracted). `--data` gives it; the default is the
environment variable AFFECTFER_FER2013, else `shared/data/fer2013-train-val.tar.gz` beside the checkout
or one of its parent folders. FER2013 has no open licence (research use): never copy it into the
repository.

The fixed recipe (both frameworks): ResNet-18 (torchvision layout, from scratch) on 64x64 faces
(the 48x48 images resized once, bilinear with antialiasing, then kept in memory as uint8), random crop
64 with zero padding 4 and horizontal flip, per-channel normalisation with the training set's
statistics, AdamW lr 1e-3 weight decay 1e-4, cosine annealing stepped per optimizer step to 0, batch
64, cross-entropy with label smoothing 0.1, 12 epochs. It prints validation accuracy and macro F1 after
the last epoch, and training seconds per epoch (validation excluded), for affectfer and, when torch
and torchvision import, for PyTorch on the same images, the same number of threads, in the same run.
`--subset N` trains on N training images (a seeded random choice) for quick runs; `--val-subset N`
likewise for validation. The two frameworks draw their initial weights, shuffles and augmentations
from different generators, so their accuracies agree in distribution, not to the digit.

`--recipe NAME` runs `affectfer.recipes.run(NAME, data=(train, val), overrides=[the --set key=value
strings])`, train and val being FER2013's Training and PublicTest splits (after --subset/--val-subset)
restricted to the six non-neutral classes in the order anger, disgust, fear, happiness, sadness,
surprise, and prints what it returns: the paper recipes (hust_lsd, hand_assisted) on real faces.
hand_assisted's hand detector needs hand-labelled faces FER2013 does not have: give them with
`--set hand_data=FOLDER`, or `--set hand=false` for its expression model alone.
"""
from __future__ import annotations

import argparse
import os
import sys
import tarfile
import time

import numpy as np

import affectfer as af
from affectfer import metrics, models, optim, train
from affectfer import transforms as T
from affectfer.data import ArrayDataset, Loader, remap_labels
from affectfer.io import decode_image
from affectfer.nn import functional as F

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # the folder names, sorted
ARCHIVE = "fer2013-train-val.tar.gz"
SIZE, PAD, BATCH, LR, WEIGHT_DECAY, SMOOTHING = 64, 4, 64, 1e-3, 1e-4, 0.1


def default_data():
    """$AFFECTFER_FER2013, else shared/data/<ARCHIVE> beside the checkout or a parent folder; None if absent."""
    if os.environ.get("AFFECTFER_FER2013"):
        return os.environ["AFFECTFER_FER2013"]
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while True:
        candidate = os.path.join(os.path.dirname(folder), "shared", "data", ARCHIVE)
        if os.path.exists(candidate):
            return candidate
        if os.path.dirname(folder) == folder:
            return None
        folder = os.path.dirname(folder)


def _split_of(name):
    """(split, class, file) of an archive member `.../<split>/<class>/<file>`, or None."""
    parts = name.split("/")
    if len(parts) < 3 or parts[-3] not in ("train", "val") or parts[-2] not in CLASSES:
        return None
    return parts[-3], parts[-2], parts[-1]


def load_fer2013(source):
    """{"train": (images uint8 (N, 48, 48, 3), labels), "val": ...}, labels in CLASSES order and samples
    in ImageFolder order (class, then file name), from a folder or a .tar.gz."""
    found = {"train": [], "val": []}
    if os.path.isdir(source):
        for split in found:
            for label, c in enumerate(CLASSES):
                folder = os.path.join(source, split, c)
                if not os.path.isdir(folder):
                    raise SystemExit(f"fer2013: '{folder}' is missing: --data must hold train/<class>/ and val/<class>/")
                for f in sorted(os.listdir(folder)):
                    with open(os.path.join(folder, f), "rb") as fh:
                        found[split].append((label, f, fh.read()))
    elif os.path.isfile(source):
        with tarfile.open(source) as tar:
            for member in tar:
                where = _split_of(member.name) if member.isfile() else None
                if where is not None:
                    found[where[0]].append((CLASSES.index(where[1]), where[2], tar.extractfile(member).read()))
    else:
        raise SystemExit(f"fer2013: --data '{source}' is neither a folder nor an archive")
    out = {}
    for split, items in found.items():
        if not items:
            raise SystemExit(f"fer2013: no {split}/<class>/ images in '{source}'")
        items.sort(key=lambda t: (t[0], t[1]))
        images = np.stack([decode_image(data, name=name) for _, name, data in items])
        out[split] = (images, np.array([label for label, _, _ in items], dtype=np.int64))
    return out


def choose(images, labels, n, seed):
    """n samples chosen at random (seeded, order kept), or everything when n is None."""
    if n is None or n >= len(labels):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[keep], labels[keep]


def resize_all(images):
    resize = T.Resize((SIZE, SIZE))
    return np.stack([resize(im, seed=0, stream=0) for im in images])


def run_affectfer(data, epochs, threads, workers, seed, progress):
    (train_x, train_y), (val_x, val_y), mean, std = data
    af.set_num_threads(threads)
    af.manual_seed(seed)
    augment = T.Compose([T.RandomCrop(SIZE, padding=PAD), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    plain = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    train_loader = Loader(ArrayDataset(train_x, train_y, classes=CLASSES), batch_size=BATCH, transform=augment,
                          shuffle=True, workers=workers, seed=seed)
    val_loader = Loader(ArrayDataset(val_x, val_y, classes=CLASSES), batch_size=256, transform=plain, workers=workers)
    model = models.resnet18(num_classes=len(CLASSES))
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train_loader))
    h = train.fit(model, train_loader, opt, epochs, lambda out, y: F.cross_entropy(out, y, label_smoothing=SMOOTHING),
                  val_loader=val_loader, num_classes=len(CLASSES), scheduler=sched, scheduler_interval="step",
                  progress=progress, log=lambda line: print("  affectfer", line, flush=True))
    return {"accuracy": h.val_accuracy[-1], "macro_f1": h.val_macro_f1[-1], "seconds": h.seconds}


def run_torch(data, epochs, threads, seed, log):
    import torch
    import torchvision

    (train_x, train_y), (val_x, val_y), mean, std = data
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(train_y) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=SMOOTHING)
    X = torch.from_numpy(train_x).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, 64, 64)
    Y = torch.from_numpy(train_y)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def batch_augment(x):
        # torchvision RandomCrop(64, padding=4) (zero fill) and RandomHorizontalFlip, per sample
        padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
        offsets = torch.randint(0, 2 * PAD + 1, (len(x), 2), generator=gen)
        crops = torch.stack([padded[k, :, i:i + SIZE, j:j + SIZE] for k, (i, j) in enumerate(offsets.tolist())])
        flip = torch.rand(len(x), generator=gen) < 0.5
        crops = torch.where(flip.view(-1, 1, 1, 1), crops.flip(3), crops)
        return (crops.float() / 255 - mean_t) / std_t

    seconds = []
    for epoch in range(epochs):
        model.train()
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(len(Y), generator=gen)
        for b in range(0, len(Y), BATCH):
            idx = order[b:b + BATCH]
            loss = criterion(model(batch_augment(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        seconds.append(time.perf_counter() - start)
        model.eval()
        preds = []
        with torch.no_grad():
            for b in range(0, len(val_y), 256):
                x = torch.from_numpy(val_x[b:b + 256]).permute(0, 3, 1, 2).float() / 255
                preds.append(model((x - mean_t) / std_t).argmax(1).numpy())
        pred = np.concatenate(preds)
        acc, f1 = metrics.accuracy(val_y, pred), metrics.macro_f1(val_y, pred, len(CLASSES))
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / len(Y):.4f} ({seconds[-1]:.1f} s), val macro F1 "
            f"{f1:.4f}, accuracy {acc:.4f}")
    return {"accuracy": acc, "macro_f1": f1, "seconds": seconds}


def recipe_runner(name):
    """affectfer.recipes.run, or SystemExit saying what is missing (checked before the data is read)."""
    try:
        from affectfer import recipes
        run = recipes.run
        recipes.get(name)
    except (ImportError, AttributeError):
        raise SystemExit(f"fer2013: --recipe {name} needs affectfer.recipes.run(name, data=..., overrides=...) and the "
                         f"recipe module affectfer.recipes.{name}, which this affectfer does not have") from None
    return run


def run_recipe(run, name, train_split, val_split, overrides, progress):
    six = [remap_labels(ArrayDataset(images, labels, classes=CLASSES), CLASSES, metrics.EXPRESSIONS_6)  # drops neutral
           for images, labels in (train_split, val_split)]
    print(f"recipe {name} on FER2013's six non-neutral classes {six[0].classes}: {len(six[0])} training and "
          f"{len(six[1])} validation faces", flush=True)
    result = run(name, data=tuple(six), overrides=overrides, progress=progress)
    print(result)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="FER2013 folder (train/, val/) or .tar.gz (default: $AFFECTFER_FER2013, "
                                                "else shared/data/" + ARCHIVE + " beside the checkout)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--subset", type=int, default=None, help="train on N training images (seeded choice)")
    p.add_argument("--val-subset", type=int, default=None, help="validate on N validation images (seeded choice)")
    p.add_argument("--threads", type=int, default=None, help="compute threads for both frameworks (default: all CPUs)")
    p.add_argument("--workers", type=int, default=2, help="affectfer loader threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="affectfer only")
    p.add_argument("--progress", action="store_true", help="tqdm bars for affectfer's epochs")
    p.add_argument("--recipe", choices=("hust_lsd", "hand_assisted"), default=None,
                   help="run a paper recipe (affectfer.recipes.run) on the six non-neutral classes instead")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="recipe overrides")
    args = p.parse_args(argv)
    source = args.data or default_data()
    if source is None:
        raise SystemExit(f"fer2013: no data: pass --data, set AFFECTFER_FER2013, or put {ARCHIVE} in shared/data/")
    threads = args.threads or len(os.sched_getaffinity(0))
    runner = recipe_runner(args.recipe) if args.recipe else None
    start = time.perf_counter()
    splits = load_fer2013(source)
    print(f"read {source}: {len(splits['train'][1])} training and {len(splits['val'][1])} validation faces "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    if args.recipe:
        run_recipe(runner, args.recipe, choose(*splits["train"], args.subset, args.seed),
                   choose(*splits["val"], args.val_subset, args.seed + 1), list(args.overrides or ()), args.progress)
        return
    train_x, train_y = choose(*splits["train"], args.subset, args.seed)
    val_x, val_y = choose(*splits["val"], args.val_subset, args.seed + 1)
    train_x, val_x = resize_all(train_x), resize_all(val_x)
    mean, std = T.compute_mean_std(train_x)
    data = ((train_x, train_y), (val_x, val_y), tuple(float(m) for m in mean), tuple(float(s) for s in std))
    print(f"recipe: ResNet-18, {SIZE}x{SIZE}, crop pad {PAD} + flip, AdamW {LR:g} wd {WEIGHT_DECAY:g}, cosine per step, "
          f"batch {BATCH}, label smoothing {SMOOTHING}, {args.epochs} epochs; {len(train_y)} train / {len(val_y)} val "
          f"images; {threads} threads", flush=True)
    rows = [("affectfer " + af.__version__ if hasattr(af, "__version__") else "affectfer",
             run_affectfer(data, args.epochs, threads, args.workers, args.seed, args.progress))]
    if not args.no_torch:
        try:
            import torch
            import torchvision
        except ImportError:
            print("torch/torchvision not importable: affectfer only")
        else:
            rows.append((f"PyTorch {torch.__version__} / torchvision {torchvision.__version__}",
                         run_torch(data, args.epochs, threads, args.seed, lambda line: print("  torch", line, flush=True))))
    print()
    print("| framework | val accuracy | val macro F1 | s/epoch (train) | train images/s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        per_epoch = float(np.mean(r["seconds"]))
        print(f"| {name} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {per_epoch:.1f} | {len(train_y) / per_epoch:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
