/* open_clip's zero-shot classifier: template sets, classifier construction,
 * logits, top-k and accuracy. See contrastive.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contrastive/contrastive.h"

/* open_clip zero_shot_metadata.py OPENAI_IMAGENET_TEMPLATES (CLIP's 80 ImageNet prompts). */
static const char *const k_openai[] = {
  "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
  "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
  "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
  "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
  "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
  "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
  "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
  "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
  "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
  "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
  "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
  "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
  "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
  "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
  "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
  "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
  "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
  "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
  "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
  "a photo of a small {}.", "a tattoo of the {}.",
};
/* SIMPLE_IMAGENET_TEMPLATES: the 7-prompt subset. */
static const char *const k_simple[] = {
  "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
  "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
};

/* The shapes set (datasets/shapes.c): short prompts like its captions. */
static const char *const k_shapes[] = {"{a} {}", "a photo of {a} {}", "an image of {a} {}",
                                       "a picture of {a} {}", "a drawing of {a} {}", "there is {a} {}"};

int vlm_zeroshot_templates_builtin(const char *name, const char *const **out) {
  if (!strcmp(name, "openai")) { *out = k_openai; return (int)(sizeof k_openai / sizeof *k_openai); }
  if (!strcmp(name, "simple")) { *out = k_simple; return (int)(sizeof k_simple / sizeof *k_simple); }
  if (!strcmp(name, "shapes")) { *out = k_shapes; return (int)(sizeof k_shapes / sizeof *k_shapes); }
  return 0;
}

void vlm_zeroshot_strings_free(char **s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) free(s[i]);
  free(s);
}

/* Length of the class-name placeholder at p ("{}" = 2, "{c}" = 3), 0 if none. */
static size_t placeholder(const char *p) {
  if (p[0] != '{') return 0;
  if (p[1] == '}') return 2;
  if (p[1] == 'c' && p[2] == '}') return 3;
  return 0;
}

/* What replaces the placeholder at p ("{}", "{c}": the class name; "{a}": its
 * article); sets *skip to the placeholder's length, 0 when none is there. */
static const char *replacement(const char *p, const char *classname, size_t *skip) {
  if ((*skip = placeholder(p))) return classname;
  if (p[0] == '{' && p[1] == 'a' && p[2] == '}') {
    *skip = 3;
    return classname[0] && strchr("aeiouAEIOU", classname[0]) ? "an" : "a";
  }
  return NULL;
}

int vlm_zeroshot_template_ok(const char *tmpl) {
  if (!tmpl) return 0;
  for (const char *p = tmpl; *p; p++)
    if (placeholder(p)) return 1;
  return 0;
}

char *vlm_zeroshot_fill(const char *tmpl, const char *classname) {
  size_t n = 0, k;
  for (const char *p = tmpl; *p;) {
    const char *r = replacement(p, classname, &k);
    if (r) { n += strlen(r); p += k; } else { n++; p++; }
  }
  char *out = malloc(n + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = tmpl; *p;) {
    const char *r = replacement(p, classname, &k);
    if (r) { size_t rl = strlen(r); memcpy(o, r, rl); o += rl; p += k; } else { *o++ = *p++; }
  }
  *o = 0;
  return out;
}

