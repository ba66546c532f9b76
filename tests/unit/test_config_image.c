/* The image transform a model's config names (model/config_image.c): open_clip's
 * preprocess_cfg (mean, std, resize_mode) and a Hugging Face preprocessor_config.json, read into
 * the vision config, written back by the config writer, used by the encoder (vlm_vit_preprocess_cfg),
 * and the errors for bad values. Made from the tiny-clip fixture's weights. argv[1]: ../shared. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "model/encode.h"
#include "model/model.h"

static char g_tmp[256], g_fx[4096];

static void copy_from_fixture(const char *dir, const char *from, const char *to) {
  vt_copy_file(vt_path(g_fx, from), vt_path(dir, to));
}

/* DIR: an open_clip directory of the fixture's weights whose open_clip_config.json adds pre. */
static const char *openclip_dir(const char *name, const char *pre) {
  const char *dir = vt_subdir(g_tmp, name);
  size_t n;
  char *cfg = (char *)vt_read_file(vt_path(g_fx, "config.json"), &n);
  char *json = malloc(n + strlen(pre) + 64);
  int len = sprintf(json, "{\"model_cfg\": %.*s%s%s}", (int)n, cfg, pre[0] ? ", " : "", pre);
  vt_put(dir, "open_clip_config.json", json, (size_t)len);
  free(json);
  free(cfg);
  copy_from_fixture(dir, "model.safetensors", "open_clip_model.safetensors");
  return dir;
}

static int near(double a, double b) { return fabs(a - b) < 1e-12; }

static void open_clip_cfg(void) {
  const char *dir = openclip_dir("dfn-like", "\"preprocess_cfg\": {\"mean\": [0.485, 0.456, 0.406], \"std\": [0.229, "
                                             "0.224, 0.225], \"interpolation\": \"bicubic\", \"resize_mode\": \"squash\"}");
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load(dir, &c, &p, &fmt);
  CHECK(s == VLM_OK, "load: %s", vlm_last_error());
  if (s != VLM_OK) return;
  vlm_clip_params_free(&p);
  CHECK(near(c.vision.image_mean[0], 0.485) && near(c.vision.image_mean[2], 0.406) && near(c.vision.image_std[1], 0.224) &&
            c.vision.resize_mode == 1,
        "preprocess_cfg read: mean %g std %g mode %d", c.vision.image_mean[0], c.vision.image_std[1], c.vision.resize_mode);
  /* written back as open_clip writes it, and read again the same */
  char *json = vlm_clip_config_to_json(&c, VLM_CKPT_OPENCLIP);
  CHECK(json && strstr(json, "\"resize_mode\":\t\"squash\"") && strstr(json, "0.485"), "written: %s", json ? json : "");
  vlm_clip_config c2;
  CHECK(json && vlm_clip_config_parse(&c2, json, "written") == VLM_OK && near(c2.vision.image_std[2], 0.225) &&
            c2.vision.resize_mode == 1,
        "round trip: %s", vlm_last_error());
  free(json);
  /* the encoder's transform, and an identity of its own (another transform: other features) */
  vlm_encoder e, e0;
  CHECK(vlm_encoder_open(&e, dir, NULL, 2, 0) == VLM_OK, "encoder: %s", vlm_last_error());
  CHECK(e.pre.mode == VLM_RESIZE_SQUASH && e.pre.size == 32 && e.pre.mean[0] == 0.485f && e.pre.std[2] == 0.225f,
        "encoder transform: mode %d, mean %g, std %g", (int)e.pre.mode, e.pre.mean[0], e.pre.std[2]);
  CHECK(vlm_encoder_open(&e0, g_fx, NULL, 2, 0) == VLM_OK, "fixture encoder: %s", vlm_last_error());
  CHECK(e0.pre.mode == VLM_RESIZE_SHORTEST && e0.pre.mean[0] == 0.48145466f && e0.pre.std[0] == 0.26862954f,
        "no preprocess_cfg: open_clip's defaults");
  CHECK(strcmp(e.identity, e0.identity), "another transform, another identity (%s)", e.identity);
  vlm_encoder_close(&e);
  vlm_encoder_close(&e0);
  /* a single number stands for every channel; "longest" */
  dir = openclip_dir("inception", "\"preprocess_cfg\": {\"mean\": 0.5, \"std\": 0.5, \"resize_mode\": \"longest\"}");
  s = vlm_clip_load(dir, &c, &p, &fmt);
  CHECK(s == VLM_OK && near(c.vision.image_mean[1], 0.5) && near(c.vision.image_std[2], 0.5) && c.vision.resize_mode == 2,
        "one number a channel, longest: %s", vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  /* bad values: named with the file and the key */
  struct { const char *name, *pre, *needle; } bad[] = {
      {"bad-mode", "\"preprocess_cfg\": {\"resize_mode\": \"crop\"}", "preprocess_cfg.resize_mode"},
      {"bad-std", "\"preprocess_cfg\": {\"std\": [0.2, 0, 0.2]}", "preprocess_cfg.std"},
      {"bad-mean", "\"preprocess_cfg\": {\"mean\": [0.4, 0.4]}", "preprocess_cfg.mean"},
      {"bad-obj", "\"preprocess_cfg\": [1]", "preprocess_cfg"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dir = openclip_dir(bad[i].name, bad[i].pre);
    s = vlm_clip_load(dir, &c, &p, &fmt);
    CHECK(s != VLM_OK && strstr(vlm_last_error(), bad[i].needle) && strstr(vlm_last_error(), "open_clip_config.json"),
          "%s: %s", bad[i].name, s == VLM_OK ? "loaded" : vlm_last_error());
    if (s == VLM_OK) vlm_clip_params_free(&p);
  }
}

static void hf_cfg(void) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s", vt_subdir(g_tmp, "hf"));
  copy_from_fixture(dir, "config_hf.json", "config.json");
  copy_from_fixture(dir, "model_hf.safetensors", "model.safetensors");
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load(dir, &c, &p, &fmt);
  CHECK(s == VLM_OK && fmt == VLM_CKPT_HF, "hf load: %s", vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  double m[3], sd[3];
  int mode;
  vlm_vit_image_norm(&c.vision, m, sd, &mode);
  CHECK(near(m[0], 0.48145466) && near(sd[2], 0.27577711) && mode == 0, "no preprocessor_config.json: the defaults");
  const char *pc = "{\"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5], \"size\": {\"height\": 32, "
                   "\"width\": 32}, \"do_center_crop\": false, \"resample\": 3}";
  vt_put(dir, "preprocessor_config.json", pc, strlen(pc));
  s = vlm_clip_load(dir, &c, &p, &fmt);
  CHECK(s == VLM_OK && near(c.vision.image_mean[0], 0.5) && near(c.vision.image_std[1], 0.5) && c.vision.resize_mode == 1,
        "preprocessor_config.json (0.5 mean / std, no center crop): %s", vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  pc = "{\"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, -1, 0.5], \"size\": {\"shortest_edge\": 32}}";
  vt_put(dir, "preprocessor_config.json", pc, strlen(pc));
  s = vlm_clip_load(dir, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "preprocessor_config.json") && strstr(vlm_last_error(), "image_std"),
        "a negative std in preprocessor_config.json: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no ../shared folder (the tiny-clip fixture)");
  snprintf(g_fx, sizeof g_fx, "%s/fixtures/tiny-clip", shared);
  if (!vt_make_tmp_dir(g_tmp, sizeof g_tmp, "vlm-config-image")) return vt_finish();
  open_clip_cfg();
  hf_cfg();
  vt_rm_tree(g_tmp);
  return vt_finish();
}
