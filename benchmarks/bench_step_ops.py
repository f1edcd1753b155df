"""Per-op CPU times of everything in a ResNet training step that is not a convolution, affectfer
against PyTorch, interleaved (each round runs every contender once) and timed by a CPU clock.

    python benchmarks/bench_step_ops.py [--threads 1,2] [--reps 5]

Shapes are ResNet-18's at batch 32 and 112x112 input: the stem's batch norm + ReLU and max pool at
56x56, a layer1 residual add + ReLU at 28x28, the global average pool and the classifier head, and
one optimizer step over ResNet-18's 11.2M parameters (SGD with momentum, Adam, AdamW). Forward and
backward are timed separately; "bwd" is one backward call from a fresh forward's output. Times are
milliseconds, the best of --reps rounds after one warm-up round; the last column is affectfer's
time over torch's (below 1: affectfer faster). At one thread the clock is the calling thread's CPU
time, at more the process's (all threads' CPU seconds, as in bench_cpu.py --cpu-time).
"""
import argparse
import time

import numpy as np

import affectfer as af
import timing
from affectfer import optim
from affectfer.nn import functional as F

try:
    import torch
except ImportError:  # affectfer columns only
    torch = None

RESNET18_PARAMS = 11_180_103  # ResNet-18 with a 7-class head


def _af(a, grad=False):
    return af.tensor(a, requires_grad=grad)


def _t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def _fwd_bwd(name, af_build, torch_build, shape_out, rng):
    """Two rows, forward and backward, of a function built by af_build() / torch_build(): each
    returns (inputs needing grad, forward function)."""
    dy = rng.standard_normal(shape_out, dtype=np.float32)
    _, f = af_build()
    ady = _af(dy)
    rows = [(f"{name} fwd", {"af": f})]
    bwd = {"af": lambda: f().backward(ady)}
    if torch is not None:
        _, tf = torch_build()
        tdy = _t(dy)
        rows[0][1]["torch"] = tf
        bwd["torch"] = lambda: tf().backward(tdy)
    # the backward rows time forward + backward; the forward time is subtracted when printing
    rows.append((f"{name} bwd", bwd))
    return rows


