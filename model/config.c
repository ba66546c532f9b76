/* CLIP model configs: open_clip's model_cfg JSON and Hugging Face's CLIPConfig. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config_json.h"
#include "model/model.h"

vlm_status vlm_read_text_file(const char *path, char **out) { return vlm_read_file(path, out, NULL); }

vlm_status vlm_read_file(const char *path, char **out, size_t *len) {
  *out = NULL;
  if (len) *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open", path);
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return vlm_error(VLM_ERR_IO, "%s: cannot seek", path);
  }
  long n = ftell(f);
  if (n < 0 || n > (64L << 20)) {
    fclose(f);
    return vlm_error(VLM_ERR_FORMAT, "%s: unreadable size or larger than 64 MiB", path);
  }
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (!buf) {
    fclose(f);
    return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  }
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  if (got != (size_t)n) {
    free(buf);
    return vlm_error(VLM_ERR_IO, "%s: short read", path);
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = (size_t)n;
  return VLM_OK;
}

#define TRY(x) do { vlm_status _s = (x); if (_s != VLM_OK) { cJSON_Delete(root); return _s; } } while (0)
#define BIG VLM_CFG_BIG

static const char *const k_vision_unsupported[] = {"timm_model_name", "attentional_pool", "global_average_pool",
                                                   "ls_init_value", "no_ln_pre", "final_ln_after_pool",
                                                   "input_patchnorm", NULL};
static const char *const k_text_unsupported[] = {"hf_model_name", "ls_init_value", "embed_cls", "proj_bias",
                                                 "no_causal_mask", NULL};

static vlm_status check_sizes(const vlm_clip_config *c, const char *src, int hf) {
  const vlm_vit_config *v = &c->vision;
  const vlm_text_config *t = &c->text;
  const vlm_cfg_limit l[] = {
      {hf ? "projection_dim" : "embed_dim", c->embed_dim, VLM_CFG_MAX_WIDTH},
      {hf ? "vision_config.hidden_size" : "vision_cfg.width", v->width, VLM_CFG_MAX_WIDTH},
      {hf ? "vision_config.num_attention_heads" : "vision_cfg.heads", v->heads, VLM_CFG_MAX_HEADS},
      {hf ? "vision_config.intermediate_size" : "vision_cfg.mlp_ratio x width", v->mlp_width, VLM_CFG_MAX_MLP},
      {hf ? "vision_config.image_size / patch_size" : "vision_cfg.image_size / patch_size",
       v->image_size / v->patch_size, VLM_CFG_MAX_GRID},
      {hf ? "text_config.hidden_size" : "text_cfg.width", t->width, VLM_CFG_MAX_WIDTH},
      {hf ? "text_config.num_attention_heads" : "text_cfg.heads", t->heads, VLM_CFG_MAX_HEADS},
      {hf ? "text_config.intermediate_size" : "text_cfg.mlp_ratio x width", t->mlp_width, VLM_CFG_MAX_MLP},
      {hf ? "text_config.max_position_embeddings" : "text_cfg.context_length", t->context_length,
       VLM_CFG_MAX_CONTEXT},
      {hf ? "text_config.vocab_size" : "text_cfg.vocab_size", t->vocab_size, VLM_CFG_MAX_VOCAB},
  };
  return vlm_cfg_limits(l, (int)(sizeof l / sizeof l[0]), src);
}

static void finish(vlm_clip_config *c) {
  vlm_act act = c->quick_gelu ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
  c->vision.act = c->text.act = act;
  c->vision.ln_eps = c->text.ln_eps = 1e-5f;
  c->vision.embed_dim = c->text.embed_dim = c->embed_dim;
}

vlm_status vlm_clip_config_parse(vlm_clip_config *c, const char *json, const char *src) {
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
  if (!cJSON_IsObject(vc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_cfg: missing or not an object", src));
  if (!cJSON_IsObject(tc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_cfg: missing or not an object", src));
  TRY(vlm_cfg_int(cfg, "embed_dim", -1, 1, BIG, &c->embed_dim, src, ""));
  c->quick_gelu = vlm_cfg_truthy(cfg, "quick_gelu");
  /* open_clip's SigLIP models: a learnable logit_bias, initialised to this value */
  const cJSON *lb = cJSON_GetObjectItemCaseSensitive(cfg, "init_logit_bias");
  if (lb && !cJSON_IsNull(lb)) {
    if (!cJSON_IsNumber(lb) || !isfinite(lb->valuedouble) || fabs(lb->valuedouble) > 1e6)
      TRY(vlm_error(VLM_ERR_FORMAT, "%s: init_logit_bias: must be a number (or null)", src));
    c->has_logit_bias = 1;
    c->init_logit_bias = (float)lb->valuedouble;
  }
  const cJSON *mm = cJSON_GetObjectItemCaseSensitive(cfg, "multimodal_cfg");
  if (mm && !cJSON_IsNull(mm) && !cJSON_IsFalse(mm))   /* open_clip builds a CoCa when the key is there */
    TRY(vlm_error(VLM_ERR_UNSUPPORTED, "%s: multimodal_cfg: a CoCa config, not a CLIP one", src));

  vlm_vit_config *v = &c->vision;
  const char *vs = "vision_cfg.";
  TRY(vlm_cfg_reject(vc, k_vision_unsupported, src, vs));
  TRY(vlm_cfg_check_string(vc, "pool_type", "tok", src, vs));
  TRY(vlm_cfg_no_act_kwargs(vc, src, vs));
  double v_eps, t_eps;
  TRY(vlm_cfg_norm_eps(vc, &v_eps, src, vs));
  TRY(vlm_cfg_vit_geometry(vc, v, src));

  vlm_text_config *t = &c->text;
  const char *ts = "text_cfg.";
  TRY(vlm_cfg_reject(tc, k_text_unsupported, src, ts));
  TRY(vlm_cfg_check_string(tc, "pool_type", "argmax", src, ts));
  TRY(vlm_cfg_no_act_kwargs(tc, src, ts));
  TRY(vlm_cfg_norm_eps(tc, &t_eps, src, ts));
  TRY(vlm_cfg_int(tc, "context_length", -1, 1, 1 << 20, &t->context_length, src, ts));
  TRY(vlm_cfg_int(tc, "vocab_size", -1, 1, BIG, &t->vocab_size, src, ts));
  TRY(vlm_cfg_int(tc, "width", -1, 1, BIG, &t->width, src, ts));
  TRY(vlm_cfg_int(tc, "heads", -1, 1, BIG, &t->heads, src, ts));
  TRY(vlm_cfg_int(tc, "layers", -1, 0, 4096, &t->layers, src, ts));
  if (t->width % t->heads)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_cfg.heads: %lld does not divide width %lld", src,
                  (long long)t->heads, (long long)t->width));
  double r = 4.0;
  TRY(vlm_cfg_ratio(tc, "mlp_ratio", 4.0, &r, src, ts));
  t->mlp_width = (int64_t)(t->width * r);
  t->eot_id = -1;
  finish(c);
  v->ln_eps = (float)v_eps;
  t->ln_eps = (float)t_eps;
  TRY(check_sizes(c, src, 0));
  TRY(vlm_cfg_preprocess(root, v, src));
  cJSON_Delete(root);
  return VLM_OK;
}

