"""affectfer.distributed: launcher detection, the rendezvous store, sharded samplers, and data-parallel
training in child processes (tests/distributed/worker.py) under mpirun and a torchrun-style
environment: equivalence with one process, bitwise repeatability, a killed or hung rank named
within the timeout, and a 2-rank checkpoint resumed by 1 process."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import affectfer as af
from affectfer import distributed as dist
from affectfer import nn, optim, train
from affectfer.data import (BaggingSampler, ClassBalancedOversampler, DistributedSampler, RandomSampler,
                            SequentialSampler, WeightedRandomSampler)
from affectfer.distributed import TCPStore, detect, expand_nodelist
from affectfer.distributed.store import StoreTimeout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "distributed", "worker.py")
MPIRUN = shutil.which("mpirun")
needs_mpi = pytest.mark.skipif(MPIRUN is None or not dist.is_mpi_available()[0],
                               reason="Open MPI (mpirun and libmpi) is not installed")


def child_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "SLURM_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **extra)
    return env


def mpirun(n, *args, timeout=60, recovery=False):
    # as root mpirun needs --allow-run-as-root; --oversubscribe lets 2 ranks share fewer cores;
    # --enable-recovery keeps mpirun from killing the survivors itself when a rank dies
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS",
           "--mca", "btl", "self,vader,tcp", "-np", str(n)]
    cmd += ["--enable-recovery"] if recovery else []
    return subprocess.Popen(cmd + [sys.executable, WORKER, *map(str, args)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=60):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# ---------------------------------------------------------------- launchers

def test_detect_reads_each_launcher():
    t = detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"})
    assert (t.launcher, t.rank, t.world_size, t.local_rank, t.master_addr, t.master_port, t.started_by_mpi) == \
        ("torchrun", 3, 8, 1, "n1", 29500, False)
    m = detect({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "SLURM_PROCID": "5", "SLURM_NTASKS": "9"})
    assert (m.launcher, m.rank, m.world_size, m.local_rank, m.started_by_mpi) == ("mpirun", 1, 2, 1, True)
    s = detect({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08]",
                "PMIX_RANK": "5"})
    assert (s.launcher, s.rank, s.world_size, s.local_rank, s.master_addr, s.started_by_mpi) == \
        ("slurm", 5, 8, 1, "gpu07", True)
    assert detect({}).launcher == "single" and detect({}).world_size == 1
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        detect({"WORLD_SIZE": "two"})


@pytest.mark.parametrize("nodelist, hosts", [
    ("node1", ["node1"]),
    ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
    ("a[8-10],b7,c[1,3]", ["a8", "a9", "a10", "b7", "c1", "c3"]),
    ("r[1-2]n[3-4]", ["r1n3", "r1n4", "r2n3", "r2n4"]),
    ("cn-[001-002].cluster", ["cn-001.cluster", "cn-002.cluster"]),
])
def test_expand_nodelist_like_scontrol(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["", "gpu[01-", "gpu]1[", "gpu[3-1]", "gpu[a-b]"])
def test_expand_nodelist_rejects_malformed(bad):
    with pytest.raises(ValueError):
        expand_nodelist(bad)


def test_init_single_process_needs_no_mpi(monkeypatch):
    monkeypatch.setattr(dist, "_group", None)
    monkeypatch.setenv("WORLD_SIZE", "1")
    for k in ("OMPI_COMM_WORLD_SIZE", "SLURM_PROCID"):
        monkeypatch.delenv(k, raising=False)
    assert dist.init(timeout=5).world_size == 1
    t = af.tensor([1.0, 2.0])
    assert dist.all_reduce(t, "mean") is t and t.numpy().tolist() == [1.0, 2.0]
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}] and dist.get_rank() == 0
    with pytest.raises(ValueError, match="op must be"):
        dist.all_reduce(t, "prod")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        monkeypatch.setattr(dist, "_group", None)
        dist.init(timeout=0)


def test_mpi_unavailable_says_why():
    code = "import affectfer.distributed as d; print(d.is_mpi_available())"
    for lib, why in (("libnot-an-mpi.so", "no MPI library could be loaded"), ("libm.so.6", "is not Open MPI")):
        out = subprocess.run([sys.executable, "-c", code], env=child_env(AFFECTFER_MPI_LIBRARY=lib),
                             capture_output=True, text=True, timeout=60).stdout
        assert "False" in out and why in out, out


# ---------------------------------------------------------------- store

def test_store_set_get_wait_add_and_ages():
    server = TCPStore("127.0.0.1", 0, is_server=True, timeout=5)
    client = TCPStore("127.0.0.1", server.port, timeout=5)
    try:
        client.set("a", b"1")
        assert server.get("a") == b"1"
        threading.Timer(0.2, lambda: server.set("late", "x")).start()
        assert client.get("late", timeout=5) == b"x"  # waits until another rank sets it
        with pytest.raises(StoreTimeout, match="'never' was not set within 0 s"):
            client.get("never", timeout=0.2)
        assert [client.add("n"), server.add("n", 5)] == [1, 6]
        ages = client.ages("")
        assert set(ages) == {"a", "late", "n"} and ages["n"][1] == "6" and all(0 <= a < 5 for a, _ in ages.values())
    finally:
        client.close()
        server.close()
    with pytest.raises(ConnectionError, match="cannot reach the rendezvous store"):
        TCPStore("127.0.0.1", server.port, timeout=0.3)


# ---------------------------------------------------------------- samplers

def samplers():
    labels = np.array([0, 0, 0, 1, 2, 2, 1, 0, 0, 2, 1])
    return [SequentialSampler(11), RandomSampler(11, seed=4), WeightedRandomSampler(np.arange(1, 12), 13, seed=2),
            ClassBalancedOversampler(labels, seed=1), BaggingSampler(11, 0.7, model=2, seed=5),
            DistributedSampler(11, num_replicas=1, seed=9)]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("k", range(6))
def test_every_sampler_shards_into_the_single_process_order(world, k):
    whole = samplers()[k]
    for epoch in (0, 3):
        order = whole.indices(epoch)
        shards = [samplers()[k].shard(world, r) for r in range(world)]
        local = [s.local_indices(epoch) for s in shards]
        assert len({len(x) for x in local}) == 1 and all(len(x) == s.local_len() for x, s in zip(local, shards))
        merged = np.empty(world * len(local[0]), dtype=np.int64)
        for r, x in enumerate(local):
            merged[r::world] = x
        # interleaved position by position: the single-process order, padded from its beginning
        np.testing.assert_array_equal(merged, np.resize(order, len(merged)))
        assert len(merged) - len(order) < world
        np.testing.assert_array_equal(local[1], samplers()[k].shard(world, 1).local_indices(epoch))  # (seed, epoch)
        if whole.copy_flags(epoch) is not None:
            flags = [s.local_copy_flags(epoch) for s in shards]
            np.testing.assert_array_equal(flags[0], np.resize(whole.copy_flags(epoch), len(merged))[0::world])
        dropped = [samplers()[k].shard(world, r, drop_last=True).local_indices(epoch) for r in range(world)]
        merged = np.empty(world * len(dropped[0]), dtype=np.int64)
        for r, x in enumerate(dropped):
            merged[r::world] = x
        np.testing.assert_array_equal(merged, order[:len(merged)])
        assert len(order) - len(merged) < world


def test_distributed_sampler_and_loader_use_the_shard():
    s = DistributedSampler(10, num_replicas=3, rank=2, shuffle=False)
    assert list(s) == [2, 5, 8, 1] and s.local_len() == 4  # padded from the beginning of the order
    shuffled = [DistributedSampler(10, num_replicas=2, rank=r, seed=3) for r in range(2)]
    assert sorted(np.concatenate([x.local_indices(1) for x in shuffled]).tolist()) == list(range(10))
    data = af.data.ArrayDataset(np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10) % 2)
    loader = af.data.Loader(data, batch_size=2, sampler=DistributedSampler(10, 2, 1, shuffle=False), workers=1,
                            transform=af.transforms.ToTensor())
    assert len(loader) == 3
    seen = np.concatenate([np.asarray(b[0])[:, 0].reshape(-1) for b in loader])
    np.testing.assert_allclose(seen * 255, [1, 3, 5, 7, 9], atol=1e-3)
    with pytest.raises(ValueError, match=r"'rank' must be an int in \[0, 2\), got 2"):
        RandomSampler(4).shard(2, 2)
    with pytest.raises(ValueError, match="'num_replicas' must be an int >= 1, got 0"):
        RandomSampler(4).shard(0, 0)
    with pytest.raises(ValueError, match="drop_last=True leaves nothing"):
        RandomSampler(2).shard(3, 0, drop_last=True)


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_loader_augments_each_sample_as_one_process(world):
    """Each rank's k-th sample is position k * R + r of the whole order and draws that position's
    random stream: the ranks' augmented samples, interleaved, are the 1-process samples."""
    rng = np.random.default_rng(0)
    data = af.data.ArrayDataset(rng.integers(0, 255, (11, 9, 9, 3), dtype=np.uint8), np.arange(11) % 3)
    tf = af.transforms.Compose([af.transforms.RandomCrop(6), af.transforms.RandomHorizontalFlip(),
                                af.transforms.ToTensor()])

    def samples(sampler):
        loader = af.data.Loader(data, batch_size=3, sampler=sampler, transform=tf, workers=2, seed=5)
        loader.set_epoch(2)
        return np.concatenate([np.asarray(b[0]) for b in loader])

    whole = samples(RandomSampler(11, seed=1))
    shards = [samples(RandomSampler(11, seed=1).shard(world, r)) for r in range(world)]
    merged = np.empty((world * len(shards[0]),) + whole.shape[1:], dtype=whole.dtype)
    for r, x in enumerate(shards):
        merged[r::world] = x
    np.testing.assert_array_equal(merged[:len(whole)], whole)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_validation_loss_drops_the_padding(monkeypatch, world):
    """11 validation samples on R ranks: the shards are padded to R * ceil(11 / R); the padded
    duplicates must not count, so the ranks' sums make the 1-process validation loss."""
    from affectfer.distributed import loop

    rng = np.random.default_rng(1)
    data = af.data.ArrayDataset(rng.integers(0, 255, (11, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, 11))
    af.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))

    def val_loss(sampler):
        loader = af.data.Loader(data, batch_size=2, sampler=sampler, transform=af.transforms.ToTensor(), workers=1)
        return train._validation_loss(model, loader, train._default_loss)

    whole = val_loss(SequentialSampler(11))
    sums = []
    monkeypatch.setattr(loop, "sum_over_ranks", lambda *v: sums.append(v) or v)
    for r in range(world):
        val_loss(SequentialSampler(11).shard(world, r))
    total, count = np.sum(sums, axis=0)
    assert count == 11
    np.testing.assert_allclose(total / count, whole, rtol=1e-6)


