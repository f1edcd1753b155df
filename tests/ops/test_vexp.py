"""af_exp16_avx512 and af_exp8_avx2 (csrc/ops/vexp.h), the e^x that attention's AVX-512 and AVX2
kernels call, are within 1 ulp of the correctly rounded e^x (float64 exp as the reference): a C program
built here from the header checks each over a stride through every float32, every input whose result
is subnormal or near it, the softmax's range [-20, 0] densely, the overflow edge and the special
values, which must be exact (e^0 = 1, e^-inf = 0, e^inf = inf, NaN stays NaN, below -104 exactly 0),
and af_exp8xn_avx2's lockstep of several vectors must give af_exp8_avx2's bits.
Each is skipped where the CPU lacks its instructions or no C compiler is found."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CC = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def _cpu_has(*flags):
    try:
        have = set(pathlib.Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return all(f in have for f in flags)


PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "ops/vexp.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static long bad = 0, checked = 0;
static double worst = 0;

/* |got - e^x| in units of the last place of e^x as a float (subnormal spacing below FLT_MIN) */
static double ulps(float got, double want) {
    if (want > 3.4028234663852886e38) return isinf(got) && got > 0 ? 0 : 1e30;
    int e;
    frexp(want, &e);
    return fabs((double)got - want) / ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
}

#if LANES == 16
#define NAME "af_exp16_avx512"
__attribute__((target("avx512f,fma"))) static void exp_lanes(const float *x, float *got) {
    _mm512_storeu_ps(got, af_exp16_avx512(_mm512_loadu_ps(x)));
}
#else
#define NAME "af_exp8_avx2"
/* af_exp8xn_avx2's lockstep of 4 vectors (each holding the inputs in another lane order) must give
 * af_exp8_avx2's bits in every lane: a lane that differs counts as bad */
__attribute__((target("avx2,fma"))) static void exp_lanes(const float *x, float *got) {
    const __m256 one = _mm256_loadu_ps(x);
    __m256 four[4];
    for (int i = 0; i < 4; i++)
        four[i] = _mm256_permutevar8x32_ps(one, _mm256_setr_epi32(i, (1 + i) % 8, (2 + i) % 8, (3 + i) % 8,
                                                                   (4 + i) % 8, (5 + i) % 8, (6 + i) % 8, (7 + i) % 8));
    af_exp8xn_avx2(4, four);
    _mm256_storeu_ps(got, af_exp8_avx2(one));
    for (int i = 0; i < 4; i++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, four[i]);
        for (int j = 0; j < 8; j++)
            if (memcmp(&lanes[j], &got[(j + i) % 8], sizeof(float)) != 0 && bad++ < 5)
                printf("x=%a: af_exp8xn_avx2 0x%08x, af_exp8_avx2 0x%08x\n", x[(j + i) % 8], bits(lanes[j]),
                       bits(got[(j + i) % 8]));
    }
}
#endif

static void check(const float *x) {
    float got[LANES];
    exp_lanes(x, got);
    for (int i = 0; i < LANES; i++, checked++) {
        const double want = exp((double)x[i]);
        const double err = x[i] != x[i] ? (got[i] != got[i] ? 0 : 1e30) : ulps(got[i], want);
        const int inexact = (x[i] == 0 && got[i] != 1.0f) || (x[i] < -104.0f && got[i] != 0.0f) ||
                            (x[i] == INFINITY && got[i] != INFINITY); /* -inf is below -104 */
        if (err > worst) worst = err;
        if ((err > 1.0 || inexact) && bad++ < 5)
            printf("x=%a: " NAME " %a (0x%08x), e^x %a, %.3f ulp\n", x[i], got[i], bits(got[i]), want, err);
    }
}

static float buf[LANES];
static int nbuf = 0;
static void push(float x) { buf[nbuf++] = x; if (nbuf == LANES) { check(buf); nbuf = 0; } }

int main(void) {
    for (uint64_t u = 0; u < (1ull << 32); u += 251) { /* a stride through every float, NaNs left out */
        const float x = from_bits((uint32_t)u);
        if (x == x) push(x);
    }
    for (float x = -105.0f; x < -85.0f; x = nextafterf(x, 0.0f)) push(x); /* subnormal results, and their edge */
    for (float x = 88.0f; x < 90.0f; x = nextafterf(x, 100.0f)) push(x);   /* overflow to inf */
    for (float x = -20.0f; x < 0.0f; x += 1.0f / 4096) push(x);             /* a softmax's arguments */
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 89.0f, -104.0f, 1e-45f, -1e-45f,
                             1e-38f, 3.4e38f, -3.4e38f, 0.5f, -0.5f, 1.0f, -1.0f, 0.34657359f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) push(special[i]);
    while (nbuf) push(0.0f);
    printf("worst %.4f ulp; %ld checked, %ld bad\n", worst, checked, bad);
    return bad != 0;
}
"""


@pytest.mark.parametrize("lanes, flags", [(16, ("avx512f", "fma")), (8, ("avx2", "fma"))], ids=["avx512", "avx2"])
def test_vector_exp_within_one_ulp(tmp_path, lanes, flags):
    if CC is None or not _cpu_has(*flags):
        pytest.skip(f"needs a C compiler and a CPU with {' and '.join(flags)}")
    src = tmp_path / "vexp_check.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "vexp_check"
    # the build's own float flags (setup.py): no contraction into FMA, no -ffast-math
    subprocess.run([CC, "-O2", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
                    f"-DLANES={lanes}", f"-I{ROOT / 'csrc'}", str(src), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    checked, bad = run.stdout.split()[-4], run.stdout.split()[-2]
    assert bad == "0" and int(checked) > 15_000_000, run.stdout
