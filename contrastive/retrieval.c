/* Retrieval metrics between distinct images and their captions: open_clip's
 * get_clip_metrics for one caption per image, the COCO protocol for several, and the
 * shapes set's rule that identical captions are one item (contrastive.h). */
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

/* Scores of QB query rows against one candidate row c: s[b] = q[b]·c. Each pair is summed
 * in the same fixed order (eight interleaved double partial sums, then a fixed tree), so
 * identical rows score identically whichever block slot or thread they land in. */
enum { QB = 8, LANES = 8 };
static void dots(const float *q, int64_t nb, const float *c, int64_t E, double *s) {
  double acc[QB][LANES] = {{0}};
  const int64_t E8 = E - E % LANES;
  for (int64_t k = 0; k < E8; k += LANES) {
    double cv[LANES];
    for (int l = 0; l < LANES; l++) cv[l] = c[k + l];
    for (int64_t b = 0; b < nb; b++)
      for (int l = 0; l < LANES; l++) acc[b][l] += (double)q[b * E + k + l] * cv[l];
  }
  for (int64_t b = 0; b < nb; b++) {
    for (int64_t k = E8; k < E; k++) acc[b][k - E8] += (double)q[b * E + k] * c[k];
    s[b] = ((acc[b][0] + acc[b][4]) + (acc[b][2] + acc[b][6])) + ((acc[b][1] + acc[b][5]) + (acc[b][3] + acc[b][7]));
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  int64_t a, b;
} pair;

static int cmp_pair(const void *x, const void *y) {
  const pair *p = x, *q = y;
  return p->a != q->a ? (p->a < q->a ? -1 : 1) : (p->b > q->b) - (p->b < q->b);
}

/* Compressed rows of the distinct pairs p[0..n) (sorted here): val[off[a]..off[a+1]) are
 * the distinct b's of a, for a in [0, na). */
static vlm_status csr(pair *p, int64_t n, int64_t na, int64_t **off, int64_t **val) {
  qsort(p, (size_t)n, sizeof *p, cmp_pair);
  *off = calloc((size_t)na + 1, sizeof **off);
  *val = malloc((size_t)(n > 0 ? n : 1) * sizeof **val);
  if (!*off || !*val) return vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    if (i && p[i].a == p[i - 1].a && p[i].b == p[i - 1].b) continue;
    (*off)[p[i].a + 1]++;
    (*val)[k++] = p[i].b;
  }
  for (int64_t a = 0; a < na; a++) (*off)[a + 1] += (*off)[a];
  return VLM_OK;
}

/* Rank = 1 + the non-matching items scoring strictly above query r's best matching one. */
static int64_t rank_of(const double *score, unsigned char *match, int64_t ni, const int64_t *off,
                       const int64_t *val, int64_t r) {
  double best = -INFINITY;
  for (int64_t k = off[r]; k < off[r + 1]; k++) {
    match[val[k]] = 1;
    if (score[val[k]] > best) best = score[val[k]];
  }
  int64_t higher = 0;
  for (int64_t t = 0; t < ni; t++) higher += !match[t] && score[t] > best;
  for (int64_t k = off[r]; k < off[r + 1]; k++) match[val[k]] = 0;
  return higher + 1;
}

/* One direction. Queries q [nq,E] against candidate rows c [nc,E]; candidate row j is
 * item cid[j] of ni (cid NULL: item j, ni = nc), an item scoring its best row. Query i's
 * matching items are val[off[r]..off[r+1]) with r = qrow ? qrow[i] : i; a query without
 * any is skipped (rank 0). Blocks of QB queries run in parallel, each thread with its own
 * score rows. */