# ---------------------------------------------------------------- multi-process

def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(n, *args, path=None):
    """n processes with torchrun's environment (no MPI launcher): rank 0's output first."""
    port = free_port()
    procs = []
    for r in range(n):
        env = child_env(RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=str(port))
        if path is not None:
            env["PATH"] = path
        procs.append(subprocess.Popen([sys.executable, WORKER, *map(str, args)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


@needs_mpi
@pytest.mark.parametrize("launcher", ["mpirun", "torchrun"])
def test_two_ranks_equal_one_process_and_repeat_bitwise(tmp_path, launcher):
    if launcher == "torchrun" and shutil.which("ompi-server") is None:
        pytest.skip("joining processes started without mpirun needs Open MPI's ompi-server")
    runs = [[mpirun(2, "equivalence", tmp_path / f"two{k}.npz")] if launcher == "mpirun"
            else torchrun(2, "equivalence", tmp_path / f"two{k}.npz") for k in range(2)]
    one = subprocess.run([sys.executable, WORKER, "equivalence", tmp_path / "one.npz"], env=child_env(),
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0, one.stdout + one.stderr
    for procs in runs:
        for proc in procs:
            rc, out = finish(proc)
            assert rc == 0, out
    a, b, ref = load(tmp_path / "two0.npz"), load(tmp_path / "two1.npz"), load(tmp_path / "one.npz")
    # 3 buckets; all but the one holding the parameter no forward uses start during backward
    assert int(a["buckets"]) == 3 and a["started"].tolist() == [2] * 4
    for name in ref:
        if name in ("started", "buckets"):
            continue
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{name}: two 2-rank runs differ")
        np.testing.assert_allclose(a[name], ref[name], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: 2 ranks on half batches != 1 process on the whole batch")
    assert np.all(a["unused"] == 0)


@needs_mpi
def test_torchrun_environment_joins_three_ranks_in_order(tmp_path):
    if shutil.which("ompi-server") is None:
        pytest.skip("joining processes started without mpirun needs Open MPI's ompi-server")
    for proc in torchrun(3, "sum", tmp_path / "sum.npz"):
        rc, out = finish(proc)
        assert rc == 0, out
    got = load(tmp_path / "sum.npz")
    assert got["sum"].tolist() == [6.0] and got["ranks"].tolist() == [0, 1, 2] and int(got["world"]) == 3


def test_mpi_init_joined_checks_its_arguments():
    with pytest.raises(ValueError, match=r"rank 2 is outside a world of size 2 \(>= 2\)"):
        af._C.mpi_init_joined(2, 2, [-1, -1])
    with pytest.raises(ValueError, match=r"fds must hold one entry per rank \(3\), got 1"):
        af._C.mpi_init_joined(0, 3, [5])


def test_torchrun_environment_without_ompi_server_explains(tmp_path):
    """Without an MPI launcher the ranks are joined through Open MPI's ompi-server: when it cannot be
    found, init says so, naming the launches that work."""
    procs = torchrun(2, "init", tmp_path / "x", path=os.path.dirname(sys.executable))
    outs = [finish(p) for p in procs]
    for rc, out in outs:
        assert rc != 0 and "DistributedError" in out, out
    assert "ompi-server" in outs[0][1] and "mpirun -np 2" in outs[0][1] and "srun --mpi=pmix" in outs[0][1], outs[0][1]
    assert "could not start ompi-server" in outs[1][1], outs[1][1]


def reference_batchnorm():
    """BatchNorm2d on the whole batch: what SyncBatchNorm on the ranks' parts must give."""
    from tests.distributed import worker

    x, g, w, b = worker.syncbn_data()
    bn = nn.BatchNorm2d(3, momentum=0.3)
    bn.load_state_dict({"weight": af.tensor(w), "bias": af.tensor(b)}, strict=False)
    y, dx, dw, db = worker.syncbn_step(bn, x, g)
    return dict(y=y, dx=dx, dw=dw, db=db, running_mean=bn.running_mean.numpy(), running_var=bn.running_var.numpy(),
                tracked=bn.num_batches_tracked.numpy())


def test_sync_batchnorm_on_one_process_is_batchnorm():
    from tests.distributed import worker

    x, g, w, b = worker.syncbn_data()
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)))
    original = model[1][0]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    bn = converted[1][0]
    assert converted is model and type(bn) is nn.SyncBatchNorm and type(converted[0]) is nn.Conv2d
    assert bn.weight is original.weight and bn.running_var is original.running_var  # shared, as torch
    bn.load_state_dict({"weight": af.tensor(w), "bias": af.tensor(b)}, strict=False)
    got, ref = worker.syncbn_step(bn, x, g), reference_batchnorm()
    for name, a in zip(("y", "dx", "dw", "db"), got):
        np.testing.assert_array_equal(a, ref[name], err_msg=name)


@needs_mpi
def test_sync_batchnorm_on_two_ranks_is_batchnorm_on_the_whole_batch(tmp_path):
    rc, out = finish(mpirun(2, "syncbn", tmp_path / "sync.npz"))
    assert rc == 0, out
    got, ref = load(tmp_path / "sync.npz"), reference_batchnorm()
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=2e-5,
                                   err_msg=f"{name}: SyncBatchNorm on 3 + 5 samples != BatchNorm2d on 8")


@needs_mpi
def test_killed_rank_is_named_within_the_timeout(tmp_path):
    out_path = str(tmp_path / "kill")
    proc = mpirun(2, "kill", out_path, 3, recovery=True)
    deadline = time.monotonic() + 40
    while not os.path.exists(out_path + ".pid") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    with open(out_path + ".pid") as f:
        os.kill(int(f.read()), signal.SIGKILL)
    killed = time.monotonic()
    rc, out = finish(proc, timeout=40)
    assert "rank 0 gave up" in out and "rank 1 stopped responding" in out, out
    assert time.monotonic() - killed < 3 + 10, out  # the timeout plus a heartbeat or two


@needs_mpi
def test_hung_rank_is_named_within_the_timeout(tmp_path):
    rc, out = finish(mpirun(2, "hang", tmp_path / "hang", 2, recovery=True))
    assert "rank 0 gave up" in out and "rank 1 did not reach collective" in out and "alive but stuck" in out, out


@needs_mpi
def test_fit_on_two_ranks_resumes_on_one_exactly(tmp_path):
    """train.fit, one epoch on 2 ranks (global batch 8, checkpoint by rank 0); then 1 process
    resumes it for a second epoch. That continuation must be exactly a 1-process run from the same
    state (a hand-written loop here), and close to 2 epochs of 1-process fit."""
    from tests.distributed import worker

    ck2 = str(tmp_path / "two.safetensors")
    rc, out = finish(mpirun(2, "fit", ck2))
    assert rc == 0, out
    h2 = load(ck2 + ".history.npz")

    model, loader, val, opt = worker.fit_setup(8)
    ck1 = str(tmp_path / "one.safetensors")
    h1 = train.fit(model, loader, opt, 1, val_loader=val, progress=False, log=None, checkpoint_path=ck1)
    np.testing.assert_allclose(h2["train_loss"], h1.train_loss, rtol=1e-5)
    np.testing.assert_allclose(h2["val_loss"], h1.val_loss, rtol=1e-5)  # validation reduced over ranks
    np.testing.assert_allclose(h2["val_metric"], h1.val_metric)
    w1, _ = af.checkpoint.load_file(ck1)
    w2, _ = af.checkpoint.load_file(ck2)
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], rtol=1e-5, atol=1e-6, err_msg=k)

    resumed, loader, val, opt = worker.fit_setup(8)
    train.fit(resumed, loader, opt, 2, progress=False, log=None, resume=ck2)
    by_hand, loader, _, opt = worker.fit_setup(8)
    af.checkpoint.load(ck2, model=by_hand, optimizer=opt)
    loader.set_epoch(1)
    for images, labels in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(by_hand(images), labels).backward()
        opt.step()
    for (k, a), b in zip(resumed.state_dict().items(), by_hand.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
