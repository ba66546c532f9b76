/* Field readers for open_clip model configs (model/config_json.h). */
#include "model/config_json.h"

#include <math.h>
#include <string.h>

vlm_status vlm_cfg_int(const cJSON *obj, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                       const char *src, const char *sect) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) {
    if (dflt < 0) return vlm_error(VLM_ERR_FORMAT, "%s: %s%s: missing", src, sect, key);
    *out = dflt;
    return VLM_OK;
  }
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) { /* [H, W] sizes: square only */
    const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble != b->valuedouble)
      return vlm_error(VLM_ERR_FORMAT, "%s: %s%s: only square sizes are supported", src, sect, key);
    v = a;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    return vlm_error(VLM_ERR_FORMAT, "%s: %s%s: not an integer", src, sect, key);
  if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
    return vlm_error(VLM_ERR_FORMAT, "%s: %s%s: %g is outside [%lld, %lld]", src, sect, key, v->valuedouble,
                     (long long)lo, (long long)hi);
  *out = (int64_t)v->valuedouble;
  return VLM_OK;
}

vlm_status vlm_cfg_ratio(const cJSON *obj, const char *key, double dflt, double *out, const char *src,
                         const char *sect) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return VLM_OK;
  }
  if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 64))
    return vlm_error(VLM_ERR_FORMAT, "%s: %s%s: must be a positive number up to 64", src, sect, key);
  *out = v->valuedouble;
  return VLM_OK;
}

int vlm_cfg_truthy(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
  /* Python's truth, as open_clip reads the same JSON: 0, 0.0, "", [] and {} are false */
  if (cJSON_IsNumber(v)) return v->valuedouble != 0.0;
  if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0] != 0;
  if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
  return 1;
}

vlm_status vlm_cfg_reject(const cJSON *obj, const char *const *keys, const char *src, const char *sect) {
  for (int i = 0; keys[i]; i++)
    if (vlm_cfg_truthy(obj, keys[i]))
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %s%s: this option is not supported", src, sect, keys[i]);
  return VLM_OK;
}

vlm_status vlm_cfg_check_string(const cJSON *obj, const char *key, const char *want, const char *src,
                                const char *sect) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) return VLM_OK;
  if (!cJSON_IsString(v) || strcmp(v->valuestring, want) != 0)
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %s%s: only \"%s\" is supported", src, sect, key, want);
  return VLM_OK;
}

vlm_status vlm_cfg_heads(const cJSON *obj, int64_t width, int64_t *heads, const char *src, const char *sect) {
  if (cJSON_GetObjectItemCaseSensitive(obj, "heads")) {
    vlm_status s = vlm_cfg_int(obj, "heads", -1, 1, VLM_CFG_BIG, heads, src, sect);
    if (s != VLM_OK) return s;
  } else {
    int64_t hw;
    vlm_status s = vlm_cfg_int(obj, "head_width", 64, 1, VLM_CFG_BIG, &hw, src, sect);
    if (s != VLM_OK) return s;
    if (width % hw)
      return vlm_error(VLM_ERR_FORMAT, "%s: %shead_width: %lld does not divide width %lld", src, sect, (long long)hw,
                       (long long)width);
    *heads = width / hw;
  }
  if (width % *heads)
    return vlm_error(VLM_ERR_FORMAT, "%s: %sheads: %lld does not divide width %lld", src, sect, (long long)*heads,
                     (long long)width);
  return VLM_OK;
}

vlm_status vlm_cfg_limits(const vlm_cfg_limit *l, int n, const char *src) {
  for (int i = 0; i < n; i++)
    if (l[i].value > l[i].max)
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %s: %lld is above the largest vlm supports (%lld)", src, l[i].what,
                       (long long)l[i].value, (long long)l[i].max);
  return VLM_OK;
}

vlm_status vlm_cfg_norm_eps(const cJSON *obj, double *eps, const char *src, const char *sect) {
  *eps = 1e-5;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "norm_kwargs");
  if (!v || cJSON_IsNull(v)) return VLM_OK;
  if (!cJSON_IsObject(v)) return vlm_error(VLM_ERR_FORMAT, "%s: %snorm_kwargs: not an object", src, sect);
  for (const cJSON *e = v->child; e; e = e->next) {
    if (!e->string || strcmp(e->string, "eps"))
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %snorm_kwargs.%s: not supported (only eps)", src, sect,
                       e->string ? e->string : "");
    if (!cJSON_IsNumber(e) || !(e->valuedouble > 0 && e->valuedouble < 1))
      return vlm_error(VLM_ERR_FORMAT, "%s: %snorm_kwargs.eps: must be a number in (0, 1)", src, sect);
    *eps = e->valuedouble;
  }
  return VLM_OK;
}

