/* Loading CLIP checkpoints: open_clip and Hugging Face CLIPModel names. */
#define _DEFAULT_SOURCE 1 /* strdup */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

const char *vlm_ckpt_format_name(vlm_ckpt_format f) { return f == VLM_CKPT_HF ? "huggingface" : "open_clip"; }

/* A growable message: one line per problem. */
typedef struct {
  char *buf;
  size_t len, cap;
  int count;
} msg;

static void msg_add(msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg_add(msg *m, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  if (m->len + (size_t)n + 4 > m->cap) {   /* "\n  ", the line, its NUL */
    size_t cap = (m->cap ? m->cap * 2 : 1024) + (size_t)n + 4;
    char *b = realloc(m->buf, cap);
    if (!b) return;
    m->buf = b;
    m->cap = cap;
  }
  memcpy(m->buf + m->len, "\n  ", 3);
  memcpy(m->buf + m->len + 3, line, (size_t)n);
  m->len += (size_t)n + 3;
  m->buf[m->len] = 0;
  m->count++;
}

/* Rename an open_clip prefix to HF; returns 1 when matched. */
static int swap_prefix(const char *name, const char *from, const char *to, char *out, size_t n) {
  size_t k = strlen(from);
  if (strncmp(name, from, k)) return 0;
  snprintf(out, n, "%s%s", to, name + k);
  return 1;
}

static const struct { const char *oc, *hf; } k_block_names[] = {
  {"ln_1.", "layer_norm1."},          {"ln_2.", "layer_norm2."},
  {"attn.out_proj.", "self_attn.out_proj."}, {"mlp.c_fc.", "mlp.fc1."},
  {"mlp.c_proj.", "mlp.fc2."},
};

static int block_name(const char *rest, const char *hf_tower, char parts[3][256], int *n_parts) {
  /* rest = "N.suffix" */
  char *dot;
  long layer = strtol(rest, &dot, 10);
  if (dot == rest || *dot != '.') return 0;
  const char *suffix = dot + 1;
  for (size_t i = 0; i < sizeof k_block_names / sizeof k_block_names[0]; i++) {
    size_t k = strlen(k_block_names[i].oc);
    if (!strncmp(suffix, k_block_names[i].oc, k)) {
      snprintf(parts[0], 256, "%s.encoder.layers.%ld.%s%s", hf_tower, layer, k_block_names[i].hf, suffix + k);
      *n_parts = 1;
      return 1;
    }
  }
  const char *kind = !strcmp(suffix, "attn.in_proj_weight") ? "weight"
                   : !strcmp(suffix, "attn.in_proj_bias")   ? "bias" : NULL;
  if (!kind) return 0;
  const char *qkv[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++)
    snprintf(parts[i], 256, "%s.encoder.layers.%ld.self_attn.%s_proj.%s", hf_tower, layer, qkv[i], kind);
  *n_parts = 3;
  return 1;
}

int vlm_clip_hf_name(const char *name, char parts[3][256], int *n_parts, int *transpose) {
  *n_parts = 1;
  *transpose = 0;
  static const struct { const char *oc, *hf; } exact[] = {
    {"logit_scale", "logit_scale"},
    {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
    {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
    {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
  };
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (!strcmp(name, exact[i].oc)) {
      snprintf(parts[0], 256, "%s", exact[i].hf);
      return 1;
    }
  if (!strcmp(name, "visual.proj")) {
    snprintf(parts[0], 256, "visual_projection.weight");
    *transpose = 1;
    return 1;
  }
  if (!strcmp(name, "text_projection")) {
    snprintf(parts[0], 256, "text_projection.weight");
    *transpose = 1;
    return 1;
  }
  if (swap_prefix(name, "visual.ln_pre.", "vision_model.pre_layrnorm.", parts[0], 256)) return 1;
  if (swap_prefix(name, "visual.ln_post.", "vision_model.post_layernorm.", parts[0], 256)) return 1;
  if (swap_prefix(name, "ln_final.", "text_model.final_layer_norm.", parts[0], 256)) return 1;
  if (!strncmp(name, "visual.transformer.resblocks.", 29))
    return block_name(name + 29, "vision_model", parts, n_parts);
  if (!strncmp(name, "transformer.resblocks.", 22)) return block_name(name + 22, "text_model", parts, n_parts);
  return 0;
}

typedef struct {
  const vlm_weights *w;
  vlm_ckpt_format fmt;
  char **used;     /* per shard, per entry: consumed */
  msg missing, shape, other;
  vlm_status io;
} load_ctx;

/* The entry `name` and (in *st) the file holding it; marks it consumed. */
static const vlm_st_entry *find(load_ctx *L, const char *name, const vlm_safetensors **st) {
  int k = 0;
  const vlm_st_entry *e = vlm_weights_find(L->w, name, &k);
  if (!e) return NULL;
  *st = &L->w->shards[k];
  L->used[k][e - (*st)->entries] = 1;
  return e;
}

static void entry_shape(const vlm_st_entry *e, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < e->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "",
                                                                    (long long)e->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "] %s", vlm_dtype_name(e->dtype));
}

/* Drop an entry's pages from the process once it is copied, so a load peaks at
 * the parameters plus one tensor instead of twice the checkpoint. Only pages of the file's
 * read-only mapping (read again from the file if needed): a torch file's strided views are
 * heap copies (st->owned), which MADV_DONTNEED would zero for a second reader (tied weights). */
static void release_pages(const vlm_safetensors *st, const vlm_st_entry *e) {
  const uint8_t *m = st->map, *d = e->data;
  if (!m || d < m || d + (e->end - e->begin) > m + st->map_size) return;
  vlm_host_release(d, (size_t)(e->end - e->begin));
}

static int float_dtype(vlm_dtype d) { return d == VLM_F32 || d == VLM_F16 || d == VLM_BF16 || d == VLM_F64; }

static void load_one(void *ctx, const char *name, vlm_tensor *t) {
  load_ctx *L = ctx;
  char parts[3][256], want[128], got[128];
  int n_parts = 1, transpose = 0;
  if (L->fmt == VLM_CKPT_HF) {
    if (!vlm_clip_hf_name(name, parts, &n_parts, &transpose)) {
      msg_add(&L->other, "%s: no Hugging Face name known", name);
      return;
    }
  } else {
    snprintf(parts[0], 256, "%s", name);
    /* open_clip's CustomTextCLIP ("custom_text": true) with its own text tower keeps that tower
     * under "text.": the same tensors */
    int k;
    if (strncmp(name, "visual.", 7) && strcmp(name, "logit_scale") && strcmp(name, "logit_bias") &&
        !vlm_weights_find(L->w, name, &k)) {
      char alt[256];
      snprintf(alt, sizeof alt, "text.%s", name);
      if (vlm_weights_find(L->w, alt, &k)) snprintf(parts[0], 256, "%s", alt);
    }
  }
  vlm_shape_str(t, want, sizeof want);
  int64_t rows = t->ndim ? t->shape[0] / n_parts : 1;
  int64_t per = vlm_numel(t) / n_parts;
  for (int i = 0; i < n_parts; i++) {
    const vlm_safetensors *st = NULL;
    const vlm_st_entry *e = find(L, parts[i], &st);
    if (!e) {
      msg_add(&L->missing, "%s", parts[i]);
      continue;
    }
    /* Expected shape of this part. */
    int64_t exp[VLM_MAX_DIMS];
    int nd = t->ndim;
    for (int d = 0; d < nd; d++) exp[d] = t->shape[d];
    if (nd) exp[0] = rows;
    if (transpose) { exp[0] = t->shape[1]; exp[1] = t->shape[0]; }
    int ok = e->ndim == nd || (nd == 0 && e->ndim == 1 && e->shape[0] == 1);
    if (ok && e->ndim == nd)
      for (int d = 0; d < nd; d++) ok &= e->shape[d] == exp[d];
    if (!ok) {
      entry_shape(e, got, sizeof got);
      char ew[128];
      size_t k = (size_t)snprintf(ew, sizeof ew, "[");
      for (int d = 0; d < nd; d++) k += (size_t)snprintf(ew + k, sizeof ew - k, "%s%lld", d ? ", " : "", (long long)exp[d]);
      snprintf(ew + k, sizeof ew - k, "]");
      msg_add(&L->shape, "%s: is %s, expected %s", parts[i], got, ew);
      continue;
    }
    if (!float_dtype(e->dtype)) {
      entry_shape(e, got, sizeof got);
      msg_add(&L->shape, "%s: is %s, expected a float type (F32, F16, BF16)", parts[i], got);
      continue;
    }
    if (!t->data) continue;
    float *dst = (float *)t->data + i * per;
    if (!transpose) {
      if (vlm_st_read_f32(st, e, dst, per) != VLM_OK) L->io = VLM_ERR_FORMAT;
      release_pages(st, e);
      continue;
    }
    int64_t R = t->shape[0], C = t->shape[1];   /* dst [R, C] <- src [C, R] */
    float *tmp = malloc((size_t)(R * C) * sizeof(float));
    if (!tmp) { L->io = vlm_error(VLM_ERR_OOM, "%s: out of memory for %s", st->path, parts[i]); continue; }
    if (vlm_st_read_f32(st, e, tmp, R * C) != VLM_OK) L->io = VLM_ERR_FORMAT;
    release_pages(st, e);
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = 0; c < C; c++) dst[r * C + c] = tmp[c * R + r];
    free(tmp);
  }
}

/* Buffers HF checkpoints carry that are not parameters. */
static int ignorable(const char *name, vlm_ckpt_format fmt) {
  const char *s = strrchr(name, '.');
  return fmt == VLM_CKPT_HF && s && !strcmp(s, ".position_ids");
}

typedef struct { vlm_clip_params *p; const vlm_clip_config *c; } clip_model;

static void clip_visit_all(void *model, vlm_param_visit_fn fn, void *ctx) {
  clip_model *m = model;
  vlm_clip_params_visit(m->p, m->c, fn, ctx);
}

static vlm_status load_visit(vlm_visit_all_fn visit, void *model, const char *path, vlm_ckpt_format fmt);

vlm_status vlm_clip_load_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                     vlm_ckpt_format fmt) {
  clip_model m = {p, c};
  return load_visit(clip_visit_all, &m, path, fmt);
}

vlm_status vlm_load_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path) {
  return load_visit(visit, model, path, VLM_CKPT_OPENCLIP);
}

