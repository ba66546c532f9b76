/* vlm zeroshot --classifier FILE: a zero-shot classifier kept between runs (see tools.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/tools.h"
#include "contrastive/contrastive.h"

#define FORMAT "vlm-zeroshot-classifier"

/* The key's start: what besides the prompts' ids makes a classifier this one. */
static void key_start(vlm_hash *h, const vlm_encoder *e, int C, int T) {
  vlm_hash_init(h);
  const char *const words[] = {FORMAT "-1", e->identity, e->prec == VLM_PREC_BF16 ? "bf16" : "f32",
                               e->dev == VLM_CPU ? "cpu" : "gpu"};
  for (int i = 0; i < 4; i++) vlm_hash_bytes(h, words[i], strlen(words[i]));
  const int64_t sizes[3] = {C, T, vlm_encoder_dim(e)};
  vlm_hash_bytes(h, sizes, sizeof sizes);
}

vlm_status vlm_zs_cache_key(vlm_encoder *e, const char *const *classes, int C, const char *const *tpl, int T,
                            char *key, size_t n) {
  if (!e->tok) return vlm_error(VLM_ERR_ARG, "zero-shot classifier key: no tokenizer");
  const int ctx = (int)e->cfg.text.context_length;
  int32_t *ids = malloc((size_t)(ctx > 0 ? ctx : 1) * sizeof *ids);
  if (!ids) return vlm_error(VLM_ERR_OOM, "out of memory");
  vlm_hash h;
  key_start(&h, e, C, T);
  vlm_status st = VLM_OK;
  /* every prompt as the text tower reads it: the class names, the templates and the tokenizer */
  for (int64_t t = 0; t < (int64_t)C * T && st == VLM_OK; t++) {
    char *text = vlm_zeroshot_fill(tpl[t % T], classes[t / T]);
    if (!text || vlm_tokenizer_encode_ctx(e->tok, text, strlen(text), ctx, 0, ids) < 0)
      st = vlm_error(VLM_ERR_OOM, "out of memory");
    else
      vlm_hash_bytes(&h, ids, (size_t)ctx * sizeof *ids);
    free(text);
  }
  free(ids);
  if (st == VLM_OK) snprintf(key, n, "%016llx", (unsigned long long)vlm_hash_final(&h));
  return st;
}

int vlm_zs_cache_read(const char *path, const char *key, int64_t C, int64_t E, float *W) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno == ENOENT) return 0;
    vlm_error(VLM_ERR_IO, "%s: %s", path, strerror(errno));
    return -1;
  }
  vlm_safetensors st;
  vlm_status s = vlm_st_open(&st, path);
  if (s != VLM_OK) {
    char why[VLM_ERR_LEN];
    snprintf(why, sizeof why, "%s", vlm_last_error());
    vlm_error(s, "--classifier: %s (not a zero-shot classifier written by vlm zeroshot: left as it is)", why);
    return -1;
  }
  const char *fmt = vlm_st_meta(&st, "format"), *k = vlm_st_meta(&st, "key");
  const vlm_st_entry *w = vlm_st_find(&st, "classifier");
  int rc = 0;
  if (!fmt || strcmp(fmt, FORMAT)) {
    vlm_error(VLM_ERR_FORMAT, "--classifier: %s: not a zero-shot classifier written by vlm zeroshot (no format \"%s\"): "
              "left as it is; name another file", path, FORMAT);
    rc = -1;
  } else if (!k || strcmp(k, key) || !w || w->ndim != 2 || w->shape[0] != C || w->shape[1] != E) {
    rc = 0;   /* made for another model, other prompts or another precision: built again */
  } else if ((s = vlm_st_read_f32(&st, w, W, C * E)) != VLM_OK) {
    rc = -1;
  } else {
    rc = 1;
    for (int64_t c = 0; c < C && rc == 1; c++) {   /* unit rows: damaged otherwise */
      double ss = 0;
      for (int64_t d = 0; d < E; d++) ss += (double)W[c * E + d] * W[c * E + d];
      if (!(ss > 0.999 && ss < 1.001)) {
        vlm_error(VLM_ERR_FORMAT, "--classifier: %s: class %lld's embedding is not a unit vector (damaged)", path,
                  (long long)c);
        rc = -1;
      }
    }
  }
  vlm_st_close(&st);
  return rc;
}