vlm_status vlm_zeroshot_templates_load(const char *path, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open the templates file", path);
  char **v = NULL;
  int cnt = 0, cap = 0, line_no = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  vlm_status st = VLM_OK;
  while ((len = getline(&line, &lcap, f)) >= 0) {
    line_no++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (line_no == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {   /* a UTF-8 BOM: no part of the text */
      memmove(line, line + 3, (size_t)len - 2);
      len -= 3;
    }
    size_t s = 0;
    while (line[s] == ' ' || line[s] == '\t') s++;
    if (!line[s]) continue;
    if ((size_t)len != strlen(line)) { st = vlm_error(VLM_ERR_FORMAT, "%s:%d: NUL byte in a template", path, line_no); break; }
    if (!vlm_zeroshot_template_ok(line)) { st = vlm_error(VLM_ERR_FORMAT, "%s:%d: template has no {} or {c} for the class name", path, line_no); break; }
    if (cnt == cap) {
      cap = cap ? 2 * cap : 16;
      char **nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
      v = nv;
    }
    if (!(v[cnt] = strdup(line))) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
    cnt++;
  }
  free(line);
  if (st == VLM_OK && ferror(f)) st = vlm_error(VLM_ERR_IO, "%s: read error", path);
  fclose(f);
  if (st == VLM_OK && cnt == 0) st = vlm_error(VLM_ERR_FORMAT, "%s: no templates in the file", path);
  if (st != VLM_OK) { vlm_zeroshot_strings_free(v, cnt); return st; }
  *out = v;
  *n = cnt;
  return VLM_OK;
}

static void normalize(float *x, int64_t E) {
  double s = 0;
  for (int64_t i = 0; i < E; i++) s += (double)x[i] * x[i];
  double n = sqrt(s);
  float inv = (float)(1.0 / (n > 1e-12 ? n : 1e-12));
  for (int64_t i = 0; i < E; i++) x[i] *= inv;
}

/* Length of vlm_zeroshot_fill(tmpl, classname), without making it. */
static size_t fill_len(const char *tmpl, const char *classname) {
  size_t n = 0, k;
  for (const char *p = tmpl; *p;) {
    const char *r = replacement(p, classname, &k);
    if (r) { n += strlen(r); p += k; } else { n++; p++; }
  }
  return n;
}

typedef struct { size_t len; int64_t t; } prompt_ref;

static int by_length(const void *a, const void *b) {
  const prompt_ref *x = a, *y = b;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return x->t < y->t ? -1 : x->t > y->t;
}

vlm_status vlm_zeroshot_classifier(vlm_text_encode_fn encode, void *ctx, const char *const *classnames,
                                   int n_classes, const char *const *templates, int n_templates, int64_t E,
                                   int batch, float *W) {
  if (n_classes < 1) return vlm_error(VLM_ERR_ARG, "zero-shot: no class names");
  if (n_templates < 1) return vlm_error(VLM_ERR_ARG, "zero-shot: no templates");
  for (int t = 0; t < n_templates; t++)
    if (!templates[t]) return vlm_error(VLM_ERR_ARG, "zero-shot: template %d is NULL", t);
  for (int c = 0; c < n_classes; c++)
    if (!classnames[c]) return vlm_error(VLM_ERR_ARG, "zero-shot: class name %d is NULL", c);
  int64_t total = (int64_t)n_classes * n_templates;
  if (batch <= 0) batch = n_templates;
  char **texts = calloc((size_t)batch, sizeof *texts);
  float *emb = malloc((size_t)batch * (size_t)E * sizeof(float));
  double *acc = calloc((size_t)n_classes * (size_t)E, sizeof(double));
  prompt_ref *order = malloc((size_t)total * sizeof *order);
  vlm_status st = VLM_OK;
  if (!texts || !emb || !acc || !order) st = vlm_error(VLM_ERR_OOM, "out of memory");
  /* The prompts in order of length, so that a batch's texts are about as long as each other:
   * the text tower runs at the batch's longest (a causal tower pooling at the EOT: the
   * padding does not change a text's features, only costs time). Each class's embeddings
   * are summed in double as they come, then averaged. */
  for (int64_t t = 0; st == VLM_OK && t < total; t++) {
    order[t].len = fill_len(templates[t % n_templates], classnames[t / n_templates]);
    order[t].t = t;
  }
  if (st == VLM_OK) qsort(order, (size_t)total, sizeof *order, by_length);
  for (int64_t start = 0; start < total && st == VLM_OK; start += batch) {
    int nb = (int)(total - start < batch ? total - start : batch);
    for (int j = 0; j < nb && st == VLM_OK; j++) {
      int64_t t = order[start + j].t;
      if (!(texts[j] = vlm_zeroshot_fill(templates[t % n_templates], classnames[t / n_templates])))
        st = vlm_error(VLM_ERR_OOM, "out of memory");
    }
    if (st == VLM_OK) st = encode(ctx, (const char *const *)texts, nb, emb);
    for (int j = 0; j < nb; j++) { free(texts[j]); texts[j] = NULL; }
    for (int j = 0; j < nb && st == VLM_OK; j++) {
      float *e = emb + (size_t)j * E;
      double *a = acc + (size_t)(order[start + j].t / n_templates) * E;
      normalize(e, E);
      for (int64_t d = 0; d < E; d++) a[d] += e[d];
    }
  }
  for (int c = 0; c < n_classes && st == VLM_OK; c++) {   /* mean, renormalized */
    float *w = W + (size_t)c * E;
    for (int64_t d = 0; d < E; d++) w[d] = (float)(acc[(size_t)c * E + d] / n_templates);
    normalize(w, E);
  }
  free(order);
  free(texts);
  free(emb);
  free(acc);
  return st;
}

void vlm_zeroshot_logits(const float *img, int64_t N, const float *W, int64_t C, int64_t E, float *logits) {
#pragma omp parallel for schedule(static) if (N * C * E > 100000)
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) {
      const float *a = img + (size_t)i * E, *b = W + (size_t)c * E;
      float s = 0;
      for (int64_t d = 0; d < E; d++) s += a[d] * b[d];
      logits[(size_t)i * C + c] = VLM_ZEROSHOT_LOGIT_SCALE * s;
    }
}

