"""affectfer.distributed: data-parallel training over processes and nodes.

    import affectfer.distributed as dist
    dist.init()                                   # reads mpirun's / srun's / torchrun's environment
    model = dist.DistributedDataParallel(model)   # gradients averaged over ranks during backward
    sampler = dist.DistributedSampler(len(train_set), shuffle=True, seed=0)   # this rank's shard

One process per rank. The collectives are MPI's for CPU tensors (the system's Open MPI, loaded at
run time: `is_mpi_available()` says whether and why not) and will be NCCL's for CUDA tensors; only
the rendezvous is ours: a small TCP store (affectfer.distributed.store) served by rank 0, which
also carries every rank's heartbeat. A watchdog thread per rank reads them: when a peer stops
beating for `timeout` seconds (it died), or when this rank has waited `timeout` seconds in a
collective that a live peer has not reached (it hangs), every wait fails with DistributedError
naming that rank. Nothing waits forever.

Launching (see the README's "Clusters" section): `mpirun -np N python train.py`, or
`srun --mpi=pmix python train.py` under SLURM. Processes started without an MPI launcher (torchrun's
environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) are MPI singletons: Open MPI connects
independently started processes only through a shared runtime (Open MPI issues #3458 and #5182),
so rank 0 starts Open MPI's `ompi-server` and the ranks join it pairwise with MPI_Comm_join over
sockets brokered by the store (csrc/dist/mpi.c). Without `ompi-server` on PATH, init raises
advising mpirun or srun.
"""
from __future__ import annotations

import atexit
import os
import pickle
import socket
import threading
import time

import numpy as np

from .. import _C
from ..tensor import _call, from_numpy
from .launch import LaunchInfo, detect, expand_nodelist
from .store import StoreTimeout, TCPStore

__all__ = ["init", "is_initialized", "is_mpi_available", "get_rank", "get_world_size", "get_local_rank",
           "barrier", "all_reduce", "broadcast", "all_gather_object", "broadcast_object", "destroy",
           "DistributedError", "DistributedDataParallel", "DistributedSampler", "TCPStore", "LaunchInfo", "detect",
           "expand_nodelist", "is_main_process"]

_OPS = {"sum": 0, "max": 1, "min": 2}


class DistributedError(RuntimeError):
    """A peer died or hangs, or the group could not be formed. The message names the rank."""


class _Group:
    def __init__(self, info, rank, size, backend, store, timeout):
        self.info, self.rank, self.size, self.backend = info, rank, size, backend
        self.store, self.timeout = store, timeout
        # the watchdog judges after `timeout` (plus up to one heartbeat); the waits' own deadline is
        # a backstop behind it, for when the watchdog itself cannot run
        self.backstop = 1.5 * timeout + 2.0
        self.fault = None
        self.stop = threading.Event()
        self.watchdog = None
        self.ompi_server = None  # rank 0 of a group joined without an MPI launcher


_group: _Group | None = None


def is_mpi_available() -> tuple:
    """(True, "") when a usable MPI library loads, else (False, the reason)."""
    return _C.mpi_available()


def is_initialized() -> bool:
    return _group is not None


def get_rank() -> int:
    return _group.rank if _group else 0


def get_world_size() -> int:
    return _group.size if _group else 1


def get_local_rank() -> int:
    return _group.info.local_rank if _group else 0


def is_main_process() -> bool:
    """Rank 0 (or no group): the process that logs and writes checkpoints."""
    return get_rank() == 0


