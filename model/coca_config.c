/* CoCa model configs: open_clip's model_cfg JSON with multimodal_cfg, the
 * built-in presets, writing open_clip_config.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config_json.h"
#include "model/model.h"

#define BIG VLM_CFG_BIG

static const char *const k_vision_unsupported[] = {"timm_model_name", "global_average_pool", "ls_init_value",
                                                   "no_ln_pre", "input_patchnorm", "patch_dropout", NULL};
static const char *const k_text_unsupported[] = {"hf_model_name", "ls_init_value", "proj_bias", "no_causal_mask",
                                                 "correct_cls_mask", NULL};

/* vlm's CoCa has open_clip's default LayerNorm (eps 1e-5) and activations: other norm_kwargs or
 * act_kwargs are refused (open_clip 2.24's decoder ignores them; its towers do not). */
static vlm_status coca_default_norm(const cJSON *obj, const char *src, const char *sect) {
  double eps;
  vlm_status s = vlm_cfg_no_act_kwargs(obj, src, sect);
  if (s == VLM_OK) s = vlm_cfg_norm_eps(obj, &eps, src, sect);
  if (s == VLM_OK && (float)eps != 1e-5f)
    s = vlm_error(VLM_ERR_UNSUPPORTED, "%s: %snorm_kwargs.eps: %g is not supported in a CoCa (only 1e-5)", src, sect,
                  eps);
  return s;
}

#define TRY(x) do { vlm_status _s = (x); if (_s != VLM_OK) { cJSON_Delete(root); return _s; } } while (0)

