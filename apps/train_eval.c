/* `vlm train` evaluation: val loss (open_clip's: the batch ClipLoss averaged
 * over samples; a SigLIP model's: its sigmoid loss), retrieval both ways, zero-shot top-1/top-5 with the unseen
 * colour-shape combinations of the shapes set reported apart. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/train_internal.h"

typedef struct {
  float *img, *txt;      /* [n, E] */
  int32_t *ids;          /* [n, L] */
  int *labels;
  int64_t *groups;
  int64_t *copy_of;      /* [n] the row whose image features this row shares (same group), or -1 */
  int64_t n, cap;
} feats;

static int grow(feats *f, int64_t need, int64_t E, int64_t L) {
  if (need <= f->cap) return 1;
  int64_t cap = f->cap ? f->cap : 256;
  while (cap < need) cap *= 2;
  float *a = realloc(f->img, (size_t)(cap * E) * sizeof(float));
  if (a) f->img = a;
  float *b = realloc(f->txt, (size_t)(cap * E) * sizeof(float));
  if (b) f->txt = b;
  int32_t *c = realloc(f->ids, (size_t)(cap * L) * sizeof(int32_t));
  if (c) f->ids = c;
  int *d = realloc(f->labels, (size_t)cap * sizeof(int));
  if (d) f->labels = d;
  int64_t *e = realloc(f->groups, (size_t)cap * sizeof(int64_t));
  if (e) f->groups = e;
  int64_t *g = realloc(f->copy_of, (size_t)cap * sizeof(int64_t));
  if (g) f->copy_of = g;
  if (!a || !b || !c || !d || !e || !g) return 0;
  f->cap = cap;
  return 1;
}

static void feats_free(feats *f) {
  free(f->img);
  free(f->txt);
  free(f->ids);
  free(f->labels);
  free(f->groups);
  free(f->copy_of);
}

/* ClipLoss of n pairs in double precision; with siglip, SigLIP's sigmoid loss instead
 * (scale * cos + bias, labels +1 on the pairs and -1 elsewhere, -sum log sigmoid / n). */
static double clip_loss(const float *img, const float *txt, int64_t n, int64_t E, double scale, int siglip,
                        double bias) {
  double *a = malloc((size_t)(n * E) * sizeof(double)), *b = malloc((size_t)(n * E) * sizeof(double));
  double *lg = malloc((size_t)(n * n) * sizeof(double));
  VLM_CHECK(a && b && lg, "eval: out of memory");
  for (int k = 0; k < 2; k++) {
    const float *x = k ? txt : img;
    double *y = k ? b : a;
    for (int64_t i = 0; i < n; i++) {
      double s = 0;
      for (int64_t e = 0; e < E; e++) s += (double)x[i * E + e] * x[i * E + e];
      s = 1.0 / fmax(sqrt(s), 1e-12);
      for (int64_t e = 0; e < E; e++) y[i * E + e] = x[i * E + e] * s;
    }
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t e = 0; e < E; e++) s += a[i * E + e] * b[j * E + e];
      lg[i * n + j] = scale * s + (siglip ? bias : 0.0);
    }
  double total = 0;
  if (siglip) {
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        double z = (i == j ? 1.0 : -1.0) * lg[i * n + j];
        total += fmax(-z, 0.0) + log1p(exp(-fabs(z)));   /* -log sigmoid(z) */
      }
    free(a);
    free(b);
    free(lg);
    return total / (double)n;
  }
  for (int dir = 0; dir < 2; dir++)
    for (int64_t i = 0; i < n; i++) {
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < n; j++) m = fmax(m, dir ? lg[j * n + i] : lg[i * n + j]);
      for (int64_t j = 0; j < n; j++) z += exp((dir ? lg[j * n + i] : lg[i * n + j]) - m);
      total += (m + log(z)) - lg[i * n + i];
    }
  free(a);
  free(b);
  free(lg);
  return total / (2.0 * (double)n);
}

