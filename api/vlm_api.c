/* The public C API (include/vlm.h) over model/encode and the zero-shot code. */
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contrastive/contrastive.h"
#include "datasets/datasets.h"
#include "include/vlm.h"
#include "model/encode.h"

struct vlm_model {
  vlm_encoder enc;
  pthread_mutex_t lock;
  int threads;          /* OpenMP threads of every call on this model, whichever thread makes it */
  int caller_threads;   /* the calling thread's own count, given back when the call ends */
};

/* A call on m: serialized, with m's thread count (omp_set_num_threads sets it for the calling
 * thread only, so it is set again by every call, from any thread, and the caller's own
 * setting is restored by model_unlock: the application's OpenMP is left as it was). */
static void model_lock(vlm_model *m) {
  pthread_mutex_lock(&m->lock);
  m->caller_threads = omp_get_max_threads();
  omp_set_num_threads(m->threads);
}

static void model_unlock(vlm_model *m) {
  omp_set_num_threads(m->caller_threads);
  pthread_mutex_unlock(&m->lock);
}

struct vlm_classifier {
  int64_t C, E;
  float *W;   /* [C, E] */
};

int vlm_api_version(void) { return VLM_API_VERSION; }

/* The API's last error (include/vlm.h: per thread, "" until a call fails, then
 * valid until the next failing call on the thread). Only a failing API call writes
 * it: the layers below may set and recover from messages inside a call that
 * succeeds, and those never show here. */
static _Thread_local char g_api_err[VLM_ERR_LEN];
static _Thread_local const char *g_api_cur;   /* g_api_err, or a longer message's copy in slot 1 */

const char *vlm_get_last_error(void) { return g_api_cur ? g_api_cur : ""; }

/* A call fails: the message the failing layer set becomes the API's (whole, as long
 * as vlm_error keeps it); -1. */
static int failed(void) {
  const char *m = vlm_last_error();
  const char *c = strlen(m) < sizeof g_api_err ? NULL : vlm_msg_slot_copy(1, m);
  if (c) g_api_cur = c;
  else {
    snprintf(g_api_err, sizeof g_api_err, "%s", m);
    g_api_cur = g_api_err;
  }
  return -1;
}

static int fail(vlm_status code, const char *msg) {
  vlm_error(code, "%s", msg);
  return failed();
}

/* A status from the layers below as the API's 0 / -1. */
static int done(vlm_status st) { return st == VLM_OK ? 0 : failed(); }

/* Decoding options of the API: the default pixel limit, which the API has no
 * setting for (the message must not point at the CLI's --max-image-pixels). */
static const vlm_decode_opts k_decode = {.max_pixels = VLM_DEFAULT_MAX_PIXELS,
                                         .limit_hint = "the C API's limit is fixed"};

vlm_model *vlm_model_load_ex(const char *path, const vlm_model_options *opt, const char **err) {
  return vlm_model_load_on(path, opt, NULL, err);
}

/* A load fails: the API's message, also into *err. */
static vlm_model *load_failed(const char **err) {
  failed();
  if (err) *err = vlm_get_last_error();
  return NULL;
}

