/* Fast broadcast add. Forward: OpenMP over rows of a viewed as [R, nb].
 * Backward db: each thread owns a contiguous range of b's elements and sums
 * its columns over all rows in row order (double accumulators), so the result
 * does not depend on the thread count and needs no atomics. */
#include <omp.h>

#include "core/cpu/cpu.h"

#define ADD_PAR_MIN 32768 /* elements */
#define ADD_BLOCK 256     /* columns summed at once in db (double accumulators on the stack) */

void vlm_cpu_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  const int64_t n = vlm_numel(a), nb = vlm_numel(b);
  if (nb == 0 || n == 0) return;
  const int64_t R = n / nb;
  const float *A = a->data; /* out may alias a: no restrict, but exact aliasing is safe */
  const float *B = b->data;
  float *O = out->data;
  if (R == 1) {
#pragma omp parallel for simd schedule(static) if (n > ADD_PAR_MIN)
    for (int64_t i = 0; i < n; i++) O[i] = A[i] + B[i];
    return;
  }
#pragma omp parallel for schedule(static) if (n > ADD_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *ar = A + r * nb;
    float *orow = O + r * nb;
#pragma omp simd
    for (int64_t j = 0; j < nb; j++) orow[j] = ar[j] + B[j];
  }
}

void vlm_cpu_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  const int64_t n = vlm_numel(dout);
  const float *restrict G = dout->data;
  if (da) {
    float *restrict D = da->data;
#pragma omp parallel for simd schedule(static) if (n > ADD_PAR_MIN)
    for (int64_t i = 0; i < n; i++) D[i] += G[i];
  }
  if (!db) return;
  const int64_t nb = vlm_numel(db);
  if (nb == 0 || n == 0) return;
  const int64_t R = n / nb;
  float *restrict DB = db->data;
  if (R == 1) {
#pragma omp parallel for simd schedule(static) if (n > ADD_PAR_MIN)
    for (int64_t j = 0; j < nb; j++) DB[j] += G[j];
    return;
  }
#pragma omp parallel if (n > ADD_PAR_MIN)
  {
    /* Split [0, nb) into per-thread ranges aligned to 16 floats (a cache line). */
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (nb + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16;
    int64_t j0 = (int64_t)t * chunk, j1 = j0 + chunk;
    if (j0 > nb) j0 = nb;
    if (j1 > nb) j1 = nb;
    for (int64_t jb = j0; jb < j1; jb += ADD_BLOCK) {
      const int64_t len = j1 - jb < ADD_BLOCK ? j1 - jb : ADD_BLOCK;
      double acc[ADD_BLOCK];
      for (int64_t j = 0; j < len; j++) acc[j] = 0.0;
      for (int64_t r = 0; r < R; r++) {
        const float *restrict gr = G + r * nb + jb;
#pragma omp simd
        for (int64_t j = 0; j < len; j++) acc[j] += gr[j];
      }
      for (int64_t j = 0; j < len; j++) DB[jb + j] += (float)acc[j];
    }
  }
}
