"""CPU throughput of affectfer's ops against the machine's SGEMM rate and PyTorch CPU.

    python benchmarks/bench_cpu.py [--batch 32] [--size 112] [--threads 1,2] [--reps 3] [--cpu-time]

Prints one table: for every distinct conv layer shape of ResNet-50 (torchvision layout, stride on
the 3x3; --conv-net resnet18 for ResNet-18's) at size x size input, forward and backward (dx + dW)
GFLOP/s of affectfer and, when `import torch` works, of PyTorch with the same thread count, with
ratios. The reference rate is
SGEMM measured through affectfer's own GEMM path (a 1x1 convolution is one GEMM). Each bench is a
function returning rows; the last table is whole-model training images/s (ResNet-18 and ResNet-50 train steps).

--threads takes a comma-separated list: the tables are printed once per thread count, affectfer and
torch measured row by row in the same run.
--cpu-time times with a CPU clock, far less sensitive to other jobs on a shared machine than wall
time: the calling thread's clock at one thread (all work then runs on that thread for both
libraries), the process clock at more (CPU seconds of all threads, so it measures work per CPU, not
wall-clock speed; a thread spinning at a barrier counts too).
AFFECTFER_SGEMM=blas in the environment makes affectfer's float32 GEMMs call OpenBLAS instead of its
own AVX-512 kernel (csrc/ops/gemm.c), to compare the two.
"""
import argparse
import time

import numpy as np

import affectfer as af
import timing
from timing import best_time

try:
    import torch
except ImportError:  # the table then has affectfer columns only
    torch = None


def _conv(x, w, stride, pad):
    return af._C.call(af._C.ops["conv2d"], [x, w], (stride, stride, pad, pad, 1, 1, 1), ())


def sgemm_gflops(reps, n=1024, hw=64):
    """C (n, hw^2) = A (n, n) @ B (n, hw^2) via a 1x1 conv on one image: affectfer's GEMM path."""
    rng = np.random.default_rng(0)
    x = af.tensor(rng.standard_normal((1, n, hw, hw), dtype=np.float32))
    w = af.tensor(rng.standard_normal((n, n, 1, 1), dtype=np.float32))
    flops = 2.0 * n * n * hw * hw
    row = {"name": f"SGEMM {n}x{hw * hw}x{n} (1x1 conv)", "af_fwd": flops / best_time(lambda: _conv(x, w, 1, 0), reps) / 1e9}
    if torch is not None:
        a, b = torch.randn(n, n), torch.randn(n, hw * hw)
        row["torch_fwd"] = flops / best_time(lambda: torch.mm(a, b), reps) / 1e9
    return row


def resnet50_conv_shapes(size):
    """Distinct (Cin, Cout, k, stride, pad, H_in) of ResNet-50's convolutions at size x size input."""
    shapes = [(3, 64, 7, 2, 3, size)]
    h = size // 4  # after the stem conv and the max pool
    cin = 64
    for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        cout = width * 4
        h_out = (h - 1) // stride + 1
        shapes += [(cin, width, 1, 1, 0, h), (width, width, 3, stride, 1, h), (width, cout, 1, 1, 0, h_out),
                   (cin, cout, 1, stride, 0, h), (cout, width, 1, 1, 0, h_out)]
        if stride != 1:
            shapes.append((width, width, 3, 1, 1, h_out))
        cin, h = cout, h_out
    seen, out = set(), []
    for s in shapes:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def resnet18_conv_shapes(size):
    """Distinct (Cin, Cout, k, stride, pad, H_in) of ResNet-18's convolutions at size x size input."""
    shapes = [(3, 64, 7, 2, 3, size)]
    h, cin = size // 4, 64
    for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        h_out = (h - 1) // stride + 1
        shapes += [(cin, width, 3, stride, 1, h), (width, width, 3, 1, 1, h_out)]
        if stride != 1 or cin != width:
            shapes.append((cin, width, 1, stride, 0, h))
        cin, h = width, h_out
    return list(dict.fromkeys(shapes))


CONV_SHAPES = {"resnet50": resnet50_conv_shapes, "resnet18": resnet18_conv_shapes}