void vlm_softmax_row(float *x, int64_t n) {
  if (n < 1) return;
  float m = x[0];
  for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
  double s = 0;
  for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
  for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] / s);
}

/* "a ranks before b": larger value, then lower index; NaN ranks last. */
static int better(float va, int64_t ia, float vb, int64_t ib) {
  if (isnan(vb)) return !isnan(va) || ia < ib;
  if (isnan(va)) return 0;
  return va > vb || (va == vb && ia < ib);
}

int vlm_topk(const float *x, int64_t n, int k, int64_t *idx, float *val) {
  if (k > n) k = (int)n;
  if (k <= 0) return 0;
  /* Insertion into a sorted list of k: fine for the small k used here. */
  int cnt = 0;
  for (int64_t i = 0; i < n; i++) {
    if (cnt == k && !better(x[i], i, x[idx[k - 1]], idx[k - 1])) continue;
    int j = cnt < k ? cnt++ : k - 1;
    while (j > 0 && better(x[i], i, x[idx[j - 1]], idx[j - 1])) { idx[j] = idx[j - 1]; j--; }
    idx[j] = i;
  }
  if (val)
    for (int j = 0; j < k; j++) val[j] = x[idx[j]];
  return k;
}

void vlm_zeroshot_accuracy(const float *logits, int64_t N, int64_t C, const int *labels, const uint8_t *subset,
                           vlm_zeroshot_result *out) {
  memset(out, 0, sizeof *out);
  int64_t c1 = 0, c5 = 0, s1 = 0, s5 = 0;
  for (int64_t i = 0; i < N; i++) {
    if (labels[i] < 0 || labels[i] >= C) continue;
    int64_t idx[5];
    int k = vlm_topk(logits + (size_t)i * C, C, 5, idx, NULL), hit1 = 0, hit5 = 0;
    for (int j = 0; j < k; j++)
      if (idx[j] == labels[i]) { hit1 = j == 0; hit5 = 1; break; }
    out->n++;
    c1 += hit1;
    c5 += hit5;
    if (subset && subset[i]) { out->n_subset++; s1 += hit1; s5 += hit5; }
  }
  if (out->n) { out->top1 = (double)c1 / (double)out->n; out->top5 = (double)c5 / (double)out->n; }
  if (out->n_subset) {
    out->subset_top1 = (double)s1 / (double)out->n_subset;
    out->subset_top5 = (double)s5 / (double)out->n_subset;
  }
}

vlm_status vlm_zeroshot_eval(const float *img, int64_t N, int64_t E, const float *W, int64_t C, const int *labels,
                             const uint8_t *subset, vlm_zeroshot_result *out) {
  memset(out, 0, sizeof *out);
  const int64_t chunk = 256;
  float *lg = malloc((size_t)(chunk * C) * sizeof(float));
  if (!lg) return vlm_error(VLM_ERR_OOM, "zero-shot eval: out of memory for %lld x %lld logits", (long long)chunk,
                            (long long)C);
  int64_t c1 = 0, c5 = 0, s1 = 0, s5 = 0;
  for (int64_t s = 0; s < N; s += chunk) {
    int64_t b = N - s < chunk ? N - s : chunk;
    vlm_zeroshot_result r;
    vlm_zeroshot_logits(img + (size_t)(s * E), b, W, C, E, lg);
    vlm_zeroshot_accuracy(lg, b, C, labels + s, subset ? subset + s : NULL, &r);
    out->n += r.n;
    out->n_subset += r.n_subset;
    c1 += (int64_t)llround(r.top1 * (double)r.n);
    c5 += (int64_t)llround(r.top5 * (double)r.n);
    s1 += (int64_t)llround(r.subset_top1 * (double)r.n_subset);
    s5 += (int64_t)llround(r.subset_top5 * (double)r.n_subset);
  }
  free(lg);
  if (out->n) { out->top1 = (double)c1 / (double)out->n; out->top5 = (double)c5 / (double)out->n; }
  if (out->n_subset) {
    out->subset_top1 = (double)s1 / (double)out->n_subset;
    out->subset_top5 = (double)s5 / (double)out->n_subset;
  }
  return VLM_OK;
}
