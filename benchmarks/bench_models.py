"""Whole-model CPU throughput: affectfer's models beside their torchvision / timm counterparts.

    PYTHONPATH=. python benchmarks/bench_models.py [--models resnet50,mobilevitv2_*] [--sizes 112,224]
                                                   [--batch 8] [--repeats 3] [--threads 1] [--wall]

For every model in affectfer.models.list_models() (or those --models names, globs allowed), at each
size: forward images/s (eval mode, no tape / torch.inference_mode) and training-step images/s (train
mode, cross-entropy, backward, SGD with momentum) of affectfer's model and, in the same run and
interleaved round by round, of the torch counterpart (torchvision for the torchvision layouts, timm
for mobilevitv2_*), with the ratio ours / torch (> 1: affectfer is faster). Models without a torch
counterpart (dan, multitask_ixl) get affectfer's columns only; se_resnet50 runs beside timm's
seresnet50 (the nearest twin), resnet50_vggface2 is resnet50(layout="vggface2") beside torchvision's. Models the benchmark knows of but that
affectfer.models does not list yet are skipped with a note, so the script needs no change when they
land.

Numbers are images per CPU-second (time.process_time, the whole process), best of --repeats after one
warm-up round, with one thread for both libraries by default: other jobs on a shared machine move
them far less than the wall clock, though still by 10-30% per step on a busy host. --wall times by
the wall clock instead (use it with --threads > 1). The last column is the median over the rounds of
each round's own torch / affectfer training-step ratio, steadier than best against best on such a
host; raise --repeats for it.
"""
import argparse
import fnmatch
import gc
import platform
import time

import numpy as np

import affectfer as af
import timing
from affectfer import models

try:
    import torch
except ImportError:  # the table then has affectfer columns only
    torch = None

NUM_CLASSES = 7


def _torchvision(name, **fixed):
    def build(size):
        import torchvision
        return getattr(torchvision.models, name)(num_classes=NUM_CLASSES, **fixed)
    return build


def _vit(size):
    import torchvision
    # torchvision's ViT takes only the image size it was built for; affectfer's takes any multiple of 16
    return torchvision.models.vit_b_16(num_classes=NUM_CLASSES, image_size=size)


def _timm(name):
    def build(size):
        import timm
        return timm.create_model(name, num_classes=NUM_CLASSES)
    return build


# affectfer name -> (affectfer constructor kwargs, torch builder(size) or None, {requested size: size used})
KNOWN = {
    "resnet18": ({}, _torchvision("resnet18"), {}),
    "resnet34": ({}, _torchvision("resnet34"), {}),
    "resnet50": ({}, _torchvision("resnet50"), {}),
    "efficientnet_b0": ({}, _torchvision("efficientnet_b0"), {}),
    "googlenet": ({"aux_logits": False}, _torchvision("googlenet", aux_logits=False, init_weights=False), {}),
    "vit_b_16": ({}, _vit, {}),
    # Inception-v3 at its own input sizes: 299 (native) for the 224 row, 139 for the 112 row; the
    # auxiliary head (which needs 299) is off on both sides
    "inception_v3": ({"aux_logits": False}, _torchvision("inception_v3", aux_logits=False, init_weights=False),
                     {112: 139, 224: 299}),
    # timm's SE-ResNet-50 as the nearest torch twin of the VGGFace2 SENet-50: the same widths, depths and
    # SE ratio, but the stride on the 3x3 and no ceil-mode stem pool (about the same FLOPs)
    "se_resnet50": ({}, _timm("seresnet50"), {}),
    # ResNet-50 in the VGGFace2 layout (stride on the 1x1, ceil-mode stem pool) beside torchvision's
    "resnet50_vggface2": ({"layout": "vggface2"}, _torchvision("resnet50"), {}),
    "dan": ({}, None, {}),
}
# models whose forward returns a tuple with the class logits elsewhere than first: name -> index
LOGITS_OUTPUT = {"smm_emotionnet": 1}
# benchmark names that build a listed model with other options: name -> affectfer model
ALIASES = {"resnet50_vggface2": "resnet50"}
KNOWN.update({f"mobilevitv2_{v}": ({}, _timm(f"mobilevitv2_{v}"), {})
              for v in ("050", "075", "100", "125", "150", "175", "200")})


