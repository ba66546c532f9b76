/* CLIP inference for the tools: see encode.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/encode.h"

static int is_dir(const char *p) {
  struct stat s;
  return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}
static int is_file(const char *p) {
  struct stat s;
  return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

/* ---- identity: a 64-bit hash (vlm_hash) of the config JSON and every parameter's bytes */
static void hash_param(void *ctx, const char *name, vlm_tensor *t) {
  vlm_hash *s = ctx;
  vlm_hash_bytes(s, name, strlen(name));
  vlm_hash_bytes(s, t->data, vlm_nbytes(t));
}

static vlm_status compute_identity(vlm_encoder *e) {
  vlm_hash s;
  vlm_hash_init(&s);
  char *json = e->coca ? vlm_coca_config_to_json(&e->ccfg) : vlm_clip_config_to_json(&e->cfg, VLM_CKPT_OPENCLIP);
  if (!json) return vlm_error(VLM_ERR_OOM, "out of memory");
  vlm_hash_bytes(&s, json, strlen(json));
  free(json);
  /* a Hugging Face text tower's pooling at an eos id is not in the open_clip JSON; models that
   * pool at the largest id (every open_clip one) keep the identity they always had */
  if (!e->coca && e->cfg.text.eot_id >= 0) {
    char eos[48];
    snprintf(eos, sizeof eos, "eos_token_id=%lld", (long long)e->cfg.text.eot_id);
    vlm_hash_bytes(&s, eos, strlen(eos));
  }
  if (e->coca) vlm_coca_params_visit(&e->cparams, &e->ccfg, hash_param, &s);
  else vlm_clip_params_visit(&e->params, &e->cfg, hash_param, &s);
  snprintf(e->identity, sizeof e->identity, "%s-%016llx", e->coca ? "coca" : "clip",
           (unsigned long long)vlm_hash_final(&s));
  return VLM_OK;
}

/* ---- tokenizer search */
/* dir + "/" + name, malloc'd (NULL when out of memory). */
static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

int vlm_find_tokenizer(const char *model_path, char *out, size_t n) {
  if (n) out[0] = 0;
  char *dir = strdup(model_path);
  if (!dir) { vlm_error(VLM_ERR_OOM, "out of memory"); return -1; }
  if (!is_dir(model_path)) {   /* a config file: its directory */
    char *sl = strrchr(dir, '/');
    if (sl) {
      *sl = 0;
    } else {
      free(dir);
      if (!(dir = strdup("."))) { vlm_error(VLM_ERR_OOM, "out of memory"); return -1; }
    }
  }
  /* {the file that marks it, the tokenizer path given to vlm_tokenizer_load} in search order */
  const char *cand[][2] = {
      {"tokenizer/vocab.json", "tokenizer"},
      {"vocab.json", ""},
      {"../../tokenizer/vocab.json", "../../tokenizer"},   /* RUN/checkpoints/NAME -> RUN/tokenizer */
      {"tokenizer.json", "tokenizer.json"},                 /* a fast tokenizer's file alone (hub repos) */
      {"tokenizer/tokenizer.json", "tokenizer/tokenizer.json"},
      {"bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt.gz"},
      {"bpe_simple_vocab_16e6.txt", "bpe_simple_vocab_16e6.txt"},
  };
  int found = 0;
  for (size_t i = 0; i < sizeof cand / sizeof *cand && !found; i++) {
    char *mark = path_join(dir, cand[i][0]);
    if (!mark) { found = -1; vlm_error(VLM_ERR_OOM, "out of memory"); break; }
    if (is_file(mark)) {
      char *tok = cand[i][1][0] ? path_join(dir, cand[i][1]) : strdup(dir);
      if (!tok) {
        found = -1;
        vlm_error(VLM_ERR_OOM, "out of memory");
      } else if (strlen(tok) >= n) {
        found = -1;
        vlm_error(VLM_ERR_ARG, "the tokenizer path is %zu bytes long (at most %zu): %.300s...", strlen(tok),
                  n ? n - 1 : 0, tok);
      } else {
        memcpy(out, tok, strlen(tok) + 1);
        found = 1;
      }
      free(tok);
    }
    free(mark);
  }
  free(dir);
  return found;
}

