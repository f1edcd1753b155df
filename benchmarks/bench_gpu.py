"""Training images/s of affectfer and PyTorch on the same GPU, in the same run.

    python benchmarks/bench_gpu.py            # ResNet-50 at 224 and 112, batch 256
    python benchmarks/bench_gpu.py --short    # fewer steps and a smaller batch (make gpu-check)

One training step = forward, cross-entropy, backward, SGD (momentum 0.9) on random images and labels.
PyTorch runs with torch.autocast(bfloat16) and channels_last, as its documentation recommends for
convolutional nets on Ampere and Hopper; affectfer runs in float32 (its bf16 autocast is not there yet).
A model affectfer cannot run on CUDA yet (an op without a CUDA kernel) is reported, not hidden.
Exits 0 with a message when no GPU is visible."""
import argparse
import sys
import time


def torch_rate(model_name, size, batch, steps, warmup):
    import torch
    import torchvision

    model = getattr(torchvision.models, model_name)(num_classes=1000).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def affectfer_rate(model_name, size, batch, steps, warmup):
    import numpy as np

    import affectfer as af

    model = getattr(af.models, model_name)(num_classes=1000).to("cuda")
    opt = af.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = af.randn(batch, 3, size, size, device="cuda")
    y = af.tensor(np.random.default_rng(0).integers(0, 1000, batch), device="cuda")

    def step():
        loss = af.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    af.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    af.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="batch 64, 3 timed steps (a smoke run)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    import affectfer as af

    if not af.cuda.is_available():
        why = "affectfer was built without CUDA" if not af.cuda.is_built() else "no CUDA device visible"
        print(f"bench_gpu: {why}; nothing to measure")
        return 0
    batch = args.batch or (64 if args.short else 256)
    steps = args.steps or (3 if args.short else 20)
    warmup = 1 if args.short else 3
    try:
        import torch
        gpu = torch.cuda.get_device_name(0)
    except ImportError:
        torch, gpu = None, "unknown GPU (torch not installed)"
    print(f"GPU: {gpu}; batch {batch}, {steps} timed steps after {warmup} warm-up")
    print(f"{'model':<10} {'size':>5} {'affectfer fp32 img/s':>22} {'torch bf16+CL img/s':>21}")
    for model_name, size in (("resnet50", 224), ("resnet50", 112)):
        try:
            ours = f"{affectfer_rate(model_name, size, batch, steps, warmup):.1f}"
        except (RuntimeError, ValueError, MemoryError) as e:
            ours = "n/a"
            print(f"  affectfer {model_name} at {size}: {type(e).__name__}: {e}", file=sys.stderr)
        theirs = f"{torch_rate(model_name, size, batch, steps, warmup):.1f}" if torch else "n/a"
        print(f"{model_name:<10} {size:>5} {ours:>22} {theirs:>21}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