def cases(rng):
    rows = []
    x56 = rng.standard_normal((32, 64, 56, 56), dtype=np.float32)
    w, b = np.ones(64, np.float32), np.zeros(64, np.float32)

    def af_bn(relu):
        def build():
            x, wt, bt = _af(x56, True), _af(w, True), _af(b, True)
            rm, rv = af.zeros(64), af.ones(64)
            fn = F.batch_norm_relu if relu else F.batch_norm
            return (x, wt, bt), lambda: fn(x, rm, rv, wt, bt, True, 0.1, 1e-5)
        return build

    def torch_bn(relu):
        def build():
            x, wt, bt = _t(x56, True), _t(w, True), _t(b, True)
            rm, rv = torch.zeros(64), torch.ones(64)
            bn = lambda: torch.nn.functional.batch_norm(x, rm, rv, wt, bt, True, 0.1, 1e-5)
            return (x, wt, bt), (lambda: torch.relu(bn())) if relu else bn
        return build

    rows += _fwd_bwd("batch_norm (32,64,56,56)", af_bn(False), torch_bn(False), x56.shape, rng)
    rows += _fwd_bwd("batch_norm + ReLU (32,64,56,56)", af_bn(True), torch_bn(True), x56.shape, rng)

    def af_pool():
        x = _af(x56, True)
        return (x,), lambda: F.max_pool2d(x, 3, 2, 1)

    def torch_pool():
        x = _t(x56, True)
        return (x,), lambda: torch.nn.functional.max_pool2d(x, 3, 2, 1)

    rows += _fwd_bwd("max_pool2d 3x3/2 (32,64,56,56)", af_pool, torch_pool, (32, 64, 28, 28), rng)

    a28 = rng.standard_normal((32, 64, 28, 28), dtype=np.float32)
    b28 = rng.standard_normal((32, 64, 28, 28), dtype=np.float32)

    def af_add():
        x, y = _af(a28, True), _af(b28, True)
        return (x, y), lambda: F.relu(x + y)

    def torch_add():
        x, y = _t(a28, True), _t(b28, True)
        return (x, y), lambda: torch.relu(x + y)

    rows += _fwd_bwd("residual add + ReLU (32,64,28,28)", af_add, torch_add, a28.shape, rng)

    x4 = rng.standard_normal((32, 512, 4, 4), dtype=np.float32)
    fc_w = rng.standard_normal((7, 512), dtype=np.float32) * 0.05
    labels = rng.integers(0, 7, 32).astype(np.int64)

    def af_head():
        x, wt, bt = _af(x4, True), _af(fc_w, True), _af(np.zeros(7, np.float32), True)
        y = af.tensor(labels)
        return (x, wt, bt), lambda: F.cross_entropy(F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), wt, bt), y)

    def torch_head():
        x, wt, bt = _t(x4, True), _t(fc_w, True), _t(np.zeros(7, np.float32), True)
        y = torch.tensor(labels)
        tf = torch.nn.functional
        return (x, wt, bt), lambda: tf.cross_entropy(tf.linear(tf.adaptive_avg_pool2d(x, 1).flatten(1), wt, bt), y)

    rows += _fwd_bwd("avg pool + linear + CE (32,512,4,4)", af_head, torch_head, (), rng)

    sizes = [RESNET18_PARAMS // 62] * 61 + [RESNET18_PARAMS - 61 * (RESNET18_PARAMS // 62)]
    for name, af_opt, torch_opt, kw in (("SGD momentum", optim.SGD, "SGD", dict(lr=0.01, momentum=0.9)),
                                        ("Adam", optim.Adam, "Adam", dict(lr=1e-3)),
                                        ("AdamW", optim.AdamW, "AdamW", dict(lr=1e-3, weight_decay=0.01))):
        ps = [af.tensor(rng.standard_normal(n, dtype=np.float32), requires_grad=True) for n in sizes]
        opt = af_opt(ps, **kw)
        for p in ps:
            p.grad = af.tensor(rng.standard_normal(p.shape[0], dtype=np.float32))
        fns = {"af": opt.step}
        if torch is not None:
            tps = [torch.randn(n, requires_grad=True) for n in sizes]
            for p in tps:
                p.grad = torch.randn(p.shape[0])
            fns["torch"] = getattr(torch.optim, torch_opt)(tps, **kw).step
        rows.append((f"{name} step, 11.2M params in 62 tensors", fns))
    return rows


def run(threads, reps):
    timing.CLOCK = time.thread_time if threads == 1 else time.process_time
    af.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    print(f"threads {threads}, best of {reps}, {'thread' if threads == 1 else 'process'} CPU time, ms")
    print("| op | affectfer | torch | af / torch |\n|---|---:|---:|---:|")
    fwd = {}
    for name, fns in cases(rng):
        best = timing.interleaved_best(fns, reps)
        if name.endswith(" fwd"):
            fwd = best
        elif name.endswith(" bwd"):  # forward + backward was timed: keep the backward's share
            best = {k: max(v - fwd[k], 0.0) for k, v in best.items()}
        a, t = best["af"] * 1e3, best.get("torch")
        if t is None:
            print(f"| {name} | {a:.2f} | - | - |")
        else:  # a noisy forward can exceed the forward + backward minimum: the backward then shows 0
            print(f"| {name} | {a:.2f} | {t * 1e3:.2f} | " + (f"{a / (t * 1e3):.2f} |" if t > 0 else "- |"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1", help="thread counts, comma-separated (1,2)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    for i, n in enumerate(timing.thread_counts(ap, args.threads)):
        if i:
            print()
        run(n, args.reps)


if __name__ == "__main__":
    main()