static vlm_status hf_act(const cJSON *obj, int *quick, const char *src, const char *sect) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
  if (!v || cJSON_IsNull(v)) { *quick = 1; return VLM_OK; }  /* HF's default */
  if (cJSON_IsString(v) && !strcmp(v->valuestring, "quick_gelu")) { *quick = 1; return VLM_OK; }
  if (cJSON_IsString(v) && !strcmp(v->valuestring, "gelu")) { *quick = 0; return VLM_OK; }
  return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %shidden_act: only \"gelu\" and \"quick_gelu\" are supported", src, sect);
}

/* Older CLIPConfigs (transformers before 4.2x, still on the hub) hold "text_config_dict" /
 * "vision_config_dict" beside or instead of "text_config" / "vision_config"; transformers reads
 * the *_dict keys over the others. The same here: NAME_dict's keys are copied into NAME. */
static vlm_status merge_config_dict(cJSON *root, const char *name, const char *src) {
  char key[64];
  snprintf(key, sizeof key, "%s_dict", name);
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!d || cJSON_IsNull(d)) return VLM_OK;
  if (!cJSON_IsObject(d)) return vlm_error(VLM_ERR_FORMAT, "%s: %s: not an object", src, key);
  cJSON *to = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!to || cJSON_IsNull(to)) {
    cJSON_DeleteItemFromObjectCaseSensitive(root, name);
    to = cJSON_AddObjectToObject(root, name);
  }
  if (!cJSON_IsObject(to)) return vlm_error(VLM_ERR_FORMAT, "%s: %s: not an object", src, name);
  for (const cJSON *e = d->child; e; e = e->next) {
    cJSON *copy = cJSON_Duplicate(e, 1);
    if (!copy) return vlm_error(VLM_ERR_OOM, "%s: out of memory", src);
    if (cJSON_GetObjectItemCaseSensitive(to, e->string)) cJSON_ReplaceItemInObjectCaseSensitive(to, e->string, copy);
    else cJSON_AddItemToObject(to, e->string, copy);
  }
  return VLM_OK;
}

