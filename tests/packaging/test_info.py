"""affectfer.info() and `python -m affectfer info` name the CPU kernel path, the BLAS and stb_image."""
import os
import subprocess
import sys

import affectfer as af

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_info_names_the_cpu_path_the_blas_and_stb():
    info = af.info()
    assert info["cpu_path"] in ("native (-march=native)", "baseline", "x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2)",
                                "x86-64 baseline (SSE2)"), info["cpu_path"]
    assert info["blas"].startswith(("scipy-openblas32 ", "system OpenBLAS")), info["blas"]
    # OpenBLAS's own report of the library actually loaded: its version and the kernels it picked
    assert info["blas_config"].startswith("OpenBLAS ") and info["blas_core"], info
    if info["blas"].startswith("scipy-openblas32 "):
        assert info["blas_config"].split()[1] == info["blas"].split()[1], info
    assert info["stb"].startswith("stb_image 2."), info["stb"]
    assert info["threads"] == af.get_num_threads() and info["cuda"] is af.cuda.is_available()


def test_cli_info_prints_them():
    out = subprocess.run([sys.executable, "-m", "affectfer", "info"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    info = af.info()
    assert f"CPU kernels: {info['cpu_path']}" in out.stdout
    assert f"BLAS: {info['blas']} ({info['blas_core']} kernels" in out.stdout
    assert f"image decoder: {info['stb']}" in out.stdout