def _check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def init(backend: str = "auto", timeout: float = 300.0) -> LaunchInfo:
    """Join the process group this process was launched into, and return the launch facts.

    backend: "auto" (MPI for CPU tensors), "mpi", or "nccl" (arrives with the CUDA backend).
    timeout: seconds after which a dead or hung peer turns every wait into a DistributedError
    naming it (default 5 minutes). A single process (no launcher, or WORLD_SIZE=1) needs no MPI:
    every collective is then the identity. Calling init again is a no-op."""
    global _group
    if _group is not None:
        return _group.info
    if backend not in ("auto", "mpi", "nccl"):
        raise ValueError(f"backend must be 'auto', 'mpi' or 'nccl', got {backend!r}")
    timeout = _check_timeout(timeout)
    info = detect()
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ValueError(f"{info.launcher}: rank {info.rank} is outside a world of size {info.world_size}")
    if backend == "nccl":
        raise DistributedError("the NCCL backend arrives with the CUDA backend; this build has MPI (CPU tensors) only")
    if info.world_size == 1:
        _group = _Group(info, 0, 1, "single", None, timeout)
        return info
    ok, why = _C.mpi_available()
    if not ok:
        raise DistributedError(f"{info.world_size} processes need MPI, which is unavailable: {why}")
    if not info.started_by_mpi:
        if not (info.master_addr and info.master_port):
            raise DistributedError(f"{info.launcher} started {info.world_size} processes without MASTER_ADDR and "
                                   "MASTER_PORT: the rendezvous store needs them")
        store, server = _join_singletons(info, timeout)
        _group = _Group(info, info.rank, info.world_size, "mpi", store, timeout)
        _group.ompi_server = server
    else:
        rank, size = _C.mpi_init()
        if (rank, size) != (info.rank, info.world_size):
            raise DistributedError(f"MPI says rank {rank} of {size}, the {info.launcher} environment says rank "
                                   f"{info.rank} of {info.world_size}: was the program started by another launcher?")
        _group = _Group(info, rank, size, "mpi", None, timeout)
        try:
            _group.store = _open_store(info, rank, timeout)
        except BaseException:
            _group = None
            raise
    _group.watchdog = threading.Thread(target=_watch, args=(_group,), name="affectfer-watchdog", daemon=True)
    _group.watchdog.start()
    atexit.register(destroy)
    return info