vlm_status vlm_clip_config_parse_hf(vlm_clip_config *c, const char *json, const char *src) {
  memset(c, 0, sizeof *c);
  cJSON *root;
  vlm_status pst = vlm_cfg_parse(json, src, &root);
  if (pst != VLM_OK) return pst;
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  if (cJSON_IsString(mt) && strcmp(mt->valuestring, "clip") != 0)   /* siglip, clip_vision_model, ... */
    TRY(vlm_error(VLM_ERR_UNSUPPORTED, "%s: model_type \"%s\": not a Hugging Face CLIPModel config (model_type \"clip\")",
                  src, mt->valuestring));
  TRY(merge_config_dict(root, "vision_config", src));
  TRY(merge_config_dict(root, "text_config", src));
  const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
  const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
  if (!cJSON_IsObject(vc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_config: missing or not an object", src));
  if (!cJSON_IsObject(tc)) TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_config: missing or not an object", src));
  /* Missing fields take CLIPConfig's defaults, as transformers does. */
  TRY(vlm_cfg_int(root, "projection_dim", 512, 1, BIG, &c->embed_dim, src, ""));
  vlm_vit_config *v = &c->vision;
  const char *vs = "vision_config.";
  int64_t ch;
  TRY(vlm_cfg_int(vc, "num_channels", 3, 3, 3, &ch, src, vs));
  TRY(vlm_cfg_int(vc, "image_size", 224, 1, 1 << 16, &v->image_size, src, vs));
  TRY(vlm_cfg_int(vc, "patch_size", 32, 1, 1 << 16, &v->patch_size, src, vs));
  TRY(vlm_cfg_int(vc, "num_hidden_layers", 12, 0, 4096, &v->layers, src, vs));
  TRY(vlm_cfg_int(vc, "hidden_size", 768, 1, BIG, &v->width, src, vs));
  TRY(vlm_cfg_int(vc, "num_attention_heads", 12, 1, BIG, &v->heads, src, vs));
  TRY(vlm_cfg_int(vc, "intermediate_size", 3072, 1, BIG, &v->mlp_width, src, vs));
  if (v->image_size % v->patch_size)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_config: patch_size %lld does not divide image_size %lld", src,
                  (long long)v->patch_size, (long long)v->image_size));
  if (v->width % v->heads)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: vision_config: num_attention_heads %lld does not divide hidden_size %lld",
                  src, (long long)v->heads, (long long)v->width));
  vlm_text_config *t = &c->text;
  const char *ts = "text_config.";
  TRY(vlm_cfg_int(tc, "vocab_size", 49408, 1, BIG, &t->vocab_size, src, ts));
  TRY(vlm_cfg_int(tc, "max_position_embeddings", 77, 1, 1 << 20, &t->context_length, src, ts));
  TRY(vlm_cfg_int(tc, "hidden_size", 512, 1, BIG, &t->width, src, ts));
  TRY(vlm_cfg_int(tc, "num_attention_heads", 8, 1, BIG, &t->heads, src, ts));
  TRY(vlm_cfg_int(tc, "num_hidden_layers", 12, 0, 4096, &t->layers, src, ts));
  TRY(vlm_cfg_int(tc, "intermediate_size", 2048, 1, BIG, &t->mlp_width, src, ts));
  if (t->width % t->heads)
    TRY(vlm_error(VLM_ERR_FORMAT, "%s: text_config: num_attention_heads must divide hidden_size", src));
  int64_t eos;
  TRY(vlm_cfg_int(tc, "eos_token_id", 2, 0, BIG, &eos, src, ts));
  t->eot_id = eos == 2 ? -1 : eos;  /* HF: legacy configs (eos 2) pool at argmax(ids) */
  int qv, qt;
  TRY(hf_act(vc, &qv, src, vs));
  TRY(hf_act(tc, &qt, src, ts));
  if (qv != qt) TRY(vlm_error(VLM_ERR_UNSUPPORTED, "%s: hidden_act differs between the towers", src));
  c->quick_gelu = qv;
  finish(c);
  double eps;
  TRY(vlm_cfg_ratio(vc, "layer_norm_eps", 1e-5, &eps, src, vs));
  c->vision.ln_eps = (float)eps;
  TRY(vlm_cfg_ratio(tc, "layer_norm_eps", 1e-5, &eps, src, ts));
  c->text.ln_eps = (float)eps;
  TRY(check_sizes(c, src, 1));
  cJSON_Delete(root);
  return VLM_OK;
}

