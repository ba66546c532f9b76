/* Reference embedding: out[b,l,:] = table[ids[b,l],:] + pos[l,:] (pos optional).
 * Backward: dtable[ids[b,l],:] += dout[b,l,:] and dpos[l,:] += dout[b,l,:],
 * accumulated in float in token order (b, then l): the fast kernel keeps the
 * same order per element, so both give the same bits. */
#include "core/ref/ref.h"

static int64_t checked_id(const vlm_tensor *ids, int64_t t, int64_t V) {
  int64_t id = vlm_ref_id_at(ids, t);
  VLM_CHECK(id >= 0 && id < V, "embedding: id %lld (ids[%lld, %lld]) is outside the vocabulary of size %lld",
            (long long)id, (long long)(t / ids->shape[1]), (long long)(t % ids->shape[1]), (long long)V);
  return id;
}

void vlm_ref_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                               const vlm_tensor *pos) {
  int64_t B = ids->shape[0], L = ids->shape[1], V = table->shape[0], W = table->shape[1];
  const float *T = table->data, *P = pos ? pos->data : NULL;
  float *O = out->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l < L; l++) {
      int64_t t = b * L + l, id = checked_id(ids, t, V);
      for (int64_t c = 0; c < W; c++) O[t * W + c] = T[id * W + c] + (P ? P[l * W + c] : 0.0f);
    }
}

void vlm_ref_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                const vlm_tensor *ids) {
  int64_t B = ids->shape[0], L = ids->shape[1], W = dout->shape[2];
  const float *G = dout->data;
  if (dtable) {
    int64_t V = dtable->shape[0];
    float *DT = dtable->data;
    for (int64_t t = 0; t < B * L; t++) {
      int64_t id = checked_id(ids, t, V);
      for (int64_t c = 0; c < W; c++) DT[id * W + c] += G[t * W + c];
    }
  }
  if (dpos) {
    float *DP = dpos->data;
    for (int64_t b = 0; b < B; b++)
      for (int64_t l = 0; l < L; l++)
        for (int64_t c = 0; c < W; c++) DP[l * W + c] += G[(b * L + l) * W + c];
  }
}