static vlm_status find_tokenizer(vlm_encoder *e, const char *model_path, const char *explicit_path, int optional) {
  if (explicit_path) {
    if (strlen(explicit_path) >= sizeof e->tokenizer_path)
      return vlm_error(VLM_ERR_ARG, "the tokenizer path is %zu bytes long (at most %zu): %.300s...",
                       strlen(explicit_path), sizeof e->tokenizer_path - 1, explicit_path);
    memcpy(e->tokenizer_path, explicit_path, strlen(explicit_path) + 1);
  } else {
    int found = vlm_find_tokenizer(model_path, e->tokenizer_path, sizeof e->tokenizer_path);
    if (found < 0) return VLM_ERR_ARG;   /* the message names the path */
    if (!found) {
      if (optional) return VLM_OK;
      return vlm_error(VLM_ERR_ARG,
                       "%s: no tokenizer beside the model (tokenizer/vocab.json + merges.txt, vocab.json, or "
                       "bpe_simple_vocab_16e6.txt.gz); pass --tokenizer PATH",
                       model_path);
    }
  }
  vlm_status st = vlm_tokenizer_load(&e->tok, e->tokenizer_path);
  if (st != VLM_OK) return st;
  int64_t V = vlm_tokenizer_vocab_size(e->tok);
  if (V > e->cfg.text.vocab_size) {
    vlm_tokenizer_free(e->tok);
    e->tok = NULL;
    return vlm_error(VLM_ERR_ARG, "%s: the tokenizer has %lld ids but the model's vocabulary has only %lld",
                     e->tokenizer_path, (long long)V, (long long)e->cfg.text.vocab_size);
  }
  return VLM_OK;
}

vlm_status vlm_encoder_open(vlm_encoder *e, const char *model_path, const char *tokenizer, int64_t max_batch,
                            int flags) {
  memset(e, 0, sizeof *e);
  if (max_batch < 1) max_batch = 1;
  e->max_batch = max_batch;
  vlm_status st;
  if (vlm_model_is_coca(model_path) == 1) {
    e->coca = 1;
    if ((st = vlm_coca_load(model_path, &e->ccfg, &e->cparams)) != VLM_OK) return st;
    e->cfg.embed_dim = e->ccfg.embed_dim;
    e->cfg.quick_gelu = e->ccfg.quick_gelu;
    e->cfg.vision = e->ccfg.vision;
    e->cfg.text = e->ccfg.text;
    e->fmt = VLM_CKPT_OPENCLIP;
    e->crun = &e->cparams;
  } else {
    if ((st = vlm_clip_load(model_path, &e->cfg, &e->params, &e->fmt)) != VLM_OK) return st;
    e->run = &e->params;
  }
  vlm_vit_preprocess_cfg(&e->cfg.vision, &e->pre);   /* the transform its config names (preprocess_cfg) */
  st = compute_identity(e);
  e->dev = VLM_CPU;
  /* bf16: the matmul precision of this encoder's calls (vlm_encoder_precision_enter),
   * never set here for the process: other models keep theirs */
  e->prec = (flags & VLM_ENC_BF16) ? VLM_PREC_BF16 : VLM_PREC_F32;
  if (st == VLM_OK && (flags & VLM_ENC_CUDA)) {
    if (!vlm_cuda_available()) {
      st = vlm_error(VLM_ERR_UNSUPPORTED, "--device cuda: %s", vlm_cuda_describe());
    } else {  /* the host weights hashed above, then one upload */
      e->dev = VLM_CUDA;
      if (e->coca) {
        st = vlm_coca_params_init_on(&e->dcparams, &e->ccfg, VLM_CUDA);
        if (st == VLM_OK) vlm_coca_params_copy(&e->dcparams, &e->cparams);
        e->crun = &e->dcparams;
      } else {
        st = vlm_clip_params_to_device(&e->dparams, &e->params, &e->cfg, VLM_CUDA);
        e->run = &e->dparams;
      }
      /* the host copy has served (identity, upload): give its memory back */
      if (st == VLM_OK && e->coca) vlm_coca_params_free(&e->cparams);
      else if (st == VLM_OK) vlm_clip_params_free(&e->params);
    }
  }
  if (st == VLM_OK && (flags & VLM_ENC_BF16) && e->dev == VLM_CPU) {
    if (e->coca) st = vlm_coca_params_bf16(&e->cparams_bf16, &e->cparams, &e->ccfg, 1);
    else st = vlm_clip_params_bf16(&e->params_bf16, &e->params, &e->cfg, 1);
    if (st == VLM_OK) {
      if (e->coca) e->crun = &e->cparams_bf16;
      else e->run = &e->params_bf16;
    }
  }
  if (st == VLM_OK && ((flags & (VLM_ENC_TEXT | VLM_ENC_TEXT_IF_FOUND)) || tokenizer))
    st = find_tokenizer(e, model_path, tokenizer, !(flags & VLM_ENC_TEXT) && !tokenizer);
  if (st == VLM_OK) st = vlm_vit_acts_alloc(&e->vacts, &e->cfg.vision);
  if (st == VLM_OK) st = vlm_text_acts_alloc(&e->tacts, &e->cfg.text, max_batch);
  if (st == VLM_OK) {
    vlm_arena m;
    vlm_arena_measure(&m, e->dev);
    vlm_vit_acts_layout(&e->vacts, &m, &e->cfg.vision, max_batch, 0);
    if (e->coca) vlm_attn_pool_acts_layout(&e->pacts, &m, &e->cfg.vision, max_batch, 0);
    st = vlm_arena_init(&e->varena, m.used, e->dev);
  }
  if (st == VLM_OK) {
    vlm_arena m;
    vlm_arena_measure(&m, e->dev);
    vlm_text_acts_layout(&e->tacts, &m, &e->cfg.text, max_batch, e->cfg.text.context_length, 0);
    st = vlm_arena_init(&e->tarena, m.used, e->dev);
  }
  if (st == VLM_OK && e->dev != VLM_CPU) {
    int64_t S = e->cfg.vision.image_size, ctx = e->cfg.text.context_length;
    vlm_arena m;
    for (int pass = 0; pass < 2 && st == VLM_OK; pass++) {
      vlm_arena *a = pass ? &e->iarena : &m;
      if (!pass) vlm_arena_measure(&m, e->dev);
      e->dimg = vlm_arena_tensor4(a, VLM_F32, max_batch, 3, S, S);
      e->dids = vlm_arena_tensor2(a, VLM_I32, max_batch, ctx);
      if (!pass) st = vlm_arena_init(&e->iarena, m.used, e->dev);
    }
  }
  if (st == VLM_OK) {
    e->ids = malloc((size_t)max_batch * (size_t)e->cfg.text.context_length * sizeof(int32_t));
    e->feat = malloc((size_t)max_batch * (size_t)e->cfg.embed_dim * sizeof(float));
    if (!e->ids || !e->feat) st = vlm_error(VLM_ERR_OOM, "out of memory");
  }
  if (st != VLM_OK) {
    vlm_status keep = st;
    vlm_encoder_close(e);
    return keep;
  }
  return VLM_OK;
}

