"""The op headers stay CUDA-ready without a GPU: every csrc/ops/*.h compiles as a .cu under nvcc
(they are shared by <op>.c and the future <op>.cu); a .cu registers its kernels in af_op_cuda_table
by defining AF_OP_CUDA_KERNELS(<op>) alone, with NULL for every op that has no .cu; and
af_op_forward looks the device's kernel up before setup allocates. Skipped where nvcc is absent
(set NVCC or CUDA_HOME to point at one)."""
import concurrent.futures
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
# op_list.h is an X-macro list and instantiate_float.h re-includes its includer: neither stands alone.
NOT_STANDALONE = {"op_list.h", "instantiate_float.h"}


def _nvcc():
    candidates = [os.environ.get("NVCC"), shutil.which("nvcc")]
    candidates.append(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


NVCC = _nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found")

HEADERS = sorted(p.name for p in (CSRC / "ops").glob("*.h") if p.name not in NOT_STANDALONE)

# A .cu as a CUDA backend will write one: the op headers, a CUDA twin, and its registration.
SCRATCH_CU = """
#include "ops/ops.h"
{includes}

static af_status add_forward_cuda(af_op_call *c) {{ return c->op == AF_OP_ADD ? AF_OK : AF_ERR_RUNTIME; }}

AF_OP_CUDA_KERNELS(add) = {{.forward = add_forward_cuda, .backward = NULL}};
"""

# Reads the table the way csrc/ops/dispatch.c does.
MAIN_C = """
#include <stdio.h>
#include "ops/ops.h"

int main(void) {
    for (int op = 0; op < AF_OP_COUNT; op++)
        if ((af_op_cuda_table[op] != NULL) != (op == AF_OP_ADD)) {
            printf("af_op_cuda_table[%d] is %s\\n", op, af_op_cuda_table[op] ? "set" : "NULL");
            return 1;
        }
    af_op_call c = {.op = AF_OP_ADD};
    if (af_op_cuda_table[AF_OP_ADD]->forward(&c) != AF_OK || af_op_cuda_table[AF_OP_ADD]->backward) return 2;
    printf("ok\\n");
    return 0;
}
"""


# The compilers run without the sanitizer runtime that `make test-asan` preloads into Python (nvcc
# crashes under it); the programs they build are ours and need no preload either.
COMPILER_ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def _run(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=COMPILER_ENV)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_headers_list_is_not_empty():
    assert "ops.h" in HEADERS


def test_every_op_header_compiles_alone_under_nvcc(tmp_path):
    """Each header in its own .cu (so each includes what it uses), included twice (include guards);
    nvcc runs in parallel because each call mostly waits on its sub-tools."""
    def compile_one(header):
        cu = tmp_path / f"{header}.cu"
        cu.write_text(f'#include "ops/{header}"\n#include "ops/{header}"\n')
        done = subprocess.run([NVCC, "-x", "cu", "--Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra",
                               "-I", CSRC, "-c", cu, "-o", tmp_path / f"{header}.o"],
                              capture_output=True, text=True, timeout=300, env=COMPILER_ENV)
        return header, done.returncode, done.stdout + done.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f"{h}:\n{out}" for h, rc, out in pool.map(compile_one, HEADERS) if rc != 0]
    assert not failures, "headers that nvcc rejects:\n" + "\n".join(failures)


def test_op_headers_stay_free_of_openmp_and_cblas():
    """ops.h may include core/parallel.h (its macros expand to nothing under nvcc); op headers use neither."""
    for header in HEADERS:
        if header == "ops.h":
            continue
        text = (CSRC / "ops" / header).read_text()
        for banned in ("cblas", "omp.h", "AF_PARALLEL_FOR", "AF_GEMM", "#pragma omp"):
            assert banned not in text, f"csrc/ops/{header} uses {banned}: keep CPU-only code in the .c"


