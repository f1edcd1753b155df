"""Packaging for pip-only machines: the sdist carries stb_image.h and its licence; the portable wheel
installs into a fresh virtual environment and trains without the system's OpenBLAS or stb headers.

The wheel test builds with `make wheel` (minutes) and creates a venv, so it runs only under
`make test-wheel` (AFFECTFER_TEST_WHEEL=1), which .ci/run calls; the sdist test takes seconds and
runs everywhere a stb_image >= 2.28 header is at hand (`make stb`)."""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
STB = os.environ.get("STB_INCLUDE_DIR") or os.path.join(ROOT, "build", "stb", "usr", "include", "stb")


def make(target, dist, **env):
    """`make <target>` with this interpreter (no venv bootstrap) into the scratch folder `dist`."""
    cmd = ["make", "-C", ROOT, target, f"PY={sys.executable}", "PY_DEPS=", f"DIST={dist}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


needs_stb = pytest.mark.skipif(not os.path.exists(os.path.join(STB, "stb_image.h")),
                               reason="no stb_image.h from `make stb` (or STB_INCLUDE_DIR) to put in the sdist")


@needs_stb
def test_sdist_carries_the_stb_header_and_licence_and_no_machine_paths(tmp_path):
    make("sdist", tmp_path)
    (sdist,) = tmp_path.glob("affectfer-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        header = tar.extractfile(members["third_party/stb/stb_image.h"]).read()
        licence = tar.extractfile(members["third_party/stb/copyright"]).read().decode()
        texts = {name: tar.extractfile(m).read() for name, m in members.items() if m.isfile()}
    assert header == open(os.path.join(STB, "stb_image.h"), "rb").read()
    version = tuple(int(p) for p in re.match(rb"/\* stb_image - v(\d+)\.(\d+)", header).groups())
    assert version >= (2, 28), version
    assert "Sean Barrett" in licence and ("MIT" in licence or "public-domain" in licence.lower()), licence[:500]
    # what the build needs from the tree, and nothing built
    assert {"setup.py", "pyproject.toml", "csrc/core/blas.h", "csrc/ops/op_list.h", "affectfer/__init__.py"} <= set(texts)
    assert not [n for n in texts if n.endswith((".so", ".o", ".whl"))]
    machine = [p.encode() for p in (ROOT, os.path.expanduser("~"), os.path.realpath(STB), sys.prefix)]
    leaks = {name: p for name, text in texts.items() for p in machine if p in text}
    assert not leaks, leaks


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if not os.environ.get("AFFECTFER_TEST_WHEEL"):
        pytest.skip("builds a wheel and a venv (minutes): `make test-wheel` runs it")
    if not os.path.exists(os.path.join(STB, "stb_image.h")):
        pytest.fail("make wheel needs stb_image.h from `make stb` or STB_INCLUDE_DIR")
    dist = tmp_path_factory.mktemp("dist")
    log = make("wheel", dist)
    (whl,) = dist.glob("affectfer-*manylinux*.whl")
    return whl, log


def hidden_env(**extra):
    """The environment of the installed wheel's processes: no LD_LIBRARY_PATH, no STB_INCLUDE_DIR,
    no PYTHONPATH reaching this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "STB_INCLUDE_DIR", "PYTHONPATH")}
    return dict(env, **extra)


@pytest.mark.slow
def test_wheel_is_built_from_the_sdist_with_its_own_stb_and_the_wheel_blas(wheel):
    whl, log = wheel
    used = re.search(r"affectfer: BLAS \"([^\"]+)\", stb_image.h from (\S+)", log)
    assert used, log[-2000:]
    assert used.group(1).startswith("scipy-openblas32"), used.group(0)
    assert used.group(2).endswith(os.path.join("third_party", "stb")) and not used.group(2).startswith(ROOT), \
        used.group(0)  # the unpacked sdist's copy, never the system's or build/stb
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(whl)], capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert re.search(r'platform tag: "manylinux_\d+_\d+_x86_64"', " ".join(show.stdout.split())), show.stdout


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_trains_without_system_blas(wheel, tmp_path):
    whl, _ = wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=hidden_env())
    py = str(venv / "bin" / "python")
    pip = subprocess.run([py, "-m", "pip", "install", "-q", str(whl)], capture_output=True, text=True,
                         env=hidden_env(), timeout=900)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    # the wheel carries its BLAS: nothing pulled scipy-openblas32 in, and _C resolves no system OpenBLAS
    listed = subprocess.run([py, "-m", "pip", "list"], capture_output=True, text=True, env=hidden_env()).stdout
    assert "scipy-openblas32" not in listed and "scipy_openblas32" not in listed, listed
    where = subprocess.run([py, "-c", "import affectfer._C as c; print(c.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=hidden_env())
    assert where.returncode == 0, where.stderr
    so = where.stdout.strip()
    assert so.startswith(str(venv)), so
    ldd = subprocess.run(["ldd", so], capture_output=True, text=True, env=hidden_env()).stdout
    blas = [line for line in ldd.splitlines() if "blas" in line]
    assert blas and all("affectfer.libs" in line and "=> not found" not in line for line in blas), ldd
    assert not [line for line in ldd.splitlines() if "libopenblas" in line or "not found" in line], ldd
    dynamic = subprocess.run(["readelf", "-d", so], capture_output=True, text=True).stdout
    paths = [p for line in dynamic.splitlines() if "PATH" in line for p in line.split("[", 1)[1].rstrip("]").split(":")]
    assert paths and all(p.startswith("$ORIGIN") for p in paths), paths  # no folder of the build machine

    out = tmp_path / "wheel.npz"
    run = subprocess.run([py, os.path.join(HERE, "train_step.py"), str(out)], capture_output=True, text=True,
                         cwd=tmp_path, env=hidden_env())
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(out)
    assert str(got["module"]).startswith(str(venv))
    assert np.isfinite(got["loss"]) and got["loss"] > 0
    assert str(got["info.blas"]).startswith("scipy-openblas32")
    stb = tuple(int(p) for p in str(got["info.stb"]).split()[1].split("."))
    assert stb >= (2, 28), str(got["info.stb"])  # the sdist's header (Debian bookworm's system one is 2.27)
    assert str(got["info.cpu_path"]).startswith("x86-64"), str(got["info.cpu_path"])  # dispatched, not native

    # The in-tree build (native, or another CPU path) gives the same bits when it links the same BLAS:
    # the clones round like the native code (no FMA contraction, no reassociation).
    ref = tmp_path / "tree.npz"
    run = subprocess.run([sys.executable, os.path.join(HERE, "train_step.py"), str(ref)], capture_output=True,
                         text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == 0, run.stderr[-3000:]
    want = np.load(ref)
    if str(want["info.blas"]) != str(got["info.blas"]) or str(want["info.blas_core"]) != str(got["info.blas_core"]):
        pytest.skip(f"the in-tree build links {want['info.blas']} ({want['info.blas_core']}), the wheel "
                    f"{got['info.blas']} ({got['info.blas_core']}): GEMMs may round differently")
    differ = [k for k in want.files if not k.startswith("info.") and k != "module" and not np.array_equal(want[k], got[k])]
    assert not differ, f"{len(differ)} arrays differ between {got['info.cpu_path']} and {want['info.cpu_path']}: {differ[:5]}"
