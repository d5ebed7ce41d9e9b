/* The MLM/LM head's softmax cross-entropy on bf16 or fp32 logits in one pass per row, for
 * runtime/head_kernel.py (built by runtime/c_kernels.py with the C compiler, loaded with ctypes; no
 * torch headers).
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
 * exp is runtime/simd.h's (Cephes expf), LANES floats at once: 16 with AVX-512, 8 with AVX2
 * (runtime/c_kernels.py picks the flags from torch's CPU capability). Arguments below -87 give 0,
 * as exp's true value is below fp32's normal range.
 * NaN or +inf logits give a NaN loss, so the trainer's non-finite check still stops the run.
 * Rows are independent: head_kernel.py hands row ranges to threads (runtime/c_kernels.py
 * run_rows), each with its own buf and colsum, and sums the colsums in a fixed order
 * (deterministic for a given thread count).
 */
#include "simd.h"

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