static vlm_status load_from(vlm_visit_all_fn visit, void *model, const vlm_weights *wp, const char *path,
                            vlm_ckpt_format fmt);

static vlm_status load_visit(vlm_visit_all_fn visit, void *model, const char *path, vlm_ckpt_format fmt) {
  vlm_weights w;
  vlm_status s = vlm_weights_open(&w, path);
  if (s != VLM_OK) return s;
  s = load_from(visit, model, &w, path, fmt);
  vlm_weights_close(&w);
  return s;
}

/* The same from weights already open (the caller closes them). */
static vlm_status load_from(vlm_visit_all_fn visit, void *model, const vlm_weights *wp, const char *path,
                            vlm_ckpt_format fmt) {
  vlm_status s = VLM_OK;
  load_ctx L;
  memset(&L, 0, sizeof L);
  L.w = wp;
  L.fmt = fmt;
  L.used = calloc((size_t)wp->n_shards, sizeof *L.used);
  for (int k = 0; L.used && k < wp->n_shards; k++)
    if (!(L.used[k] = calloc((size_t)wp->shards[k].n_entries + 1, 1))) s = VLM_ERR_OOM;
  if (!L.used || s != VLM_OK) {
    for (int k = 0; L.used && k < wp->n_shards; k++) free(L.used[k]);
    free(L.used);
    return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  }
  visit(model, load_one, &L);
  msg unexpected = {0};
  for (int k = 0; k < wp->n_shards; k++)
    for (int i = 0; i < wp->shards[k].n_entries; i++) {
      const char *name = wp->shards[k].entries[i].name;
      if (L.used[k][i] || ignorable(name, fmt)) continue;
      if (wp->n_shards > 1) msg_add(&unexpected, "%s (in %s)", name, wp->shards[k].path);
      else msg_add(&unexpected, "%s", name);
    }
  int bad = L.missing.count + L.shape.count + L.other.count + unexpected.count;
  if (bad) {
    s = vlm_error(VLM_ERR_FORMAT,
                  "%s: does not match the %s layout of this config: %d missing, %d unexpected, %d mis-shaped "
                  "tensor(s)%s%s%s%s%s%s%s%s",
                  path, vlm_ckpt_format_name(fmt), L.missing.count, unexpected.count, L.shape.count + L.other.count,
                  L.missing.count ? "\nmissing:" : "", L.missing.buf ? L.missing.buf : "",
                  unexpected.count ? "\nunexpected:" : "", unexpected.buf ? unexpected.buf : "",
                  L.shape.count ? "\nmis-shaped:" : "", L.shape.buf ? L.shape.buf : "",
                  L.other.count ? "\nunknown:" : "", L.other.buf ? L.other.buf : "");
  } else if (L.io != VLM_OK) {
    s = L.io;   /* its message names the file (vlm_st_read_f32) */
  }
  free(L.missing.buf);
  free(L.shape.buf);
  free(L.other.buf);
  free(unexpected.buf);
  for (int k = 0; k < wp->n_shards; k++) free(L.used[k]);
  free(L.used);
  return s;
}