/* The model being evaluated: CLIP (p, acts) or CoCa (cp, cacts), on the
 * parameters' device (a GPU trainer evaluates there: each batch uploaded into
 * dimg / dids, the features copied back). */
typedef struct {
  const vlm_clip_config *c;
  vlm_clip_params *p;
  vlm_clip_acts acts;
  const vlm_coca_config *cc;
  vlm_coca_params *cp;
  vlm_coca_acts cacts;
  vlm_device dev;
  vlm_arena io;                 /* dev != CPU: dimg [B,3,S,S] F32, dids [B,L] I32 */
  vlm_tensor dimg, dids;
} eval_model;

/* The first n rows of device or host features f [B, E] into out [n, E] on the host. */
static void features_out(const vlm_tensor *f, int64_t n, int64_t E, float *out) {
  int64_t sh[2] = {n, E};
  vlm_tensor h = vlm_tensor_cpu_f32(out, 2, sh);
  vlm_copy_rows(&h, 0, 0, f, 0, 0, 1, n);
}

/* Encode the first n <= B images staged in img_buf [B,3,S,S] (the rest padded
 * with copies of the last) into img_out [n,E]. */
static void encode_staged(eval_model *m, float *img_buf, int64_t B, int64_t n, float *img_out) {
  const vlm_clip_config *c = m->c;
  int64_t S = c->vision.image_size, per = 3 * S * S, E = c->embed_dim;
  for (int64_t i = n; i < B; i++) memcpy(img_buf + i * per, img_buf + (n - 1) * per, (size_t)per * sizeof(float));
  int64_t is[4] = {B, 3, S, S};
  vlm_tensor ti = vlm_tensor_cpu_f32(img_buf, 4, is);
  if (m->dev != VLM_CPU) {
    vlm_copy(&m->dimg, &ti);
    ti = m->dimg;
  }
  if (m->cc) {
    vlm_coca_vit_forward(&m->cc->vision, &m->cp->visual, &m->cp->pool, &m->cacts.visual, &m->cacts.pool, &ti);
    features_out(&m->cacts.pool.features, n, E, img_out);
  } else {
    vlm_vit_forward(&c->vision, &m->p->visual, &m->acts.visual, &ti);
    features_out(&m->acts.visual.features, n, E, img_out);
  }
}

/* Encode a padded batch of n <= B texts, ids [n,L], into txt_out [n,E]. */
static void encode_texts(eval_model *m, int32_t *ids_buf, int64_t B, int64_t L, const int32_t *ids, int64_t n,
                         float *txt_out) {
  const vlm_clip_config *c = m->c;
  int64_t E = c->embed_dim;
  for (int64_t i = 0; i < B; i++) memcpy(ids_buf + i * L, ids + (i < n ? i : n - 1) * L, (size_t)L * sizeof(int32_t));
  int64_t ts[2] = {B, L};
  vlm_tensor tt = vlm_tensor_make(ids_buf, VLM_I32, VLM_CPU, 2, ts);
  if (m->dev != VLM_CPU) {
    vlm_copy(&m->dids, &tt);
    tt = m->dids;
  }
  vlm_text_acts *ta = m->cc ? &m->cacts.text : &m->acts.text;
  vlm_text_forward(m->cc ? &m->cc->text : &c->text, m->cc ? &m->cp->text : &m->p->text, ta, &tt);
  features_out(&ta->features, n, E, txt_out);
}

/* Zero-shot prompts through the model being trained (vlm_text_encode_fn). */
typedef struct {
  eval_model *m;
  int32_t *ids_buf, *ids;   /* ids: [B, L] */
  int64_t B, L;
  vlm_tokenizer *tok;
} prompt_ctx;

static vlm_status encode_prompts(void *ctx, const char *const *texts, int n, float *out) {
  prompt_ctx *P = ctx;
  for (int64_t k = 0; k < n; k += P->B) {
    int64_t b = n - k < P->B ? n - k : P->B;
    for (int64_t i = 0; i < b; i++)
      if (vlm_tokenizer_encode_ctx(P->tok, texts[k + i], strlen(texts[k + i]), (int)P->L, 0, P->ids + i * P->L) < 0)
        return vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
    encode_texts(P->m, P->ids_buf, P->B, P->L, P->ids, b, out + k * P->m->c->embed_dim);
  }
  return VLM_OK;
}

