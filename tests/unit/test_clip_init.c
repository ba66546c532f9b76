/* CLIP configs and initialisation: the built-in configs have open_clip's
 * parameter counts; open_clip's init gives each tensor its distribution (checked
 * on the tiny config against the statistics a fresh open_clip model has), is
 * deterministic for a seed, and the initialised model runs forward/backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "model/model.h"

static void builtin_counts(void) {
  struct { const char *name; int64_t total; } want[] = {
    {"ViT-B-32", 151277313}, {"ViT-B-16", 149620737}, {"ViT-L-14", 427616513}, {"tiny", 127361},
    {"ViT-B-32-quickgelu", 151277313},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    vlm_clip_config c;
    vlm_status s = vlm_clip_config_builtin(&c, want[i].name);
    CHECK(s == VLM_OK, "%s: %s", want[i].name, vlm_last_error());
    if (s != VLM_OK) continue;
    int64_t n = vlm_clip_config_num_params(&c, NULL, NULL);
    CHECK(n == want[i].total, "%s: %lld parameters, open_clip has %lld", want[i].name, (long long)n,
          (long long)want[i].total);
  }
  /* the larger ones against open_clip's docs/model_profile.csv (millions, 2 decimals; image and
   * text towers apart, so that a wrong layer count cannot hide) */
  struct { const char *name; double total, image, text; } prof[] = {
    {"ViT-B-32-256", 151.29, 87.86, 63.43},      {"ViT-B-16-plus-240", 208.38, 117.21, 91.16},
    {"ViT-L-14-336", 427.94, 304.29, 123.65},    {"ViT-H-14", 986.11, 632.08, 354.03},
    {"ViT-g-14", 1366.68, 1012.65, 354.03},      {"ViT-bigG-14", 2539.57, 1844.91, 694.66},
  };
  for (size_t i = 0; i < sizeof prof / sizeof prof[0]; i++) {
    vlm_clip_config c;
    vlm_status s = vlm_clip_config_builtin(&c, prof[i].name);
    CHECK(s == VLM_OK, "%s: %s", prof[i].name, vlm_last_error());
    if (s != VLM_OK) continue;
    int64_t nv, nt, n = vlm_clip_config_num_params(&c, &nv, &nt);
    CHECK(fabs(n / 1e6 - prof[i].total) < 0.006 && fabs(nv / 1e6 - prof[i].image) < 0.006 &&
              fabs(nt / 1e6 - prof[i].text) < 0.006,
          "%s: %.2fM parameters (image %.2fM, text %.2fM); open_clip's profile: %.2fM (%.2fM, %.2fM)", prof[i].name,
          n / 1e6, nv / 1e6, nt / 1e6, prof[i].total, prof[i].image, prof[i].text);
  }
  vlm_clip_config c;
  CHECK(vlm_clip_config_builtin(&c, "ViT-B-32-quickgelu") == VLM_OK && c.quick_gelu &&
            c.vision.act == VLM_ACT_QUICK_GELU && c.vision.heads == 12 && c.vision.mlp_width == 3072,
        "ViT-B-32-quickgelu config");
  CHECK(vlm_clip_config_builtin(&c, "ViT-L-14") == VLM_OK && c.vision.heads == 16 && c.text.heads == 12,
        "ViT-L-14 heads");
  CHECK(vlm_clip_config_builtin(&c, "ViT-X-99") != VLM_OK && strstr(vlm_last_error(), "ViT-B-32"),
        "unknown names list the known ones: %s", vlm_last_error());
  for (int i = 0; vlm_clip_builtin_name(i); i++)
    CHECK(vlm_clip_config_builtin(&c, vlm_clip_builtin_name(i)) == VLM_OK, "%s", vlm_clip_builtin_name(i));
}

typedef struct { double mean, std, min, max; } stats;

static stats stats_of(const vlm_tensor *t) {
  const float *x = vlm_f32(t);
  int64_t n = vlm_numel(t);
  double s = 0, s2 = 0, mn = INFINITY, mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
  }
  double m = s / (double)n;
  return (stats){m, sqrt(fmax(s2 / (double)n - m * m, 0)), mn, mx};
}

typedef struct { const vlm_clip_config *c; int checked; } init_check;

/* kind: 'n' normal(std = a), 'u' uniform(+-a), 'c' constant a. */
static void expect(const char *name, const vlm_tensor *t, char kind, double a) {
  stats s = stats_of(t);
  int64_t n = vlm_numel(t);
  if (kind == 'c') {
    CHECK(s.min == a && s.max == a, "%s: want constant %g, got [%g, %g]", name, a, s.min, s.max);
    return;
  }
  double se = 1.0 / sqrt((double)n);  /* sampling error of the std, relative */
  if (kind == 'n') {
    CHECK(fabs(s.std / a - 1) < 5 * se + 0.02 && fabs(s.mean) < 5 * a * se + 1e-6,
          "%s: want N(0, %g), got mean %g std %g", name, a, s.mean, s.std);
  } else {
    CHECK(s.min >= -a && s.max <= a && s.max > a * (1 - 20.0 / (double)n) - 1e-9 &&
              fabs(s.std / (a / sqrt(3.0)) - 1) < 5 * se + 0.02,
          "%s: want U(+-%g), got [%g, %g] std %g", name, a, s.min, s.max, s.std);
  }
}

