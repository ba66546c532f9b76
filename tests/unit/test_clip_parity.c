/* CLIP parity with open_clip: forward outputs and every gradient against a
 * fixture directory made by the fixture generator (config.json,
 * model.safetensors, inputs/outputs/grads.safetensors, and the Hugging Face
 * variant config_hf.json + model_hf.safetensors), in both kernel modes.
 *
 * argv[1] is either a fixture directory (parity only) or the ../shared folder
 * (ctest's unit_ entry: both tiny CLIP fixtures plus config and loader error
 * checks, the InfoNCE gradient check and the pooling rule). No sizes are baked in. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "gradcheck.h"
#include "model/model.h"

/* A CLIP's parameters and config, for the fixture helpers' visitor. */
typedef struct {
  const vlm_clip_config *c;
  vlm_clip_params *p;
} clip_ref;

static void visit_clip(void *m, vlm_param_visit_fn fn, void *ctx) {
  clip_ref *r = m;
  vlm_clip_params_visit(r->p, r->c, fn, ctx);
}

static void run_model(const char *dir, const char *what, const vlm_clip_config *c, vlm_clip_params *p,
                      const vlm_safetensors *in, const vlm_safetensors *out, const vlm_safetensors *grads) {
  vlm_tensor images, text, text32;
  if (!vt_fixture_inputs(in, &images, &text, &text32)) return;
  int64_t B = images.shape[0], L = text.shape[1];
  vlm_clip_acts s, fs;
  vlm_status st = vlm_clip_acts_init(&s, c, B, L, 1);
  if (st == VLM_OK) st = vlm_clip_acts_init(&fs, c, B, L, 0);
  CHECK(st == VLM_OK, "%s", vlm_last_error());
  if (st != VLM_OK) return;
  CHECK(fs.visual.pooled_only && fs.text.pooled_only, "inference acts: pooled_only %d %d", fs.visual.pooled_only,
        fs.text.pooled_only);
  vlm_clip_params g;
  CHECK(vlm_clip_params_init(&g, c) == VLM_OK, "grads: %s", vlm_last_error());
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    char tag[256];
    snprintf(tag, sizeof tag, "%s [%s, %s kernels]", dir, what, mode ? "ref" : "fast");
    float loss = vlm_clip_forward(c, p, &s, &images, &text);
#define CMP(name, t, kind) vt_fixture_compare(tag, name, vlm_f32(t), vlm_numel(t), out, kind, 1.0)
    CMP("image_features_unnorm", &s.visual.features, 0);
    CMP("text_features_unnorm", &s.text.features, 0);
    CMP("image_features", &s.loss.img, 0);
    CMP("text_features", &s.loss.txt, 0);
    CMP("logit_scale", &s.loss.scale, 2);
    CMP("logits_per_image", &s.loss.logits_per_image, 1);
    CMP("logits_per_text", &s.loss.logits_per_text, 1);
#undef CMP
    vt_fixture_compare(tag, "clip_loss", &loss, 1, out, 2, 1.0);
    vt_fixture_compare(tag, "loss", &loss, 1, out, 2, 1.0);
    /* Inference activations: the pooled-rows path (the last blocks for the
     * pooled rows only, the text cut after its last EOT), then the same
     * activations running every row. */
    for (int rows = 1; rows >= 0; rows--) {
      char itag[320];
      snprintf(itag, sizeof itag, "%s, inference%s", tag, rows ? ", pooled rows only" : "");
      fs.visual.pooled_only = rows;
      fs.text.pooled_only = rows;
      float il = vlm_clip_forward(c, p, &fs, &images, &text);
#define CMP(name, t, kind) vt_fixture_compare(itag, name, vlm_f32(t), vlm_numel(t), out, kind, 1.0)
      CMP("image_features_unnorm", &fs.visual.features, 0);
      CMP("text_features_unnorm", &fs.text.features, 0);
      CMP("logits_per_image", &fs.loss.logits_per_image, 1);
#undef CMP
      vt_fixture_compare(itag, "loss", &il, 1, out, 2, 1.0);
    }
    vlm_clip_params_zero(&g);
    vlm_clip_backward(c, p, &g, &s, &text);
    vt_grad_ctx gc = vt_fixture_compare_grads(grads, tag, visit_clip, &(clip_ref){c, &g});
    /* The same ids as I32. */
    float loss32 = vlm_clip_forward(c, p, &s, &images, &text32);
    vt_fixture_compare(tag, "loss", &loss32, 1, out, 2, 1.0);
    printf("%s: loss %.7f, %d gradients within %.2g of their max\n", tag, loss, gc.checked, gc.worst);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_clip_params_free(&g);
  vlm_clip_acts_free(&s);
  vlm_clip_acts_free(&fs);
}