vlm_model *vlm_model_load_on(const char *path, const vlm_model_options *opt, const char *device, const char **err) {
  /* a success leaves the last error as it was (valid until the next failing call) */
  if (!path) {
    vlm_error(VLM_ERR_ARG, "vlm_model_load: path is NULL");
    return load_failed(err);
  }
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda")) {
    vlm_error(VLM_ERR_ARG, "vlm_model_load_on: device must be \"cpu\" or \"cuda\", got \"%.40s\"", device);
    return load_failed(err);
  }
  const int on_gpu = device && !strcmp(device, "cuda");
  if (on_gpu && !vlm_cuda_available()) {   /* said here, not by the encoder (its message names the CLI's flag) */
    vlm_error(VLM_ERR_UNSUPPORTED, "vlm_model_load_on: device \"cuda\": %s", vlm_cuda_describe());
    return load_failed(err);
  }
  vlm_model_options o = {0};
  if (opt) o = *opt;
  if (o.batch_size <= 0) o.batch_size = 32;
  if (o.threads < 0 || o.threads > VLM_MAX_THREADS) {
    vlm_error(VLM_ERR_ARG, "vlm_model_load: vlm_model_options.threads must be in [0, %d] (0: VLM_THREADS or all cores), got %d",
              VLM_MAX_THREADS, o.threads);
    return load_failed(err);
  }
  if (o.bf16 != 0 && o.bf16 != 1) {   /* a flag: another value is a caller's mistake, not "on" */
    vlm_error(VLM_ERR_ARG, "vlm_model_load: vlm_model_options.bf16 must be 0 or 1, got %d", o.bf16);
    return load_failed(err);
  }
  vlm_model *m = calloc(1, sizeof *m);
  if (!m) {
    vlm_error(VLM_ERR_OOM, "out of memory");
    return load_failed(err);
  }
  /* this model's count, resolved now; no process-wide setting changes (other models keep theirs) */
  m->threads = vlm_threads_resolve(o.threads);
  const int caller_threads = omp_get_max_threads();
  omp_set_num_threads(m->threads);   /* the load's own work (weights, identity hash) too */
  vlm_status st = vlm_encoder_open(&m->enc, path, o.tokenizer, o.batch_size,
                                   VLM_ENC_TEXT_IF_FOUND | (o.bf16 ? VLM_ENC_BF16 : 0) |
                                       (on_gpu ? VLM_ENC_CUDA : 0));
  omp_set_num_threads(caller_threads);
  if (st == VLM_ERR_OOM && o.batch_size > 32)   /* the activations are sized for batch_size at load */
    vlm_error_prefix(st, "vlm_model_load: vlm_model_options.batch_size %d (lower it, or 0 for 32)", o.batch_size);
  if (st != VLM_OK) {
    free(m);
    return load_failed(err);
  }
  pthread_mutex_init(&m->lock, NULL);
  return m;
}

vlm_model *vlm_model_load(const char *path, const char **err) { return vlm_model_load_ex(path, NULL, err); }

void vlm_model_free(vlm_model *m) {
  if (!m) return;
  vlm_encoder_close(&m->enc);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

int vlm_model_embed_dim(const vlm_model *m) { return m ? (int)m->enc.cfg.embed_dim : 0; }
int vlm_model_image_size(const vlm_model *m) { return m ? (int)m->enc.cfg.vision.image_size : 0; }
int vlm_model_context_length(const vlm_model *m) { return m ? (int)m->enc.cfg.text.context_length : 0; }
int vlm_model_vocab_size(const vlm_model *m) { return m ? (int)m->enc.cfg.text.vocab_size : 0; }
int vlm_model_has_tokenizer(const vlm_model *m) { return m && m->enc.tok != NULL; }
const char *vlm_model_identity(const vlm_model *m) { return m ? m->enc.identity : ""; }

int vlm_embed_pixels(vlm_model *m, const float *pixels, int n, float *out) {
  if (!m || !pixels || !out || n < 1) return fail(VLM_ERR_ARG, "vlm_embed_pixels: NULL argument or n < 1");
  model_lock(m);
  vlm_status st = vlm_encoder_images(&m->enc, pixels, n, out);
  model_unlock(m);
  return done(st);
}

int vlm_embed_image_files(vlm_model *m, const char *const *paths, int n, float *out) {
  if (!m || !paths || !out || n < 1) return fail(VLM_ERR_ARG, "vlm_embed_image_files: NULL argument or n < 1");
  for (int i = 0; i < n; i++)
    if (!paths[i]) return fail(VLM_ERR_ARG, "vlm_embed_image_files: a path is NULL");
  int64_t S = m->enc.cfg.vision.image_size, per = 3 * S * S, B = m->enc.max_batch, E = m->enc.cfg.embed_dim;
  float *pix = malloc((size_t)(B * per) * sizeof(float));
  if (!pix) return fail(VLM_ERR_OOM, "out of memory");
  int rc = 0;
  char msg[VLM_ERR_LEN];   /* the whole message: a long path leaves room for the reason */
  model_lock(m);
  for (int s = 0; s < n && rc == 0; s += (int)B) {
    int b = n - s < B ? n - s : (int)B, first_bad = b;
    vlm_status bad_st = VLM_OK;
    /* decode + preprocess the batch in parallel; the first failure (in input order) is reported */
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < b; i++) {
      vlm_status st = vlm_preprocess_file(paths[s + i], &k_decode, &m->enc.pre, NULL, pix + (size_t)i * (size_t)per);
      if (st != VLM_OK) {
#pragma omp critical(vlm_api_decode_error)
        if (i < first_bad) {
          first_bad = i;
          bad_st = st;
          snprintf(msg, sizeof msg, "%s", vlm_last_error());   /* the message lives in this thread */
        }
      }
    }
    if (first_bad < b) {
      vlm_error(bad_st, "%s", msg);
      rc = -1;
    } else if (vlm_encoder_images(&m->enc, pix, b, out + (size_t)(s * E)) != VLM_OK) {
      rc = -1;
    }
  }
  model_unlock(m);
  free(pix);
  return rc ? failed() : 0;
}

