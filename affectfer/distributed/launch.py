"""Which launcher started this process, and where the rendezvous is.

Three launchers set three dialects of the same facts (rank, world size, rank within the node):
  torchrun / torch.distributed.launch: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
  Open MPI's mpirun:                   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
  SLURM's srun:                        SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST
(the variables are documented by PyTorch's torchrun page, Open MPI's mpirun(1) man page, and SLURM's
srun(1) "OUTPUT ENVIRONMENT VARIABLES"). Under SLURM the rendezvous host is the first node of the
allocation, as `scontrol show hostnames "$SLURM_NODELIST" | head -n 1` gives it; expand_nodelist
is that expansion in Python, so no SLURM binary is needed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchInfo:
    launcher: str          # "torchrun", "mpirun", "slurm" or "single"
    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None
    master_port: int | None
    started_by_mpi: bool   # the processes share an MPI world already (mpirun, or srun --mpi=pmix)


def _int(env, name):
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _bracket_items(body):
    """'01-03,07' -> ['01', '02', '03', '07'] (zero padding kept, as SLURM writes it)."""
    out = []
    for part in body.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                raise ValueError(f"bad range {part!r} in a SLURM node list")
            width = len(lo)
            out.extend(str(k).zfill(width) for k in range(int(lo), int(hi) + 1))
        elif part.isdigit():
            out.append(part)
        else:
            raise ValueError(f"bad item {part!r} in a SLURM node list")
    return out


def _split_top(nodelist):
    """Split at commas outside brackets: 'a[1-2],b3' -> ['a[1-2]', 'b3']."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM node list {nodelist!r}")
        elif ch == "," and depth == 0:
            parts.append(nodelist[start:k])
            start = k + 1
    if depth:
        raise ValueError(f"unbalanced '[' in SLURM node list {nodelist!r}")
    parts.append(nodelist[start:])
    return [p for p in parts if p]


def expand_nodelist(nodelist: str) -> list:
    """Host names of a SLURM node list, in order: 'gpu[01-02,05],cpu7' -> ['gpu01', 'gpu02', 'gpu05',
    'cpu7']. Several bracket groups in one name expand as a product ('r[1-2]n[3-4]' -> r1n3, r1n4,
    r2n3, r2n4), as scontrol does."""
    if not isinstance(nodelist, str) or not nodelist.strip():
        raise ValueError(f"a SLURM node list must be a non-empty string, got {nodelist!r}")
    hosts = []
    for item in _split_top(nodelist.strip()):
        names = [""]
        for prefix, body in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", item):
            if not prefix and not body:
                continue
            choices = _bracket_items(body) if body else [""]
            names = [n + prefix + c for n in names for c in choices]
        hosts.extend(names)
    return hosts


def detect(env=None) -> LaunchInfo:
    """The launch facts from `env` (default os.environ). Open MPI's variables win over SLURM's (an
    mpirun inside an allocation), and both over torchrun's."""
    env = os.environ if env is None else env
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else None
    addr = env.get("MASTER_ADDR")
    if "OMPI_COMM_WORLD_SIZE" in env:
        return LaunchInfo("mpirun", _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE"),
                          _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") if "OMPI_COMM_WORLD_LOCAL_RANK" in env else 0,
                          addr, port, True)
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        if addr is None and env.get("SLURM_NODELIST", env.get("SLURM_JOB_NODELIST")):
            addr = expand_nodelist(env.get("SLURM_NODELIST", env.get("SLURM_JOB_NODELIST")))[0]
        # srun --mpi=pmix (or pmi2) starts the tasks as one MPI world; PMIX_RANK tells it did
        return LaunchInfo("slurm", _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"),
                          _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0, addr, port,
                          "PMIX_RANK" in env or "PMI_RANK" in env)
    if "WORLD_SIZE" in env:
        return LaunchInfo("torchrun", _int(env, "RANK") if "RANK" in env else 0, _int(env, "WORLD_SIZE"),
                          _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0, addr, port, False)
    return LaunchInfo("single", 0, 1, 0, addr, port, False)
