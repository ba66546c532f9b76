/* Writing CLIP configs: open_clip_config.json (model_cfg + preprocess_cfg) and
 * Hugging Face CLIPConfig (config.json). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config_json.h"
#include "model/model.h"

/* A float config value as the double its shortest decimal spelling reads as (1e-6f -> 1e-06, not
 * 9.9999999747524271e-07), so the JSON holds the number the source config held. */
static double clean(float f) {
  char b[32];
  snprintf(b, sizeof b, "%.7g", (double)f);
  return strtod(b, NULL);
}

/* open_clip's norm_kwargs for a tower whose LayerNorm eps is not nn.LayerNorm's 1e-5. */
static void add_norm_kwargs(cJSON *tower, float eps) {
  if (eps == 1e-5f) return;
  cJSON *nk = cJSON_AddObjectToObject(tower, "norm_kwargs");
  cJSON_AddNumberToObject(nk, "eps", clean(eps));
}

static char *finish(cJSON *root, const char *what) {
  char *s = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!s) vlm_error(VLM_ERR_OOM, "%s: out of memory", what);
  return s;
}

char *vlm_clip_config_to_json(const vlm_clip_config *c, vlm_ckpt_format fmt) {
  const vlm_vit_config *v = &c->vision;
  const vlm_text_config *t = &c->text;
  cJSON *root = cJSON_CreateObject();
  if (fmt == VLM_CKPT_OPENCLIP) {
    cJSON *m = cJSON_AddObjectToObject(root, "model_cfg");
    cJSON_AddNumberToObject(m, "embed_dim", (double)c->embed_dim);
    if (c->quick_gelu) cJSON_AddTrueToObject(m, "quick_gelu");
    /* a SigLIP model (open_clip's pretrained SigLIP configs say it so): open_clip's
     * create_model then makes the logit_bias the weights hold */
    if (c->has_logit_bias) cJSON_AddNumberToObject(m, "init_logit_bias", clean(c->init_logit_bias));
    cJSON *vc = cJSON_AddObjectToObject(m, "vision_cfg");
    vlm_cfg_write_vit_geometry(vc, v);
    add_norm_kwargs(vc, v->ln_eps);
    cJSON *tc = cJSON_AddObjectToObject(m, "text_cfg");
    vlm_cfg_write_tower(tc, t->context_length, t->vocab_size, t->width, t->heads, t->layers, t->mlp_width);
    add_norm_kwargs(tc, t->ln_eps);
    vlm_cfg_write_preprocess(root, &c->vision);
    return finish(root, "open_clip config");
  }
  const char *act = c->quick_gelu ? "quick_gelu" : "gelu";
  cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("CLIPModel"));
  cJSON_AddStringToObject(root, "model_type", "clip");
  cJSON_AddNumberToObject(root, "projection_dim", (double)c->embed_dim);
  cJSON_AddNumberToObject(root, "logit_scale_init_value", 2.6592);
  cJSON_AddStringToObject(root, "torch_dtype", "float32");
  cJSON *tc = cJSON_AddObjectToObject(root, "text_config");
  cJSON_AddStringToObject(tc, "model_type", "clip_text_model");
  cJSON_AddNumberToObject(tc, "vocab_size", (double)t->vocab_size);
  cJSON_AddNumberToObject(tc, "hidden_size", (double)t->width);
  cJSON_AddNumberToObject(tc, "intermediate_size", (double)t->mlp_width);
  cJSON_AddNumberToObject(tc, "projection_dim", (double)c->embed_dim);
  cJSON_AddNumberToObject(tc, "num_hidden_layers", (double)t->layers);
  cJSON_AddNumberToObject(tc, "num_attention_heads", (double)t->heads);
  cJSON_AddNumberToObject(tc, "max_position_embeddings", (double)t->context_length);
  cJSON_AddStringToObject(tc, "hidden_act", act);
  cJSON_AddNumberToObject(tc, "layer_norm_eps", clean(t->ln_eps));
  /* eos 2 is HF's "legacy" flag for argmax(ids) pooling, open_clip's rule. */
  cJSON_AddNumberToObject(tc, "eos_token_id", t->eot_id >= 0 ? (double)t->eot_id : 2.0);
  cJSON *vc = cJSON_AddObjectToObject(root, "vision_config");
  cJSON_AddStringToObject(vc, "model_type", "clip_vision_model");
  cJSON_AddNumberToObject(vc, "hidden_size", (double)v->width);
  cJSON_AddNumberToObject(vc, "intermediate_size", (double)v->mlp_width);
  cJSON_AddNumberToObject(vc, "projection_dim", (double)c->embed_dim);
  cJSON_AddNumberToObject(vc, "num_hidden_layers", (double)v->layers);
  cJSON_AddNumberToObject(vc, "num_attention_heads", (double)v->heads);
  cJSON_AddNumberToObject(vc, "num_channels", 3);
  cJSON_AddNumberToObject(vc, "image_size", (double)v->image_size);
  cJSON_AddNumberToObject(vc, "patch_size", (double)v->patch_size);
  cJSON_AddStringToObject(vc, "hidden_act", act);
  cJSON_AddNumberToObject(vc, "layer_norm_eps", clean(v->ln_eps));
  return finish(root, "HF config");
}