vlm_status vlm_zs_cache_write(const char *path, const char *key, const vlm_encoder *e, const char *model, int T,
                              int64_t C, const float *W) {
  vlm_st_writer *w = vlm_st_writer_new();
  if (!w) return vlm_error(VLM_ERR_OOM, "out of memory");
  const int64_t E = vlm_encoder_dim(e), shape[2] = {C, E};
  char num[32];
  snprintf(num, sizeof num, "%d", T);
  vlm_status s = vlm_st_writer_add(w, "classifier", VLM_F32, 2, shape, W);
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "format", FORMAT);
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "version", "1");
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "key", key);
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "model_identity", e->identity);
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "model", model);
  if (s == VLM_OK) s = vlm_st_writer_meta(w, "templates", num);
  if (s == VLM_OK) s = vlm_st_writer_save(w, path);
  vlm_st_writer_free(w);
  return s;
}

/* Prompt checks: the text tower sees a prompt only as its token ids, cut to the context length,
 * so two class names the tokenizer reads alike ("Red Circle", "red  circle": it lower-cases and
 * collapses spaces), or names cut off by a long template, give the same class embedding and
 * split its probability without a word. Said here, once per run, for zeroshot and eval alike
 * (whether the classifier is built or read from --classifier: the prompts are the same). */
#define PROMPT_WARNINGS 10   /* lines of each kind; the rest counted */

typedef struct { uint64_t cut; int c; } class_sig;

static int by_sig(const void *a, const void *b) {
  const class_sig *x = a, *y = b;
  if (x->cut != y->cut) return x->cut < y->cut ? -1 : 1;
  return (x->c > y->c) - (x->c < y->c);
}

/* The ids of prompt (t, c) as the text tower reads them, into ids[ctx]; returns the length
 * before the cut (sot and eot included), -1 when out of memory. */
static int prompt_ids(vlm_encoder *e, const char *tpl, const char *cls, int ctx, int32_t *ids) {
  char *text = vlm_zeroshot_fill(tpl, cls);
  int n = text ? vlm_tokenizer_encode_ctx(e->tok, text, strlen(text), ctx, 0, ids) : -1;
  free(text);
  return n;
}

/* Whether the prompts of classes a and b are the same ids for every template (the check
 * behind a hash match: a warning is never a hash collision). -1: out of memory. */
static int same_prompts(vlm_encoder *e, const char *const *classes, int a, int b, const char *const *tpl, int T,
                        int ctx, int32_t *ia, int32_t *ib) {
  for (int t = 0; t < T; t++) {
    if (prompt_ids(e, tpl[t], classes[a], ctx, ia) < 0 || prompt_ids(e, tpl[t], classes[b], ctx, ib) < 0) return -1;
    if (memcmp(ia, ib, (size_t)ctx * sizeof *ia)) return 0;
  }
  return 1;
}

/* key: when not NULL, every prompt's ids as vlm_zs_cache_key hashes them (one tokenization
 * for both: a classifier read from --classifier takes milliseconds besides). */
