/* Fast activations: OpenMP over the elements, vectorized through glibc's
 * libmvec (erfcf/expf have SIMD variants since glibc 2.35; math.h only declares
 * them under -ffast-math, so they are declared `omp declare simd` here).
 * The forward computes 1 + erf(z) as erfc(-z): no cancellation for x << 0, so
 * GELU keeps its relative accuracy in the negative tail. The backward's
 * Phi(x) term only needs absolute accuracy there and uses the cheaper erff.
 * Exact aliasing out == x is fine: each element is read before it is written. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/cpu/cpu.h"

#define ACT_PAR_MIN 16384 /* elements */

static const float k_rsqrt2 = 0.70710678118654752f;
static const float k_rsqrt_2pi = 0.39894228040143268f;
static const float k_quick = 1.702f;

/* Round to nearest even as vlm_f32_to_bf16 (NaN stays NaN), vectorizable. */
#pragma omp declare simd
static inline uint16_t to_bf16(float y) {
  uint32_t u;
  memcpy(&u, &y, 4);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

void vlm_cpu_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) {
  const int64_t n = vlm_numel(x);
  const float *X = x->data;
  float *Y = out->data;
  if (out->dtype == VLM_BF16) {
    uint16_t *restrict Yh = out->data;
    if (act == VLM_ACT_GELU) {
#pragma omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)
      for (int64_t i = 0; i < n; i++) {
        float v = X[i];
        Yh[i] = to_bf16(0.5f * v * erfcf(-v * k_rsqrt2));
      }
    } else {
#pragma omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)
      for (int64_t i = 0; i < n; i++) {
        float v = X[i];
        Yh[i] = to_bf16(v / (1.0f + expf(-k_quick * v)));
      }
    }
    return;
  }
  if (act == VLM_ACT_GELU) {
#pragma omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float v = X[i];
      Y[i] = 0.5f * v * erfcf(-v * k_rsqrt2);
    }
  } else {
#pragma omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float v = X[i];
      Y[i] = v / (1.0f + expf(-k_quick * v));
    }
  }
}

/* dx += dout * act'(x), or dx = when set (dx's old contents never read). */
#define ACT_BACKWARD_LOOP(OP)                                                                     \
  do {                                                                                            \
    if (act == VLM_ACT_GELU) {                                                                    \
      _Pragma("omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)")            \
      for (int64_t i = 0; i < n; i++) {                                                           \
        float v = X[i];                                                                           \
        float d = 0.5f + 0.5f * erff(v * k_rsqrt2) + v * k_rsqrt_2pi * expf(-0.5f * v * v);       \
        D[i] OP G[i] * d;                                                                         \
      }                                                                                           \
    } else {                                                                                      \
      _Pragma("omp parallel for simd SIMDLEN16 schedule(static) if (n > ACT_PAR_MIN)")            \
      for (int64_t i = 0; i < n; i++) {                                                           \
        float v = X[i];                                                                           \
        float s = 1.0f / (1.0f + expf(-k_quick * v));                                             \
        D[i] OP G[i] * (s + k_quick * v * s * (1.0f - s));                                        \
      }                                                                                           \
    }                                                                                             \
  } while (0)

static void act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x, int set) {
  const int64_t n = vlm_numel(x);
  const float *restrict X = x->data;
  const float *restrict G = dout->data;
  float *restrict D = dx->data;
  if (set) ACT_BACKWARD_LOOP(=);
  else ACT_BACKWARD_LOOP(+=);
}

void vlm_cpu_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  act_backward(act, dx, dout, x, 0);
}

void vlm_cpu_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  act_backward(act, dx, dout, x, 1);
}
