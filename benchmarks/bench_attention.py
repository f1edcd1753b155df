"""Fused attention GFLOP/s at ViT-B/16 shapes against the machine's SGEMM rate and PyTorch's SDPA.

    python benchmarks/bench_attention.py [--batch 32] [--threads N] [--reps 5] [--cpu-time] [--kernel avx2]

Rows: affectfer's scaled_dot_product_attention forward and forward+backward at (B, H=12, N, D=64)
for N = 197 (224x224 input) and N = 50 (112x112), and torch.nn.functional.scaled_dot_product_attention
on the same inputs when `import torch` works (same thread count; the two libraries' runs interleave,
so load on a shared machine hits both alike). FLOPs count the GEMMs the algorithm runs: forward
4 N^2 D per head (Q K^T and P V), backward 10 N^2 D (scores recomputed, dV, dP, dQ, dK), so
forward+backward is 14 N^2 D; torch's kernel gets the same count. The reference rates are SGEMM
through affectfer's GEMM (af.matmul): a large square-ish product (the machine's rate) and the
per-head products of attention themselves batched (B*H of (N x 64) @ (64 x N)), which writes the
whole (B, H, N, N) score tensor as an unfused attention must (at N = 197 that allocation, not the
arithmetic, sets its rate). Target: the fused forward at >= 60% of the large SGEMM's rate. The
SGEMM references run in the same rounds as the attention calls, so that the ratio compares rates
taken under the same load of a shared host (measured apart, a change of load between the two runs
moved the ratio by 10 points).

--cpu-time runs one thread and times with the calling thread's CPU clock: far less sensitive to
other jobs on a shared machine than wall time.
"""
import argparse
import platform
import time

import numpy as np

import affectfer as af
from affectfer.nn import functional as F

try:
    import torch
except ImportError:  # the table then has affectfer columns only
    torch = None

CLOCK = time.perf_counter  # main() switches to time.thread_time for --cpu-time


def interleaved(fns, reps):
    """Best time of each fn over reps rounds, the fns alternating within each round (after a warm-up)."""
    best = [float("inf")] * len(fns)
    for r in range(reps + 1):
        for i, fn in enumerate(fns):
            t0 = CLOCK()
            fn()
            dt = CLOCK() - t0
            if r:
                best[i] = min(best[i], dt)
    return best


def sgemm_fns(batch, n_tokens):
    """(name, flops, fn) of the two SGEMM references."""
    rng = np.random.default_rng(0)
    a = af.tensor(rng.standard_normal((1024, 1024), dtype=np.float32))
    b = af.tensor(rng.standard_normal((1024, 1024), dtype=np.float32))
    q = af.tensor(rng.standard_normal((batch * 12, n_tokens, 64), dtype=np.float32))
    k = af.tensor(rng.standard_normal((batch * 12, 64, n_tokens), dtype=np.float32))
    return [("SGEMM 1024x1024x1024 (af.matmul)", 2.0 * 1024 ** 3, lambda: af.matmul(a, b)),
            (f"SGEMM {batch * 12}x({n_tokens}x64 @ 64x{n_tokens})", 2.0 * batch * 12 * n_tokens ** 2 * 64,
             lambda: af.matmul(q, k))]


def attention_fns(batch, n_tokens, heads=12, dim=64):
    """(key, flops, fn) of the fused forward and forward+backward, ours then torch's."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((batch, heads, n_tokens, dim), dtype=np.float32) for _ in range(3)]
    ours = [af.tensor(a, requires_grad=True) for a in arrays]
    flops = 4.0 * batch * heads * n_tokens ** 2 * dim

    def af_fwd():
        with af.no_grad():
            F.scaled_dot_product_attention(*ours)

    def af_fwd_bwd():
        F.scaled_dot_product_attention(*ours).sum().backward()

    fns = [("af_fwd", flops, af_fwd), ("af_fwd_bwd", 3.5 * flops, af_fwd_bwd)]
    if torch is not None:
        theirs = [torch.tensor(a, requires_grad=True) for a in arrays]

        def torch_fwd():
            with torch.no_grad():
                torch.nn.functional.scaled_dot_product_attention(*theirs)

        def torch_fwd_bwd():
            torch.nn.functional.scaled_dot_product_attention(*theirs).sum().backward()

        fns += [("torch_fwd", flops, torch_fwd), ("torch_fwd_bwd", 3.5 * flops, torch_fwd_bwd)]
    return fns


def main():
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true", help="one thread, timed by its CPU clock")
    ap.add_argument("--kernel", choices=["avx512", "avx2", "blocked"], default=None,
                    help="cap affectfer's CPU attention kernel (e.g. the AVX2 one on an AVX-512 machine)")
    args = ap.parse_args()
    if args.kernel:
        af._C.cap_attention_kernel(args.kernel)
    threads = 1 if args.cpu_time else (args.threads or af.get_num_threads())
    if args.cpu_time:
        CLOCK = time.thread_time
    af.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    versions = f"affectfer {af.__version__}, numpy {np.__version__}"
    versions += f", torch {torch.__version__}" if torch is not None else ", torch not installed"
    print(f"{platform.processor() or platform.machine()}, {threads} thread(s), "
          f"{'CPU time' if args.cpu_time else 'wall time'}; {versions}; attention kernel "
          f"{af._C.attention_kernel()}")
    print(f"{'shape':44s} {'af fwd':>8s} {'af f+b':>8s} {'torch fwd':>10s} {'torch f+b':>10s}  GFLOP/s")
    for n in (197, 50):
        # the references and both libraries in the same rounds: a change of load on a shared host hits all
        gemm, attention = sgemm_fns(args.batch, n), attention_fns(args.batch, n)
        times = interleaved([fn for _, _, fn in gemm + attention], args.reps)
        rates = [flops / t / 1e9 for (_, flops, _), t in zip(gemm + attention, times)]
        gemm = [(name, rate) for (name, _, _), rate in zip(gemm, rates)]
        r = {key: rate for (key, _, _), rate in zip(attention, rates[len(gemm):])}
        for name, rate in gemm:
            print(f"{name:44s} {rate:8.1f}")
        t = (f"{r['torch_fwd']:10.1f} {r['torch_fwd_bwd']:10.1f}" if "torch_fwd" in r else f"{'-':>10s} {'-':>10s}")
        print(f"{f'attention B={args.batch} H=12 N={n} D=64':44s} {r['af_fwd']:8.1f} {r['af_fwd_bwd']:8.1f} {t}")
        print(f"{'  fused forward / large SGEMM, / per-head SGEMM':44s} {r['af_fwd'] / gemm[0][1]:8.0%} "
              f"{r['af_fwd'] / gemm[1][1]:8.0%}")


if __name__ == "__main__":
    main()