static vlm_status check_prompts(vlm_encoder *e, const char *cmd, const char *const *classes, int C,
                                const char *const *tpl, int T, vlm_hash *key) {
  const int ctx = (int)e->cfg.text.context_length;
  if (!e->tok || ctx < 2) return VLM_OK;
  const char *vlm = strncmp(cmd, "vlm ", 4) ? "vlm " : "";   /* eval passes "vlm eval: zero-shot" */
  int cap = ctx;
  int32_t *ids = malloc((size_t)cap * sizeof *ids), *ib = malloc((size_t)ctx * sizeof *ib);
  class_sig *sig = malloc(((size_t)C + 1) * sizeof *sig);
  uint64_t *full = malloc(((size_t)C + 1) * sizeof *full);
  int *n_cut = calloc((size_t)T + 1, sizeof *n_cut), *first_cut = malloc(((size_t)T + 1) * sizeof *first_cut);
  char *pre = NULL;
  vlm_status st = !ids || !ib || !sig || !full || !n_cut || !first_cut ? vlm_error(VLM_ERR_OOM, "out of memory") : VLM_OK;
  for (int c = 0; c < C && st == VLM_OK; c++) {
    vlm_hash hc, hf;   /* the ids as read (cut to ctx), and whole */
    vlm_hash_init(&hc);
    vlm_hash_init(&hf);
    for (int t = 0; t < T && st == VLM_OK; t++) {
      int n = prompt_ids(e, tpl[t], classes[c], ctx, ids);
      if (n < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
      vlm_hash_bytes(&hc, ids, (size_t)ctx * sizeof *ids);
      if (key) vlm_hash_bytes(key, ids, (size_t)ctx * sizeof *ids);
      if (n > ctx) {   /* cut: the whole prompt for the second hash, and is the class name cut? */
        if (n > cap) {
          int32_t *g = realloc(ids, (size_t)n * sizeof *g);
          if (!g) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
          ids = g;
          cap = n;
        }
        if (prompt_ids(e, tpl[t], classes[c], n, ids) < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
        /* the template up to the end of its last class placeholder ("{}", "{c}"), filled: the
         * prompt's tokens up to the class name's last; they fit when sot + them leave the last
         * position to the eot that the cut forces there */
        size_t end = 0, tl = strlen(tpl[t]);
        for (size_t k = 0; k < tl; k++)
          if (tpl[t][k] == '{' && tpl[t][k + 1] == '}') end = k + 2;
          else if (tpl[t][k] == '{' && tpl[t][k + 1] == 'c' && tpl[t][k + 2] == '}') end = k + 3;
        free(pre);
        if (!(pre = strndup(tpl[t], end))) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
        int np = prompt_ids(e, pre, classes[c], ctx, ib);
        if (np < 0) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
        if (np > ctx && n_cut[t]++ == 0) first_cut[t] = c;
      }
      vlm_hash_bytes(&hf, &n, sizeof n);
      vlm_hash_bytes(&hf, ids, (size_t)(n < ctx ? ctx : n) * sizeof *ids);
    }
    sig[c] = (class_sig){vlm_hash_final(&hc), c};
    full[c] = vlm_hash_final(&hf);
  }
  int shown = 0, more = 0;
  for (int t = 0; t < T && st == VLM_OK; t++) {
    if (!n_cut[t]) continue;
    if (shown++ >= PROMPT_WARNINGS) { more++; continue; }
    char others[64] = "";
    if (n_cut[t] > 1) snprintf(others, sizeof others, " (and %d other%s)", n_cut[t] - 1, n_cut[t] > 2 ? "s" : "");
    fprintf(stderr, "%s%s: warning: template %d '%s' with class %d '%s'%s is longer than the model's context length "
            "(%d tokens): the prompt is cut inside the class name, which the model then does not read whole\n",
            vlm, cmd, t + 1, tpl[t], first_cut[t] + 1, classes[first_cut[t]], others, ctx);
  }
  if (more) fprintf(stderr, "%s%s: warning: %d more templates cut inside class names\n", vlm, cmd, more);
  if (st == VLM_OK) qsort(sig, (size_t)C, sizeof *sig, by_sig);
  shown = more = 0;
  for (int k = 1, g = 0; k < C && st == VLM_OK; k++) {
    if (sig[k].cut != sig[k - 1].cut) { g = k; continue; }
    const int a = sig[g].c, b = sig[k].c;   /* b against its group's first class, in list order */
    if (!strcmp(classes[a], classes[b])) continue;   /* the same name: the caller says so */
    const int same = same_prompts(e, classes, a, b, tpl, T, ctx, ids, ib);
    if (same < 0) st = vlm_error(VLM_ERR_OOM, "out of memory");
    if (same != 1) continue;
    if (shown++ >= PROMPT_WARNINGS) { more++; continue; }
    fprintf(stderr, "%s%s: warning: classes %d '%s' and %d '%s' give the same prompts %s: the two split their "
            "probability\n", vlm, cmd, a + 1, classes[a], b + 1, classes[b],
            full[a] == full[b] ? "(the tokenizer lower-cases the text and collapses its spaces)"
                               : "once cut at the model's context length");
  }
  if (more) fprintf(stderr, "%s%s: warning: %d more classes give the same prompts as another\n", vlm, cmd, more);
  free(ids); free(ib); free(sig); free(full); free(n_cut); free(first_cut); free(pre);
  return st;
}

/* The first class whose row of W [C, E] is not finite, or -1; *n gets how many are not. */
static int nonfinite_rows(const float *W, int64_t C, int64_t E, int64_t *n) {
  int first = -1;
  *n = 0;
  for (int64_t c = 0; c < C; c++)
    for (int64_t d = 0; d < E; d++)
      if (!isfinite(W[c * E + d])) {
        if (first < 0) first = (int)c;
        ++*n;
        break;
      }
  return first;
}

vlm_status vlm_tools_classifier(vlm_encoder *e, const char *cmd, const char *model, const char *classifier,
                                const char *const *classes, int C, const char *const *tpl, int T, int batch,
                                float *W) {
  char key[40] = "";
  const int64_t E = vlm_encoder_dim(e);
  vlm_hash kh;   /* --classifier's key, hashed as the prompts are checked */
  const int keyed = classifier && e->tok && e->cfg.text.context_length >= 2;
  if (keyed) key_start(&kh, e, C, T);
  vlm_status cs = check_prompts(e, cmd, classes, C, tpl, T, keyed ? &kh : NULL);
  if (cs != VLM_OK) return cs;
  if (classifier) {
    vlm_status s = VLM_OK;
    if (keyed) snprintf(key, sizeof key, "%016llx", (unsigned long long)vlm_hash_final(&kh));
    else s = vlm_zs_cache_key(e, classes, C, tpl, T, key, sizeof key);   /* (no tokenizer: its error) */
    if (s != VLM_OK) return s;
    const int got = vlm_zs_cache_read(classifier, key, C, E, W);
    if (got < 0) return VLM_ERR_FORMAT;   /* its message names the file */
    if (got) return VLM_OK;
  }
  vlm_tools_prompts pc;   /* the class prompts, with a progress line when there are many */
  vlm_tools_prompts_start(&pc, e, cmd, (int64_t)C * T);
  vlm_status s = vlm_zeroshot_classifier(vlm_tools_prompts_cb, &pc, classes, C, tpl, T, E, batch, W);
  if (s != VLM_OK) return vlm_error_prefix(s, "building the zero-shot classifier");
  /* a NaN class embedding makes every probability NaN: no classification, not a silent one */
  int64_t bad;
  const int c0 = nonfinite_rows(W, C, E, &bad);
  if (c0 >= 0) {
    char others[64] = "";
    if (bad > 1) snprintf(others, sizeof others, " (and %lld other%s)", (long long)(bad - 1), bad > 2 ? "s" : "");
    return vlm_error(VLM_ERR_FORMAT, "%s: the text embedding of class %d '%s'%s is not finite (NaN or infinite): the "
                     "model's text tower gives no usable output (damaged weights?); no zero-shot classifier", model,
                     c0 + 1, classes[c0], others);
  }
  if (classifier && (s = vlm_zs_cache_write(classifier, key, e, model, T, C, W)) != VLM_OK)
    return vlm_error_prefix(s, "--classifier");
  return VLM_OK;
}

int vlm_tools_classifier_dir_ok(const char *cmd, const char *classifier) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", classifier);
  char *sl = strrchr(dir, '/');
  if (!sl) snprintf(dir, sizeof dir, ".");
  else sl[sl == dir] = 0;
  struct stat sb;
  if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
  fprintf(stderr, "vlm %s: --classifier %s: its folder %s does not exist\n", cmd, classifier, dir);
  return 0;
}