static void parity(const char *dir) {
  char path[4096];
  vlm_safetensors in, out, grads;
  if (!vt_fixture_open(dir, &in, &out, &grads)) return;
  /* open_clip names */
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  snprintf(path, sizeof path, "%s/config.json", dir);
  vlm_status s = vlm_clip_load(path, &c, &p, &fmt);
  CHECK(s == VLM_OK && fmt == VLM_CKPT_OPENCLIP, "load %s: %s", path, vlm_last_error());
  if (s == VLM_OK) {
    run_model(dir, "open_clip names", &c, &p, &in, &out, &grads);
    vlm_clip_params_free(&p);
  }
  /* Hugging Face names */
  snprintf(path, sizeof path, "%s/config_hf.json", dir);
  if (access(path, R_OK) == 0) {
    vlm_clip_config ch;
    s = vlm_clip_load(path, &ch, &p, &fmt);
    CHECK(s == VLM_OK && fmt == VLM_CKPT_HF, "load %s: %s", path, vlm_last_error());
    if (s == VLM_OK) {
      CHECK(ch.embed_dim == c.embed_dim && ch.quick_gelu == c.quick_gelu && ch.vision.heads == c.vision.heads &&
                ch.text.mlp_width == c.text.mlp_width && ch.vision.mlp_width == c.vision.mlp_width,
            "%s: the HF config describes another model than config.json", path);
      run_model(dir, "Hugging Face names", &ch, &p, &in, &out, &grads);
      vlm_clip_params_free(&p);
    }
  }
  vt_fixture_close(&in, &out, &grads);
}

/* ---------------------------------------------------------------- unit checks */
static void expect_config_error(const char *json, const char *needle) {
  vlm_clip_config c;
  vlm_status s = vlm_clip_config_parse(&c, json, "cfg.json");
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "cfg.json") && strstr(vlm_last_error(), needle),
        "config error for %s: got status %d, '%s' (want '%s')", json, (int)s, vlm_last_error(), needle);
}

static void config_checks(void) {
  const char *good = "{\"embed_dim\": 16, \"quick_gelu\": true, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 4,"
                     " \"layers\": 1, \"width\": 32, \"head_width\": 8, \"mlp_ratio\": 2.0}, \"text_cfg\": {"
                     "\"context_length\": 8, \"vocab_size\": 50, \"width\": 24, \"heads\": 3, \"layers\": 2}}";
  vlm_clip_config c;
  CHECK(vlm_clip_config_parse(&c, good, "cfg.json") == VLM_OK, "good config: %s", vlm_last_error());
  CHECK(c.vision.heads == 4 && c.vision.mlp_width == 64 && c.text.mlp_width == 96 && c.quick_gelu &&
            c.vision.act == VLM_ACT_QUICK_GELU && c.text.eot_id == -1,
        "parsed config values");
  char wrapped[2048];
  snprintf(wrapped, sizeof wrapped, "{\"model_name\": \"x\", \"model_cfg\": %s}", good);
  CHECK(vlm_clip_config_parse(&c, wrapped, "cfg.json") == VLM_OK, "open_clip_config.json form: %s", vlm_last_error());
  /* quick_gelu with Python's truth, as open_clip reads the same file: 0, 0.0, "", [] and {} are false */
  static const char *const falsy[] = {"false", "null", "0", "0.0", "\"\"", "[]", "{}"};
  static const char *const truthy[] = {"true", "1", "2.5", "\"no\"", "[0]", "{\"a\": 0}"};
  for (int t = 0; t < 2; t++)
    for (size_t i = 0; i < (t ? sizeof truthy : sizeof falsy) / sizeof falsy[0]; i++) {
      const char *v = t ? truthy[i] : falsy[i];
      char j[2048];
      snprintf(j, sizeof j, "{\"embed_dim\": 16, \"quick_gelu\": %s, %s", v, strstr(good, "\"vision_cfg\""));
      CHECK(vlm_clip_config_parse(&c, j, "cfg.json") == VLM_OK && c.quick_gelu == t &&
                c.vision.act == (t ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU),
            "quick_gelu %s: want %s (%s)", v, t ? "QuickGELU" : "GELU", vlm_last_error());
    }
  /* a key twice in one object: Python keeps the last, cJSON the first: refused, named */
  expect_config_error("{\"embed_dim\": 32, \"embed_dim\": 16, \"vision_cfg\": {}, \"text_cfg\": {}}",
                      "\"embed_dim\" appears twice in the top-level object");
  expect_config_error("{\"embed_dim\": 16, \"vision_cfg\": {\"width\": 32, \"layers\": 1, \"width\": 8}, "
                      "\"text_cfg\": {}}", "\"width\" appears twice in the object at vision_cfg");
  {
    vlm_clip_config hc;
    vlm_status hs = vlm_clip_config_parse_hf(&hc, "{\"model_type\": \"siglip\", \"vision_config\": {}, "
                                                  "\"text_config\": {}}", "hf.json");
    CHECK(hs != VLM_OK && strstr(vlm_last_error(), "model_type \"siglip\""), "HF siglip config refused: %s",
          vlm_last_error());
  }
  expect_config_error("{\"embed_dim\": 16", "JSON");
  expect_config_error("{\"vision_cfg\": {}, \"text_cfg\": {}}", "embed_dim");
  expect_config_error("{\"embed_dim\": 16, \"text_cfg\": {}}", "vision_cfg");
  expect_config_error("{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 4, \"layers\": 1, "
                      "\"width\": 32}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 50, \"width\": 24, "
                      "\"heads\": 3, \"layers\": 2}}", "head_width");  /* default 64 does not divide 32 */
  expect_config_error("{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16.5, \"patch_size\": 4, \"layers\": 1, "
                      "\"width\": 32}, \"text_cfg\": {}}", "vision_cfg.image_size");
  expect_config_error("{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 4, \"layers\": 1, "
                      "\"width\": 32, \"head_width\": 8}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 50,"
                      " \"width\": 24, \"layers\": 2}}", "text_cfg.heads");
  /* HF: missing fields take CLIPConfig's defaults (openai/clip-vit-base-patch32). */
  CHECK(vlm_clip_config_parse_hf(&c, "{\"vision_config\": {}, \"text_config\": {}}", "hf.json") == VLM_OK &&
            c.embed_dim == 512 && c.vision.width == 768 && c.vision.patch_size == 32 && c.text.context_length == 77 &&
            c.quick_gelu && c.text.eot_id == -1,
        "HF defaults: %s", vlm_last_error());
  CHECK(vlm_clip_config_parse_hf(&c, "{\"vision_config\": {\"hidden_act\": \"relu\"}, \"text_config\": {}}",
                                 "hf.json") != VLM_OK && strstr(vlm_last_error(), "vision_config.hidden_act"),
        "HF unsupported activation: %s", vlm_last_error());
  CHECK(vlm_clip_config_parse_hf(&c, "{\"vision_config\": {}, \"text_config\": {\"eos_token_id\": 49407}}",
                                 "hf.json") == VLM_OK && c.text.eot_id == 49407, "HF eos pooling");
  expect_config_error("{\"embed_dim\": -3, \"vision_cfg\": {}, \"text_cfg\": {}}", "embed_dim");
}