void vlm_encoder_close(vlm_encoder *e) {
  vlm_clip_params_free(&e->dparams);
  vlm_coca_params_free(&e->dcparams);
  vlm_arena_free(&e->iarena);
  vlm_clip_params_free(&e->params_bf16);
  vlm_clip_params_free(&e->params);
  vlm_coca_params_free(&e->cparams_bf16);
  vlm_coca_params_free(&e->cparams);
  if (e->tok) vlm_tokenizer_free(e->tok);
  vlm_vit_acts_free(&e->vacts);
  vlm_text_acts_free(&e->tacts);
  vlm_arena_free(&e->varena);
  vlm_arena_free(&e->tarena);
  free(e->ids);
  free(e->feat);
  memset(e, 0, sizeof *e);
}

int64_t vlm_encoder_dim(const vlm_encoder *e) { return e->cfg.embed_dim; }
int vlm_encoder_image_size(const vlm_encoder *e) { return (int)e->cfg.vision.image_size; }

static void normalize_rows(const float *in, float *out, int64_t n, int64_t E) {
  for (int64_t i = 0; i < n; i++) {
    const float *x = in + (size_t)i * E;
    double s = 0;
    for (int64_t d = 0; d < E; d++) s += (double)x[d] * x[d];
    double nn = sqrt(s);
    float inv = (float)(1.0 / (nn > 1e-12 ? nn : 1e-12));
    for (int64_t d = 0; d < E; d++) out[(size_t)i * E + d] = x[d] * inv;
  }
}

/* The first b rows of features f on the host: f's memory, or a download into e->feat. */
static const float *host_features(vlm_encoder *e, const vlm_tensor *f, int64_t b) {
  if (f->device == VLM_CPU) return f->data;
  int64_t sh[2] = {b, e->cfg.embed_dim};
  vlm_tensor h = vlm_tensor_make(e->feat, VLM_F32, VLM_CPU, 2, sh), d = vlm_tensor_make(f->data, VLM_F32, f->device, 2, sh);
  vlm_copy(&h, &d);
  return e->feat;
}

