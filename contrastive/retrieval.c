/* Retrieval metrics (open_clip's get_clip_metrics), with matching keys for grouped
 * captions and the shapes set's caption-equality rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contrastive/contrastive.h"

static float *normalized(const float *x, int64_t n, int64_t E) {
  float *y = malloc((size_t)(n * E) * sizeof(float) + 1);
  if (!y) return NULL;
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t k = 0; k < E; k++) s += (double)x[i * E + k] * x[i * E + k];
    double inv = 1.0 / fmax(sqrt(s), 1e-12);
    for (int64_t k = 0; k < E; k++) y[i * E + k] = (float)(x[i * E + k] * inv);
  }
  return y;
}

static double dot(const float *a, const float *b, int64_t E) {
  double s = 0;
  for (int64_t k = 0; k < E; k++) s += (double)a[k] * b[k];
  return s;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Queries q [nq,E] against candidates c [nc,E]. */
static vlm_status one_dir(const float *q, int64_t nq, const int64_t *qk, const float *c, int64_t nc,
                          const int64_t *ck, int64_t E, vlm_retrieval_dir *out) {
  memset(out, 0, sizeof *out);
  int64_t *ranks = malloc((size_t)(nq > 0 ? nq : 1) * sizeof(int64_t));
  double *score = malloc((size_t)(nc > 0 ? nc : 1) * sizeof(double));
  if (!ranks || !score) {
    free(ranks);
    free(score);
    return vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  }
  int64_t n = 0;
  for (int64_t i = 0; i < nq; i++) {
    int64_t key = qk ? qk[i] : i;
    double best = -INFINITY;
    int any = 0;
    for (int64_t j = 0; j < nc; j++) {
      score[j] = dot(q + i * E, c + j * E, E);
      if ((ck ? ck[j] : j) == key) {
        any = 1;
        if (score[j] > best) best = score[j];
      }
    }
    if (!any) {
      out->skipped++;
      continue;
    }
    int64_t higher = 0;
    for (int64_t j = 0; j < nc; j++)
      if ((ck ? ck[j] : j) != key && score[j] > best) higher++;
    ranks[n++] = higher + 1;
  }
  out->queries = n;
  if (n > 0) {
    double sum = 0;
    int64_t h1 = 0, h5 = 0, h10 = 0;
    for (int64_t i = 0; i < n; i++) {
      sum += (double)ranks[i];
      h1 += ranks[i] <= 1;
      h5 += ranks[i] <= 5;
      h10 += ranks[i] <= 10;
    }
    out->r1 = (double)h1 / n;
    out->r5 = (double)h5 / n;
    out->r10 = (double)h10 / n;
    out->mean_rank = sum / n;
    qsort(ranks, (size_t)n, sizeof ranks[0], cmp_i64);
    /* numpy's median of the 0-based positions, floored, plus one */
    double med = n % 2 ? (double)(ranks[n / 2] - 1) : 0.5 * (double)(ranks[n / 2 - 1] - 1 + ranks[n / 2] - 1);
    out->median_rank = floor(med) + 1;
  }
  free(ranks);
  free(score);
  return VLM_OK;
}

vlm_status vlm_retrieval_compute(const float *img, int64_t N, const int64_t *img_key, const float *txt, int64_t M,
                                 const int64_t *txt_key, int64_t E, vlm_retrieval_metrics *out) {
  memset(out, 0, sizeof *out);
  if ((!img_key || !txt_key) && (img_key || txt_key || N != M))
    return vlm_error(VLM_ERR_ARG, "retrieval: %lld images and %lld texts need matching keys", (long long)N,
                     (long long)M);
  float *a = normalized(img, N, E), *b = normalized(txt, M, E);
  vlm_status s = (a && b) ? VLM_OK : vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  if (s == VLM_OK) s = one_dir(a, N, img_key, b, M, txt_key, E, &out->i2t);
  if (s == VLM_OK) s = one_dir(b, M, txt_key, a, N, img_key, E, &out->t2i);
  free(a);
  free(b);
  return s;
}

vlm_status vlm_retrieval_caption_keys(const int32_t *ids, int64_t n, int64_t L, const int64_t *base, int64_t *key) {
  size_t cap = 16;
  while (cap < (size_t)n * 2 + 1) cap *= 2;
  int64_t *slot = malloc(cap * sizeof *slot);   /* row index + 1, 0 = empty */
  if (!slot) return vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  memset(slot, 0, cap * sizeof *slot);
  for (int64_t i = 0; i < n; i++) {
    const int32_t *r = ids + i * L;
    uint64_t h = 1469598103934665603ull;
    for (int64_t k = 0; k < L; k++) h = (h ^ (uint32_t)r[k]) * 1099511628211ull;
    size_t s = (size_t)h & (cap - 1);
    key[i] = base ? base[i] : i;
    while (slot[s]) {
      int64_t j = slot[s] - 1;
      if (!memcmp(ids + j * L, r, (size_t)L * sizeof(int32_t))) {
        key[i] = key[j];
        break;
      }
      s = (s + 1) & (cap - 1);
    }
    if (!slot[s]) slot[s] = i + 1;
  }
  free(slot);
  return VLM_OK;
}

vlm_status vlm_retrieval_first_of_groups(const int64_t *groups, int64_t n, int64_t *rows, int64_t *U) {
  vlm_group_map m = {0};
  int64_t u = 0;
  vlm_status st = VLM_OK;
  for (int64_t i = 0; i < n && st == VLM_OK; i++) {
    int64_t found;
    st = vlm_group_map_add(&m, groups[i], i, &found);
    if (st == VLM_OK && found < 0) rows[u++] = i;
  }
  vlm_group_map_free(&m);
  *U = u;
  return st;
}