def conv_rows(batch, size, reps, net="resnet50"):
    rng = np.random.default_rng(0)
    rows = []
    for cin, cout, k, stride, pad, h in CONV_SHAPES[net](size):
        ho = (h + 2 * pad - k) // stride + 1
        flops = 2.0 * batch * cout * ho * ho * cin * k * k
        x_np = rng.standard_normal((batch, cin, h, h), dtype=np.float32)
        w_np = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.05
        dy_np = rng.standard_normal((batch, cout, ho, ho), dtype=np.float32)
        row = {"name": f"{cin}->{cout} k{k} s{stride} {h}x{h}"}
        x, w, dy = af.tensor(x_np, requires_grad=True), af.tensor(w_np, requires_grad=True), af.tensor(dy_np)
        row["af_fwd"] = flops / best_time(lambda: _conv(x, w, stride, pad), reps) / 1e9
        row["af_bwd"] = 2 * flops / best_time(lambda y: y.backward(dy), reps, setup=lambda: _conv(x, w, stride, pad)) / 1e9
        if torch is not None:
            tx, tw = torch.tensor(x_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
            tdy = torch.tensor(dy_np)
            fwd = lambda: torch.nn.functional.conv2d(tx, tw, None, stride, pad)
            with torch.no_grad():
                row["torch_fwd"] = flops / best_time(fwd, reps) / 1e9
            row["torch_bwd"] = 2 * flops / best_time(lambda y: y.backward(tdy), reps, setup=fwd) / 1e9
        rows.append(row)
    return rows


def train_step_rows(batch, size, reps, archs=("resnet18", "resnet50"), num_classes=7):
    """Images/s of one SGD training step (forward, cross-entropy, backward, update) of each ResNet at
    size x size, affectfer's model against torchvision's, both in training mode (batch-norm batch
    statistics), float32."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y_np = rng.integers(0, num_classes, batch).astype(np.int64)
    from affectfer import models
    try:
        import torchvision
    except ImportError:
        torchvision = None
    rows = []
    for arch in archs:
        row = {"name": f"{arch} train step, batch {batch}, {size}x{size}"}
        step = timing.af_train_step(getattr(models, arch)(num_classes=num_classes), af.tensor(x_np), af.tensor(y_np))
        row["af"] = batch / best_time(step, reps)
        if torch is not None and torchvision is not None:
            tmodel = getattr(torchvision.models, arch)(num_classes=num_classes)
            row["torch"] = batch / best_time(timing.torch_train_step(tmodel, torch.tensor(x_np), torch.tensor(y_np)), reps)
        rows.append(row)
    return rows


def format_model_table(rows):
    lines = ["| model | affectfer images/s | torch images/s | af / torch |", "|---|---:|---:|---:|"]
    for r in rows:
        t = r.get("torch")
        lines.append(f"| {r['name']} | {r['af']:.2f} | " + (f"{t:.2f} | {r['af'] / t:.2f} |" if t else "- | - |"))
    return "\n".join(lines)


def format_table(rows, sgemm):
    head = "| layer | af fwd | af bwd | af fwd / SGEMM | af bwd / SGEMM |"
    sep = "|---|---:|---:|---:|---:|"
    if torch is not None:
        head += " torch fwd | torch bwd | af/torch fwd | af/torch bwd |"
        sep += "---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        f = lambda key: f"{r[key]:.1f}" if key in r else "-"
        line = f"| {r['name']} | {f('af_fwd')} | {f('af_bwd')} | {r['af_fwd'] / sgemm:.0%} | "
        line += f"{r['af_bwd'] / sgemm:.0%} |" if "af_bwd" in r else "- |"
        if torch is not None:
            line += f" {f('torch_fwd')} | {f('torch_bwd')} | {r['af_fwd'] / r['torch_fwd']:.2f} | "
            line += f"{r['af_bwd'] / r['torch_bwd']:.2f} |" if "torch_bwd" in r else "- |"
        lines.append(line)
    return "\n".join(lines)


def totals_row(rows):
    """Time-weighted totals over the conv layers (each distinct shape counted once)."""
    out = {"name": "**all shapes (sum of times)**"}
    for key in ("af_fwd", "af_bwd", "torch_fwd", "torch_bwd"):
        if all(key in r for r in rows):
            work = [r["_flops"] * (2 if key.endswith("bwd") else 1) for r in rows]
            out[key] = sum(work) / sum(wk / r[key] for wk, r in zip(work, rows))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", default=str(af.get_num_threads()), help="thread counts, comma-separated (1,2)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, timed by the thread's CPU clock")
    ap.add_argument("--no-model", action="store_true", help="skip the whole-model training-step rows")
    ap.add_argument("--no-conv", action="store_true", help="skip the per-layer convolution table")
    ap.add_argument("--conv-net", choices=sorted(CONV_SHAPES), default="resnet50",
                    help="whose convolution shapes the per-layer table measures")
    ap.add_argument("--model-batch", type=int, default=None, help="batch of the training-step rows (default --batch)")
    args = ap.parse_args()
    for i, threads in enumerate(timing.thread_counts(ap, args.threads)):
        if i:
            print()
        run(args, threads)


def run(args, threads):
    if args.cpu_time:
        timing.CLOCK = time.thread_time if threads == 1 else time.process_time
    af.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    clock = ("thread CPU time" if threads == 1 else "process CPU time") if args.cpu_time else "wall time"
    print(f"threads {threads}, batch {args.batch}, input {args.size}x{args.size}, float32, best of {args.reps}, {clock}")
    if not args.no_conv:
        # The machine may be shared: SGEMM is measured before and after the layers and the best kept.
        sgemm = sgemm_gflops(max(args.reps, 5))
        rows = conv_rows(args.batch, args.size, args.reps, args.conv_net)
        after = sgemm_gflops(max(args.reps, 5))
        sgemm = {k: max(v, after[k]) if isinstance(v, float) else v for k, v in sgemm.items()}
        for r, (cin, cout, k, stride, pad, h) in zip(rows, CONV_SHAPES[args.conv_net](args.size)):
            ho = (h + 2 * pad - k) // stride + 1
            r["_flops"] = 2.0 * args.batch * cout * ho * ho * cin * k * k
        print(f"SGEMM (affectfer GEMM path): {sgemm['af_fwd']:.1f} GFLOP/s"
              + (f"; torch.mm same size: {sgemm['torch_fwd']:.1f} GFLOP/s" if "torch_fwd" in sgemm else "; torch not importable"))
        print(format_table(rows + [totals_row(rows)], sgemm["af_fwd"]))
    if not args.no_model:
        print()
        print(format_model_table(train_step_rows(args.model_batch or args.batch, args.size, args.reps)))


if __name__ == "__main__":
    main()