static int is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Why a path that is neither a regular file nor a directory cannot be a model. */
static const char *not_found_why(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0) return "no such file or directory";
  if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode)) return "a device, not a model file or directory";
  if (S_ISFIFO(sb.st_mode)) return "a pipe (FIFO), not a model file or directory";
  if (S_ISSOCK(sb.st_mode)) return "a socket, not a model file or directory";
  return "not a regular file or directory";
}

/* dir/name when it is a file, else dir/name.index.json (a sharded save) when that is: 1; else
 * dir/name and 0. */
static int find_weights(const char *dir, int dir_len, const char *name, char *out, size_t n) {
  snprintf(out, n, "%.*s/%s.index.json", dir_len, dir, name);
  if (!is_file(out)) snprintf(out, n, "%.*s/%s", dir_len, dir, name);
  return is_file(out);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* A weights file given as the model path: a PyTorch checkpoint, a .safetensors file or a
 * sharded save's index. */
int vlm_is_weights_file(const char *path) {
  /* PyTorch's usual names too, so that a legacy (non-zip) .pt gets the torch reader's message */
  return vlm_torch_sniff(path) || ends_with(path, ".safetensors") || vlm_weights_is_index(path) ||
         vlm_is_torch_name(path);
}

/* A model directory's (config, weights) pairs in the order they are looked for: safetensors
 * before PyTorch pickles, open_clip's pair before the HF pair. */
static const char *const k_dir_pairs[4][2] = {{"open_clip_config.json", "open_clip_model.safetensors"},
                                              {"config.json", "model.safetensors"},
                                              {"open_clip_config.json", "open_clip_pytorch_model.bin"},
                                              {"config.json", "pytorch_model.bin"}};

int vlm_model_dir_shadow(const char *dir, const char *cfg_name, const char *weights_name, char *other, size_t n) {
  const int len = (int)strlen(dir);
  char cfg[4200];
  for (int i = 0; i < 4; i++) {
    const int same_cfg = !strcmp(k_dir_pairs[i][0], cfg_name);
    if (!strcmp(k_dir_pairs[i][1], weights_name)) {
      /* this pair is the one written: a sharded save's index of its name is read instead */
      snprintf(other, n, "%s/%s.index.json", dir, weights_name);
      return same_cfg && is_file(other) ? 1 : 0;
    }
    snprintf(cfg, sizeof cfg, "%s/%s", dir, k_dir_pairs[i][0]);
    if ((same_cfg || is_file(cfg)) && find_weights(dir, len, k_dir_pairs[i][1], other, n)) return same_cfg ? 1 : 2;
  }
  other[0] = 0;
  return 0;
}

vlm_status vlm_model_paths(const char *path, char *cfg, char *weights, size_t n) {
  if (is_dir(path)) {
    /* the pairs in order; when none is complete, open_clip's names if its config is there
     * (the error then names its weights) */
    const char *const(*pairs)[2] = k_dir_pairs;
    int len = (int)strlen(path);
    for (int i = 0; i < 4; i++) {
      snprintf(cfg, n, "%s/%s", path, pairs[i][0]);
      if (is_file(cfg) && find_weights(path, len, pairs[i][1], weights, n)) return VLM_OK;
    }
    /* a `vlm train` run directory (its config.json holds the run's settings, not a model's
     * config alone; the weights are under checkpoints/): name the checkpoint to use */
    snprintf(cfg, n, "%s/checkpoints", path);
    if (is_dir(cfg)) {
      while (len > 1 && path[len - 1] == '/') len--;
      return vlm_error(VLM_ERR_IO, "%s: a vlm train run directory, not a model: use %.*s/checkpoints/latest (or "
                       "another checkpoint in %.*s/checkpoints/)", path, len, path, len, path);
    }
    snprintf(cfg, n, "%s/open_clip_config.json", path);
    snprintf(weights, n, "%s/open_clip_model.safetensors", path);
    if (!is_file(cfg)) {
      snprintf(cfg, n, "%s/config.json", path);
      snprintf(weights, n, "%s/model.safetensors", path);
    }
  } else if (is_file(path)) {
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) : 1;
    const char *dir = slash ? path : ".";
    const char *base = slash ? slash + 1 : path;
    if (vlm_is_weights_file(path)) {
      /* the weights themselves: the config beside them, when there is one; else none (a
       * TorchScript archive's is read off its shapes: vlm_clip_config_resolve). Hugging Face's
       * file names (model.safetensors, pytorch_model.bin, their shards and indexes) take
       * config.json first: LAION's hub repositories hold both layouts side by side. */
      const int hf_name = !strncmp(base, "model.", 6) || !strncmp(base, "model-", 6) ||
                          !strncmp(base, "pytorch_model.", 14) || !strncmp(base, "pytorch_model-", 14);
      const char *first = hf_name ? "config.json" : "open_clip_config.json";
      const char *second = hf_name ? "open_clip_config.json" : "config.json";
      snprintf(weights, n, "%s", path);
      snprintf(cfg, n, "%.*s/%s", dir_len, dir, first);
      if (!is_file(cfg)) snprintf(cfg, n, "%.*s/%s", dir_len, dir, second);
      if (!is_file(cfg)) snprintf(cfg, n, "%.*s/../params.txt", dir_len, dir);   /* open_clip's LOGS/RUN/checkpoints/ */
      if (!is_file(cfg)) cfg[0] = 0;
      return VLM_OK;
    }
    snprintf(cfg, n, "%s", path);
    const int oc = !strcmp(base, "open_clip_config.json"), hf = !strcmp(base, "config_hf.json");
    const char *st_name = oc ? "open_clip_model.safetensors" : hf ? "model_hf.safetensors" : "model.safetensors";
    if (!find_weights(dir, dir_len, st_name, weights, n) && !hf &&
        !find_weights(dir, dir_len, oc ? "open_clip_pytorch_model.bin" : "pytorch_model.bin", weights, n))
      find_weights(dir, dir_len, st_name, weights, n);   /* missing: named in the error */
  } else {
    return vlm_error(VLM_ERR_IO, "%s: %s", path, not_found_why(path));
  }
  if (!is_file(cfg)) return vlm_error(VLM_ERR_IO, "%s: no config (open_clip_config.json or config.json)", path);
  return VLM_OK;
}