vlm_status vlm_coca_config_parse(vlm_coca_config *c, const char *json, const char *src) {
  memset(c, 0, sizeof *c);
  cJSON *root;
  vlm_status pst = vlm_cfg_parse(json, src, &root);
  if (pst != VLM_OK) return pst;
  const cJSON *cfg = root;
  const cJSON *mc = cJSON_GetObjectItemCaseSensitive(root, "model_cfg");
  if (mc) cfg = mc;
  if (!cJSON_IsObject(cfg)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: the model config is not a JSON object", src));
  const cJSON *vc = cJSON_GetObjectItemCaseSensitive(cfg, "vision_cfg");
  const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_cfg");
  const cJSON *dc = cJSON_GetObjectItemCaseSensitive(cfg, "multimodal_cfg");
  if (!cJSON_IsObject(vc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_cfg: missing or not an object", src));
  if (!cJSON_IsObject(tc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_cfg: missing or not an object", src));
  if (!cJSON_IsObject(dc))
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: multimodal_cfg: missing or not an object (not a CoCa config)", src));
  TRY(vlm_cfg_int(cfg, "embed_dim", -1, 1, BIG, &c->embed_dim, src, ""));
  c->quick_gelu = vlm_cfg_truthy(cfg, "quick_gelu");
  vlm_act act = c->quick_gelu ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
  double r = 4.0;

  vlm_vit_config *v = &c->vision;
  const char *vs = "vision_cfg.";
  TRY(vlm_cfg_reject(vc, k_vision_unsupported, src, vs));
  TRY(coca_default_norm(vc, src, vs));
  /* open_clip's CLIPVisionCfg / CLIPTextCfg default attentional_pool and embed_cls to false (the
   * class-token pooling of a CLIP, no cls token), also in a CoCa; vlm's CoCa implements only the
   * attentional pooler and the appended cls token, so the config must say true (a missing key is
   * refused, not read as true: the saved config has to describe the model that was trained). */
  if (!vlm_cfg_truthy(vc, "attentional_pool"))
    TRY(vlm_error(VLM_ERR_UNSUPPORTED, "%s: vision_cfg.attentional_pool: %s; open_clip then pools the class "
                  "token, which vlm's CoCa does not support (only the attentional pooler: set it to true)", src,
                  cJSON_GetObjectItemCaseSensitive(vc, "attentional_pool") ? "not true" : "missing (open_clip's "
                  "default is false)"));
  TRY(vlm_cfg_vit_geometry(vc, v, src));
  v->attentional_pool = 1;
  TRY(vlm_cfg_int(vc, "attn_pooler_queries", 256, 2, 1 << 20, &v->pool_queries, src, vs));
  TRY(vlm_cfg_int(vc, "attn_pooler_heads", 8, 1, BIG, &v->pool_heads, src, vs));
  if (c->embed_dim % v->pool_heads)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_cfg.attn_pooler_heads: %lld does not divide embed_dim %lld", src,
                  (long long)v->pool_heads, (long long)c->embed_dim));
  v->embed_dim = c->embed_dim;
  v->act = act;
  v->ln_eps = 1e-5f;

  vlm_text_config *t = &c->text;
  const char *ts = "text_cfg.";
  TRY(vlm_cfg_reject(tc, k_text_unsupported, src, ts));
  TRY(coca_default_norm(tc, src, ts));
  if (!vlm_cfg_truthy(tc, "embed_cls"))
    TRY(vlm_error(VLM_ERR_UNSUPPORTED, "%s: text_cfg.embed_cls: %s; open_clip then pools the text at its "
                  "end-of-text token, which vlm's CoCa does not support (only the appended cls token: set it to true)",
                  src, cJSON_GetObjectItemCaseSensitive(tc, "embed_cls") ? "not true" : "missing (open_clip's default "
                  "is false)"));
  TRY(vlm_cfg_int(tc, "context_length", 77, 1, 1 << 20, &t->context_length, src, ts));
  if (t->context_length < 2)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_cfg.context_length: %lld is too short for a CoCa: a caption needs at least "
                  "2 positions (<|startoftext|> and a token to predict)", src, (long long)t->context_length));
  TRY(vlm_cfg_int(tc, "vocab_size", 49408, 1, BIG, &t->vocab_size, src, ts));
  TRY(vlm_cfg_int(tc, "width", 512, 1, BIG, &t->width, src, ts));
  TRY(vlm_cfg_heads(tc, t->width, &t->heads, src, ts));
  TRY(vlm_cfg_int(tc, "layers", 12, 0, 4096, &t->layers, src, ts));
  TRY(vlm_cfg_ratio(tc, "mlp_ratio", 4.0, &r, src, ts));
  t->mlp_width = (int64_t)(t->width * r);
  TRY(vlm_cfg_int(tc, "pad_id", 0, 0, BIG, &t->pad_id, src, ts));
  t->embed_cls = 1;
  t->eot_id = -1;
  t->embed_dim = c->embed_dim;
  t->act = act;
  t->ln_eps = 1e-5f;

  vlm_decoder_config *d = &c->decoder;
  const char *ds = "multimodal_cfg.";
  TRY(vlm_cfg_reject(dc, k_text_unsupported, src, ds));
  TRY(coca_default_norm(dc, src, ds));
  TRY(vlm_cfg_int(dc, "context_length", 77, 1, 1 << 20, &d->context_length, src, ds));
  if (d->context_length < 2)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: multimodal_cfg.context_length: %lld is too short for a CoCa: a caption needs at "
                  "least 2 positions (<|startoftext|> and a token to predict)", src, (long long)d->context_length));
  TRY(vlm_cfg_int(dc, "width", 512, 1, BIG, &d->width, src, ds));
  if (cJSON_GetObjectItemCaseSensitive(dc, "heads")) TRY(vlm_cfg_heads(dc, d->width, &d->heads, src, ds));
  else d->heads = 8;
  if (d->width % d->heads)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: multimodal_cfg.heads: %lld does not divide width %lld", src,
                  (long long)d->heads, (long long)d->width));
  TRY(vlm_cfg_int(dc, "layers", 12, 0, 4096, &d->layers, src, ds));
  TRY(vlm_cfg_ratio(dc, "mlp_ratio", 4.0, &r, src, ds));
  d->mlp_width = (int64_t)(d->width * r);
  d->vocab_size = t->vocab_size;
  d->act = act;
  d->ln_eps = 1e-5f;
  if (d->width != c->embed_dim || d->width != t->width)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: multimodal_cfg.width %lld must equal embed_dim %lld and text_cfg.width %lld "
                  "(the decoder reads the image and text tokens directly)", src, (long long)d->width,
                  (long long)c->embed_dim, (long long)t->width));
  const vlm_cfg_limit l[] = {
      {"embed_dim", c->embed_dim, VLM_CFG_MAX_WIDTH},
      {"vision_cfg.width", v->width, VLM_CFG_MAX_WIDTH},
      {"vision_cfg.heads", v->heads, VLM_CFG_MAX_HEADS},
      {"vision_cfg.mlp_ratio x width", v->mlp_width, VLM_CFG_MAX_MLP},
      {"vision_cfg.image_size / patch_size", v->image_size / v->patch_size, VLM_CFG_MAX_GRID},
      {"vision_cfg.attn_pooler_queries", v->pool_queries, VLM_CFG_MAX_CONTEXT},
      {"vision_cfg.attn_pooler_heads", v->pool_heads, VLM_CFG_MAX_HEADS},
      {"text_cfg.heads", t->heads, VLM_CFG_MAX_HEADS},
      {"text_cfg.mlp_ratio x width", t->mlp_width, VLM_CFG_MAX_MLP},
      {"text_cfg.context_length", t->context_length, VLM_CFG_MAX_CONTEXT},
      {"text_cfg.vocab_size", t->vocab_size, VLM_CFG_MAX_VOCAB},
      {"multimodal_cfg.heads", d->heads, VLM_CFG_MAX_HEADS},
      {"multimodal_cfg.mlp_ratio x width", d->mlp_width, VLM_CFG_MAX_MLP},
      {"multimodal_cfg.context_length", d->context_length, VLM_CFG_MAX_CONTEXT},
  };   /* the text and decoder widths equal embed_dim (checked above) */
  TRY(vlm_cfg_limits(l, (int)(sizeof l / sizeof l[0]), src));
  TRY(vlm_cfg_preprocess(root, &c->vision, src));
  c->clip_loss_weight = 1.0f;
  c->caption_loss_weight = 2.0f;
  cJSON_Delete(root);
  return VLM_OK;
}

