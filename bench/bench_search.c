/* bench_search: the scan + top-k of `vlm search` (vlm_knn_search) on random
 * L2-normalized embeddings, a text query against N stored E-d vectors.
 *
 * Usage: bench_search [--n N] [--dim E] [--k K] [--rounds R]
 *   defaults: 1,000,000 x 512, k = 10, 7 rounds; threads from VLM_THREADS / OpenMP.
 * Prints every round and the median in ms, and the same scan by a plain
 * one-thread loop + full sort-free selection as the baseline it is measured
 * against (same machine, same run). Also checks that both give the same top-k.
 * Timings are printed, never checked: this is not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contrastive/contrastive.h"
#include "core/core.h"

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
  long long N = 1000000, E = 512, K = 10, R = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    long long v = atoll(argv[i + 1]);
    if (!strcmp(argv[i], "--n")) N = v;
    else if (!strcmp(argv[i], "--dim")) E = v;
    else if (!strcmp(argv[i], "--k")) K = v;
    else if (!strcmp(argv[i], "--rounds")) R = v;
    else { fprintf(stderr, "usage: bench_search [--n N] [--dim E] [--k K] [--rounds R]\n"); return 2; }
  }
  if (N < 1 || E < 1 || K < 1 || R < 1 || R > 100) { fprintf(stderr, "bench_search: bad sizes\n"); return 2; }
  int threads = vlm_threads_init(0);
  size_t n = (size_t)N * (size_t)E;
  float *db = malloc(n * sizeof(float)), *q = malloc((size_t)E * sizeof(float));
  float *sc = malloc((size_t)K * sizeof(float)), *sc2 = malloc((size_t)K * sizeof(float));
  float *all = malloc((size_t)N * sizeof(float));
  int64_t *ix = malloc((size_t)K * sizeof(int64_t)), *ix2 = malloc((size_t)K * sizeof(int64_t));
  if (!db || !q || !sc || !sc2 || !ix || !ix2 || !all) { fprintf(stderr, "bench_search: out of memory\n"); return 1; }
  double t0 = vlm_now();
#pragma omp parallel for schedule(static)
  for (long long r = 0; r < N; r++) {
    vlm_rng g;
    vlm_rng_seed_stream(&g, 1, (uint64_t)r);
    float *x = db + (size_t)r * E;
    double s = 0;
    for (long long d = 0; d < E; d++) { x[d] = (float)vlm_rng_uniform(&g) - 0.5f; s += (double)x[d] * x[d]; }
    float inv = (float)(1.0 / sqrt(s));
    for (long long d = 0; d < E; d++) x[d] *= inv;
  }
  printf("bench_search: %lld x %lld F32 (%.2f GB), k=%lld, %d threads; generated in %.1f s\n", N, E,
         n * 4.0 / 1e9, K, threads, vlm_now() - t0);
  double *t = malloc((size_t)R * sizeof(double)), *tb = malloc((size_t)R * sizeof(double));
  int same = 1;
  for (long long r = 0; r < R; r++) {
    vlm_rng g;
    vlm_rng_seed_stream(&g, 2, (uint64_t)r);
    vlm_rng_fill_normal(&g, q, (size_t)E, 0, 1);
    double s = 0;
    for (long long d = 0; d < E; d++) s += (double)q[d] * q[d];
    for (long long d = 0; d < E; d++) q[d] /= (float)sqrt(s);
    double a = vlm_now();
    int k = vlm_knn_search(db, N, E, q, (int)K, ix, sc);
    t[r] = (vlm_now() - a) * 1e3;
    /* baseline: one thread, plain dot products into an array, then vlm_topk */
    a = vlm_now();
    for (long long i = 0; i < N; i++) {
      const float *x = db + (size_t)i * E;
      float acc = 0;
      for (long long d = 0; d < E; d++) acc += x[d] * q[d];
      all[i] = acc;
    }
    int k2 = vlm_topk(all, N, (int)K, ix2, sc2);
    tb[r] = (vlm_now() - a) * 1e3;
    if (k != k2) same = 0;
    for (int j = 0; j < k && j < k2; j++)
      if (ix[j] != ix2[j] && fabsf(sc[j] - sc2[j]) > 1e-5f) same = 0;
    printf("  round %lld: vlm_knn_search %.1f ms, plain loop %.1f ms (best score %.4f)\n", r, t[r], tb[r], sc[0]);
  }
  double m = median(t, (int)R), mb = median(tb, (int)R);
  printf("median scan + top-%lld over %lld x %lld: %.1f ms (%.1f GB/s); plain one-thread loop %.1f ms; "
         "ratio %.2fx; top-k %s\n",
         K, N, E, m, n * 4.0 / 1e6 / m, mb, mb / m, same ? "identical" : "DIFFERS");
  free(db); free(q); free(sc); free(sc2); free(all); free(ix); free(ix2); free(t); free(tb);
  return same ? 0 : 1;
}