vlm_status vlm_cfg_no_act_kwargs(const cJSON *obj, const char *src, const char *sect) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "act_kwargs");
  if (!v || cJSON_IsNull(v) || (cJSON_IsObject(v) && !v->child)) return VLM_OK;
  return vlm_error(VLM_ERR_UNSUPPORTED, "%s: %sact_kwargs: not supported (vlm's GELU is the exact one, "
                   "QuickGELU takes no arguments)", src, sect);
}

vlm_status vlm_cfg_vit_geometry(const cJSON *vc, vlm_vit_config *v, const char *src) {
  const char *vs = "vision_cfg.";
  vlm_status s;
  if ((s = vlm_cfg_int(vc, "image_size", -1, 1, 1 << 16, &v->image_size, src, vs)) != VLM_OK ||
      (s = vlm_cfg_int(vc, "patch_size", -1, 1, 1 << 16, &v->patch_size, src, vs)) != VLM_OK ||
      (s = vlm_cfg_int(vc, "layers", -1, 0, 4096, &v->layers, src, vs)) != VLM_OK ||
      (s = vlm_cfg_int(vc, "width", -1, 1, VLM_CFG_BIG, &v->width, src, vs)) != VLM_OK)
    return s;
  if (v->image_size % v->patch_size)
    return vlm_error(VLM_ERR_FORMAT, "%s: vision_cfg.patch_size: %lld does not divide image_size %lld", src,
                     (long long)v->patch_size, (long long)v->image_size);
  if ((s = vlm_cfg_heads(vc, v->width, &v->heads, src, vs)) != VLM_OK) return s;
  double r = 4.0;
  if ((s = vlm_cfg_ratio(vc, "mlp_ratio", 4.0, &r, src, vs)) != VLM_OK) return s;
  v->mlp_width = (int64_t)(v->width * r);
  return VLM_OK;
}

double vlm_cfg_mlp_ratio(int64_t width, int64_t mlp) {
  double r = (double)mlp / (double)width;
  for (int i = 0; i < 8 && (int64_t)((double)width * r) != mlp; i++) r = nextafter(r, 1e9);
  return r;
}

void vlm_cfg_write_vit_geometry(cJSON *vc, const vlm_vit_config *v) {
  cJSON_AddNumberToObject(vc, "image_size", (double)v->image_size);
  cJSON_AddNumberToObject(vc, "layers", (double)v->layers);
  cJSON_AddNumberToObject(vc, "width", (double)v->width);
  cJSON_AddNumberToObject(vc, "head_width", (double)(v->width / v->heads));
  cJSON_AddNumberToObject(vc, "mlp_ratio", vlm_cfg_mlp_ratio(v->width, v->mlp_width));
  cJSON_AddNumberToObject(vc, "patch_size", (double)v->patch_size);
}

void vlm_cfg_write_tower(cJSON *o, int64_t context_length, int64_t vocab_size, int64_t width, int64_t heads,
                         int64_t layers, int64_t mlp_width) {
  cJSON_AddNumberToObject(o, "context_length", (double)context_length);
  cJSON_AddNumberToObject(o, "vocab_size", (double)vocab_size);
  cJSON_AddNumberToObject(o, "width", (double)width);
  cJSON_AddNumberToObject(o, "heads", (double)heads);
  cJSON_AddNumberToObject(o, "layers", (double)layers);
  cJSON_AddNumberToObject(o, "mlp_ratio", vlm_cfg_mlp_ratio(width, mlp_width));
}

vlm_status vlm_cfg_parse(const char *json, const char *src, cJSON **root) {
  *root = cJSON_Parse(json);
  if (!*root)
    return vlm_error(VLM_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", src,
                     cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - json) : 0L);
  vlm_status st = vlm_json_unique_keys(*root, src);
  if (st != VLM_OK) {
    cJSON_Delete(*root);
    *root = NULL;
    return st;
  }
  return VLM_OK;
}