vlm_status vlm_coca_config_load(vlm_coca_config *c, const char *path) {
  if (vlm_is_openclip_params(path)) {   /* open_clip's training log: its model by name */
    char name[256];
    int64_t image_size;
    vlm_status s = vlm_openclip_params_model(path, name, sizeof name, &image_size);
    if (s == VLM_OK && vlm_coca_config_builtin(c, name) != VLM_OK)
      s = vlm_error(VLM_ERR_UNSUPPORTED, "%s: model %s is not one of vlm's built-in CoCa configs", path, name);
    return s == VLM_OK ? vlm_openclip_params_image_size(&c->vision, image_size, path) : s;
  }
  char *json;
  vlm_status s = vlm_read_text_file(path, &json);
  if (s != VLM_OK) return s;
  s = vlm_coca_config_parse(c, json, path);
  free(json);
  return s;
}

static const struct { const char *name, *json; } k_builtin[] = {
  /* open_clip's src/open_clip/model_configs/coca_ViT-B-32.json */
  {"coca_ViT-B-32",
   "{\"embed_dim\": 512, \"vision_cfg\": {\"image_size\": 224, \"layers\": 12, \"width\": 768, \"patch_size\": 32, "
   "\"attentional_pool\": true, \"attn_pooler_heads\": 8, \"output_tokens\": true}, \"text_cfg\": "
   "{\"context_length\": 76, \"vocab_size\": 49408, \"width\": 512, \"heads\": 8, \"layers\": 12, \"embed_cls\": "
   "true, \"output_tokens\": true}, \"multimodal_cfg\": {\"context_length\": 76, \"vocab_size\": 49408, \"width\": "
   "512, \"heads\": 8, \"layers\": 12, \"attn_pooler_heads\": 8}, \"custom_text\": true}"},
  /* open_clip's src/open_clip/model_configs/coca_ViT-L-14.json (open_clip_torch 2.24) */
  {"coca_ViT-L-14",
   "{\"embed_dim\": 768, \"vision_cfg\": {\"image_size\": 224, \"layers\": 24, \"width\": 1024, \"patch_size\": 14, "
   "\"attentional_pool\": true, \"attn_pooler_heads\": 8, \"output_tokens\": true}, \"text_cfg\": "
   "{\"context_length\": 76, \"vocab_size\": 49408, \"width\": 768, \"heads\": 12, \"layers\": 12, \"embed_cls\": "
   "true, \"output_tokens\": true}, \"multimodal_cfg\": {\"context_length\": 76, \"vocab_size\": 49408, \"width\": "
   "768, \"heads\": 12, \"layers\": 12, \"attn_pooler_heads\": 12}, \"custom_text\": true}"},
  /* The shapes demo: 64 px images, a small BPE vocabulary. */
  {"coca-small",
   "{\"embed_dim\": 256, \"vision_cfg\": {\"image_size\": 64, \"patch_size\": 8, \"layers\": 4, \"width\": 256, "
   "\"head_width\": 64, \"attentional_pool\": true, \"attn_pooler_queries\": 32, \"attn_pooler_heads\": 4}, "
   "\"text_cfg\": {\"context_length\": 32, \"vocab_size\": 4096, \"width\": 256, \"heads\": 4, \"layers\": 4, "
   "\"embed_cls\": true}, \"multimodal_cfg\": {\"context_length\": 32, \"width\": 256, \"heads\": 4, \"layers\": "
   "2}, \"custom_text\": true}"},
  /* The captioning demo (`vlm train --train-data shapes --model coca-shapes`): 32 px
   * images in 8 px patches with 8 heads of 16 as the CLIP shapes demo, 16 pooler queries
   * (1 + 15 image tokens), text tower and decoder 64 wide (a step costs ~1.5x the CLIP
   * demo's; with 128 it was 2.4x); fits 15 minutes on 2 CPU cores. */
  {"coca-shapes",
   "{\"embed_dim\": 64, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 4, \"width\": 128, "
   "\"head_width\": 16, \"attentional_pool\": true, \"attn_pooler_queries\": 16, \"attn_pooler_heads\": 4}, "
   "\"text_cfg\": {\"context_length\": 24, \"vocab_size\": 1024, \"width\": 64, \"heads\": 2, \"layers\": 2, "
   "\"embed_cls\": true}, \"multimodal_cfg\": {\"context_length\": 24, \"width\": 64, \"heads\": 2, "
   "\"layers\": 2}, \"custom_text\": true}"},
  /* The shape of ../shared/fixtures/tiny-coca. */
  {"coca-tiny",
   "{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 2, \"width\": 48, "
   "\"head_width\": 12, \"attentional_pool\": true, \"attn_pooler_queries\": 16, \"attn_pooler_heads\": 4}, "
   "\"text_cfg\": {\"context_length\": 16, \"vocab_size\": 512, \"width\": 32, \"heads\": 4, \"layers\": 2, "
   "\"embed_cls\": true}, \"multimodal_cfg\": {\"context_length\": 16, \"vocab_size\": 512, \"width\": 32, "
   "\"heads\": 4, \"layers\": 2}, \"custom_text\": true}"},
};
#define N_BUILTIN (int)(sizeof k_builtin / sizeof k_builtin[0])

