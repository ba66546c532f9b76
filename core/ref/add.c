/* Reference broadcast add: a viewed as [R, nb] with nb = numel(b):
 *   out[r, j] = a[r, j] + b[j];  da += dout;  db[j] += sum_r dout[r, j]. */
#include <stdlib.h>

#include "core/ref/ref.h"

void vlm_ref_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  int64_t n = vlm_numel(a), nb = vlm_numel(b);
  const float *A = a->data, *B = b->data;
  float *O = out->data;
  if (nb == 0) return;
  for (int64_t i = 0; i < n; i++) O[i] = A[i] + B[i % nb];
}

void vlm_ref_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  int64_t n = vlm_numel(dout);
  const float *G = dout->data;
  if (da) {
    float *D = da->data;
    for (int64_t i = 0; i < n; i++) D[i] += G[i];
  }
  if (db) {
    int64_t nb = vlm_numel(db);
    if (nb == 0) return;
    float *D = db->data;
    for (int64_t j = 0; j < nb; j++) {
      double s = 0;
      for (int64_t r = 0; r < n / nb; r++) s += G[r * nb + j];
      D[j] += (float)s;
    }
  }
}