static int ends(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && !strcmp(s + n - k, suf);
}

static void check_one(void *ctx, const char *name, vlm_tensor *t) {
  init_check *I = ctx;
  const vlm_clip_config *c = I->c;
  int vis = !strncmp(name, "visual.", 7);
  double W = (double)(vis ? c->vision.width : c->text.width), M = (double)(vis ? c->vision.mlp_width : c->text.mlp_width);
  double Lr = (double)(vis ? c->vision.layers : c->text.layers);
  I->checked++;
  if (!strcmp(name, "logit_scale")) expect(name, t, 'c', (double)logf(1 / 0.07f));
  else if (strstr(name, "ln_")) expect(name, t, 'c', ends(name, "weight") ? 1.0 : 0.0);
  else if (!strcmp(name, "token_embedding.weight")) expect(name, t, 'n', 0.02);
  else if (!strcmp(name, "positional_embedding")) expect(name, t, 'n', 0.01);
  else if (!strcmp(name, "text_projection") || !strcmp(name, "visual.proj") || !strcmp(name, "visual.class_embedding") ||
           !strcmp(name, "visual.positional_embedding"))
    expect(name, t, 'n', 1 / sqrt(W));
  else if (!strcmp(name, "visual.conv1.weight")) expect(name, t, 'u', 1 / sqrt(3.0 * c->vision.patch_size * c->vision.patch_size));
  else if (ends(name, "in_proj_bias") || ends(name, "out_proj.bias")) expect(name, t, 'c', 0.0);
  else if (ends(name, "c_fc.bias")) expect(name, t, 'u', 1 / sqrt(W));
  else if (ends(name, "c_proj.bias")) expect(name, t, 'u', 1 / sqrt(M));
  else if (ends(name, "in_proj_weight")) expect(name, t, vis ? 'u' : 'n', vis ? sqrt(6 / (4 * W)) : 1 / sqrt(W));
  else if (ends(name, "out_proj.weight")) expect(name, t, vis ? 'u' : 'n', vis ? 1 / sqrt(W) : 1 / sqrt(W) / sqrt(2 * Lr));
  else if (ends(name, "c_fc.weight")) expect(name, t, vis ? 'u' : 'n', vis ? 1 / sqrt(W) : 1 / sqrt(2 * W));
  else if (ends(name, "c_proj.weight")) expect(name, t, vis ? 'u' : 'n', vis ? 1 / sqrt(M) : 1 / sqrt(W) / sqrt(2 * Lr));
  else CHECK(0, "no expectation for %s", name);
}

static void init_checks(void) {
  vlm_clip_config c;
  /* A config a bit wider than tiny so the statistics are meaningful. */
  const char *json = "{\"embed_dim\": 64, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 2, "
                     "\"width\": 96, \"head_width\": 32}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 500,"
                     " \"width\": 64, \"heads\": 4, \"layers\": 3}}";
  CHECK(vlm_clip_config_parse(&c, json, "init") == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params p, q;
  CHECK(vlm_clip_params_init(&p, &c) == VLM_OK && vlm_clip_params_init(&q, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&p, &c, 42);
  init_check I = {&c, 0};
  vlm_clip_params_visit(&p, &c, check_one, &I);
  CHECK(I.checked == (2 * 12 + 8) + (3 * 12 + 5) + 1, "visited %d tensors", I.checked);
  vlm_clip_params_init_openclip(&q, &c, 42);
  CHECK(!memcmp(p.arena.base, q.arena.base, p.arena.used), "same seed, same weights");
  vlm_clip_params_init_openclip(&q, &c, 43);
  CHECK(memcmp(vlm_f32(&p.text.token_emb), vlm_f32(&q.text.token_emb), 64) != 0, "another seed, other weights");

  /* The fresh model runs: finite loss near ln(B) scale, finite gradients. */
  int64_t B = 4, L = 16;
  vlm_clip_acts s;
  CHECK(vlm_clip_acts_init(&s, &c, B, L, 1) == VLM_OK, "%s", vlm_last_error());
  float *img = vt_alloc(B * 3 * 32 * 32);
  int64_t *ids = calloc((size_t)(B * L), sizeof *ids);
  vt_fill_normal(img, B * 3 * 32 * 32, 5, 1.0f);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t l = 0; l < 4 + b; l++) ids[b * L + l] = 1 + (b * 7 + l * 13) % 400;
    ids[b * L + 4 + b] = 499;
  }
  int64_t is[4] = {B, 3, 32, 32}, ts[2] = {B, L};
  vlm_tensor ti = vlm_tensor_cpu_f32(img, 4, is), tt = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, ts);
  float loss = vlm_clip_forward(&c, &p, &s, &ti, &tt);
  CHECK(isfinite(loss) && loss > 0, "loss of a fresh model: %g", loss);
  vlm_clip_params_zero(&q);
  vlm_clip_backward(&c, &p, &q, &s, &tt);
  const float *g = (const float *)q.arena.base;
  size_t n = q.arena.used / sizeof(float);
  int finite = 1;
  for (size_t i = 0; i < n; i++) finite &= isfinite(g[i]) != 0;
  CHECK(finite, "gradients are finite");
  CHECK(*vlm_f32(&q.logit_scale) != 0 && stats_of(&q.visual.conv1_w).std > 0, "gradients reach both ends");
  free(img);
  free(ids);
  vlm_clip_acts_free(&s);
  vlm_clip_params_free(&p);
  vlm_clip_params_free(&q);
}