/* Retrieval with each image once: the loader yields an image once per caption
 * (COCO: 5 rows), so the rows of a group are reduced to its first one (as `vlm eval`
 * does); the texts stay one per row, each a caption of its group's image, and item
 * (NULL: every text its own) says which texts are the same item (contrastive.h). */
static vlm_status retrieval_by_image(const feats *f, const int64_t *item, int64_t E, vlm_retrieval_metrics *out) {
  int64_t *rows = malloc((size_t)f->n * sizeof *rows), *of = malloc((size_t)f->n * sizeof *of), U = 0;
  float *img = NULL;
  vlm_status st = rows && of ? vlm_retrieval_first_of_groups(f->groups, f->n, rows, &U, of)
                             : vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
  if (st == VLM_OK && U < f->n) {
    img = malloc((size_t)(U * E) * sizeof *img);
    if (!img) st = vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
    for (int64_t u = 0; st == VLM_OK && u < U; u++) memcpy(img + u * E, f->img + rows[u] * E, (size_t)E * sizeof *img);
  }
  if (st == VLM_OK) st = vlm_retrieval_compute(img ? img : f->img, U, f->txt, f->n, of, item, E, out);
  free(img);
  free(rows);
  free(of);
  return st;
}

vlm_status vlm_train_evaluate(const vlm_eval_cfg *ec, vlm_clip_params *p, vlm_loader *val, int do_retrieval,
                              int do_zeroshot, vlm_eval_result *out) {
  memset(out, 0, sizeof *out);
  const vlm_clip_config *c = ec->model;
  const int64_t B = ec->batch_size, L = ec->context_length, E = c->embed_dim, S = c->vision.image_size;
  eval_model em;
  memset(&em, 0, sizeof em);
  em.c = c;
  em.p = p;
  em.cc = ec->coca;
  em.cp = ec->coca_params;
  em.dev = em.cc ? em.cp->arena.device : p->arena.device;
  vlm_status st = em.cc ? vlm_coca_acts_init_on(&em.cacts, em.cc, B, L, 0, em.dev)
                        : vlm_clip_acts_init_on(&em.acts, c, B, L, 0, em.dev);
  if (st != VLM_OK) return st;
  if (em.dev != VLM_CPU) {
    vlm_arena m;
    for (int pass = 0; pass < 2 && st == VLM_OK; pass++) {
      vlm_arena *a = pass ? &em.io : &m;
      if (!pass) vlm_arena_measure(&m, em.dev);
      em.dimg = vlm_arena_tensor4(a, VLM_F32, B, 3, S, S);
      em.dids = vlm_arena_tensor2(a, VLM_I32, B, L);
      if (!pass) st = vlm_arena_init(&em.io, m.used, em.dev);
    }
    if (st != VLM_OK) {
      if (em.cc) vlm_coca_acts_free(&em.cacts);
      else vlm_clip_acts_free(&em.acts);
      return st;
    }
  }
  const double logit_scale = exp(vlm_get_f32(em.cc ? &em.cp->logit_scale : &p->logit_scale, 0));
  /* a SigLIP model: its own loss (open_clip's evaluate() reports the ClipLoss for every model) */
  const int siglip = !em.cc && c->has_logit_bias;
  const double logit_bias = siglip ? vlm_get_f32(&p->logit_bias, 0) : 0.0;
  const int64_t per = 3 * S * S;
  float *img_buf = malloc((size_t)(B * per) * sizeof(float)), *pend_feat = malloc((size_t)(B * E) * sizeof(float));
  int32_t *ids_buf = malloc((size_t)(B * L) * sizeof(int32_t));
  int64_t *pend_row = malloc((size_t)B * sizeof(int64_t)), np = 0; /* rows of the images staged in img_buf */
  int64_t *bsize = NULL, nb = 0, bcap = 0;                          /* the loader's batch sizes */
  vlm_group_map seen = {0};                                          /* group -> the first row of its image */
  feats f;
  memset(&f, 0, sizeof f);
  if (!img_buf || !pend_feat || !ids_buf || !pend_row) st = vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
  if (st == VLM_OK) st = vlm_loader_start_epoch(val, 0, 0);
  vlm_batch b;
  while (st == VLM_OK && vlm_loader_next(val, &b) == 1) {
    if (b.n <= 0) continue;
    if (nb == bcap) {
      int64_t *bs2 = realloc(bsize, (size_t)(bcap ? 2 * bcap : 64) * sizeof(int64_t));
      if (bs2) bsize = bs2, bcap = bcap ? 2 * bcap : 64;
    }
    if (!grow(&f, f.n + b.n, E, L) || nb == bcap) {
      st = vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
      break;
    }
    bsize[nb++] = b.n;
    /* Each group's image is encoded once (a COCO loader yields it once per
     * caption): the first row of a group stages its image, in batches of B
     * across loader batches; the other rows share its features, which are
     * equal since the evaluation transform is deterministic. */
    for (int64_t i = 0; i < b.n && st == VLM_OK; i++) {
      int64_t row = f.n + i;
      st = vlm_group_map_add(&seen, b.groups[i], row, &f.copy_of[row]);
      if (st != VLM_OK || f.copy_of[row] >= 0) continue;
      memcpy(img_buf + np * per, b.images + i * per, (size_t)per * sizeof(float));
      pend_row[np++] = row;
      if (np == B) {
        encode_staged(&em, img_buf, B, np, pend_feat);
        for (int64_t j = 0; j < np; j++) memcpy(f.img + pend_row[j] * E, pend_feat + j * E, (size_t)E * sizeof(float));
        np = 0;
      }
    }
    if (st != VLM_OK) break;
    encode_texts(&em, ids_buf, B, L, b.ids, b.n, f.txt + f.n * E);
    memcpy(f.ids + f.n * L, b.ids, (size_t)(b.n * L) * sizeof(int32_t));
    memcpy(f.labels + f.n, b.labels, (size_t)b.n * sizeof(int));
    memcpy(f.groups + f.n, b.groups, (size_t)b.n * sizeof(int64_t));
    f.n += b.n;
  }
  if (st == VLM_OK && np) {
    encode_staged(&em, img_buf, B, np, pend_feat);
    for (int64_t j = 0; j < np; j++) memcpy(f.img + pend_row[j] * E, pend_feat + j * E, (size_t)E * sizeof(float));
  }
  /* a shared row's first row comes before it, and is encoded itself */
  for (int64_t i = 0; st == VLM_OK && i < f.n; i++)
    if (f.copy_of[i] >= 0) memcpy(f.img + i * E, f.img + f.copy_of[i] * E, (size_t)E * sizeof(float));
  out->n = f.n;
  if (st == VLM_OK && f.n > 0) {
    double loss_sum = 0;   /* open_clip's: each loader batch's ClipLoss, weighted by its size */
    for (int64_t k = 0, r0 = 0; k < nb; r0 += bsize[k++])
      loss_sum += clip_loss(f.img + r0 * E, f.txt + r0 * E, bsize[k], E, logit_scale, siglip, logit_bias) * bsize[k];
    out->have_loss = 1;
    out->val_loss = loss_sum / (double)f.n;
  }
  if (st == VLM_OK && f.n > 0 && do_retrieval) {
    int64_t *key = malloc((size_t)f.n * sizeof(int64_t));
    if (!key) st = vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
    if (key && ec->caption_match) st = vlm_retrieval_caption_keys(f.ids, f.n, L, NULL, key);
    if (st == VLM_OK) st = retrieval_by_image(&f, ec->caption_match ? key : NULL, E, &out->ret);
    if (st == VLM_OK) out->have_retrieval = 1;
    if (st == VLM_OK && ec->shapes) {
      /* a caption's class is its item: texts of one class are one item, an image matches
       * the texts of its class */
      int all = 1;
      for (int64_t i = 0; i < f.n; i++) {
        key[i] = f.labels[i];
        if (f.labels[i] < 0) all = 0;
      }
      if (all && retrieval_by_image(&f, key, E, &out->ret_class) == VLM_OK) out->have_class_retrieval = 1;
    }
    free(key);
  }
  int nc = 0;
  const char *const *names = vlm_loader_classnames(val, &nc);
  if (st == VLM_OK && f.n > 0 && do_zeroshot && names && nc > 0 && ec->tokenizer && ec->n_templates > 0) {
    float *w = malloc((size_t)((int64_t)nc * E) * sizeof(float));
    int32_t *pids = malloc((size_t)(B * L) * sizeof(int32_t));
    uint8_t *unseen = calloc((size_t)f.n, 1);
    if (!w || !pids || !unseen) st = vlm_error(VLM_ERR_OOM, "evaluation: out of memory");
    prompt_ctx P = {&em, ids_buf, pids, B, L, ec->tokenizer};
    if (st == VLM_OK)
      st = vlm_zeroshot_classifier(encode_prompts, &P, names, nc, ec->templates, ec->n_templates, E, (int)B, w);
    if (st == VLM_OK) {
      for (int64_t i = 0; ec->shapes && i < f.n; i++) unseen[i] = f.labels[i] >= 0 && vlm_shapes_class_unseen(f.labels[i]);
      st = vlm_zeroshot_eval(f.img, f.n, E, w, nc, f.labels, ec->shapes ? unseen : NULL, &out->zs);
      out->have_zeroshot = st == VLM_OK && out->zs.n > 0;
    }
    free(w);
    free(pids);
    free(unseen);
  }
  feats_free(&f);
  vlm_group_map_free(&seen);
  free(pend_feat);
  free(pend_row);
  free(bsize);
  free(img_buf);
  free(ids_buf);
  if (em.cc) vlm_coca_acts_free(&em.cacts);
  else vlm_clip_acts_free(&em.acts);
  vlm_arena_free(&em.io);
  return st;
}