def select(patterns):
    """(names to run, notes): every listed model matching a pattern, and a note for each known model
    that matches but is not in affectfer.models.list_models() yet."""
    listed = models.list_models()
    listed = sorted(listed + [a for a, base in ALIASES.items() if base in listed])
    wanted = [n for n in listed if any(fnmatch.fnmatch(n, p) for p in patterns)]
    notes = [f"{n}: skipped, not in affectfer.models.list_models() yet" for n in KNOWN
             if n not in listed and any(fnmatch.fnmatch(n, p) for p in patterns)]
    for p in patterns:
        if not any(fnmatch.fnmatch(n, p) for n in list(listed) + list(KNOWN)):
            notes.append(f"{p}: matches no model")
    return wanted, notes


def bench(name, size, batch, repeats):
    """One table row: images/s of affectfer's forward and train step, and of torch's when there is a
    counterpart, timed interleaved."""
    kwargs, torch_build, sizes = KNOWN.get(name, ({}, None, {}))
    size = sizes.get(size, size)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y_np = rng.integers(0, NUM_CLASSES, batch).astype(np.int64)
    row = {"name": name, "size": size}
    x, y = af.tensor(x_np), af.tensor(y_np)
    try:
        # a model built for one input size (ViT: its position embeddings) takes that size as image_size
        extra = {"image_size": size} if name.startswith("vit_") else {}
        ours = models.create(ALIASES.get(name, name), num_classes=NUM_CLASSES, **kwargs, **extra)
    except TypeError as e:  # a constructor without these options: its defaults, and say so
        ours = models.create(ALIASES.get(name, name), num_classes=NUM_CLASSES)
        row["note"] = f"affectfer's {name} built with its defaults ({e})"
    fns = {"af_fwd": timing.af_forward(ours, x), "af_train": timing.af_train_step(ours, x, y, output=LOGITS_OUTPUT.get(name, 0))}
    if torch is not None and torch_build is not None:
        try:
            theirs = torch_build(size)
        except ImportError as e:
            row["note"] = f"torch side not importable: {e}"
        else:
            tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np)
            fns.update({"torch_fwd": timing.torch_forward(theirs, tx), "torch_train": timing.torch_train_step(theirs, tx, ty)})
    rounds = timing.interleaved_rounds(fns, repeats)
    row.update({k: batch / min(ts) for k, ts in rounds.items()})
    if "torch_train" in rounds:
        row["train_median"] = timing.median_ratio(rounds["torch_train"], rounds["af_train"])
    return row


def format_rows(rows):
    lines = ["| model | input | fwd ours | fwd torch | fwd ours/torch | train ours | train torch | train ours/torch "
             "| train, median of rounds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r["name"], f"{r['size']}x{r['size']}"]
        for what in ("fwd", "train"):
            ours, theirs = r[f"af_{what}"], r.get(f"torch_{what}")
            cells += [f"{ours:.2f}", f"{theirs:.2f}" if theirs else "-", f"{ours / theirs:.2f}" if theirs else "-"]
        cells.append(f"{r['train_median']:.2f}" if "train_median" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions():
    out = [f"affectfer {getattr(af, '__version__', '?')}", f"numpy {np.__version__}", f"python {platform.python_version()}"]
    if torch is None:
        return ", ".join(out + ["torch not importable"])
    out.append(f"torch {torch.__version__}")
    for extra in ("torchvision", "timm"):
        try:
            out.append(f"{extra} {__import__(extra).__version__}")
        except ImportError:
            out.append(f"{extra} not importable")
    return ", ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="*", help="comma-separated names or globs (default: every listed model)")
    ap.add_argument("--sizes", default="112,224", help="comma-separated input sizes (default 112,224)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wall", action="store_true", help="time by the wall clock instead of the process CPU time")
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if args.batch < 2 or args.repeats < 1 or args.threads < 1 or min(sizes) < 32:
        ap.error("--batch must be >= 2 (batch norm in training), --repeats and --threads >= 1, sizes >= 32")
    timing.CLOCK = time.perf_counter if args.wall else time.process_time
    af.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    names, notes = select([p.strip() for p in args.models.split(",") if p.strip()])
    print(versions())
    print(f"threads {args.threads}, batch {args.batch}, float32, {NUM_CLASSES} classes, images/s per "
          f"{'wall' if args.wall else 'CPU'} second, best of {args.repeats} interleaved rounds; the last column is "
          f"the median over the rounds of each round's torch / ours training-step time")
    rows = []
    for name in names:
        for size in sizes:
            try:
                rows.append(bench(name, size, args.batch, args.repeats))
            except (ValueError, TypeError) as e:  # e.g. a multi-output model whose first output is not the 7-class logits
                notes.append(f"{name} {size}: not timed, one step failed: {e}")
                print(f"note: {notes[-1]}", flush=True)
                continue
            finally:
                gc.collect()
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_rows(rows))
    for r in rows:
        if "note" in r:
            notes.append(f"{r['name']} {r['size']}: {r['note']}")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