void vlm_vit_preprocess_cfg(const vlm_vit_config *v, vlm_preprocess_cfg *pre) {
  vlm_preprocess_cfg_default(pre, (int)v->image_size);
  double mean[3], std[3];
  int mode;
  vlm_vit_image_norm(v, mean, std, &mode);
  for (int i = 0; i < 3; i++) {
    pre->mean[i] = (float)mean[i];
    pre->std[i] = (float)std[i];
  }
  pre->mode = (vlm_resize_mode)mode;
}

vlm_precision vlm_encoder_precision_enter(const vlm_encoder *e) {
  vlm_precision prev = vlm_get_matmul_precision();
  vlm_set_matmul_precision(e->prec);
  return prev;
}

static vlm_status images_run(vlm_encoder *e, const float *pixels, int64_t n, float *out) {
  int64_t S = e->cfg.vision.image_size, E = e->cfg.embed_dim, per = 3 * S * S;
  for (int64_t s = 0; s < n; s += e->max_batch) {
    int64_t b = n - s < e->max_batch ? n - s : e->max_batch;
    if (b != e->vB) {
      vlm_arena_reset(&e->varena);
      vlm_vit_acts_layout(&e->vacts, &e->varena, &e->cfg.vision, b, 0);
      if (e->coca) vlm_attn_pool_acts_layout(&e->pacts, &e->varena, &e->cfg.vision, b, 0);
      e->vB = b;
    }
    int64_t shape[4] = {b, 3, S, S};
    vlm_tensor img = vlm_tensor_cpu_f32((float *)pixels + (size_t)(s * per), 4, shape);
    if (e->dev != VLM_CPU) {   /* one upload of the batch */
      vlm_tensor d = vlm_tensor_make(e->dimg.data, VLM_F32, e->dev, 4, shape);
      vlm_copy(&d, &img);
      img = d;
    }
    const vlm_tensor *f;
    if (e->coca) {
      vlm_coca_vit_forward(&e->cfg.vision, &e->crun->visual, &e->crun->pool, &e->vacts, &e->pacts, &img);
      f = &e->pacts.features;
    } else {
      vlm_vit_forward(&e->cfg.vision, &e->run->visual, &e->vacts, &img);
      f = &e->vacts.features;
    }
    normalize_rows(host_features(e, f, b), out + (size_t)(s * E), b, E);
  }
  return VLM_OK;
}

/* One forward over ids [b, L] (b <= max_batch), rows into out. */
static void text_batch(vlm_encoder *e, const int32_t *ids, int64_t b, int64_t L, float *out) {
  if (b != e->tB || L != e->tL) {
    vlm_arena_reset(&e->tarena);
    vlm_text_acts_layout(&e->tacts, &e->tarena, &e->cfg.text, b, L, 0);
    e->tB = b;
    e->tL = L;
  }
  int64_t shape[2] = {b, L};
  vlm_tensor t = vlm_tensor_make((void *)ids, VLM_I32, VLM_CPU, 2, shape);
  if (e->dev != VLM_CPU) {
    vlm_tensor d = vlm_tensor_make(e->dids.data, VLM_I32, e->dev, 2, shape);
    vlm_copy(&d, &t);
    t = d;
  }
  vlm_text_forward(&e->cfg.text, e->coca ? &e->crun->text : &e->run->text, &e->tacts, &t);
  normalize_rows(host_features(e, &e->tacts.features, b), out, b, e->cfg.embed_dim);
}

static vlm_status ids_run(vlm_encoder *e, const int32_t *ids, int64_t n, int64_t L, float *out) {
  int64_t ctx = e->cfg.text.context_length, V = e->cfg.text.vocab_size, E = e->cfg.embed_dim;
  if (L < 1 || L > ctx)
    return vlm_error(VLM_ERR_ARG, "token ids of length %lld: the model's context length is %lld", (long long)L,
                     (long long)ctx);
  for (int64_t i = 0; i < n * L; i++)
    if (ids[i] < 0 || ids[i] >= V)
      return vlm_error(VLM_ERR_ARG, "token id %d (text %lld, position %lld) is outside the vocabulary [0, %lld)",
                       ids[i], (long long)(i / L), (long long)(i % L), (long long)V);
  for (int64_t s = 0; s < n; s += e->max_batch) {
    int64_t b = n - s < e->max_batch ? n - s : e->max_batch;
    if (e->coca && L < ctx) {   /* CoCa runs at the full context: pad the rows */
      for (int64_t i = 0; i < b; i++) {
        int32_t *r = e->ids + (size_t)(i * ctx);
        memcpy(r, ids + (size_t)((s + i) * L), (size_t)L * sizeof(int32_t));
        for (int64_t j = L; j < ctx; j++) r[j] = (int32_t)e->cfg.text.pad_id;
      }
      text_batch(e, e->ids, b, ctx, out + (size_t)(s * E));
    } else {
      text_batch(e, ids + (size_t)(s * L), b, L, out + (size_t)(s * E));
    }
  }
  return VLM_OK;
}

