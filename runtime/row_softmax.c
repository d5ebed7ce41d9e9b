/* softmax over the last dimension of bf16 or fp32 rows, computed in fp32 and rounded once to the
 * rows' type, for runtime/row_softmax.py (the gemm attention's probabilities, runtime/attention_gemm.py).
 *
 * Why: torch's CPU softmax pays a cost per row that is large for short rows in bf16: measured on
 * this project's AMD EPYC (Zen 4, one thread), (32, 2, 84, 84) bf16 took 0.84 ms, 1.85 ns an
 * element, against 0.85 ns at 128 keys (docs/precision.md, "The attention's row softmax"). The
 * quickstart's pooled first stage attends over 84 positions, so that cost fell on the small
 * stage (issue 11). Per row, from cache, exp evaluated once per element:
 *
 *   m = max_j x_j;  e_j = exp(x_j - m);  y_j = e_j * (1 / sum_j e_j)
 *
 * The row's last partial vector is read and written whole when the rows after it in [r0, r1)
 * hold those elements (they are read later, and their outputs written later, by this call), with
 * the lanes past the row end taken as -inf; only a range's last row copies its tail through a
 * padded buffer. exp(-inf - m) is 0, so those lanes add nothing. A row holding NaN, or +inf, or
 * only -inf gives NaN everywhere, as torch's softmax does.
 */
#include "simd.h"

/* Rows [r0, r1) of x (rows of t, row-major, bf16 where `bf16`, else fp32) into y (the same shape
 * and type); buf holds t rounded up to a multiple of LANES floats. */
static inline __attribute__((always_inline)) void softmax_rows(
        const void *x, int64_t r0, int64_t r1, int64_t t, void *y, float *buf, const int bf16) {
    const int64_t body = t - t % LANES, rem = t % LANES, t_pad = body + (rem ? LANES : 0);
    const vi in_row = lane_index() < (int32_t)rem;
    const vf neg_inf = (vf){0} - INFINITY;
    for (int64_t i = r0; i < r1; i++) {
        const uint16_t *xh = (const uint16_t *)x + i * t;
        const float *xf = (const float *)x + i * t;
        const int whole_tail = i * t + body + LANES <= r1 * t; /* past the row end: this range's later rows */
#define LOAD(p) (bf16 ? load_bf16(xh + (p)) : load_f32(xf + (p)))
        vf mx = neg_inf;
        for (int64_t j = 0; j < body; j += LANES) {
            vf v = LOAD(j);
            memcpy(buf + j, &v, sizeof v);
            mx = vmax(v, mx);
        }
        if (rem) {
            vf v;
            if (whole_tail) {
                v = LOAD(body);
            } else {
                uint16_t th[LANES] = {0};
                float tf[LANES] = {0};
                for (int64_t l = 0; l < rem; l++) {
                    if (bf16) th[l] = xh[body + l];
                    else tf[l] = xf[body + l];
                }
                v = bf16 ? load_bf16(th) : load_f32(tf);
            }
            v = (vf)(((vi)v & in_row) | ((vi)neg_inf & ~in_row));
            memcpy(buf + body, &v, sizeof v);
            mx = vmax(v, mx);
        }
#undef LOAD
        const float m = lanes_max(mx);
        vf sum = {0};
        for (int64_t j = 0; j < t_pad; j += LANES) {
            vf e = vexp(load_f32(buf + j) - m);
            memcpy(buf + j, &e, sizeof e);
            sum += e;
        }
        const float inv = 1.0f / lanes_sum(sum);
        uint16_t *yh = (uint16_t *)y + i * t;
        float *yf = (float *)y + i * t;
        for (int64_t j = 0; j < t_pad; j += LANES) {
            const vf q = load_f32(buf + j) * inv;
            const vh h = __builtin_convertvector(round_to_bf16_bits(q) >> 16, vh);
            if (j < body || whole_tail) {
                if (bf16) memcpy(yh + j, &h, sizeof h);
                else memcpy(yf + j, &q, sizeof q);
            } else {
                for (int64_t l = 0; l < rem; l++) {
                    if (bf16) yh[j + l] = h[l];
                    else yf[j + l] = q[l];
                }
            }
        }
    }
}

void softmax_rows_bf16(const uint16_t *x, int64_t r0, int64_t r1, int64_t t, uint16_t *y, float *buf) {
    softmax_rows(x, r0, r1, t, y, buf, 1);
}

void softmax_rows_f32(const float *x, int64_t r0, int64_t r1, int64_t t, float *y, float *buf) {
    softmax_rows(x, r0, r1, t, y, buf, 0);
}
