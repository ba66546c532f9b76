/* Fast LayerNorm: OpenMP over rows (static schedule), vectorized row loops.
 * The row statistics use two passes over the row (it sits in L1), so a large
 * common offset in x does not hurt the variance. Backward accumulates dw/db
 * into per-thread partial rows that are summed in thread order afterwards:
 * deterministic for a fixed thread count, no atomics. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"

#define LN_PAR_MIN 32768 /* elements: below this a single thread is faster */

void vlm_cpu_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                               const vlm_tensor *w, const vlm_tensor *b, float eps) {
  const int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *restrict X = x->data;
  const float *restrict W = w->data;
  const float *restrict B = b->data;
  float *restrict Y = out->dtype == VLM_F32 ? out->data : NULL;  /* else BF16 (inference) */
  uint16_t *restrict Yh = out->dtype == VLM_BF16 ? out->data : NULL;
  float *restrict M = mean ? mean->data : NULL;
  float *restrict S = rstd ? rstd->data : NULL;
  const double inv_c = C ? 1.0 / (double)C : 0.0;
#pragma omp parallel for schedule(static) if (R * C > LN_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *restrict xr = X + r * C;
    /* Double accumulators: a mean far from zero (x ~ 100) still comes out
     * exact to float rounding, which the saved mean needs for backward. */
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) s += xr[c];
    const float m = (float)(s * inv_c);
    double v = 0.0;
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < C; c++) {
      float d = xr[c] - m;
      v += d * d;
    }
    const float rs = (float)(1.0 / sqrt(v * inv_c + eps));
    if (Y) {
      float *restrict yr = Y + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * W[c] + B[c];
    } else {
      /* Round to nearest even as vlm_f32_to_bf16 (LayerNorm outputs are finite). */
      uint16_t *restrict yr = Yh + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        float y = (xr[c] - m) * rs * W[c] + B[c];
        uint32_t u;
        memcpy(&u, &y, 4);
        yr[c] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
      }
    }
    if (M) M[r] = m;
    if (S) S[r] = rs;
  }
}

void vlm_cpu_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                const vlm_tensor *rstd) {
  const int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *restrict X = x->data;
  const float *restrict W = w->data;
  const float *restrict G = dout->data;
  const float *restrict M = mean->data;
  const float *restrict S = rstd->data;
  float *restrict DX = dx ? dx->data : NULL;
  const int want_params = dw != NULL || db != NULL;
  const int par = R * C > LN_PAR_MIN;
  const int nt = par ? omp_get_max_threads() : 1;
  /* Per-thread partials: [nt][2][C] (dw then db). */
  float *part = NULL;
  if (want_params) {
    size_t bytes = (size_t)nt * 2 * (size_t)(C > 0 ? C : 1) * sizeof(float);
    part = vlm_scratch(0, bytes);
    memset(part, 0, bytes);
  }
  const float inv_c = C ? 1.0f / (float)C : 0.0f;
#pragma omp parallel num_threads(nt) if (par)
  {
    float *restrict pw = part ? part + (size_t)omp_get_thread_num() * 2 * (size_t)C : NULL;
    float *restrict pb = pw ? pw + C : NULL;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float *restrict xr = X + r * C;
      const float *restrict gr = G + r * C;
      const float m = M[r], rs = S[r];
      /* Pass 1: the two row sums dx needs (float accumulators: each SIMD lane
       * sums C/8 terms, far inside the 1e-5 budget) and this thread's dw/db
       * partials, in one sweep over the row. */
      float sum_g = 0.0f, sum_gx = 0.0f;
      if (pw) {
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int64_t c = 0; c < C; c++) {
          float xhat = (xr[c] - m) * rs;
          float g = gr[c] * W[c];
          sum_g += g;
          sum_gx += g * xhat;
          pw[c] += gr[c] * xhat;
          pb[c] += gr[c];
        }
      } else if (DX) {
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int64_t c = 0; c < C; c++) {
          float g = gr[c] * W[c];
          sum_g += g;
          sum_gx += g * ((xr[c] - m) * rs);
        }
      }
      /* Pass 2: dx += rstd * (g - mean(g) - xhat * mean(g * xhat)). */
      if (DX) {
        const float mg = sum_g * inv_c, mgx = sum_gx * inv_c;
        float *restrict d = DX + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) d[c] += rs * (gr[c] * W[c] - mg - ((xr[c] - m) * rs) * mgx);
      }
    }
  }
  if (want_params) {
    float *restrict DW = dw ? dw->data : NULL;
    float *restrict DB = db ? db->data : NULL;
    for (int64_t c = 0; c < C; c++) {
      float sw = 0.0f, sb = 0.0f;
      for (int t = 0; t < nt; t++) {
        sw += part[(size_t)t * 2 * (size_t)C + (size_t)c];
        sb += part[(size_t)t * 2 * (size_t)C + (size_t)C + (size_t)c];
      }
      if (DW) DW[c] += sw;
      if (DB) DB[c] += sb;
    }
  }
}