void vlm_eval_result_json(const vlm_eval_result *r, char *buf, size_t n) {
  size_t o = 0;
  buf[0] = 0;
#define PUT(...)                                                    \
  do {                                                              \
    if (o < n) o += (size_t)snprintf(buf + o, n - o, __VA_ARGS__);  \
  } while (0)
  PUT("\"val_samples\": %lld", (long long)r->n);
  if (r->have_loss) PUT(", \"val_loss\": %.6g", r->val_loss);
  if (r->have_retrieval) {
    const vlm_retrieval_dir *d[2] = {&r->ret.i2t, &r->ret.t2i};
    const char *nm[2] = {"image_to_text", "text_to_image"};
    for (int k = 0; k < 2; k++)
      PUT(", \"%s_R@1\": %.6g, \"%s_R@5\": %.6g, \"%s_R@10\": %.6g, \"%s_mean_rank\": %.6g, \"%s_median_rank\": %.6g",
          nm[k], d[k]->r1, nm[k], d[k]->r5, nm[k], d[k]->r10, nm[k], d[k]->mean_rank, nm[k], d[k]->median_rank);
  }
  if (r->have_class_retrieval)
    PUT(", \"class_image_to_text_R@1\": %.6g, \"class_text_to_image_R@1\": %.6g", r->ret_class.i2t.r1,
        r->ret_class.t2i.r1);
  if (r->have_zeroshot) {
    PUT(", \"zeroshot_top1\": %.6g, \"zeroshot_top5\": %.6g, \"zeroshot_samples\": %lld", r->zs.top1, r->zs.top5,
        (long long)r->zs.n);
    if (r->zs.n_subset)
      PUT(", \"zeroshot_unseen_top1\": %.6g, \"zeroshot_unseen_top5\": %.6g, \"zeroshot_unseen_samples\": %lld",
          r->zs.subset_top1, r->zs.subset_top5, (long long)r->zs.n_subset);
  }
#undef PUT
}