typedef struct { vlm_safetensors *st; vlm_st_writer *w; int i; } copy_ctx;

/* Write a checkpoint of model.safetensors with one tensor missing, one
 * renamed (unexpected) and one mis-shaped: the loader must name all of them. */
static void loader_error_checks(const char *shared) {
  char cfg[4096], model[4096], bad[4096];
  snprintf(cfg, sizeof cfg, "%s/fixtures/tiny-clip/config.json", shared);
  snprintf(model, sizeof model, "%s/fixtures/tiny-clip/model.safetensors", shared);
  snprintf(bad, sizeof bad, "/tmp/vlm_test_clip_bad_%d.safetensors", (int)getpid());
  vlm_clip_config c;
  if (vlm_clip_config_load(&c, cfg, NULL) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }
  vlm_safetensors st;
  if (vlm_st_open(&st, model) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }
  vlm_st_writer *w = vlm_st_writer_new();
  int64_t one = 1;
  for (int i = 0; i < st.n_entries; i++) {
    const vlm_st_entry *e = &st.entries[i];
    if (!strcmp(e->name, "visual.ln_pre.bias")) continue;                       /* missing */
    if (!strcmp(e->name, "ln_final.bias")) {                                     /* unexpected */
      vlm_st_writer_add(w, "ln_final.bais", e->dtype, e->ndim, e->shape, e->data);
      continue;
    }
    if (!strcmp(e->name, "visual.proj")) {                                       /* mis-shaped */
      vlm_st_writer_add(w, e->name, e->dtype, 1, &one, e->data);
      continue;
    }
    vlm_st_writer_add(w, e->name, e->dtype, e->ndim, e->shape, e->data);
  }
  CHECK(vlm_st_writer_save(w, bad) == VLM_OK, "%s", vlm_last_error());
  vlm_st_writer_free(w);
  vlm_st_close(&st);
  vlm_clip_params p;
  CHECK(vlm_clip_params_init(&p, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_status s = vlm_clip_load_safetensors(&p, &c, bad, VLM_CKPT_OPENCLIP);
  const char *m = vlm_last_error();
  CHECK(s != VLM_OK && strstr(m, bad) && strstr(m, "visual.ln_pre.bias") && strstr(m, "ln_final.bias") &&
            strstr(m, "ln_final.bais") && strstr(m, "visual.proj") && strstr(m, "2 missing") && strstr(m, "1 unexpected"),
        "loader error should list every problem; got: %s", m);
  /* The HF loader on open_clip names: everything is missing/unexpected, nothing crashes, and
   * the message lists every one of them (it runs past VLM_ERR_LEN: kept whole). */
  s = vlm_clip_load_safetensors(&p, &c, model, VLM_CKPT_HF);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "vision_model.embeddings.patch_embedding.weight"),
        "HF loader on open_clip names: %s", vlm_last_error());
  CHECK(strlen(vlm_last_error()) >= VLM_ERR_LEN, "the mismatch list is %zu bytes, expected more than %d",
        strlen(vlm_last_error()), VLM_ERR_LEN);
  if (vlm_st_open(&st, model) == VLM_OK) {
    int unnamed = 0;
    const char *un = strstr(vlm_last_error(), "\nunexpected:");
    for (int i = 0; i < st.n_entries; i++) {   /* logit_scale: the same name in both layouts */
      if (!strcmp(st.entries[i].name, "logit_scale")) continue;
      char line[700];
      snprintf(line, sizeof line, "\n  %s", st.entries[i].name);
      unnamed += !un || !strstr(un, line);
    }
    CHECK(unnamed == 0, "%d of the file's %d tensors not listed as unexpected", unnamed, st.n_entries);
    vlm_st_close(&st);
  }
  vlm_clip_params_free(&p);
  unlink(bad);
}