int vlm_embed_image_rgb(vlm_model *m, const uint8_t *rgb, int width, int height, int stride, float *out) {
  if (!m || !rgb || !out) return fail(VLM_ERR_ARG, "vlm_embed_image_rgb: NULL argument");
  if (width < 1 || height < 1 || (int64_t)width * height > VLM_DEFAULT_MAX_PIXELS) {
    vlm_error(VLM_ERR_ARG, "vlm_embed_image_rgb: width and height must be >= 1 and their product at most %lld",
              (long long)VLM_DEFAULT_MAX_PIXELS);
    return failed();
  }
  if (stride == 0) stride = width * 3;
  if (stride < width * 3) return fail(VLM_ERR_ARG, "vlm_embed_image_rgb: stride is less than width * 3");
  vlm_image img;
  if (vlm_image_alloc(&img, width, height, VLM_IMG_RGB, 0) != VLM_OK) return failed();
  for (int y = 0; y < height; y++) memcpy(img.data + (size_t)y * width * 3, rgb + (size_t)y * stride, (size_t)width * 3);
  int64_t S = m->enc.cfg.vision.image_size;
  float *pix = malloc((size_t)(3 * S * S) * sizeof(float));
  int rc = -1;
  if (!pix) fail(VLM_ERR_OOM, "out of memory");
  else if (vlm_preprocess_image(&img, &m->enc.pre, NULL, pix) != VLM_OK) failed();
  else rc = vlm_embed_pixels(m, pix, 1, out);
  free(pix);
  vlm_image_free(&img);
  return rc;
}

int vlm_embed_texts(vlm_model *m, const char *const *texts, int n, float *out) {
  if (!m || !texts || !out || n < 1) return fail(VLM_ERR_ARG, "vlm_embed_texts: NULL argument or n < 1");
  for (int i = 0; i < n; i++)
    if (!texts[i]) return fail(VLM_ERR_ARG, "vlm_embed_texts: a text is NULL");
  if (!m->enc.tok)
    return fail(VLM_ERR_ARG, "vlm_embed_texts: the model has no tokenizer (load it with vlm_model_options.tokenizer)");
  model_lock(m);
  vlm_status st = vlm_encoder_texts(&m->enc, texts, n, out);
  model_unlock(m);
  return done(st);
}

int vlm_embed_token_ids(vlm_model *m, const int32_t *ids, int n, int len, float *out) {
  if (!m || !ids || !out || n < 1) return fail(VLM_ERR_ARG, "vlm_embed_token_ids: NULL argument or n < 1");
  model_lock(m);
  vlm_status st = vlm_encoder_ids(&m->enc, ids, n, len, out);
  model_unlock(m);
  return done(st);
}

static vlm_status api_text_cb(void *ctx, const char *const *texts, int n, float *out) {
  return vlm_encoder_texts(&((vlm_model *)ctx)->enc, texts, n, out);
}

