/* Reference multi-head scaled dot-product attention: plain loops in double.
 *
 * For batch b and head h (columns [h*D, (h+1)*D) of q, k, v):
 *   S[i][j] = scale * q_i . k_j                   over the keys query i may see
 *   P[i]    = softmax(S[i]) over those keys; 0 on every other key
 *   O[i]    = sum_j P[i][j] v_j
 * A query that sees no key gets P = 0 and O = 0.
 * Backward (the saved P encodes the mask and causality):
 *   dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(dP * P));
 *   dQ = scale * dS K;  dK = scale * dS^T Q.
 * The dispatcher (core/attention.c) has checked shapes, dtypes and strides. */
#include "core/ref/ref.h"

#include <math.h>
#include <stdlib.h>

/* Row i of head h of a 3-d view whose last dim is contiguous. */
static float *row_at(const vlm_tensor *t, int64_t b, int64_t i, int64_t h, int64_t D) {
  return (float *)t->data + b * t->stride[0] + i * t->stride[1] + h * D;
}

static void *ref_alloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  VLM_CHECK(p, "attention (ref): out of memory");
  return p;
}

void vlm_ref_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                               const vlm_tensor *k, const vlm_tensor *v, int heads,
                               const vlm_tensor *key_padding_mask, int causal, float scale) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1];
  const int64_t H = heads, D = q->shape[2] / heads;
  const uint8_t *mask = key_padding_mask ? (const uint8_t *)key_padding_mask->data : NULL;
  double *s = ref_alloc((size_t)Lk, sizeof(double));
  double *p = ref_alloc((size_t)Lk, sizeof(double));

  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < Lq; i++) {
        const float *qi = row_at(q, b, i, h, D);
        /* Scores over the visible keys, and their maximum. */
        double m = -INFINITY;
        for (int64_t j = 0; j < Lk; j++) {
          int visible = !(causal && j > i) && !(mask && mask[b * Lk + j]);
          if (!visible) { s[j] = -INFINITY; continue; }
          const float *kj = row_at(k, b, j, h, D);
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)qi[d] * kj[d];
          s[j] = scale * dot;
          if (s[j] > m) m = s[j];
        }
        /* Softmax; masked keys get exactly 0; no visible key: all 0. */
        double sum = 0;
        for (int64_t j = 0; j < Lk; j++) {
          p[j] = (m == -INFINITY || s[j] == -INFINITY) ? 0.0 : exp(s[j] - m);
          sum += p[j];
        }
        for (int64_t j = 0; j < Lk; j++) {
          if (sum > 0) p[j] /= sum;
          if (probs) ((float *)probs->data)[((b * H + h) * Lq + i) * Lk + j] = (float)p[j];
        }
        /* O[i] = sum_j P[i][j] v_j */
        float *oi = (float *)out->data + (b * Lq + i) * (H * D) + h * D;
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t j = 0; j < Lk; j++)
            if (p[j] != 0) acc += p[j] * row_at(v, b, j, h, D)[d];
          oi[d] = (float)acc;
        }
      }
  free(s);
  free(p);
}

void vlm_ref_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, float scale) {
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1];
  const int64_t H = heads, D = q->shape[2] / heads;
  double *dS = ref_alloc((size_t)(Lq * Lk), sizeof(double));

  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const float *P = (const float *)probs->data + (b * H + h) * Lq * Lk;
#define DO(i) row_at(dout, b, i, h, D)
      /* dV[j] += sum_i P[i][j] dO[i] */
      if (dv)
        for (int64_t j = 0; j < Lk; j++) {
          float *dvj = row_at(dv, b, j, h, D);
          for (int64_t d = 0; d < D; d++) {
            double acc = 0;
            for (int64_t i = 0; i < Lq; i++) acc += (double)P[i * Lk + j] * DO(i)[d];
            dvj[d] = (float)(dvj[d] + acc);
          }
        }
      /* dP[i][j] = dO[i] . v_j;  dS[i][j] = P[i][j] (dP[i][j] - sum_j' dP[i][j'] P[i][j']) */
      for (int64_t i = 0; i < Lq; i++) {
        double rowdot = 0;
        for (int64_t j = 0; j < Lk; j++) {
          const float *vj = row_at(v, b, j, h, D);
          double dp = 0;
          for (int64_t d = 0; d < D; d++) dp += (double)DO(i)[d] * vj[d];
          dS[i * Lk + j] = dp;
          rowdot += dp * P[i * Lk + j];
        }
        for (int64_t j = 0; j < Lk; j++) dS[i * Lk + j] = P[i * Lk + j] * (dS[i * Lk + j] - rowdot);
      }
#undef DO
      /* dQ[i] += scale * sum_j dS[i][j] k_j */
      if (dq)
        for (int64_t i = 0; i < Lq; i++) {
          float *dqi = row_at(dq, b, i, h, D);
          for (int64_t d = 0; d < D; d++) {
            double acc = 0;
            for (int64_t j = 0; j < Lk; j++) acc += dS[i * Lk + j] * row_at(k, b, j, h, D)[d];
            dqi[d] = (float)(dqi[d] + scale * acc);
          }
        }
      /* dK[j] += scale * sum_i dS[i][j] q_i */
      if (dk)
        for (int64_t j = 0; j < Lk; j++) {
          float *dkj = row_at(dk, b, j, h, D);
          for (int64_t d = 0; d < D; d++) {
            double acc = 0;
            for (int64_t i = 0; i < Lq; i++) acc += dS[i * Lk + j] * row_at(q, b, i, h, D)[d];
            dkj[d] = (float)(dkj[d] + scale * acc);
          }
        }
    }
  free(dS);
}