/* Which schema a config holds, by its top-level keys: 1 Hugging Face's CLIPConfig, 0 open_clip's
 * model_cfg (also when it cannot tell: that parser reports a JSON error), -1 neither. */
static int config_schema(const char *json) {
  cJSON *root = cJSON_Parse(json);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return 0;
  }
  static const char *const oc_keys[] = {"model_cfg", "vision_cfg", "text_cfg", "embed_dim", NULL};
  static const char *const hf_keys[] = {"vision_config",      "text_config",      "projection_dim", "model_type",
                                        "architectures",      "vision_config_dict", "text_config_dict", NULL};
  int oc = 0, hf = 0;
  for (int i = 0; oc_keys[i]; i++) oc |= cJSON_GetObjectItemCaseSensitive(root, oc_keys[i]) != NULL;
  for (int i = 0; hf_keys[i]; i++) hf |= cJSON_GetObjectItemCaseSensitive(root, hf_keys[i]) != NULL;
  cJSON_Delete(root);
  return oc ? 0 : hf ? 1 : -1;
}

vlm_status vlm_clip_config_load(vlm_clip_config *c, const char *path, int *is_hf) {
  if (is_hf) *is_hf = 0;
  if (vlm_is_openclip_params(path)) {   /* open_clip's training log: its model by name */
    char name[256];
    int64_t image_size;
    vlm_status s = vlm_openclip_params_model(path, name, sizeof name, &image_size);
    char list[512];
    vlm_clip_builtin_names(list, sizeof list);
    if (s == VLM_OK && !strncmp(name, "hf-hub:", 7) && vlm_clip_config_builtin(c, name) != VLM_OK)
      s = vlm_error(VLM_ERR_UNSUPPORTED,
                    "%s: model %s is a Hugging Face hub model: put that repository's open_clip_config.json beside "
                    "the checkpoint, or name it with 'vlm convert --config FILE'", path, name);
    else if (s == VLM_OK && vlm_clip_config_builtin(c, name) != VLM_OK)
      s = vlm_error(VLM_ERR_UNSUPPORTED,
                    "%s: model %s is not one of vlm's built-in CLIP configs (%s; -quickgelu variants): name its "
                    "config with 'vlm convert --config FILE' (open_clip's src/open_clip/model_configs/%s.json)",
                    path, name, list, name);
    return s == VLM_OK ? vlm_openclip_params_image_size(&c->vision, image_size, path) : s;
  }
  char *json;
  vlm_status s = vlm_read_text_file(path, &json);
  if (s != VLM_OK) return s;
  const int schema = config_schema(json), hf = schema == 1;
  if (schema < 0) {
    free(json);
    return vlm_error(VLM_ERR_FORMAT, "%s: not a model config: neither open_clip's (vision_cfg, text_cfg) nor a "
                     "Hugging Face CLIPConfig (vision_config, text_config)", path);
  }
  s = hf ? vlm_clip_config_parse_hf(c, json, path) : vlm_clip_config_parse(c, json, path);
  free(json);
  if (s == VLM_OK && hf) s = vlm_cfg_hf_preprocessor(path, &c->vision);   /* its preprocessor_config.json */
  if (is_hf) *is_hf = hf;
  return s;
}
