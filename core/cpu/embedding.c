/* Fast embedding.
 * Forward: OpenMP over tokens; each output row is table row (+ pos row).
 * Backward: each thread owns a contiguous range of the W columns (aligned to
 * 16 floats, a cache line) and walks all tokens in order, so every dtable/dpos
 * element is accumulated in the same order as the reference, whatever the
 * thread count: deterministic, race-free, no atomics. */
#include <omp.h>

#include "core/cpu/cpu.h"
#include "core/ref/ref.h"

#define EMB_PAR_MIN 32768 /* elements of out / dout */

/* Ids are validated serially up front (B*L reads: cheap next to B*L*W). */
static void check_ids(const vlm_tensor *ids, int64_t V) {
  const int64_t n = vlm_numel(ids), L = ids->shape[1];
  for (int64_t t = 0; t < n; t++) {
    int64_t id = vlm_ref_id_at(ids, t);
    VLM_CHECK(id >= 0 && id < V, "embedding: id %lld (ids[%lld, %lld]) is outside the vocabulary of size %lld",
              (long long)id, (long long)(t / L), (long long)(t % L), (long long)V);
  }
}

static inline int64_t id_at(const void *ids, int is64, int64_t t) {
  return is64 ? ((const int64_t *)ids)[t] : (int64_t)((const int32_t *)ids)[t];
}

void vlm_cpu_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                               const vlm_tensor *pos) {
  const int64_t L = ids->shape[1], N = vlm_numel(ids), V = table->shape[0], W = table->shape[1];
  check_ids(ids, V);
  const void *I = ids->data;
  const int is64 = ids->dtype == VLM_I64;
  const float *restrict T = table->data;
  const float *restrict P = pos ? pos->data : NULL;
  float *restrict O = out->data;
#pragma omp parallel for schedule(static) if (N * W > EMB_PAR_MIN)
  for (int64_t t = 0; t < N; t++) {
    const float *restrict tr = T + id_at(I, is64, t) * W;
    float *restrict orow = O + t * W;
    if (P) {
      const float *restrict pr = P + (t % L) * W;
#pragma omp simd
      for (int64_t c = 0; c < W; c++) orow[c] = tr[c] + pr[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < W; c++) orow[c] = tr[c];
    }
  }
}

void vlm_cpu_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                const vlm_tensor *ids) {
  const int64_t L = ids->shape[1], N = vlm_numel(ids), W = dout->shape[2];
  if (dtable) check_ids(ids, dtable->shape[0]);
  const void *I = ids->data;
  const int is64 = ids->dtype == VLM_I64;
  const float *restrict G = dout->data;
  float *restrict DT = dtable ? dtable->data : NULL;
  float *restrict DP = dpos ? dpos->data : NULL;
#pragma omp parallel if (N * W > EMB_PAR_MIN)
  {
    const int th = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (W + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16;
    int64_t c0 = (int64_t)th * chunk, c1 = c0 + chunk;
    if (c0 > W) c0 = W;
    if (c1 > W) c1 = W;
    if (c0 < c1) {
      for (int64_t t = 0; t < N; t++) {
        const float *restrict gr = G + t * W;
        if (DT) {
          float *restrict dr = DT + id_at(I, is64, t) * W;
#pragma omp simd
          for (int64_t c = c0; c < c1; c++) dr[c] += gr[c];
        }
        if (DP) {
          float *restrict pr = DP + (t % L) * W;
#pragma omp simd
          for (int64_t c = c0; c < c1; c++) pr[c] += gr[c];
        }
      }
    }
  }
}