vlm_status vlm_coca_config_builtin(vlm_coca_config *c, const char *name) {
  for (int i = 0; i < N_BUILTIN; i++)
    if (!strcmp(name, k_builtin[i].name)) return vlm_coca_config_parse(c, k_builtin[i].json, name);
  char list[256] = "";
  for (int i = 0; i < N_BUILTIN; i++) {
    strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
    strncat(list, k_builtin[i].name, sizeof list - strlen(list) - 1);
  }
  return vlm_error(VLM_ERR_ARG, "unknown CoCa model '%s' (built-in: %s)", name, list);
}

const char *vlm_coca_builtin_name(int i) { return i >= 0 && i < N_BUILTIN ? k_builtin[i].name : NULL; }

char *vlm_coca_config_to_json(const vlm_coca_config *c) {
  const vlm_vit_config *v = &c->vision;
  const vlm_text_config *t = &c->text;
  const vlm_decoder_config *d = &c->decoder;
  cJSON *root = cJSON_CreateObject();
  cJSON *m = cJSON_AddObjectToObject(root, "model_cfg");
  cJSON_AddNumberToObject(m, "embed_dim", (double)c->embed_dim);
  if (c->quick_gelu) cJSON_AddTrueToObject(m, "quick_gelu");
  cJSON *vc = cJSON_AddObjectToObject(m, "vision_cfg");
  vlm_cfg_write_vit_geometry(vc, v);
  cJSON_AddTrueToObject(vc, "attentional_pool");
  cJSON_AddNumberToObject(vc, "attn_pooler_queries", (double)v->pool_queries);
  cJSON_AddNumberToObject(vc, "attn_pooler_heads", (double)v->pool_heads);
  cJSON_AddTrueToObject(vc, "output_tokens");
  cJSON *tc = cJSON_AddObjectToObject(m, "text_cfg");
  vlm_cfg_write_tower(tc, t->context_length, t->vocab_size, t->width, t->heads, t->layers, t->mlp_width);
  cJSON_AddTrueToObject(tc, "embed_cls");
  cJSON_AddTrueToObject(tc, "output_tokens");
  if (t->pad_id) cJSON_AddNumberToObject(tc, "pad_id", (double)t->pad_id);
  cJSON *dc = cJSON_AddObjectToObject(m, "multimodal_cfg");
  vlm_cfg_write_tower(dc, d->context_length, d->vocab_size, d->width, d->heads, d->layers, d->mlp_width);
  cJSON_AddTrueToObject(m, "custom_text");
  vlm_cfg_write_preprocess(root, &c->vision);
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  if (!s) vlm_error(VLM_ERR_OOM, "CoCa config: out of memory");
  return s;
}

