/* Built-in model configs: open_clip's ViT-B-32, ViT-B-16, ViT-L-14, ViT-B-32-256,
 * ViT-B-16-plus-240, ViT-L-14-336, ViT-H-14, ViT-g-14, ViT-bigG-14 (and their -quickgelu
 * variants, as open_clip names them), and small presets for demos and benchmarks. They are kept as model_cfg JSON and go through the same parser. */
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const struct { const char *name, *json; } k_builtin[] = {
  {"ViT-B-32", "{\"embed_dim\": 512, \"vision_cfg\": {\"image_size\": 224, \"layers\": 12, \"width\": 768, "
               "\"patch_size\": 32}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, \"width\": 512, "
               "\"heads\": 8, \"layers\": 12}}"},
  {"ViT-B-16", "{\"embed_dim\": 512, \"vision_cfg\": {\"image_size\": 224, \"layers\": 12, \"width\": 768, "
               "\"patch_size\": 16}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, \"width\": 512, "
               "\"heads\": 8, \"layers\": 12}}"},
  {"ViT-L-14", "{\"embed_dim\": 768, \"vision_cfg\": {\"image_size\": 224, \"layers\": 24, \"width\": 1024, "
               "\"patch_size\": 14}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, \"width\": 768, "
               "\"heads\": 12, \"layers\": 12}}"},
  /* open_clip's other ViT CLIP configs (src/open_clip/model_configs/NAME.json), for
   * checkpoints that carry no config (--config NAME, open_clip's params.txt) */
  {"ViT-B-32-256", "{\"embed_dim\": 512, \"vision_cfg\": {\"image_size\": 256, \"layers\": 12, \"width\": 768, "
                   "\"patch_size\": 32}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, "
                   "\"width\": 512, \"heads\": 8, \"layers\": 12}}"},
  {"ViT-B-16-plus-240", "{\"embed_dim\": 640, \"vision_cfg\": {\"image_size\": 240, \"layers\": 12, "
                        "\"width\": 896, \"patch_size\": 16}, \"text_cfg\": {\"context_length\": 77, "
                        "\"vocab_size\": 49408, \"width\": 640, \"heads\": 10, \"layers\": 12}}"},
  {"ViT-L-14-336", "{\"embed_dim\": 768, \"vision_cfg\": {\"image_size\": 336, \"layers\": 24, \"width\": 1024, "
                   "\"patch_size\": 14}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, "
                   "\"width\": 768, \"heads\": 12, \"layers\": 12}}"},
  {"ViT-H-14", "{\"embed_dim\": 1024, \"vision_cfg\": {\"image_size\": 224, \"layers\": 32, \"width\": 1280, "
               "\"head_width\": 80, \"patch_size\": 14}, \"text_cfg\": {\"context_length\": 77, "
               "\"vocab_size\": 49408, \"width\": 1024, \"heads\": 16, \"layers\": 24}}"},
  {"ViT-g-14", "{\"embed_dim\": 1024, \"vision_cfg\": {\"image_size\": 224, \"layers\": 40, \"width\": 1408, "
               "\"head_width\": 88, \"mlp_ratio\": 4.3637, \"patch_size\": 14}, \"text_cfg\": "
               "{\"context_length\": 77, \"vocab_size\": 49408, \"width\": 1024, \"heads\": 16, \"layers\": 24}}"},
  {"ViT-bigG-14", "{\"embed_dim\": 1280, \"vision_cfg\": {\"image_size\": 224, \"layers\": 48, \"width\": 1664, "
                  "\"head_width\": 104, \"mlp_ratio\": 4.9231, \"patch_size\": 14}, \"text_cfg\": "
                  "{\"context_length\": 77, \"vocab_size\": 49408, \"width\": 1280, \"heads\": 20, \"layers\": 32}}"},
  /* The training-step benchmark config of issue 3. */
  {"small", "{\"embed_dim\": 256, \"vision_cfg\": {\"image_size\": 64, \"layers\": 6, \"width\": 256, "
            "\"patch_size\": 8, \"head_width\": 64}, \"text_cfg\": {\"context_length\": 32, \"vocab_size\": 8192, "
            "\"width\": 256, \"heads\": 4, \"layers\": 6}}"},
  /* The shapes demo (`vlm train --train-data shapes`): 32 px images in 8 px patches (16
   * tokens: a step is ~2.8x cheaper than with 4 px patches, so 10 minutes give ~2.8x the
   * steps, which learn more than the finer patches in the same time), 8 heads of 16, a
   * small text tower and vocabulary. */
  {"shapes-demo", "{\"embed_dim\": 128, \"vision_cfg\": {\"image_size\": 32, \"layers\": 4, \"width\": 128, "
                  "\"patch_size\": 8, \"head_width\": 16}, \"text_cfg\": {\"context_length\": 24, "
                  "\"vocab_size\": 1024, \"width\": 64, \"heads\": 2, \"layers\": 2}}"},
  /* The shape of ../shared/fixtures/tiny-clip. */
  {"tiny", "{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 2, "
           "\"width\": 48, \"head_width\": 12}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 1000, "
           "\"width\": 32, \"heads\": 4, \"layers\": 2}}"},
};
#define N_BUILTIN (int)(sizeof k_builtin / sizeof k_builtin[0])

vlm_status vlm_clip_config_builtin(vlm_clip_config *c, const char *name) {
  char base[128];
  snprintf(base, sizeof base, "%s", name);
  int quick = 0;
  size_t n = strlen(base);
  if (n > 10 && !strcmp(base + n - 10, "-quickgelu")) {
    base[n - 10] = 0;
    quick = 1;
  }
  for (int i = 0; i < N_BUILTIN; i++) {
    if (strcmp(base, k_builtin[i].name)) continue;
    vlm_status s = vlm_clip_config_parse(c, k_builtin[i].json, name);
    if (s == VLM_OK && quick) {
      c->quick_gelu = 1;
      c->vision.act = c->text.act = VLM_ACT_QUICK_GELU;
    }
    return s;
  }
  char list[512];
  vlm_clip_builtin_names(list, sizeof list);
  return vlm_error(VLM_ERR_ARG, "unknown model '%s' (built-in: %s; add -quickgelu for QuickGELU)", name, list);
}

const char *vlm_clip_builtin_name(int i) { return i >= 0 && i < N_BUILTIN ? k_builtin[i].name : NULL; }

void vlm_clip_builtin_names(char *buf, size_t n) {
  if (!n) return;
  buf[0] = 0;
  for (int i = 0; i < N_BUILTIN; i++) {
    strncat(buf, i ? ", " : "", n - strlen(buf) - 1);
    strncat(buf, k_builtin[i].name, n - strlen(buf) - 1);
  }
}
