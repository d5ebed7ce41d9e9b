/* Vector helpers shared by the runtime's C kernels (runtime/head_ce.c, runtime/row_softmax.c),
 * built by runtime/c_kernels.py with -DLANES=16 (AVX-512) or -DLANES=8 (AVX2).
 *
 * GCC/Clang vector extensions, no intrinsics: LANES floats go through each operation at once.
 * exp is Cephes expf's (range reduction by ln 2 split in two, a degree-5 polynomial; within a few
 * fp32 ulps of libm). bf16 is read by a shift into fp32's high half and written rounded to
 * nearest even, NaN kept NaN (as torch does). Lane reductions are trees of log2(LANES) shuffles:
 * a row's maximum and sum cost 4 dependent steps at 16 lanes, not 15 (for short rows, such as an
 * attention's 84 keys, they were a large share of the row's time).
 */
#ifndef GROWLANG_SIMD_H
#define GROWLANG_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef LANES
#error "build with -DLANES=16 (AVX-512) or -DLANES=8 (AVX2): runtime/c_kernels.py"
#endif

typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef uint32_t vu __attribute__((vector_size(LANES * 4)));
typedef uint16_t vh __attribute__((vector_size(LANES * 2)));

#define BF16_NEG_INF 0xff80u

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) { /* round to nearest even, NaN kept NaN (as torch) */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline vf load_bf16(const uint16_t *p) {
    vh h;
    memcpy(&h, p, sizeof h);
    vu u = __builtin_convertvector(h, vu) << 16;
    vf f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline vf vmax(vf a, vf b) { /* lane-wise a > b ? a : b (a NaN lane gives b) */
    vi take_a = a > b;
    return (vf)(((vi)a & take_a) | ((vi)b & ~take_a));
}

static inline vf vexp(vf x) { /* exp(x) for x <= 0; 0 below -87; NaN stays NaN */
    vf lo = (vf){0} - 87.0f;
    vf c = vmax(x, lo);
    vf n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
    vf r = c - n * 0.693359375f + n * 2.12194440e-4f;                /* x - n ln 2, ln 2 in two parts */
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vf y = p * r * r + r + 1.0f;
    vi two_n = (__builtin_convertvector(n, vi) + 127) << 23; /* 2^n as fp32 bits */
    vf e = y * (vf)two_n;
    vi underflow = x < lo;
    vi nan = x != x;
    return (vf)(((vi)e & ~(underflow | nan)) | ((vi)x & nan));
}

static inline vu round_to_bf16_bits(vf f) { /* float_to_bf16, lane-wise, left in the high half */
    vu u = (vu)f;
    vu nan = (u & 0x7fffffffu) > 0x7f800000u;
    vu rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    vu quiet = (u | 0x400000u) & 0xffff0000u;
    return (rounded & ~nan) | (quiet & nan);
}

static inline vf load_f32(const float *p) {
    vf f;
    memcpy(&f, p, sizeof f);
    return f;
}

#if LANES == 16
#define SWAP8(a) __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)
#define SWAP4(a) __builtin_shufflevector(a, a, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11)
#define SWAP2(a) __builtin_shufflevector(a, a, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)
#define SWAP1(a) __builtin_shufflevector(a, a, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)
#define LANE_TREE(a, op) (a = op(a, SWAP8(a)), a = op(a, SWAP4(a)), a = op(a, SWAP2(a)), a = op(a, SWAP1(a)), a[0])
#elif LANES == 8
#define SWAP4(a) __builtin_shufflevector(a, a, 4, 5, 6, 7, 0, 1, 2, 3)
#define SWAP2(a) __builtin_shufflevector(a, a, 2, 3, 0, 1, 6, 7, 4, 5)
#define SWAP1(a) __builtin_shufflevector(a, a, 1, 0, 3, 2, 5, 4, 7, 6)
#define LANE_TREE(a, op) (a = op(a, SWAP4(a)), a = op(a, SWAP2(a)), a = op(a, SWAP1(a)), a[0])
#endif

static inline vf vadd(vf a, vf b) { return a + b; }

static inline float lanes_max(vf a) { return LANE_TREE(a, vmax); } /* NaN lanes may or may not win */

static inline float lanes_sum(vf a) { return LANE_TREE(a, vadd); }

static inline vi lane_index(void) { /* {0, 1, ..., LANES - 1} */
    vi i;
    for (int l = 0; l < LANES; l++) i[l] = l;
    return i;
}

#endif