int vlm_model_is_coca(const char *path) {
  char cfg[4096], weights[4096];
  if (vlm_model_paths(path, cfg, weights, sizeof cfg) != VLM_OK) return -1;
  if (!cfg[0]) return 0;   /* a weights file without a config: CLIP's rules apply (vlm_clip_config_resolve) */
  if (vlm_is_openclip_params(cfg)) {
    char name[256];
    int64_t image_size;
    if (vlm_openclip_params_model(cfg, name, sizeof name, &image_size) != VLM_OK) return -1;
    for (int i = 0; vlm_coca_builtin_name(i); i++)
      if (!strcmp(name, vlm_coca_builtin_name(i))) return 1;
    return 0;
  }
  char *json;
  if (vlm_read_text_file(cfg, &json) != VLM_OK) return -1;
  cJSON *root = cJSON_Parse(json);
  free(json);
  if (!root) return 0;   /* the CLIP loader reports the parse error */
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model_cfg");
  const cJSON *cfgo = m ? m : root;
  int coca = cJSON_IsObject(cfgo) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(cfgo, "multimodal_cfg"));
  cJSON_Delete(root);
  return coca;
}

vlm_status vlm_coca_load(const char *path, vlm_coca_config *c, vlm_coca_params *p) {
  char cfg[4096], weights[4096];
  memset(p, 0, sizeof *p);
  vlm_status s = vlm_model_paths(path, cfg, weights, sizeof cfg);
  if (s != VLM_OK) return s;
  if (!cfg[0]) return vlm_error(VLM_ERR_FORMAT, "%s: no CoCa config (open_clip_config.json) beside these weights", path);
  s = vlm_coca_config_load(c, cfg);
  if (s != VLM_OK) return s;
  s = vlm_model_weights_exist(cfg, weights);
  if (s != VLM_OK) return s;
  s = vlm_coca_params_init(p, c);
  if (s != VLM_OK) return s;
  s = vlm_coca_load_safetensors(p, c, weights);
  if (s != VLM_OK) vlm_coca_params_free(p);
  return vlm_ckpt_name_config(s, cfg);   /* the config file that was read (params.txt, say) */
}

int vlm_coca_config_spec_is_coca(const char *spec) {
  for (int i = 0; vlm_coca_builtin_name(i); i++)
    if (!strcmp(spec, vlm_coca_builtin_name(i))) return 1;
  struct stat sb;
  return stat(spec, &sb) == 0 && S_ISREG(sb.st_mode) && vlm_model_is_coca(spec) == 1;
}

vlm_status vlm_coca_load_as(const char *path, const char *config, vlm_coca_config *c, vlm_coca_params *p) {
  if (!config) return vlm_coca_load(path, c, p);
  char cfg[4096], weights[4096];
  memset(p, 0, sizeof *p);
  struct stat sb;
  if (vlm_model_paths(path, cfg, weights, sizeof cfg) != VLM_OK) {
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return vlm_error(VLM_ERR_IO, "%s: no such file", path);
    snprintf(weights, sizeof weights, "%s", path);   /* a bare weights file, its config named */
  }
  vlm_status s = stat(config, &sb) == 0 && S_ISREG(sb.st_mode) ? vlm_coca_config_load(c, config)
                                                               : vlm_coca_config_builtin(c, config);
  if (s != VLM_OK) return s;
  s = vlm_model_weights_exist(config, weights);
  if (s != VLM_OK) return s;
  s = vlm_coca_params_init(p, c);
  if (s != VLM_OK) return s;
  s = vlm_coca_load_safetensors(p, c, weights);
  if (s != VLM_OK) vlm_coca_params_free(p);
  return vlm_ckpt_name_config(s, config);
}

vlm_status vlm_coca_save_dir(vlm_coca_params *p, const vlm_coca_config *c, const char *dir) {
  return vlm_coca_save_dir_as(p, c, dir, 0);
}

vlm_status vlm_coca_save_dir_as(vlm_coca_params *p, const vlm_coca_config *c, const char *dir, int torch) {
  char cfg[4096], weights[4096];
  snprintf(cfg, sizeof cfg, "%s/open_clip_config.json", dir);
  snprintf(weights, sizeof weights, "%s/%s", dir, torch ? "open_clip_pytorch_model.bin" : "open_clip_model.safetensors");
  char *json = vlm_coca_config_to_json(c);
  if (!json) return vlm_error_prefix(VLM_ERR_OOM, "%s", cfg);
  vlm_atomic_file af[2];
  vlm_status s = vlm_coca_stage_weights(p, c, weights, torch, &af[0]);
  if (s == VLM_OK && (s = vlm_atomic_stage(&af[1], cfg, json, strlen(json))) != VLM_OK) vlm_atomic_abort(&af[0]);
  if (s == VLM_OK) s = vlm_atomic_commit_all(af, 2);   /* both replaced, or neither */
  free(json);
  return s;
}