static vlm_status one_dir(const float *q, int64_t nq, const float *c, int64_t nc, const int64_t *cid, int64_t ni,
                          const int64_t *qrow, const int64_t *off, const int64_t *val, int64_t E,
                          vlm_retrieval_dir *out) {
  memset(out, 0, sizeof *out);
  int64_t *ranks = calloc((size_t)(nq > 0 ? nq : 1), sizeof(int64_t));
  if (!ranks) return vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  int oom = 0;
#pragma omp parallel
  {
    double *score = malloc((size_t)QB * (size_t)(ni > 0 ? ni : 1) * sizeof(double));
    unsigned char *match = calloc((size_t)(ni > 0 ? ni : 1), 1);
    if (!score || !match) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i0 = 0; i0 < nq; i0 += QB) {
      if (!score || !match) continue;
      const int64_t nb = nq - i0 < QB ? nq - i0 : QB;
      for (int64_t b = 0; b < nb; b++)
        for (int64_t t = 0; t < ni; t++) score[b * ni + t] = -INFINITY;
      for (int64_t j = 0; j < nc; j++) {
        const int64_t t = cid ? cid[j] : j;
        double s[QB];
        dots(q + i0 * E, nb, c + j * E, E, s);
        for (int64_t b = 0; b < nb; b++)
          if (s[b] > score[b * ni + t]) score[b * ni + t] = s[b];
      }
      for (int64_t b = 0; b < nb; b++) {
        const int64_t r = qrow ? qrow[i0 + b] : i0 + b;
        if (off[r] < off[r + 1]) ranks[i0 + b] = rank_of(score + b * ni, match, ni, off, val, r);
      }
    }
    free(score);
    free(match);
  }
  if (oom) {
    free(ranks);
    return vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  }
  int64_t n = 0;
  for (int64_t i = 0; i < nq; i++) {
    if (ranks[i] == 0)
      out->skipped++;
    else
      ranks[n++] = ranks[i];
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
  return VLM_OK;
}

vlm_status vlm_retrieval_compute(const float *img, int64_t N, const float *txt, int64_t M, const int64_t *txt_img,
                                 const int64_t *txt_item, int64_t E, vlm_retrieval_metrics *out) {
  memset(out, 0, sizeof *out);
  if (!txt_img && N != M)
    return vlm_error(VLM_ERR_ARG, "retrieval: %lld images and %lld texts need the texts' image rows", (long long)N,
                     (long long)M);
  for (int64_t j = 0; txt_img && j < M; j++)
    if (txt_img[j] < 0 || txt_img[j] >= N)
      return vlm_error(VLM_ERR_ARG, "retrieval: text %lld belongs to image %lld, not in [0, %lld)", (long long)j,
                       (long long)txt_img[j], (long long)N);
  vlm_status s = VLM_OK;
  int64_t *cid = malloc((size_t)(M > 0 ? M : 1) * sizeof *cid), I = 0;
  pair *p = malloc((size_t)(M > 0 ? M : 1) * sizeof *p);
  int64_t *i_off = NULL, *i_val = NULL, *t_off = NULL, *t_val = NULL;
  float *a = normalized(img, N, E), *b = normalized(txt, M, E);
  if (!cid || !p || !a || !b) s = vlm_error(VLM_ERR_OOM, "retrieval: out of memory");
  /* the texts' items, numbered 0..I-1 in order of first appearance */
  vlm_group_map items = {0};
  for (int64_t j = 0; s == VLM_OK && j < M; j++) {
    int64_t found = -1;
    s = vlm_group_map_add(&items, txt_item ? txt_item[j] : j, I, &found);
    cid[j] = found >= 0 ? found : I++;
  }
  vlm_group_map_free(&items);
  /* image -> the items of its captions (image->text's matches), item -> the images with a
   * caption of it (text->image's matches) */
  for (int64_t j = 0; s == VLM_OK && j < M; j++) p[j] = (pair){txt_img ? txt_img[j] : j, cid[j]};
  if (s == VLM_OK) s = csr(p, M, N, &i_off, &i_val);
  for (int64_t j = 0; s == VLM_OK && j < M; j++) p[j] = (pair){cid[j], txt_img ? txt_img[j] : j};
  if (s == VLM_OK) s = csr(p, M, I, &t_off, &t_val);
  if (s == VLM_OK) s = one_dir(a, N, b, M, cid, I, NULL, i_off, i_val, E, &out->i2t);
  if (s == VLM_OK) s = one_dir(b, M, a, N, NULL, N, cid, t_off, t_val, E, &out->t2i);
  free(a);
  free(b);
  free(cid);
  free(p);
  free(i_off);
  free(i_val);
  free(t_off);
  free(t_val);
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

vlm_status vlm_retrieval_first_of_groups(const int64_t *groups, int64_t n, int64_t *rows, int64_t *U, int64_t *of) {
  vlm_group_map m = {0};
  int64_t u = 0;
  vlm_status st = VLM_OK;
  for (int64_t i = 0; i < n && st == VLM_OK; i++) {
    int64_t found;
    st = vlm_group_map_add(&m, groups[i], u, &found);
    if (st == VLM_OK && found < 0) rows[u++] = i;
    if (st == VLM_OK && of) of[i] = found < 0 ? u - 1 : found;
  }
  vlm_group_map_free(&m);
  *U = u;
  return st;
}