/* Hostile sizes: each field past vlm's limit fails naming the file and the field,
 * in all three parsers, before anything is sized or allocated. */
static void config_limits(void) {
  static const struct { int kind; const char *json, *field; } bad[] = {
      {0, "{\"embed_dim\": 1073741824, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 64}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 10, \"width\": 64, \"heads\": 1, "
          "\"layers\": 1}}", "embed_dim"},
      {0, "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 65536, \"patch_size\": 1, \"layers\": 1, "
          "\"width\": 64}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 10, \"width\": 64, \"heads\": 1, "
          "\"layers\": 1}}", "image_size / patch_size"},
      {0, "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 65536, \"mlp_ratio\": 64, \"head_width\": 64}, \"text_cfg\": {\"context_length\": 8, "
          "\"vocab_size\": 10, \"width\": 64, \"heads\": 1, \"layers\": 1}}", "vision_cfg.mlp_ratio x width"},
      {0, "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 64}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 1073741824, \"width\": 64, "
          "\"heads\": 1, \"layers\": 1}}", "text_cfg.vocab_size"},
      {0, "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 64}, \"text_cfg\": {\"context_length\": 1000000, \"vocab_size\": 10, \"width\": 64, "
          "\"heads\": 1, \"layers\": 1}}", "text_cfg.context_length"},
      {1, "{\"vision_config\": {\"hidden_size\": 1048576, \"num_attention_heads\": 1}, \"text_config\": {}}",
       "vision_config.hidden_size"},
      {1, "{\"vision_config\": {}, \"text_config\": {\"num_attention_heads\": 8192, \"hidden_size\": 8192}}",
       "text_config.num_attention_heads"},
      {2, "{\"embed_dim\": 64, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 64, \"attn_pooler_queries\": 1000000, \"attn_pooler_heads\": 1, \"attentional_pool\": true}, "
          "\"text_cfg\": {\"width\": 64, \"heads\": 1, \"embed_cls\": true}, \"multimodal_cfg\": {\"width\": 64, \"heads\": 1}}", "vision_cfg.attn_pooler_queries"},
      {2, "{\"embed_dim\": 64, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, "
          "\"width\": 64, \"attn_pooler_heads\": 1, \"attentional_pool\": true}, \"text_cfg\": {\"width\": 64, "
          "\"heads\": 1, \"mlp_ratio\": 64, \"embed_cls\": true}, \"multimodal_cfg\": {\"width\": 64, \"heads\": 1}}", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    vlm_clip_config c;
    vlm_coca_config cc;
    vlm_status st = bad[i].kind == 0   ? vlm_clip_config_parse(&c, bad[i].json, "big.json")
                    : bad[i].kind == 1 ? vlm_clip_config_parse_hf(&c, bad[i].json, "big.json")
                                       : vlm_coca_config_parse(&cc, bad[i].json, "big.json");
    if (!bad[i].field) {   /* within the limits: accepted */
      CHECK(st == VLM_OK, "config %zu: %s", i, vlm_last_error());
      continue;
    }
    CHECK(st != VLM_OK && strstr(vlm_last_error(), "big.json") && strstr(vlm_last_error(), bad[i].field) &&
              strstr(vlm_last_error(), "largest vlm supports"),
          "config %zu: %s", i, st == VLM_OK ? "accepted" : vlm_last_error());
  }
  /* every built-in is within them */
  for (int i = 0; vlm_clip_builtin_name(i); i++) {
    vlm_clip_config c;
    CHECK(vlm_clip_config_builtin(&c, vlm_clip_builtin_name(i)) == VLM_OK, "%s", vlm_last_error());
  }
}

int main(void) {
  config_limits();
  builtin_counts();
  init_checks();
  return vt_finish();
}
