/* Exact inner-product nearest neighbours over a row-major embedding matrix:
 * each thread scans a contiguous range of rows in blocks (dot products into a
 * small buffer, vectorized over E, four rows at a time), keeps its best k in a min-heap, and the
 * per-thread heaps are merged. Memory-bound: one pass over db. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "contrastive/contrastive.h"

typedef struct { float v; int64_t i; } item;

/* a ranks before b (larger score, then lower index; NaN last). */
static int better(const item *a, const item *b) {
  if (isnan(b->v)) return !isnan(a->v) || a->i < b->i;
  if (isnan(a->v)) return 0;
  return a->v > b->v || (a->v == b->v && a->i < b->i);
}

/* Min-heap on "better": h[0] is the worst kept item. */
static void sift_down(item *h, int n, int j) {
  for (;;) {
    int l = 2 * j + 1, r = l + 1, w = j;
    if (l < n && better(&h[w], &h[l])) w = l;
    if (r < n && better(&h[w], &h[r])) w = r;
    if (w == j) return;
    item t = h[j]; h[j] = h[w]; h[w] = t;
    j = w;
  }
}

static void heap_push(item *h, int *n, int k, item x) {
  if (*n < k) {
    int j = (*n)++;
    h[j] = x;
    while (j > 0) {
      int p = (j - 1) / 2;
      if (!better(&h[p], &h[j])) break;
      item t = h[p]; h[p] = h[j]; h[j] = t;
      j = p;
    }
  } else if (better(&x, &h[0])) {
    h[0] = x;
    sift_down(h, k, 0);
  }
}

static int cmp_item(const void *a, const void *b) {
  const item *x = a, *y = b;
  return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

#define KNN_BLOCK 256

int vlm_knn_search(const float *db, int64_t N, int64_t E, const float *q, int k, int64_t *idx, float *scores) {
  if (k > N) k = (int)N;
  if (k <= 0) return 0;
  int nt = omp_get_max_threads();
  if (N < 4096) nt = 1;
  item *heaps = malloc((size_t)nt * (size_t)k * sizeof(item));
  int *counts = calloc((size_t)nt, sizeof(int));
  VLM_CHECK(heaps && counts, "knn: out of memory for %d heaps of %d", nt, k);
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t lo = N * t / T, hi = N * (t + 1) / T;
    item *h = heaps + (size_t)t * k;
    int n = 0;
    float buf[KNN_BLOCK];
    for (int64_t b = lo; b < hi; b += KNN_BLOCK) {
      int nb = (int)(hi - b < KNN_BLOCK ? hi - b : KNN_BLOCK);
      int r = 0;
      for (; r + 4 <= nb; r += 4) {   /* 4 rows at a time: 4 independent sums, q loaded once */
        const float *r0 = db + (size_t)(b + r) * (size_t)E, *r1 = r0 + E, *r2 = r1 + E, *r3 = r2 + E;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t d = 0; d < E; d++) {
          float x = q[d];
          s0 += r0[d] * x;
          s1 += r1[d] * x;
          s2 += r2[d] * x;
          s3 += r3[d] * x;
        }
        buf[r] = s0;
        buf[r + 1] = s1;
        buf[r + 2] = s2;
        buf[r + 3] = s3;
      }
      for (; r < nb; r++) {
        const float *row = db + (size_t)(b + r) * (size_t)E;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < E; d++) s += row[d] * q[d];
        buf[r] = s;
      }
      /* Only scores that beat the current worst reach the heap. */
      float thr = n == k ? h[0].v : -INFINITY;
      for (int r = 0; r < nb; r++) {
        if (n == k && !(buf[r] >= thr) && !isnan(thr)) continue;
        heap_push(h, &n, k, (item){buf[r], b + r});
        if (n == k) thr = h[0].v;
      }
    }
    counts[t] = n;
  }
  /* Merge: at most nt*k candidates. */
  int total = 0;
  for (int t = 0; t < nt; t++) {
    if (total != t * k) memmove(heaps + total, heaps + (size_t)t * k, (size_t)counts[t] * sizeof(item));
    total += counts[t];
  }
  qsort(heaps, (size_t)total, sizeof(item), cmp_item);
  if (k > total) k = total;
  for (int j = 0; j < k; j++) {
    idx[j] = heaps[j].i;
    if (scores) scores[j] = heaps[j].v;
  }
  free(heaps);
  free(counts);
  return k;
}
