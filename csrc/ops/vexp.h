/* e^x in float32 written so that a loop calling it vectorises: no branch, no libm call, only
 * +, *, comparisons and integer bit moves, which GCC turns into AVX-512/AVX2/SSE2 lanes in every
 * AF_CPU_DISPATCH clone (csrc/core/cpu.h). The build has -ffp-contract=off and no -ffast-math, so
 * each clone, and a build without clones, rounds every step the same way: the same bits everywhere.
 * It also has -fno-trapping-math: without it GCC turns the final NaN select into a branch around the
 * whole computation, which it cannot if-convert without masked vector ops, and every loop calling
 * af_expf stays scalar on AVX2 and SSE2 (only AVX-512 vectorised it).
 *
 * Method (Cephes expf.c, S. Moshier, Cephes Math Library): x = n ln2 + r with n = round(x / ln2)
 * and |r| <= ln2/2, r computed exactly with ln2 split in two (Cody and Waite 1980: 0.693359375 has
 * 9 significant bits, so n * 0.693359375 is exact for |n| < 2^15), e^r by Cephes' degree-7
 * polynomial (relative error about 1 ulp), then the product with 2^n. 2^n is applied as two
 * factors 2^(n>>1) and 2^(n - (n>>1)), both normal floats, so results in the subnormal range are
 * rounded once, correctly, and results above FLT_MAX become +inf through the multiply.
 * Range: x < -104 gives 0 (e^-104 is below half the smallest subnormal), x > 89 gives +inf,
 * NaN stays NaN. Accuracy over the whole range: within 2 ulp of the correctly rounded e^x
 * (tests/ops/test_elementwise.py sweeps it against float64). Plain C: nvcc compiles it too. */
#ifndef AF_OPS_VEXP_H
#define AF_OPS_VEXP_H

#include <stdint.h>
#include <string.h>

static inline float af_expf(float x) {
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    float nf = xc * 1.44269504088896341f + magic;
    int32_t n;
    memcpy(&n, &nf, sizeof n);
    n -= 0x4B400000; /* the bits of `magic` */
    nf -= magic;
    float r = xc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t n1 = n >> 1, n2 = n - n1; /* each in [-80, 65]: 2^n1 and 2^n2 are normal floats */
    int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    y = y * s1 * s2;
    return x != x ? x : y;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>

/* e^x on 16 lanes with AVX-512F intrinsics, for kernels written in them (attention.c): af_expf's
 * method (Cody-Waite reduction, Cephes' polynomial) with its steps fused into FMAs and 2^n applied by
 * one scalef (exact where the result is normal, one correct rounding where it is subnormal): 15
 * vector instructions where af_expf's unfused steps take 24, which matters where every instruction
 * competes with the FMAs of a product for the same two ports (the attention softmax). Fused steps
 * round differently, so a few results in a thousand differ from af_expf's in the last bit; both stay
 * within 1 ulp of the correctly rounded e^x (tests/ops/test_vexp.py checks this one over a stride
 * through every float32, the subnormal results and the edges). Lanes below -104, where the result
 * is 0, are masked off rather than computed: an underflowing scalef costs a microcode assist on Intel
 * cores, and a softmax's padding lanes (-inf) would pay it in every row. x > 89 gives +inf, NaN
 * stays NaN. Call it only from a function compiled for AVX-512F and FMA, where the CPU has them. */
__attribute__((target("avx512f,fma"))) static inline __m512 af_exp16_avx512(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_NLT_UQ); /* x >= -104 or NaN */
    const __m512 xc = _mm512_min_ps(_mm512_set1_ps(89.0f), x); /* NaN passes: min returns its second operand */
    const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, y, nf);
}

/* The same on 8 lanes with AVX2 and FMA (attention.c's AVX2 kernel): the steps of af_exp16_avx512 up
 * to y = e^r, then 2^n applied as af_expf does, two normal factors 2^(n>>1) 2^(n - (n>>1)), so that a
 * subnormal result is rounded once; lanes below -104 give 0 (a softmax's -inf padding). Within 1 ulp
 * of e^x (tests/ops/test_vexp.py). Call it only from a function compiled for AVX2 and FMA.
 *
 * af_exp8xn_avx2 computes n vectors x[0..n-1] in place in lockstep, each step for all n before the
 * next step: one e^x is a chain of about 20 dependent instructions (some 55 cycles), and issued one
 * whole chain after another (the order a loop over af_exp8_avx2 compiles to) the FP scheduler filled
 * with the waiting steps of two chains, so a softmax ran at the chain's latency, not at the FMA
 * ports' rate. Each lane's steps are the same either way: the same bits. n <= 8, a constant once
 * inlined. */
__attribute__((target("avx2,fma"), always_inline)) static inline void af_exp8xn_avx2(int n, __m256 *x) {
    __m256 live[8], nf[8], r[8], p[8];
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) {
        live[i] = _mm256_cmp_ps(x[i], _mm256_set1_ps(-104.0f), _CMP_NLT_UQ); /* x >= -104 or NaN */
        x[i] = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x[i])); /* NaN passes */
    }
#pragma GCC unroll 8
    for (int i = 0; i < n; i++)
        nf[i] = _mm256_round_ps(_mm256_mul_ps(x[i], _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) r[i] = _mm256_fnmadd_ps(nf[i], _mm256_set1_ps(0.693359375f), x[i]);
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) r[i] = _mm256_fnmadd_ps(nf[i], _mm256_set1_ps(-2.12194440e-4f), r[i]);
#pragma GCC unroll 8
    for (int i = 0; i < n; i++)
        p[i] = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r[i], _mm256_set1_ps(1.3981999507e-3f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(8.3334519073e-3f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(4.1665795894e-2f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(1.6666665459e-1f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(5.0000001201e-1f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) /* y = e^r */
        p[i] = _mm256_add_ps(_mm256_fmadd_ps(p[i], _mm256_mul_ps(r[i], r[i]), r[i]), _mm256_set1_ps(1.0f));
#pragma GCC unroll 8
    for (int i = 0; i < n; i++) {
        const __m256i e = _mm256_cvtps_epi32(nf[i]), e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
        const __m256i bias = _mm256_set1_epi32(127);
        const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
        const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
        x[i] = _mm256_and_ps(live[i], _mm256_mul_ps(_mm256_mul_ps(p[i], s1), s2));
    }
}

__attribute__((target("avx2,fma"))) static inline __m256 af_exp8_avx2(__m256 x) {
    af_exp8xn_avx2(1, &x);
    return x;
}
#endif

#endif