typedef struct { size_t len; int64_t i; } text_len;

static int by_text_length(const void *a, const void *b) {
  const text_len *x = a, *y = b;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

static vlm_status texts_run(vlm_encoder *e, const char *const *texts, int64_t n, float *out) {
  if (!e->tok) return vlm_error(VLM_ERR_ARG, "text embedding needs a tokenizer (none was loaded)");
  int64_t ctx = e->cfg.text.context_length, E = e->cfg.embed_dim;
  /* More texts than one batch: taken in order of length (bytes, a stand-in for tokens), so
   * that each batch, run at its longest text, carries little padding; the rows go back to
   * the texts' places. (A CoCa runs at the full context: no gain there.) */
  text_len *order = NULL;
  float *rows = NULL;
  if (n > e->max_batch && !e->coca) {
    order = malloc((size_t)n * sizeof *order);
    rows = malloc((size_t)(e->max_batch * E) * sizeof *rows);
    if (!order || !rows) {
      free(order);
      free(rows);
      return vlm_error(VLM_ERR_OOM, "out of memory ordering %lld texts", (long long)n);
    }
    int sorted = 1;
    for (int64_t i = 0; i < n; i++) {
      order[i] = (text_len){strlen(texts[i]), i};
      sorted &= i == 0 || order[i].len >= order[i - 1].len;
    }
    if (sorted) {   /* already in order (vlm index sorts the whole file first): as given, no copies */
      free(order);
      free(rows);
      order = NULL;
      rows = NULL;
    } else {
      qsort(order, (size_t)n, sizeof *order, by_text_length);
    }
  }
  vlm_status st = VLM_OK;
  for (int64_t s = 0; s < n && st == VLM_OK; s += e->max_batch) {
    int64_t b = n - s < e->max_batch ? n - s : e->max_batch, L = 1;
    for (int64_t i = 0; i < b; i++) {
      const char *t = texts[order ? order[s + i].i : s + i];
      int len = vlm_tokenizer_encode_ctx(e->tok, t, strlen(t), (int)ctx, 0, e->ids + (size_t)(i * ctx));
      if (len < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory tokenizing a text"); break; }
      if (len > L) L = len;
    }
    if (st != VLM_OK) break;
    if (L > ctx || e->coca) L = ctx;
    if (L < ctx)   /* compact [b, ctx] rows to [b, L] in place (front to back) */
      for (int64_t i = 1; i < b; i++) memmove(e->ids + i * L, e->ids + i * ctx, (size_t)L * sizeof(int32_t));
    text_batch(e, e->ids, b, L, order ? rows : out + (size_t)(s * E));
    for (int64_t i = 0; order && i < b; i++)
      memcpy(out + (size_t)(order[s + i].i * E), rows + (size_t)(i * E), (size_t)E * sizeof(float));
  }
  free(order);
  free(rows);
  return st;
}

/* The public calls: the encoder's matmul precision for the call, the thread's back after. */
vlm_status vlm_encoder_images(vlm_encoder *e, const float *pixels, int64_t n, float *out) {
  vlm_precision prev = vlm_encoder_precision_enter(e);
  vlm_status st = images_run(e, pixels, n, out);
  vlm_set_matmul_precision(prev);
  return st;
}

vlm_status vlm_encoder_ids(vlm_encoder *e, const int32_t *ids, int64_t n, int64_t L, float *out) {
  vlm_precision prev = vlm_encoder_precision_enter(e);
  vlm_status st = ids_run(e, ids, n, L, out);
  vlm_set_matmul_precision(prev);
  return st;
}

vlm_status vlm_encoder_texts(vlm_encoder *e, const char *const *texts, int64_t n, float *out) {
  vlm_precision prev = vlm_encoder_precision_enter(e);
  vlm_status st = texts_run(e, texts, n, out);
  vlm_set_matmul_precision(prev);
  return st;
}

vlm_status vlm_encoder_text_cb(void *ctx, const char *const *texts, int n, float *out) {
  return vlm_encoder_texts(ctx, texts, n, out);
}