def _join_singletons(info, timeout):
    """Processes started without an MPI launcher (torchrun's environment) are MPI singletons. Open
    MPI joins them (MPI_Comm_join over sockets, csrc/dist/mpi.c) only through an ompi-server, the
    publish/lookup server its runtime ships for this: rank 0 starts one and passes its address to
    the others through the rendezvous store, where every rank also publishes a listening socket so
    that each pair of ranks gets a socket to join over. Returns (store, the ompi-server process on
    rank 0 else None)."""
    import shutil
    import subprocess
    import tempfile

    store = TCPStore(info.master_addr, info.master_port, is_server=info.rank == 0, timeout=timeout)
    server, listener, socks = None, None, []
    try:
        if info.rank == 0:
            exe = shutil.which("ompi-server")
            if exe is None:
                store.set("join/uri", b"")
                _wait_readers(store, info.world_size - 1, timeout)  # they read the verdict before the store goes
                raise DistributedError(f"{info.launcher} started {info.world_size} processes without an MPI launcher; "
                                       "joining them needs Open MPI's ompi-server, which is not on PATH. Launch with "
                                       f"`mpirun -np {info.world_size} python ...` or `srun --mpi=pmix python ...`.")
            env = dict(os.environ)
            if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI's tools refuse root without these
                env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            folder = tempfile.mkdtemp(prefix="affectfer-ompi-")
            uri_file = os.path.join(folder, "uri")
            server = subprocess.Popen([exe, "--no-daemonize", "-r", uri_file], env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while not (os.path.exists(uri_file) and os.path.getsize(uri_file)) and server.poll() is None:
                if time.monotonic() > deadline:
                    raise DistributedError(f"ompi-server did not start within {timeout:.0f} s")
                time.sleep(0.02)
            if server.poll() is not None:
                raise DistributedError(f"ompi-server exited with status {server.returncode} at start")
            time.sleep(0.05)  # the address is written in one go, but give the writer its close
            with open(uri_file) as f:
                uri = f.read().strip()
            shutil.rmtree(folder, ignore_errors=True)
            store.set("join/uri", uri)
        uri = store.get("join/uri", timeout=timeout).decode()
        if info.rank != 0:
            store.add("join/read")
        if not uri:
            raise DistributedError("rank 0 could not start ompi-server to join the processes into one MPI group")
        os.environ["OMPI_MCA_pmix_server_uri"] = uri  # read by MPI_Init
        # a socket between every pair: each rank listens, connects to the ranks below it and
        # accepts the ranks above it (the kernel queues connections before accept runs)
        R, me = info.world_size, info.rank
        listener = socket.create_server(("", 0), backlog=R)
        listener.settimeout(timeout)
        host = info.master_addr if me == 0 else store._sock.getsockname()[0]  # the address that reaches rank 0
        store.set(f"join/addr/{me}", f"{host}:{listener.getsockname()[1]}")
        fds = [-1] * R
        for peer in range(me):
            host, port = store.get(f"join/addr/{peer}", timeout=timeout).decode().rsplit(":", 1)
            conn = socket.create_connection((host, int(port)), timeout=timeout)
            conn.sendall(me.to_bytes(4, "big"))
            socks.append(conn)
            fds[peer] = conn.fileno()
        for _ in range(R - 1 - me):
            conn, _ = listener.accept()
            conn.settimeout(timeout)
            socks.append(conn)
            fds[int.from_bytes(_recv_exact(conn, 4), "big")] = conn.fileno()
        for conn in socks:
            conn.setblocking(True)
        _C.mpi_init_joined(info.rank, info.world_size, fds)
        return store, server
    except BaseException:
        if server is not None:
            server.kill()
        store.close()
        raise
    finally:
        for conn in socks:
            conn.close()
        if listener is not None:
            listener.close()


def _wait_readers(store, count, timeout):
    deadline = time.monotonic() + timeout
    while store.add("join/read", 0) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def _recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise DistributedError("a rank closed its join socket before sending its rank")
        data += chunk
    return data


def _open_store(info, rank, timeout):
    """The rendezvous store: at MASTER_ADDR:MASTER_PORT when the launcher gives them, else served by
    rank 0 on a free port whose address reaches the others through an MPI broadcast."""
    if info.master_addr and info.master_port:
        return TCPStore(info.master_addr, info.master_port, is_server=rank == 0, timeout=timeout)
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") == str(info.world_size)
    host = "127.0.0.1" if local else socket.getfqdn()
    store = TCPStore(host, 0, is_server=True, timeout=timeout) if rank == 0 else None
    address = np.zeros(256, dtype=np.uint8)
    if rank == 0:
        text = f"{host}:{store.port}".encode()
        address[:len(text)] = np.frombuffer(text, dtype=np.uint8)
    buf = from_numpy(address)
    if not _C.dist_broadcast(buf, 0, timeout):
        raise DistributedError(f"rank 0 did not publish the rendezvous address within {timeout:.0f} s")
    if rank == 0:
        return store
    host, port = bytes(buf.numpy()).rstrip(b"\0").decode().rsplit(":", 1)
    return TCPStore(host, int(port), timeout=timeout)


def _watch(group):
    """Heartbeats and the verdict on silent peers (see the module docstring)."""
    interval = min(1.0, group.timeout / 10)
    began = time.monotonic()
    store = group.store
    try:  # a connection of its own: the main thread may be blocked in a long store.get
        store = TCPStore(group.store.host, group.store.port, timeout=group.timeout)
    except (ConnectionError, OSError):
        pass
    while not group.stop.wait(interval):
        started, waiting = _C.dist_progress()
        try:
            store.set(f"hb/{group.rank}", str(started))
            beats = store.ages("hb/")
        except (ConnectionError, OSError):
            if group.stop.is_set():
                return
            _set_fault(group, f"rank {group.rank} lost the rendezvous store served by rank 0 ({group.store.host}:"
                              f"{group.store.port}): rank 0 died or its node is unreachable")
            return
        for peer in range(group.size):
            if peer == group.rank:
                continue
            beat = beats.get(f"hb/{peer}")
            if beat is None:
                if time.monotonic() - began > group.timeout:
                    _set_fault(group, f"rank {peer} never sent a heartbeat within {group.timeout:.0f} s of start: it "
                                      f"died early or cannot reach the rendezvous store")
                    return
                continue
            age, peer_started = beat[0], int(beat[1])
            behind = waiting > group.timeout and peer_started < started
            if age > group.timeout or (behind and age > 3 * interval):
                _set_fault(group, f"rank {peer} stopped responding: its last heartbeat was {age:.1f} s ago "
                                  f"(timeout {group.timeout:.0f} s); it died or its node is unreachable")
                return
            if behind:
                _set_fault(group, f"rank {peer} did not reach collective #{started} within {group.timeout:.0f} s: it "
                                  f"is alive but stuck at #{peer_started} (it hangs, or is far slower than rank "
                                  f"{group.rank})")
                return


def _set_fault(group, message):
    group.fault = message
    _C.dist_set_fault(message)


def _require():
    if _group is None:
        raise RuntimeError("affectfer.distributed is not initialised: call affectfer.distributed.init() first")
    return _group


def _wait(name, fn, *args):
    """Runs one C collective; a timeout or a fault becomes DistributedError."""
    g = _require()
    try:
        done = fn(*args, g.backstop)
    except RuntimeError as e:
        if g.fault:
            raise DistributedError(f"{name}: {g.fault}") from None
        raise DistributedError(f"{name} failed: {e}") from None
    if not done:
        msg = g.fault or f"a peer did not join within {g.backstop:.0f} s (no peer was found dead or behind)"
        _set_fault(g, msg)
        raise DistributedError(f"{name}: {msg}")


def all_reduce(tensor, op: str = "sum"):
    """In place over every rank: op is "sum", "mean", "max" or "min". Returns the tensor."""
    if op not in ("sum", "mean", "max", "min"):
        raise ValueError(f"op must be 'sum', 'mean', 'max' or 'min', got {op!r}")
    if get_world_size() == 1:
        return tensor
    _wait("all_reduce", _C.dist_all_reduce, tensor, _OPS["sum" if op == "mean" else op])
    if op == "mean":
        _call("copy_", [tensor, _call("scale", [tensor], (), (1.0 / get_world_size(),))])
    return tensor


def broadcast(tensor, src: int = 0):
    """In place: every rank's tensor becomes rank `src`'s. Returns the tensor."""
    if get_world_size() == 1:
        return tensor
    _wait("broadcast", _C.dist_broadcast, tensor, int(src))
    return tensor


def barrier() -> None:
    if get_world_size() > 1:
        _wait("barrier", _C.dist_barrier)


def _gather_bytes(data: bytes) -> list:
    size = from_numpy(np.array([len(data)], dtype=np.int64))
    sizes = from_numpy(np.zeros(get_world_size(), dtype=np.int64))
    _wait("all_gather_object", _C.dist_all_gather, size, sizes)
    sizes = sizes.numpy().tolist()
    width = max(sizes)
    mine = np.zeros(width, dtype=np.uint8)
    mine[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    everyone = from_numpy(np.zeros(width * get_world_size(), dtype=np.uint8))
    _wait("all_gather_object", _C.dist_all_gather, from_numpy(mine), everyone)
    flat = bytes(everyone.numpy())
    return [flat[r * width: r * width + n] for r, n in enumerate(sizes)]


def all_gather_object(obj) -> list:
    """[rank 0's obj, rank 1's obj, ...] on every rank (metrics, predictions). Objects travel
    pickled between the processes of this one job, as torch.distributed.all_gather_object does."""
    if get_world_size() == 1:
        return [obj]
    return [pickle.loads(b) for b in _gather_bytes(pickle.dumps(obj))]


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s obj on every rank."""
    if get_world_size() == 1:
        return obj
    return all_gather_object(obj if get_rank() == src else None)[src]


def destroy() -> None:
    """Leave the group: stop the watchdog, close the store, finalise MPI (not after a fault: a dead
    peer would make MPI_Finalize wait for it)."""
    global _group
    g, _group = _group, None
    if g is None or g.backend == "single":
        return
    healthy = g.fault is None
    if healthy:
        try:  # rank 0 serves the store: nobody leaves before everybody is done with it (the
            # watchdog still runs, so a peer that died meanwhile fails this barrier quickly)
            healthy = _C.dist_barrier(g.backstop)
        except RuntimeError:
            healthy = False
    g.stop.set()
    g.watchdog.join(timeout=5)
    if g.store is not None:
        g.store.close()
    if healthy:
        _C.mpi_finalize()
    if g.ompi_server is not None:
        g.ompi_server.terminate()
        try:
            g.ompi_server.wait(timeout=5)
        except Exception:
            g.ompi_server.kill()


from .ddp import DistributedDataParallel  # noqa: E402
from ..data.samplers import DistributedSampler  # noqa: E402