/* A classifier call fails: NULL, the message set. */
static vlm_classifier *classifier_failed(vlm_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vlm_classifier *classifier_failed(vlm_status code, const char *fmt, ...) {
  if (fmt) {
    char msg[VLM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vlm_error(code, "%s", msg);
  }
  failed();
  return NULL;
}

vlm_classifier *vlm_classifier_new(vlm_model *m, const char *const *classes, int n_classes,
                                   const char *template_set, const char *const *templates, int n_templates) {
  if (!m || !classes) return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: NULL argument");
  if (n_classes < 1) return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: the class list is empty");
  for (int c = 0; c < n_classes; c++)
    if (!classes[c] || !classes[c][0])
      return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: class name %d is %s", c, classes[c] ? "empty" : "NULL");
  if (!m->enc.tok) return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: the model has no tokenizer");
  const char *const *tpl = templates;
  int nt = n_templates;
  if (!templates) {
    const char *set = template_set ? template_set : "openai";
    nt = vlm_zeroshot_templates_builtin(set, &tpl);
    if (!nt) return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: unknown template set '%.100s' (openai, simple or shapes)", set);
  } else if (nt < 1) {
    return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: n_templates must be >= 1");
  } else {   /* the rule of `vlm zeroshot --templates FILE`: each holds {} or {c} */
    for (int t = 0; t < nt; t++) {
      if (!templates[t]) return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: template %d is NULL", t);
      if (!vlm_zeroshot_template_ok(templates[t]))
        return classifier_failed(VLM_ERR_ARG, "vlm_classifier_new: template %d (\"%.80s\") has no {} or {c} for the class name",
                                 t, templates[t]);
    }
  }
  vlm_classifier *c = calloc(1, sizeof *c);
  int64_t E = m->enc.cfg.embed_dim;
  if (c) c->W = malloc((size_t)(n_classes * E) * sizeof(float));
  if (!c || !c->W) {
    free(c);
    return classifier_failed(VLM_ERR_OOM, "out of memory");
  }
  c->C = n_classes;
  c->E = E;
  model_lock(m);
  vlm_status st = vlm_zeroshot_classifier(api_text_cb, m, classes, n_classes, tpl, nt, E, (int)m->enc.max_batch, c->W);
  model_unlock(m);
  if (st != VLM_OK) {
    vlm_classifier_free(c);
    return classifier_failed(st, NULL);
  }
  return c;
}

void vlm_classifier_free(vlm_classifier *c) {
  if (!c) return;
  free(c->W);
  free(c);
}

int vlm_classifier_size(const vlm_classifier *c) { return c ? (int)c->C : 0; }

int vlm_classify(const vlm_classifier *c, const float *emb, int k, vlm_class_score *out) {
  if (!c || !emb || !out || k < 1) return fail(VLM_ERR_ARG, "vlm_classify: NULL argument or k < 1");
  float *logits = malloc((size_t)c->C * sizeof(float)), *prob = malloc((size_t)c->C * sizeof(float));
  int64_t *idx = malloc((size_t)c->C * sizeof(int64_t));
  if (!logits || !prob || !idx) { free(logits); free(prob); free(idx); return fail(VLM_ERR_OOM, "out of memory"); }
  vlm_zeroshot_logits(emb, 1, c->W, c->C, c->E, logits);
  memcpy(prob, logits, (size_t)c->C * sizeof(float));
  vlm_softmax_row(prob, c->C);
  int n = vlm_topk(logits, c->C, k, idx, NULL);
  for (int j = 0; j < n; j++) out[j] = (vlm_class_score){(int)idx[j], prob[idx[j]], logits[idx[j]]};
  free(logits); free(prob); free(idx);
  return n;
}

int vlm_classify_image_file(vlm_model *m, const vlm_classifier *c, const char *path, int k, vlm_class_score *out) {
  if (!m || !c || !path) return fail(VLM_ERR_ARG, "vlm_classify_image_file: NULL argument");
  if (c->E != m->enc.cfg.embed_dim) return fail(VLM_ERR_ARG, "vlm_classify_image_file: the classifier was built by another model");
  float *e = malloc((size_t)c->E * sizeof(float));
  if (!e) return fail(VLM_ERR_OOM, "out of memory");
  int rc = vlm_embed_image_files(m, &path, 1, e);
  if (rc == 0) rc = vlm_classify(c, e, k, out);
  free(e);
  return rc;
}

/* The longest prefix of text (k bytes) that fits out[out_size] with its NUL and ends
 * at a UTF-8 character boundary: a cut never splits a character's bytes. */
static size_t utf8_fit(const char *text, size_t k, size_t out_size) {
  if (k < out_size) return k;
  k = out_size - 1;   /* text[k] is the first byte left out: back up over a split character */
  for (int i = 0; i < 3 && k > 0 && ((unsigned char)text[k] & 0xC0) == 0x80; i++) k--;
  if (((unsigned char)text[k] & 0xC0) == 0x80) k = out_size - 1;   /* not UTF-8 there anyway */
  return k;
}

int vlm_caption(vlm_model *m, const char *image_path, char *out, size_t out_size) {
  if (out && out_size) out[0] = 0;
  if (!m || !image_path || !out || !out_size) return fail(VLM_ERR_ARG, "vlm_caption: NULL argument or out_size 0");
  if (!m->enc.coca) return fail(VLM_ERR_UNSUPPORTED, "captioning is not supported for CLIP models (it needs a CoCa model)");
  if (!m->enc.tok)
    return fail(VLM_ERR_ARG, "vlm_caption: the model has no tokenizer (load it with vlm_model_options.tokenizer)");
  const vlm_coca_config *c = &m->enc.ccfg;
  vlm_gen_options o;   /* greedy, as `vlm caption` by default */
  vlm_gen_options_default(&o);
  o.sot_id = vlm_tokenizer_sot(m->enc.tok);
  o.eot_id = vlm_tokenizer_eot(m->enc.tok);
  o.pad_id = c->text.pad_id;
  if (vlm_tokenizer_vocab_size(m->enc.tok) < c->decoder.vocab_size) o.n_ids = vlm_tokenizer_vocab_size(m->enc.tok);
  int64_t ctx = c->text.context_length < c->decoder.context_length ? c->text.context_length : c->decoder.context_length;
  if (o.max_len > ctx) o.max_len = (int)ctx;
  if (o.min_len > o.max_len) o.min_len = o.max_len;
  if (vlm_gen_options_check(&o, &c->text, &c->decoder) != VLM_OK) return failed();
  int64_t S = c->vision.image_size;
  float *pix = malloc((size_t)(3 * S * S) * sizeof(float));
  int32_t *ids = malloc((size_t)o.max_len * sizeof(int32_t));
  int len = 0, rc = -1;
  if (!pix || !ids) {
    fail(VLM_ERR_OOM, "out of memory");
  } else if (vlm_preprocess_file(image_path, &k_decode, &m->enc.pre, NULL, pix) != VLM_OK) {
    failed();
  } else {
    int64_t sh[4] = {1, 3, S, S};
    vlm_tensor t = vlm_tensor_cpu_f32(pix, 4, sh);
    model_lock(m);
    if (m->enc.dev != VLM_CPU) {   /* the image on the weights' device, as `vlm caption --device cuda` */
      vlm_tensor d = vlm_tensor_make(m->enc.dimg.data, VLM_F32, m->enc.dev, 4, sh);
      vlm_copy(&d, &t);
      t = d;
    }
    vlm_precision prev = vlm_encoder_precision_enter(&m->enc);   /* bf16 weights: bf16 matmuls */
    vlm_status st = vlm_coca_generate(c, m->enc.crun, &t, &o, ids, &len);
    vlm_set_matmul_precision(prev);
    model_unlock(m);
    if (st != VLM_OK) {
      failed();
    } else {
      char *text = vlm_tokenizer_decode_text(m->enc.tok, ids, (size_t)len);   /* as `vlm caption` prints it */
      if (!text) {
        fail(VLM_ERR_OOM, "out of memory");
      } else {
        size_t n = strlen(text), k = utf8_fit(text, n, out_size);
        memcpy(out, text, k);
        out[k] = 0;
        free(text);
        rc = 0;   /* cut or not: version-1 callers test != 0 for failure */
      }
    }
  }
  free(pix);
  free(ids);
  return rc;
}