vlm_status vlm_model_weights_exist(const char *cfg, const char *weights) {
  if (is_file(weights)) return VLM_OK;
  struct stat sb;
  if (stat(weights, &sb) == 0)
    return vlm_error(VLM_ERR_IO, "%s: %s, not the weights file for %s", weights, not_found_why(weights), cfg);
  return vlm_error(VLM_ERR_IO, "%s: missing (the weights for %s)", weights, cfg);
}

vlm_status vlm_ckpt_name_config(vlm_status s, const char *label) {
  static const char this_cfg[] = " layout of this config:";
  const char *m = vlm_last_error(), *at = strstr(m, this_cfg);
  if (s == VLM_OK || !at || !label || !label[0]) return s;
  char *copy = strdup(m);
  if (!copy) return s;
  const int head = (int)(at - m);
  s = vlm_error(s, "%.*s layout of the config %s:%s", head, copy, label, copy + head + sizeof this_cfg - 1);
  free(copy);
  return s;
}

/* The weights of a model (named with its config in errors), opened. */
static vlm_status open_weights(const char *cfg, const char *weights, vlm_weights *w) {
  vlm_status s = vlm_model_weights_exist(cfg, weights);
  return s == VLM_OK ? vlm_weights_open(w, weights) : s;
}

vlm_status vlm_clip_load_as(const char *path, const char *config, vlm_clip_config *c, vlm_clip_params *p,
                            vlm_ckpt_format *fmt) {
  char cfg[4096], weights[4096];
  vlm_status ps = vlm_model_paths(path, cfg, weights, sizeof cfg);
  if (ps != VLM_OK && !(config && is_file(path))) return ps;
  if (ps != VLM_OK) snprintf(weights, sizeof weights, "%s", path);   /* a bare weights file, its config named */
  const char *label = config ? config : cfg;
  /* the weights are opened once: before the config when it is read off their shapes, else after
   * it (a bad config is reported first) */
  vlm_weights w;
  int opened = 0, hf = 0;
  vlm_status s = VLM_OK;
  if (vlm_clip_config_reads_weights(cfg, config)) opened = (s = open_weights(label, weights, &w)) == VLM_OK;
  if (s == VLM_OK)
    s = config ? vlm_clip_config_named(c, config, weights, opened ? &w : NULL, &hf)
               : vlm_clip_config_resolve(c, cfg, weights, opened ? &w : NULL, &hf);
  if (s == VLM_OK && !opened) opened = (s = open_weights(label, weights, &w)) == VLM_OK;
  if (s == VLM_OK && (s = vlm_clip_params_init(p, c)) == VLM_OK) {
    *fmt = hf ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP;
    clip_model m = {p, c};
    s = load_from(clip_visit_all, &m, &w, weights, *fmt);
    if (s != VLM_OK) vlm_clip_params_free(p);
  }
  if (opened) vlm_weights_close(&w);
  return vlm_ckpt_name_config(s, label);
}

vlm_status vlm_clip_load(const char *path, vlm_clip_config *c, vlm_clip_params *p, vlm_ckpt_format *fmt) {
  return vlm_clip_load_as(path, NULL, c, p, fmt);
}
