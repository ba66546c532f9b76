/* vlm zeroshot --classifier FILE: a zero-shot classifier kept between runs (see tools.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/tools.h"
#include "contrastive/contrastive.h"

#define FORMAT "vlm-zeroshot-classifier"

vlm_status vlm_zs_cache_key(vlm_encoder *e, const char *const *classes, int C, const char *const *tpl, int T,
                            char *key, size_t n) {
  if (!e->tok) return vlm_error(VLM_ERR_ARG, "zero-shot classifier key: no tokenizer");
  const int ctx = (int)e->cfg.text.context_length;
  int32_t *ids = malloc((size_t)(ctx > 0 ? ctx : 1) * sizeof *ids);
  if (!ids) return vlm_error(VLM_ERR_OOM, "out of memory");
  vlm_hash h;
  vlm_hash_init(&h);
  const char *const words[] = {FORMAT "-1", e->identity, e->prec == VLM_PREC_BF16 ? "bf16" : "f32",
                               e->dev == VLM_CPU ? "cpu" : "gpu"};
  for (int i = 0; i < 4; i++) vlm_hash_bytes(&h, words[i], strlen(words[i]));
  const int64_t sizes[3] = {C, T, vlm_encoder_dim(e)};
  vlm_hash_bytes(&h, sizes, sizeof sizes);
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

vlm_status vlm_tools_classifier(vlm_encoder *e, const char *cmd, const char *model, const char *classifier,
                                const char *const *classes, int C, const char *const *tpl, int T, int batch,
                                float *W) {
  char key[40] = "";
  const int64_t E = vlm_encoder_dim(e);
  if (classifier) {
    vlm_status s = vlm_zs_cache_key(e, classes, C, tpl, T, key, sizeof key);
    if (s != VLM_OK) return s;
    const int got = vlm_zs_cache_read(classifier, key, C, E, W);
    if (got < 0) return VLM_ERR_FORMAT;   /* its message names the file */
    if (got) return VLM_OK;
  }
  vlm_tools_prompts pc;   /* the class prompts, with a progress line when there are many */
  vlm_tools_prompts_start(&pc, e, cmd, (int64_t)C * T);
  vlm_status s = vlm_zeroshot_classifier(vlm_tools_prompts_cb, &pc, classes, C, tpl, T, E, batch, W);
  if (s != VLM_OK) return vlm_error_prefix(s, "building the zero-shot classifier");
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