/* F16 and BF16 checkpoints load, converted to F32 exactly. */
typedef struct { const vlm_safetensors *st; int bad, n; } half_ctx;

static void half_checks(const char *shared) {
  char model[4096], half[4096], cfg[4096];
  snprintf(model, sizeof model, "%s/fixtures/tiny-clip/model.safetensors", shared);
  snprintf(cfg, sizeof cfg, "%s/fixtures/tiny-clip/config.json", shared);
  vlm_clip_config c;
  vlm_safetensors st;
  if (vlm_clip_config_load(&c, cfg, NULL) != VLM_OK || vlm_st_open(&st, model) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  for (int k = 0; k < 2; k++) {
    vlm_dtype dt = k ? VLM_BF16 : VLM_F16;
    snprintf(half, sizeof half, "/tmp/vlm_test_clip_half_%d_%d.safetensors", (int)getpid(), k);
    vlm_st_writer *w = vlm_st_writer_new();
    uint16_t **bufs = calloc((size_t)st.n_entries, sizeof *bufs);
    for (int i = 0; i < st.n_entries; i++) {
      const vlm_st_entry *e = &st.entries[i];
      int64_t n = (int64_t)((e->end - e->begin) / 4);
      bufs[i] = calloc((size_t)n + 1, 2);
      const float *x = e->data;
      for (int64_t j = 0; j < n; j++) bufs[i][j] = k ? vlm_f32_to_bf16(x[j]) : vlm_f32_to_f16(x[j]);
      vlm_st_writer_add(w, e->name, dt, e->ndim, e->shape, bufs[i]);
    }
    CHECK(vlm_st_writer_save(w, half) == VLM_OK, "%s", vlm_last_error());
    vlm_st_writer_free(w);
    vlm_clip_params p;
    CHECK(vlm_clip_params_init(&p, &c) == VLM_OK, "%s", vlm_last_error());
    vlm_status s = vlm_clip_load_safetensors(&p, &c, half, VLM_CKPT_OPENCLIP);
    CHECK(s == VLM_OK, "%s checkpoint: %s", vlm_dtype_name(dt), vlm_last_error());
    const vlm_st_entry *e = vlm_st_find(&st, "visual.proj");
    int64_t n = vlm_numel(&p.visual.proj);
    int same = 1;
    for (int64_t j = 0; j < n; j++) {
      float x = ((const float *)e->data)[j];
      float want = k ? vlm_round_bf16(x) : vlm_f16_to_f32(vlm_f32_to_f16(x));
      same &= vlm_f32(&p.visual.proj)[j] == want;
    }
    CHECK(s == VLM_OK && same, "%s values convert exactly", vlm_dtype_name(dt));
    vlm_clip_params_free(&p);
    for (int i = 0; i < st.n_entries; i++) free(bufs[i]);
    free(bufs);
    unlink(half);
  }
  vlm_st_close(&st);
}

/* tiny-clip's config, weights and inputs (0 after a failed CHECK). */
static int load_tiny_clip(const char *shared, vlm_clip_config *c, vlm_clip_params *p, vlm_safetensors *in) {
  char dir[2048], path[4096];
  vlm_ckpt_format fmt;
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-clip", shared);
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  if (vlm_clip_load(dir, c, p, &fmt) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return 0;
  }
  if (vlm_st_open(in, path) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    vlm_clip_params_free(p);
    return 0;
  }
  return 1;
}

/* BF16 inference weights (+ bf16 matmul inputs): features within cosine 0.999 of fp32. */
static void bf16_checks(const char *shared) {
  vlm_clip_config c;
  vlm_clip_params p, h;
  vlm_safetensors in;
  if (!load_tiny_clip(shared, &c, &p, &in)) return;
  vlm_tensor images = vlm_st_tensor(vlm_st_find(&in, "images")), text = vlm_st_tensor(vlm_st_find(&in, "text"));
  int64_t B = images.shape[0], L = text.shape[1];
  vlm_clip_acts a, b;
  CHECK(vlm_clip_acts_init(&a, &c, B, L, 0) == VLM_OK && vlm_clip_acts_init(&b, &c, B, L, 0) == VLM_OK, "acts");
  CHECK(vlm_clip_params_bf16(&h, &p, &c, 0) == VLM_OK, "%s", vlm_last_error());
  CHECK(h.visual.blocks[0].fc_w.dtype == VLM_BF16 && h.visual.conv1_w.dtype == VLM_BF16 &&
            h.text.proj.dtype == VLM_BF16 && h.text.token_emb.dtype == VLM_F32 && h.visual.ln_pre_w.dtype == VLM_F32,
        "which tensors are BF16");
  vlm_clip_forward(&c, &p, &a, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_clip_forward(&c, &h, &b, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_F32);
  double ci = vt_min_cosine(&a.visual.features, &b.visual.features), ct = vt_min_cosine(&a.text.features, &b.text.features);
  CHECK(ci >= 0.999 && ct >= 0.999, "bf16 features: cosine to fp32 image %.6f, text %.6f", ci, ct);
  printf("bf16 inference weights: min cosine to fp32 features: image %.6f, text %.6f\n", ci, ct);
  /* drop_src (what `vlm forward --precision bf16` does): the same features to the bit from a
   * source whose F32 matrices were given back as they were converted */
  vlm_clip_params q, hd;
  CHECK(vlm_clip_params_init(&q, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_copy(&q, &p);
  CHECK(vlm_clip_params_bf16(&hd, &q, &c, 1) == VLM_OK, "%s", vlm_last_error());
  CHECK(vt_pages_released(&q.visual.blocks[0].fc_w) == 1 && vt_pages_released(&q.text.blocks[1].fc_w) == 1 &&
            vt_pages_released(&p.visual.blocks[0].fc_w) == 0,
        "drop_src: the converted F32 matrices' pages are given back (and only the source's)");
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_clip_forward(&c, &hd, &a, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_F32);
  CHECK(!memcmp(a.visual.features.data, b.visual.features.data, vlm_nbytes(&a.visual.features)) &&
            !memcmp(a.text.features.data, b.text.features.data, vlm_nbytes(&a.text.features)),
        "drop_src: the bf16 features differ from those without it");
  vlm_clip_params_free(&hd);
  vlm_clip_params_free(&q);
  vlm_clip_acts_free(&a);
  vlm_clip_acts_free(&b);
  vlm_clip_params_free(&h);
  vlm_clip_params_free(&p);
  vlm_st_close(&in);
}

/* Largest |a - b| over max |b|, for two [B, E] feature sets. */
static double rel_diff(const vlm_tensor *a, const vlm_tensor *b) {
  const float *x = a->data, *y = b->data;
  double d = 0, m = 0;
  for (int64_t i = 0; i < vlm_numel(a); i++) {
    d = fmax(d, fabs((double)x[i] - y[i]));
    m = fmax(m, fabs((double)y[i]));
  }
  return d / (m > 0 ? m : 1);
}

/* Entries 0, 2, 4, 5, 7 of the tiny-clip fixture's inputs: texts whose last
 * EOT is at 2..7 of 16, so the pooled-rows path cuts the text to 8 positions.
 * *ids and *img back t and im (free them). */
static void short_text_batch(const vlm_safetensors *in, const vlm_clip_config *c, vlm_tensor *t, vlm_tensor *im,
                             int64_t **ids, float **img) {
  vlm_tensor images = vlm_st_tensor(vlm_st_find(in, "images")), text = vlm_st_tensor(vlm_st_find(in, "text"));
  int64_t L = text.shape[1], S = c->vision.image_size, keep[5] = {0, 2, 4, 5, 7}, B = 5;
  *ids = malloc((size_t)(B * L) * sizeof(int64_t));
  *img = vt_alloc(B * 3 * S * S);
  if (!*ids) abort();
  for (int64_t i = 0; i < B; i++) {
    memcpy(*ids + i * L, (int64_t *)text.data + keep[i] * L, (size_t)L * sizeof(int64_t));
    memcpy(*img + i * 3 * S * S, (float *)images.data + keep[i] * 3 * S * S, (size_t)(3 * S * S) * sizeof(float));
  }
  int64_t tsh[2] = {B, L}, ish[4] = {B, 3, S, S};
  *t = vlm_tensor_make(*ids, VLM_I64, VLM_CPU, 2, tsh);
  *im = vlm_tensor_cpu_f32(*img, 4, ish);
}

typedef struct { vlm_tensor *t[512]; const char *name[512]; int n; } tensor_list;
static void list_add(void *ctx, const char *name, vlm_tensor *t) {
  tensor_list *l = ctx;
  if (l->n < 512) l->t[l->n] = t, l->name[l->n++] = name;
}

/* One training step with the pooled-rows path (b: the text cut after its last
 * EOT, the last blocks at the pooled rows, forward and backward) against every
 * row run (a): the loss and every parameter's gradient, each relative to its own max. */
static void training_variant(const vlm_clip_config *c, vlm_clip_params *p, vlm_clip_acts *a, vlm_clip_acts *b,
                             vlm_clip_params *ga, vlm_clip_params *gb, const vlm_tensor *im, const vlm_tensor *t,
                             int v, int bf16) {
  vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
  float la = vlm_clip_forward(c, p, a, im, t), lb = vlm_clip_forward(c, p, b, im, t);
  vlm_clip_params_zero(ga);
  vlm_clip_params_zero(gb);
  vlm_clip_backward(c, p, ga, a, t);
  vlm_clip_backward(c, p, gb, b, t);
  vlm_set_matmul_precision(VLM_PREC_F32);
  double tol = bf16 ? 2e-2 : 1e-5, worst = fabs((double)la - lb) / fabs((double)la);
  CHECK(worst <= tol, "pooled rows training (variant %d): loss %.9g vs %.9g", v, (double)lb, (double)la);
  CHECK(b->text.n_cut == 8, "pooled rows training (variant %d): the text ran %lld positions, expected 8", v,
        (long long)b->text.n_cut);
  tensor_list ta = {.n = 0}, tb = {.n = 0};
  vlm_clip_params_visit(ga, c, list_add, &ta);
  vlm_clip_params_visit(gb, c, list_add, &tb);
  CHECK(ta.n == tb.n && ta.n > 0, "gradient lists");
  for (int i = 0; i < ta.n && i < tb.n; i++) {
    double d = rel_diff(tb.t[i], ta.t[i]);
    worst = fmax(worst, d);
    CHECK(d <= tol, "pooled rows training (variant %d): d %s differs by %.3g of its max", v, ta.name[i], d);
  }
  printf("pooled rows training vs every row, variant %d: loss and %d gradients within %.2g of their max\n", v, ta.n,
         worst);
}

/* The pooled-rows path against every row run, on the fixture's weights:
 * texts whose last EOT is at 2..7 of 16 (so the text is cut to 8 positions),
 * the first-EOT pooling rule as well as argmax, fp32 with both kernel sets and
 * bf16 (inference: bf16 weights; training: bf16 matmul precision). Inference
 * compares the features, training the loss and every gradient. */
static void pooled_rows_checks(const char *shared) {
  vlm_clip_config c;
  vlm_clip_params p, h, ga, gb;
  vlm_safetensors in;
  if (!load_tiny_clip(shared, &c, &p, &in)) return;
  CHECK(vlm_clip_params_bf16(&h, &p, &c, 0) == VLM_OK, "%s", vlm_last_error());
  CHECK(vlm_clip_params_init(&ga, &c) == VLM_OK && vlm_clip_params_init(&gb, &c) == VLM_OK, "grads");
  int64_t *ids;
  float *img;
  vlm_tensor t, im;
  short_text_batch(&in, &c, &t, &im, &ids, &img);
  int64_t B = t.shape[0], L = t.shape[1];
  vlm_clip_acts a, b, ta, tb;
  CHECK(vlm_clip_acts_init(&a, &c, B, L, 0) == VLM_OK && vlm_clip_acts_init(&b, &c, B, L, 0) == VLM_OK &&
            vlm_clip_acts_init(&ta, &c, B, L, 1) == VLM_OK && vlm_clip_acts_init(&tb, &c, B, L, 1) == VLM_OK,
        "acts");
  CHECK(tb.visual.pooled_only && tb.text.pooled_only, "training acts default to pooled_only");
  a.visual.pooled_only = a.text.pooled_only = 0;
  ta.visual.pooled_only = ta.text.pooled_only = 0;
  for (int v = 0; v < 4; v++) {
    int bf16 = v == 3;
    vlm_set_kernel_mode(v == 1 ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    c.text.eot_id = v == 2 ? 999 : -1;   /* v 2: the first-EOT rule (Hugging Face) */
    vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
    vlm_clip_forward(&c, bf16 ? &h : &p, &a, &im, &t);
    vlm_clip_forward(&c, bf16 ? &h : &p, &b, &im, &t);
    vlm_set_matmul_precision(VLM_PREC_F32);
    double di = rel_diff(&b.visual.features, &a.visual.features), dt = rel_diff(&b.text.features, &a.text.features);
    double tol = bf16 ? 2e-3 : 2e-6;
    CHECK(di <= tol && dt <= tol, "pooled rows vs every row (variant %d): image %.3g, text %.3g (tolerance %.1g)", v,
          di, dt, tol);
    printf("pooled rows vs every row, variant %d: largest difference image %.2g, text %.2g of the max\n", v, di, dt);
    training_variant(&c, &p, &ta, &tb, &ga, &gb, &im, &t, v, bf16);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  free(ids);
  free(img);
  vlm_clip_acts_free(&a);
  vlm_clip_acts_free(&b);
  vlm_clip_acts_free(&ta);
  vlm_clip_acts_free(&tb);
  vlm_clip_params_free(&ga);
  vlm_clip_params_free(&gb);
  vlm_clip_params_free(&h);
  vlm_clip_params_free(&p);
  vlm_st_close(&in);
}

/* InfoNCE: finite-difference gradients of the features and of logit_scale. */
typedef struct {
  vlm_clip_loss_acts s;
  vlm_tensor img, txt, scale, dimg, dtxt, dscale;
  float out;
} loss_gc;

static void lg_forward(void *ctx) {
  loss_gc *g = ctx;
  vlm_clip_loss_forward(&g->s, &g->img, &g->txt, &g->scale);
  g->out = *vlm_f32(&g->s.loss);
}

static float lg_dout;
static void lg_backward(void *ctx) {
  loss_gc *g = ctx;
  vlm_clip_loss_forward(&g->s, &g->img, &g->txt, &g->scale);
  vlm_clip_loss_backward(&g->s, lg_dout, &g->img, &g->txt, &g->dimg, &g->dtxt, &g->dscale);
}

static void loss_gradcheck(void) {
  /* the whole batch (B = N), and one rank's rows [2, 4) of a 6-row global batch */
  const int64_t Bs[2] = {5, 2}, Ns[2] = {5, 6}, offs[2] = {0, 2}, E = 7;
  for (int cfg = 0; cfg < 2; cfg++)
  for (int mode = 0; mode < 2; mode++) {
    const int64_t B = Bs[cfg], N = Ns[cfg];
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    loss_gc g;
    memset(&g, 0, sizeof g);
    vlm_arena m, a;
    vlm_arena_measure(&m, VLM_CPU);
    vlm_clip_loss_layout_local(&g.s, &m, B, N, offs[cfg], E);
    vlm_arena_init(&a, m.used, VLM_CPU);
    vlm_clip_loss_layout_local(&g.s, &a, B, N, offs[cfg], E);
    float *img = vt_alloc(N * E), *txt = vt_alloc(N * E), *dimg = vt_alloc(N * E), *dtxt = vt_alloc(N * E);
    float scale = 1.3f, dscale = 0;
    vt_fill_normal(img, N * E, 11, 1.0f);
    vt_fill_normal(txt, N * E, 12, 1.0f);
    int64_t sh[2] = {N, E};
    g.img = vlm_tensor_cpu_f32(img, 2, sh);
    g.txt = vlm_tensor_cpu_f32(txt, 2, sh);
    g.dimg = vlm_tensor_cpu_f32(dimg, 2, sh);
    g.dtxt = vlm_tensor_cpu_f32(dtxt, 2, sh);
    g.scale = vlm_tensor_cpu_f32(&scale, 0, NULL);
    g.dscale = vlm_tensor_cpu_f32(&dscale, 0, NULL);
    vt_gc_input ins[3] = {{"image_features", img, dimg, N * E}, {"text_features", txt, dtxt, N * E},
                          {"logit_scale", &scale, &dscale, 1}};
    vt_gradcheck gc = {lg_forward, lg_backward, &g, &g.out, &lg_dout, 1, ins, 3, 0, 0, 0, 7};
    const char *names[2][2] = {{"clip loss (fast)", "clip loss (ref)"},
                               {"clip loss, rows 2-3 of 6 (fast)", "clip loss, rows 2-3 of 6 (ref)"}};
    vt_gradcheck_run(names[cfg][mode], &gc);
    free(img); free(txt); free(dimg); free(dtxt);
    vlm_arena_free(&a);
  }
  /* Three ranks of 2 rows: the mean of their local losses is the ClipLoss of the 6 rows, and
   * the sum of their gradients at dloss = 1/3 is its gradient (open_clip's local loss with
   * gathered features). */
  {
    enum { R = 3, Bl = 2, N = R * Bl, E2 = 5 };
    float img[N * E2], txt[N * E2], scale = 0.7f;
    vt_fill_normal(img, N * E2, 21, 1.0f);
    vt_fill_normal(txt, N * E2, 22, 1.0f);
    int64_t sh[2] = {N, E2};
    vlm_tensor ti = vlm_tensor_cpu_f32(img, 2, sh), tt = vlm_tensor_cpu_f32(txt, 2, sh);
    vlm_tensor ts = vlm_tensor_cpu_f32(&scale, 0, NULL);
    float want_di[N * E2] = {0}, want_dt[N * E2] = {0}, want_ds = 0, sum_di[N * E2] = {0}, sum_dt[N * E2] = {0}, sum_ds = 0;
    double want_loss = 0, mean_loss = 0;
    for (int r = -1; r < R; r++) {   /* -1: the whole batch in one process */
      vlm_clip_loss_acts s;
      vlm_arena m, a;
      vlm_arena_measure(&m, VLM_CPU);
      vlm_clip_loss_layout_local(&s, &m, r < 0 ? N : Bl, N, r < 0 ? 0 : r * Bl, E2);
      vlm_arena_init(&a, m.used, VLM_CPU);
      vlm_clip_loss_layout_local(&s, &a, r < 0 ? N : Bl, N, r < 0 ? 0 : r * Bl, E2);
      vlm_tensor di = vlm_tensor_cpu_f32(r < 0 ? want_di : sum_di, 2, sh), dt = vlm_tensor_cpu_f32(r < 0 ? want_dt : sum_dt, 2, sh);
      vlm_tensor ds = vlm_tensor_cpu_f32(r < 0 ? &want_ds : &sum_ds, 0, NULL);
      vlm_clip_loss_forward(&s, &ti, &tt, &ts);
      vlm_clip_loss_backward(&s, r < 0 ? 1.0f : 1.0f / R, &ti, &tt, &di, &dt, &ds);
      if (r < 0) want_loss = *vlm_f32(&s.loss);
      else mean_loss += *vlm_f32(&s.loss) / R;
      vlm_arena_free(&a);
    }
    double worst = 0;
    for (int i = 0; i < N * E2; i++) worst = fmax(worst, fmax(fabs(sum_di[i] - want_di[i]), fabs(sum_dt[i] - want_dt[i])));
    CHECK(fabs(mean_loss - want_loss) < 1e-5 && worst < 1e-5 && fabsf(sum_ds - want_ds) < 1e-5,
          "3 ranks' local losses: mean %.7f vs %.7f, worst feature gradient difference %.3g, logit_scale %.6f vs %.6f",
          mean_loss, want_loss, worst, sum_ds, want_ds);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  float v[3] = {-0.5f, 2.0f, 7.0f}, want[3] = {0.0f, 2.0f, VLM_CLIP_LOGIT_SCALE_MAX};
  for (int i = 0; i < 3; i++) {
    vlm_tensor t = vlm_tensor_cpu_f32(&v[i], 0, NULL);
    vlm_clip_logit_scale_clamp(&t);
    CHECK(v[i] == want[i], "clamp: got %g, want %g", v[i], want[i]);
  }
}

static void pool_checks(void) {
  vlm_text_config c = {0};
  c.eot_id = -1;
  int64_t ids[2 * 5] = {9, 3, 9, 0, 0, 1, 7, 2, 7, 0}, idx[2];
  int64_t sh[2] = {2, 5};
  vlm_tensor t = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, sh);
  vlm_text_pool_index(&c, &t, idx);
  CHECK(idx[0] == 0 && idx[1] == 1, "argmax pooling takes the first max: %lld %lld", (long long)idx[0],
        (long long)idx[1]);
  c.eot_id = 2;
  vlm_text_pool_index(&c, &t, idx);
  CHECK(idx[0] == 0 && idx[1] == 2, "eot pooling: %lld %lld", (long long)idx[0], (long long)idx[1]);
}

/* --compare DIR OUT GRADS: GRADS (open_clip or HF names) into parameters of DIR's config. */
static void *load_grads(const char *dir, const char *grads_path) {
  static vlm_clip_config c;
  static vlm_clip_params g;
  static clip_ref r = {&c, &g};
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (vlm_clip_config_load(&c, path, NULL) != VLM_OK || vlm_clip_params_init(&g, &c) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return NULL;
  }
  vlm_status st = vlm_clip_load_safetensors(&g, &c, grads_path, VLM_CKPT_OPENCLIP);
  if (st != VLM_OK) st = vlm_clip_load_safetensors(&g, &c, grads_path, VLM_CKPT_HF);
  CHECK(st == VLM_OK, "%s: %s", grads_path, vlm_last_error());
  if (st == VLM_OK) return &r;
  vlm_clip_params_free(&g);
  return NULL;
}

static void free_grads(void *m) { vlm_clip_params_free(((clip_ref *)m)->p); }

/* ../shared: the unit checks, then both tiny CLIP fixtures. */
static void units(const char *shared) {
  config_checks();
  pool_checks();
  loss_gradcheck();
  loader_error_checks(shared);
  half_checks(shared);
  bf16_checks(shared);
  pooled_rows_checks(shared);
  const char *dirs[2] = {"tiny-clip", "tiny-clip-quickgelu"};
  for (int i = 0; i < 2; i++) {
    char d[4096];
    snprintf(d, sizeof d, "%s/fixtures/%s", shared, dirs[i]);
    parity(d);
  }
}

int main(int argc, char **argv) {
  return vt_parity_main(argc, argv, "tiny-clip", parity, units, load_grads, visit_clip, free_grads);
}
