/* The MLM/LM head's softmax cross-entropy on bf16 or fp32 logits in one pass per row, for
 * runtime/head_kernel.py (built there with the C compiler, loaded with ctypes; no torch headers).
 *
 * Why: on a CPU, torch's path makes the loss and the logits' gradient from two full passes that
 * each evaluate exp on all N x V elements (an fp32 log_softmax for the loss, a softmax in the
 * logits' type for the gradient) and a third for the bias gradient's column sum; the same work
 * in every stage of a grown model, since every stage predicts the same tokens (issue 11). Here each row is read three
 * times from cache and exp is evaluated once per element:
 *
 *   m = max_j z_j;  e_j = exp(z_j - m);  O = sum_{j != t} e_j;  S = O + e_t
 *   loss_i = log1p(O / e_t)                      (= -log_softmax(z)_t = log S - (z_t - m), in fp32)
 *   g_j = e_j / S for j != t,  g_t = -O / S   (softmax - onehot; bf16 logits: rounded once to bf16)
 *   colsum_j += g_j                                (the bias gradient, unscaled, in fp32)
 *
 * O is summed without the target's term so that a confident row (p_t near 1) keeps its small loss
 * and its small p_t - 1 to fp32's relative precision; torch's path subtracts two numbers near 1
 * there (log S - (z_t - m), p_t - 1) and keeps about 1e-7 absolute.
 *
 * exp is Cephes expf's (range reduction by ln 2 split in two, a degree-5 polynomial; within a few
 * fp32 ulps of libm), written with GCC/Clang vector extensions so that LANES floats go through it
 * at once: 16 with AVX-512, 8 with AVX2 (runtime/head_kernel.py picks the flags from torch's CPU
 * capability). Arguments below -87 give 0, as exp's true value is below fp32's normal range.
 * NaN or +inf logits give a NaN loss, so the trainer's non-finite check still stops the run.
 * Rows are independent: head_kernel.py hands row ranges to threads, each with its own buf and
 * colsum, and sums the colsums in a fixed order (deterministic for a given thread count).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef LANES
#error "build with -DLANES=16 (AVX-512) or -DLANES=8 (AVX2): runtime/head_kernel.py"
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

static inline float lanes_max(vf a) {
    float m = a[0];
    for (int l = 1; l < LANES; l++) m = a[l] > m ? a[l] : m;
    return m;
}

static inline float lanes_sum(vf a) {
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += a[l];
    return s;
}

static inline vf load_f32(const float *p) {
    vf f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Rows [r0, r1) of z (N x v, row-major: bf16 where `bf16`, else fp32) with targets t (int64, each
 * in [0, v)): writes g (N x v, z's type), loss (N fp32) and adds the rows' g to colsum (v fp32).
 * buf holds v_pad floats, v_pad = v rounded up to a multiple of LANES. Inlined into the two entry
 * points below with `bf16` a constant, so each is compiled for its type alone. */
static inline __attribute__((always_inline)) void head_ce_rows(
        const void *z, int64_t r0, int64_t r1, int64_t v, const int64_t *t,
        void *g, float *loss, float *colsum, float *buf, const int bf16) {
    const int64_t body = v - v % LANES, v_pad = body + (v % LANES ? LANES : 0);
    uint16_t tail_h[LANES];
    float tail_f[LANES];
    for (int64_t i = r0; i < r1; i++) {
        const uint16_t *row_h = (const uint16_t *)z + i * v;
        const float *row_f = (const float *)z + i * v;
        /* the tail, padded with -inf: it adds nothing to the max or the sum */
        for (int l = 0; l < LANES; l++) {
            if (bf16) tail_h[l] = body + l < v ? row_h[body + l] : BF16_NEG_INF;
            else tail_f[l] = body + l < v ? row_f[body + l] : -INFINITY;
        }
#define LOAD(j) ((j) < body ? (bf16 ? load_bf16(row_h + (j)) : load_f32(row_f + (j))) \
                            : (bf16 ? load_bf16(tail_h) : load_f32(tail_f)))

        vf mx = (vf){0} - INFINITY;
        for (int64_t j = 0; j < v_pad; j += LANES) mx = vmax(LOAD(j), mx);
        const float m = lanes_max(mx);

        /* the sum without the target's term: p_t - 1 = -others / S and -log p_t = log1p(others / e_t)
           keep their precision when p_t is near 1, where S - e_t or log S - (z_t - m) would cancel */
        const int64_t ti = t[i];
        vf sum = {0};
        float e_t = 0.0f;
        for (int64_t j = 0; j < v_pad; j += LANES) {
            vf e = vexp(LOAD(j) - m);
            memcpy(buf + j, &e, sizeof e);
            if (ti >= j && ti < j + LANES) {
                e_t = e[ti - j];
                e[ti - j] = 0.0f;
            }
            sum += e;
        }
#undef LOAD
        const float others = lanes_sum(sum), s = others + e_t, inv = 1.0f / s;
        const float g_t = -others * inv;

        for (int64_t j = 0; j < v_pad; j += LANES) {
            vf e, col, q;
            memcpy(&e, buf + j, sizeof e);
            if (bf16) { /* rounded once to bf16, the value the backward GEMMs read and colsum adds */
                vu bits = round_to_bf16_bits(e * inv);
                if (ti >= j && ti < j + LANES) bits[ti - j] = (uint32_t)float_to_bf16(g_t) << 16;
                memcpy(&q, &bits, sizeof q);
            } else {
                q = e * inv;
                if (ti >= j && ti < j + LANES) q[ti - j] = g_t;
            }
            if (j < body) {
                memcpy(&col, colsum + j, sizeof col);
                col += q;
                memcpy(colsum + j, &col, sizeof col);
                if (bf16) {
                    vh h = __builtin_convertvector((vu)q >> 16, vh);
                    memcpy((uint16_t *)g + i * v + j, &h, sizeof h);
                } else {
                    memcpy((float *)g + i * v + j, &q, sizeof q);
                }
            } else {
                for (int l = 0; body + l < v; l++) {
                    if (bf16) ((uint16_t *)g)[i * v + body + l] = (uint16_t)(((vu)q)[l] >> 16);
                    else ((float *)g)[i * v + body + l] = q[l];
                    colsum[body + l] += q[l];
                }
            }
        }
        /* e_t below fp32's normal range (z_t - m < -87): others / e_t would overflow; there the loss
           is large and m + log S - z_t loses nothing */
        const float z_t = bf16 ? bf16_to_float(row_h[ti]) : row_f[ti];
        loss[i] = e_t > 1e-30f ? log1pf(others / e_t) : m + logf(s) - z_t;
    }
}

void head_ce_bf16(const uint16_t *z, int64_t r0, int64_t r1, int64_t v, const int64_t *t,
                  uint16_t *g, float *loss, float *colsum, float *buf) {
    head_ce_rows(z, r0, r1, v, t, g, loss, colsum, buf, 1);
}

void head_ce_f32(const float *z, int64_t r0, int64_t r1, int64_t v, const int64_t *t,
                 float *g, float *loss, float *colsum, float *buf) {
    head_ce_rows(z, r0, r1, v, t, g, loss, colsum, buf, 0);
}
