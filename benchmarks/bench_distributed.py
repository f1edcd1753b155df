"""Data-parallel training: all-reduce bandwidth, overlap in a ResNet-50 step, and a scaling estimate.

    python benchmarks/bench_distributed.py [--np 2] [--batch 4] [--size 112] [--steps 3] [--max-mb 256]

Launches itself under `mpirun -np 2` (two processes on this machine, shared memory / loopback) and
prints three tables:

1. all-reduce (MPI_Iallreduce through affectfer.distributed.all_reduce, float32, sum) for buffers of
   1 KB to 256 MB: time, algorithm bandwidth (bytes / time) and bus bandwidth (algbw * 2(n-1)/n,
   NCCL's convention in nccl-tests' PERFORMANCE.md, comparable across rank counts).
2. the overlap DistributedDataParallel achieves in a ResNet-50 training step at size x size: the
   step without communication (t_local), with DDP (t_ddp), and the same gradient buckets all-reduced
   one after another after backward (t_comm). Exposed communication = the time the end of
   backward waited for the all-reduces (DistributedDataParallel.last_sync_seconds, measured in C,
   immune to the step-to-step noise of a shared machine), on the rank whose backward ended last
   (the others' wait also holds the time they waited for it); the fraction hidden behind
   backward = 1 - exposed / t_comm.
3. a scaling estimate on paper for 8 GPUs per node x 4 nodes (32 GPUs): ring all-reduce time
   2(n-1)/n * S / busbw for the ResNet-50 gradients S, with the bus bandwidth of the slowest link
   (NVLink 900 GB/s inside a node, InfiniBand 400 Gb/s = 50 GB/s per GPU between nodes, one NIC
   per GPU as in DGX H100 systems), only the non-hidden fraction exposed. Efficiency = t_step /
   (t_step + exposed). The per-GPU step time is an assumption stated in the output, not measured.

On a CPU the ranks' compute and MPI's shared-memory copies compete for the same cores, so the
overlap measured here is a lower bound of what a GPU (compute on the device, NCCL on its own
stream and links) achieves.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RESNET50_PARAMS = 25_557_032  # affectfer.models.resnet50 at 1000 classes (torchvision's count)


def busbw(algbw, n):
    return algbw * 2 * (n - 1) / n


def bandwidth(dist, af, max_mb):
    rows, size = [], 1024
    while size <= max_mb * 2**20:
        t = af.zeros(size // 4)
        reps = max(2, min(50, int(2**26 // size)))
        dist.all_reduce(t)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(t)
        seconds = (time.perf_counter() - start) / reps
        rows.append((size, seconds))
        size *= 4
    return rows


def overlap(dist, af, batch, size, steps):
    from affectfer import nn, optim
    from affectfer.models import resnet50

    af.manual_seed(0)
    model = resnet50(num_classes=7)
    x = af.randn(batch, 3, size, size)
    y = af.tensor(np.arange(batch) % 7)
    ddp = dist.DistributedDataParallel(model)
    opt = optim.SGD(model.parameters(), lr=0.01)

    def step(net):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()

    def timed(net):
        step(net)  # warm-up
        times, syncs = [], []
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            step(net)
            times.append(time.perf_counter() - start)
            syncs.append(ddp.last_sync_seconds())
        return float(np.median(times)), float(np.median(syncs))

    t_local, _ = timed(model)  # no communication: the plain module
    t_ddp, exposed = timed(ddp)
    # the rank whose backward ends last waits only for communication; the others also wait for it
    exposed = min(dist.all_gather_object(exposed))
    buckets = []
    named = dict(model.named_parameters())
    for names in ddp.buckets():
        buckets.append(af.zeros(sum(named[n].numel() for n in names)))
    comm = []
    for _ in range(steps + 1):
        dist.barrier()
        start = time.perf_counter()
        for b in buckets:
            dist.all_reduce(b)
        comm.append(time.perf_counter() - start)
    t_comm = float(np.median(comm[1:]))
    return t_local, t_ddp, exposed, t_comm, len(buckets), ddp.buckets_started_in_backward()


def worker(args):
    import affectfer as af
    import affectfer.distributed as dist

    af.set_num_threads(max(1, (os.cpu_count() or 2) // dist.detect().world_size))
    dist.init(timeout=600)
    rows = bandwidth(dist, af, args.max_mb)
    result = overlap(dist, af, args.batch, args.size, args.steps)
    if dist.get_rank() == 0:
        n = dist.get_world_size()
        print(f"## all-reduce, {n} processes on this machine (float32 sum)\n")
        print("| size | time | algbw | busbw |\n|---:|---:|---:|---:|")
        for size, seconds in rows:
            label = f"{size // 2**20} MB" if size >= 2**20 else f"{size // 1024} KB"
            print(f"| {label} | {seconds * 1e3:.3f} ms | {size / seconds / 1e9:.3f} GB/s | "
                  f"{busbw(size / seconds, n) / 1e9:.3f} GB/s |")
        t_local, t_ddp, exposed, t_comm, n_buckets, started = result
        hidden = max(0.0, min(1.0, 1 - exposed / t_comm)) if t_comm > 0 else 1.0
        print(f"\n## ResNet-50 step, {args.batch} images of {args.size}x{args.size} per rank, {n} ranks\n")
        print(f"- step without communication: {t_local * 1e3:.0f} ms; with DistributedDataParallel: "
              f"{t_ddp * 1e3:.0f} ms")
        print(f"- the {n_buckets} gradient buckets (25 MB) all-reduced one after another: {t_comm * 1e3:.0f} ms")
        print(f"- buckets started during backward: {started} of {n_buckets}")
        print(f"- exposed communication {exposed * 1e3:.0f} ms: {hidden * 100:.0f}% of the all-reduce time hidden "
              f"behind backward")
        estimate(hidden, args)
    dist.destroy()


def estimate(hidden, args):
    grad_bytes = RESNET50_PARAMS * 4
    gpus, per_node = 32, 8
    nvlink, ib = 900e9, 400e9 / 8
    # a ring over all 32 GPUs crosses the node boundary: its bus bandwidth is that of the slowest
    # link, one 400 Gb/s NIC per GPU (NCCL's rings use every NIC of a node in parallel)
    t_inter = 2 * (gpus - 1) / gpus * grad_bytes / ib
    t_intra = 2 * (per_node - 1) / per_node * grad_bytes / nvlink
    # assumed per-GPU step: ~2,600 images/s for ResNet-50 at 224x224 on one A100 with AMP and
    # channels_last (timm's benchmark.py, reported in pytorch-image-models issue #1491); 112x112
    # has a quarter of the FLOPs, assumed 3x the throughput (small images use a GPU less well);
    # a batch of 256 per GPU
    per_gpu_rate = 2600 * 3
    t_step = 256 / per_gpu_rate
    print(f"\n## scaling estimate, {per_node} GPUs x {gpus // per_node} nodes (on paper)\n")
    print(f"- gradients: {grad_bytes / 1e6:.0f} MB (float32); one node alone (NVLink 900 GB/s): "
          f"{t_intra * 1e3:.2f} ms per all-reduce")
    print(f"- 32 GPUs (InfiniBand 400 Gb/s per GPU): {t_inter * 1e3:.2f} ms per all-reduce")
    print(f"- assumed step per GPU: {t_step * 1e3:.1f} ms (256 images at 112x112, {per_gpu_rate} images/s: "
          f"2,600/s at 224x224 on an A100, timm issue #1491, times 3)")
    for f, what in ((hidden, "measured here"), (0.0, "none"), (0.9, "for comparison")):
        eff = t_step / (t_step + (1 - f) * t_inter)
        print(f"- overlap {f * 100:.0f}% ({what}): efficiency {eff * 100:.1f}% at 32 GPUs")
    need = max(0.0, 1 - (t_step / 0.9 - t_step) / t_inter)
    print(f"- 90% efficiency needs {need * 100:.0f}% of the all-reduce hidden (or gradients in bfloat16: "
          f"half the bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--np", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-mb", type=int, default=256)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("mpirun not found: install Open MPI (Debian: apt-get install openmpi-bin)")
    cmd = [mpirun, "--oversubscribe", "-np", str(args.np), "-x", "PYTHONPATH"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    env = dict(os.environ, PYTHONPATH=ROOT)
    sys.exit(subprocess.call(cmd + [sys.executable, os.path.abspath(__file__), "--worker"] + sys.argv[1:], env=env))


if __name__ == "__main__":
    main()