vlm_status vlm_clip_config_openclip_ok(const vlm_clip_config *c, const char *what) {
  const vlm_text_config *t = &c->text;
  if (t->eot_id < 0 || t->eot_id == t->vocab_size - 1) return VLM_OK;   /* argmax(ids) finds that eos too */
  return vlm_error(VLM_ERR_UNSUPPORTED, "%s: the text tower pools at the first eos id %lld (text_config.eos_token_id of "
                   "a Hugging Face config), which an open_clip checkpoint cannot express (its text pooling takes the "
                   "largest id, %lld here): keep this model in the Hugging Face layout (vlm convert --to hf)", what,
                   (long long)t->eot_id, (long long)(t->vocab_size - 1));
}

vlm_status vlm_clip_config_hf_ok(const vlm_clip_config *c, const char *what) {
  if (!c->has_logit_bias) return VLM_OK;
  return vlm_error(VLM_ERR_UNSUPPORTED, "%s: the model has a logit_bias (a SigLIP model, init_logit_bias in its "
                   "config), which Hugging Face's CLIPModel has no place for (SigLIP is another architecture there): "
                   "keep it in the open_clip layout (vlm convert --to open_clip)", what);
}

vlm_status vlm_clip_save_dir(vlm_clip_params *p, const vlm_clip_config *c, const char *dir, vlm_ckpt_format fmt) {
  return vlm_clip_save_dir_as(p, c, dir, fmt, 0);
}

vlm_status vlm_clip_save_dir_as(vlm_clip_params *p, const vlm_clip_config *c, const char *dir, vlm_ckpt_format fmt,
                                int torch) {
  char cfg[4096], weights[4096];
  int hf = fmt == VLM_CKPT_HF;
  if (!hf) {
    vlm_status s = vlm_clip_config_openclip_ok(c, dir);
    if (s != VLM_OK) return s;
  } else if (c->has_logit_bias) {
    vlm_status s = vlm_clip_config_hf_ok(c, dir);
    if (s != VLM_OK) return s;
  }
  snprintf(cfg, sizeof cfg, "%s/%s", dir, hf ? "config.json" : "open_clip_config.json");
  snprintf(weights, sizeof weights, "%s/%s", dir,
           hf ? (torch ? "pytorch_model.bin" : "model.safetensors")
              : (torch ? "open_clip_pytorch_model.bin" : "open_clip_model.safetensors"));
  char *json = vlm_clip_config_to_json(c, fmt);
  if (!json) return vlm_error_prefix(VLM_ERR_OOM, "%s", cfg);
  /* Hugging Face: the image processor's preprocessor_config.json too (CLIPProcessor reads it) */
  char *pre = hf ? vlm_cfg_hf_preprocessor_json(&c->vision) : NULL;
  char pre_path[4200];
  snprintf(pre_path, sizeof pre_path, "%s/preprocessor_config.json", dir);
  vlm_atomic_file af[3];
  vlm_status s = hf && !pre ? vlm_error(VLM_ERR_OOM, "%s: out of memory", pre_path)
                            : vlm_clip_stage_weights(p, c, weights, fmt, torch, &af[0]);
  if (s == VLM_OK && (s = vlm_atomic_stage(&af[1], cfg, json, strlen(json))) != VLM_OK) vlm_atomic_abort(&af[0]);
  if (s == VLM_OK && hf && (s = vlm_atomic_stage(&af[2], pre_path, pre, strlen(pre))) != VLM_OK) {
    vlm_atomic_abort(&af[0]);
    vlm_atomic_abort(&af[1]);
  }
  if (s == VLM_OK) s = vlm_atomic_commit_all(af, hf ? 3 : 2);   /* all replaced, or none */
  free(json);
  free(pre);
  return s;
}
