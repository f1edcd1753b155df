"""One rank of the multi-process tests in test_distributed.py (run as a child process, by mpirun or
with a launcher's environment): `python worker.py SCENARIO OUT [TIMEOUT]`. Rank 0 writes its
results to OUT (.npz)."""
import os
import signal
import sys
import time

import numpy as np

import affectfer as af
import affectfer.distributed as dist
from affectfer import nn, optim, train
from affectfer import transforms as T
from affectfer.data import ArrayDataset, Loader

BATCH, STEPS = 8, 4


class Net(nn.Module):
    """A shared layer used twice (its gradient has two contributions: the reducer must wait for
    both) and a parameter no forward uses (it must still be reduced, as zeros)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.shared = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)
        self.unused = nn.Parameter(af.zeros(5))

    def forward(self, x):
        h = self.shared(self.inp(x).relu()).relu()
        return self.out(self.shared(h).tanh())


def batch(step):
    rng = np.random.default_rng(step)
    return rng.normal(size=(BATCH, 6)).astype(np.float32), rng.integers(0, 3, BATCH)


def equivalence(out, timeout):
    """STEPS of SGD with momentum; each of R ranks takes its 1/R of every batch. From step 2 on the
    ranks accumulate their share in two halves, the first inside no_sync()."""
    dist.init(timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    af.manual_seed(1000 + rank)  # different initialisations: the broadcast from rank 0 must fix them
    model = Net()
    if rank == 0:
        af.manual_seed(0)
        model = Net()
    net = dist.DistributedDataParallel(model, bucket_mb=0.0005) if world > 1 else model
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    started = []
    for step in range(STEPS):
        x, y = batch(step)
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        opt.zero_grad()
        if world > 1 and step >= 2:
            xs, ys = x[part], y[part]
            half = len(xs) // 2
            with net.no_sync():
                (nn.functional.cross_entropy(net(af.tensor(xs[:half])), af.tensor(ys[:half])) * 0.5).backward()
            (nn.functional.cross_entropy(net(af.tensor(xs[half:])), af.tensor(ys[half:])) * 0.5).backward()
        else:
            nn.functional.cross_entropy(net(af.tensor(x[part])), af.tensor(y[part])).backward()
        opt.step()
        if world > 1:
            started.append(net.buckets_started_in_backward())
    if rank == 0:
        np.savez(out, started=np.array(started), buckets=len(net.buckets()) if world > 1 else 0,
                 **{k: v.numpy() for k, v in model.state_dict().items()})


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = np.clip(rng.normal(60 + 60 * labels[:, None, None, None], 25, (n, 6, 6, 1)), 0, 255).astype(np.uint8)
    return ArrayDataset(images, labels)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def fit_setup(batch_size):
    af.manual_seed(0)
    model = ConvNet()
    loader = Loader(data(), batch_size=batch_size, transform=T.ToTensor(), workers=1, seed=3, shuffle=True)
    val = Loader(data(seed=1, n=12), batch_size=4, transform=T.ToTensor(), workers=1, shuffle=False)
    return model, loader, val, optim.SGD(model.parameters(), lr=0.2, momentum=0.9)


def fit(out, timeout):
    """One epoch of train.fit on every rank, global batch 8, checkpoint at its end."""
    dist.init(timeout=timeout)
    model, loader, val, opt = fit_setup(BATCH // dist.get_world_size())
    history = train.fit(model, loader, opt, 1, val_loader=val, progress=False, log=None, checkpoint_path=out)
    if dist.get_rank() == 0:
        np.savez(out + ".history.npz", train_loss=history.train_loss, val_metric=history.val_metric,
                 val_loss=history.val_loss)


def train_steps(out, timeout, fault):
    """Trains until the test kills this rank (fault "kill": rank 1 writes its pid and waits to be
    killed) or rank 1 stops calling collectives (fault "hang")."""
    dist.init(timeout=timeout)
    rank = dist.get_rank()
    af.manual_seed(0)
    model = Net()
    net = dist.DistributedDataParallel(model)
    start = time.monotonic()
    try:
        for step in range(100000):
            if rank == 1 and step == 20:
                if fault == "kill":
                    time.sleep(1.0)  # a few heartbeats first: the others then see them stop
                    with open(out + ".pid", "w") as f:
                        f.write(str(os.getpid()))
                    signal.pause()
                time.sleep(timeout + 3)  # hangs past the others' timeout, then leaves
                return
            x, y = batch(step % 7)
            nn.functional.cross_entropy(net(af.tensor(x)), af.tensor(y)).backward()
    except RuntimeError as e:
        print(f"rank {rank} gave up after {time.monotonic() - start:.1f} s: {e}", flush=True)
        sys.exit(3)


SYNC_SPLIT = 3  # rank 0 takes 3 of the 8 samples, rank 1 the other 5: the counts differ


def syncbn_data():
    rng = np.random.default_rng(7)
    x = rng.normal(2, 3, (BATCH, 3, 4, 5))
    return (x.astype(np.float32), rng.normal(size=x.shape).astype(np.float32),
            rng.normal(1, 0.5, 3).astype(np.float32), rng.normal(0, 0.5, 3).astype(np.float32))


def syncbn_step(bn, x, g):
    """Two training steps of bn on x; returns the second output and input gradient, and the
    parameters' gradients summed over both steps (loss: sum(y * g) on this rank's samples)."""
    for _ in range(2):
        xin = af.tensor(x, requires_grad=True)
        y = bn(xin)
        (y * af.tensor(g)).sum().backward()
    return y.numpy(), xin.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy()


def syncbn(out, timeout):
    """SyncBatchNorm on each rank's part of the batch; rank 0 writes the whole batch's outputs and
    input gradients, the parameter gradients summed over ranks and the running statistics."""
    dist.init(timeout=timeout)
    x, g, w, b = syncbn_data()
    part = slice(0, SYNC_SPLIT) if dist.get_rank() == 0 else slice(SYNC_SPLIT, BATCH)
    bn = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)))[0]
    assert isinstance(bn, nn.SyncBatchNorm)
    bn.load_state_dict({"weight": af.tensor(w), "bias": af.tensor(b)}, strict=False)
    y, dx, dw, db = syncbn_step(bn, x[part], g[part])
    parts = dist.all_gather_object((y, dx, dw, db))
    if dist.get_rank() == 0:
        np.savez(out, y=np.concatenate([p[0] for p in parts]), dx=np.concatenate([p[1] for p in parts]),
                 dw=sum(p[2] for p in parts), db=sum(p[3] for p in parts), running_mean=bn.running_mean.numpy(),
                 running_var=bn.running_var.numpy(), tracked=bn.num_batches_tracked.numpy())


if __name__ == "__main__":
    scenario, out = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    if scenario == "equivalence":
        equivalence(out, timeout)
    elif scenario == "fit":
        fit(out, timeout)
    elif scenario in ("kill", "hang"):
        train_steps(out, timeout, scenario)
    elif scenario == "syncbn":
        syncbn(out, timeout)
    elif scenario == "sum":  # every rank's rank + 1, summed: the group is whole and in the launcher's order
        dist.init(timeout=timeout)
        t = dist.all_reduce(af.tensor([float(dist.get_rank() + 1)]))
        ranks = dist.all_gather_object(dist.get_rank())
        if dist.get_rank() == 0:
            np.savez(out, sum=t.numpy(), ranks=np.array(ranks), world=dist.get_world_size())
    elif scenario == "init":
        dist.init(timeout=timeout)
    else:
        sys.exit(f"unknown scenario {scenario}")