# The CUDA path of af_op_forward with host memory posing as a device tensor (a CPU-only machine
# cannot allocate one): the kernel lookup comes before setup, so an op without a .cu fails without
# allocating, and an op with one gets as far as setup. The table check refuses the scratch
# registration: add is differentiable but the .cu gives no backward.
DISPATCH_C = """
#include <stdio.h>
#include <string.h>
#include "ops/ops.h"

static void keep(void *owner) { (void)owner; }

int main(void) {
    static float data[4];
    const int64_t shape[1] = {4};
    const af_device cuda = {AF_DEVICE_CUDA, 0};
    af_tensor *a, *b;
    /* no GPU here: host memory passes for device memory, through the CPU allocator's functions */
    if (af_allocator_register(AF_DEVICE_CUDA, af_allocator_get(AF_DEVICE_CPU)) != AF_OK) return 5;
    if (af_tensor_wrap(AF_DTYPE_F32, cuda, 1, shape, data, keep, NULL, &a) != AF_OK ||
        af_tensor_wrap(AF_DTYPE_F32, cuda, 1, shape, data, keep, NULL, &b) != AF_OK)
        return 1;
    af_op_call sub = {.op = AF_OP_SUB, .n_in = 2, .in = {a, b}};
    if (af_op_forward(&sub) != AF_ERR_DEVICE || sub.n_out != 0 || !strstr(af_error_message(), "sub has no CUDA kernel")) {
        printf("sub: %s (n_out %d)\\n", af_error_message(), sub.n_out);
        return 2;
    }
    af_op_call add = {.op = AF_OP_ADD, .n_in = 2, .in = {a, b}};
    if (af_op_forward(&add) != AF_OK || add.n_out != 1) { /* found its kernel, ran setup, then the scratch kernel */
        printf("add: %s\\n", af_error_message());
        return 3;
    }
    af_op_call_release(&add);
    if (af_op_table_check() == AF_OK || !strstr(af_error_message(), "add declares differentiable inputs (mask 0x3) "
                                                                      "but has no CUDA backward")) {
        printf("table check: %s\\n", af_error_message());
        return 4;
    }
    printf("ok\\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """scratch.o (the .cu) and cuda_table.o, built once for the tests below."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    tmp = tmp_path_factory.mktemp("scratch")
    includes = "\n".join(f'#include "ops/{h}"' for h in HEADERS)
    (tmp / "scratch.cu").write_text(SCRATCH_CU.format(includes=includes))
    _run([NVCC, "-x", "cu", "--Werror", "all-warnings", "-I", CSRC, "-c", "scratch.cu", "-o", "scratch.o"], tmp)
    _run([cc, *CFLAGS, "-c", CSRC / "ops" / "cuda_table.c", "-o", "cuda_table.o"], tmp)
    return cc, tmp


CFLAGS = ["-std=gnu11", "-Wall", "-Werror", "-fopenmp", "-fvisibility=hidden", "-DAF_HAVE_CUDA", "-I", str(CSRC)]


def test_a_cu_file_registers_its_kernels_alone(scratch, tmp_path):
    cc, objs = scratch
    (tmp_path / "main.c").write_text(MAIN_C)
    _run([cc, *CFLAGS, "-c", "main.c", "-o", "main.o"], tmp_path)
    _run([NVCC, "main.o", objs / "cuda_table.o", objs / "scratch.o", "-o", "registry"], tmp_path)
    assert _run([tmp_path / "registry"], tmp_path).strip() == "ok"


def test_dispatch_looks_the_cuda_kernel_up_before_setup(scratch, tmp_path):
    cc, objs = scratch
    (tmp_path / "main.c").write_text(DISPATCH_C)
    sources = sorted((CSRC / "core").glob("*.c")) + sorted(p for p in (CSRC / "ops").glob("*.c")
                                                           if p.name != "cuda_table.c")
    if not _compiles(cc, "#include <cblas.h>\n", tmp_path):
        pytest.skip("cblas.h is not on the default include path (a pip-only BLAS)")

    def compile_one(src):
        return _run([cc, *CFLAGS, "-O0", "-c", src, "-o", tmp_path / f"{src.parent.name}_{src.stem}.o"], tmp_path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(compile_one, [tmp_path / "main.c", *sources]))
    objects = sorted(tmp_path.glob("*.o")) + [objs / "cuda_table.o", objs / "scratch.o"]
    _run([NVCC, "-Xcompiler", "-fopenmp", *objects, "-o", "dispatch", "-lopenblas", "-lm"], tmp_path)
    assert _run([tmp_path / "dispatch"], tmp_path).strip() == "ok"


def _compiles(cc, source, tmp_path):
    (tmp_path / "probe.c").write_text(source)
    return subprocess.run([cc, "-fsyntax-only", "probe.c"], cwd=tmp_path, capture_output=True,
                          env=COMPILER_ENV).returncode == 0
