/* The image transform a model's weights expect, read into vlm_vit_config (image_mean,
 * image_std, resize_mode): open_clip's "preprocess_cfg" beside its model_cfg (mean, std,
 * resize_mode, interpolation, fill_color; what open_clip builds its eval transform from, e.g.
 * resize_mode "squash" for Apple's DFN5B ViT-H-14), and a Hugging Face preprocessor_config.json
 * beside a CLIPConfig (image_mean, image_std, size, do_center_crop, resample). vlm resizes
 * bicubic (antialiased, as PIL): another interpolation is warned about, not refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config_json.h"
#include "model/model.h"

/* A mean or std: 3 numbers, or one for every channel; std > 0. */
static vlm_status triple(const cJSON *v, double out[3], int is_std, const char *src, const char *key) {
  double x[3];
  if (cJSON_IsNumber(v)) {
    x[0] = x[1] = x[2] = v->valuedouble;
  } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
    for (int i = 0; i < 3; i++) {
      const cJSON *e = cJSON_GetArrayItem(v, i);
      if (!cJSON_IsNumber(e)) return vlm_error(VLM_ERR_FORMAT, "%s: %s: not 3 numbers", src, key);
      x[i] = e->valuedouble;
    }
  } else {
    return vlm_error(VLM_ERR_FORMAT, "%s: %s: not 3 numbers (one per channel)", src, key);
  }
  for (int i = 0; i < 3; i++)
    if (!(x[i] > -1e6 && x[i] < 1e6) || (is_std && !(x[i] > 1e-6)))
      return vlm_error(VLM_ERR_FORMAT, "%s: %s: %g is out of range%s", src, key, x[i], is_std ? " (a std is > 0)" : "");
  memcpy(out, x, sizeof x);
  return VLM_OK;
}

vlm_status vlm_cfg_preprocess(const cJSON *root, vlm_vit_config *v, const char *src) {
  const cJSON *pc = cJSON_GetObjectItemCaseSensitive(root, "preprocess_cfg");
  if (!pc || cJSON_IsNull(pc)) return VLM_OK;
  if (!cJSON_IsObject(pc)) return vlm_error(VLM_ERR_FORMAT, "%s: preprocess_cfg: not an object", src);
  double mean[3], std[3];
  int mode;
  vlm_vit_image_norm(v, mean, std, &mode);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(pc, "mean"), *s = cJSON_GetObjectItemCaseSensitive(pc, "std");
  vlm_status st = VLM_OK;
  if (m && !cJSON_IsNull(m)) st = triple(m, mean, 0, src, "preprocess_cfg.mean");
  if (st == VLM_OK && s && !cJSON_IsNull(s)) st = triple(s, std, 1, src, "preprocess_cfg.std");
  if (st != VLM_OK) return st;
  const cJSON *rm = cJSON_GetObjectItemCaseSensitive(pc, "resize_mode");
  if (rm && !cJSON_IsNull(rm)) {
    const char *r = cJSON_IsString(rm) ? rm->valuestring : "";
    if (!strcmp(r, "shortest")) mode = 0;
    else if (!strcmp(r, "squash")) mode = 1;
    else if (!strcmp(r, "longest")) mode = 2;
    else return vlm_error(VLM_ERR_UNSUPPORTED, "%s: preprocess_cfg.resize_mode: \"%s\" (shortest, squash or longest)",
                          src, r);
  }
  const cJSON *ip = cJSON_GetObjectItemCaseSensitive(pc, "interpolation");
  if (cJSON_IsString(ip) && strcmp(ip->valuestring, "bicubic"))
    vlm_log(VLM_LOG_WARN, "%s: preprocess_cfg.interpolation \"%s\": vlm resizes bicubic, so image features differ "
            "slightly from open_clip's for this model", src, ip->valuestring);
  const cJSON *fc = cJSON_GetObjectItemCaseSensitive(pc, "fill_color");
  if (mode == 2 && cJSON_IsNumber(fc) && fc->valuedouble != 0)
    vlm_log(VLM_LOG_WARN, "%s: preprocess_cfg.fill_color %g: vlm pads with 0", src, fc->valuedouble);
  memcpy(v->image_mean, mean, sizeof mean);
  memcpy(v->image_std, std, sizeof std);
  v->resize_mode = mode;
  return VLM_OK;
}

vlm_status vlm_cfg_hf_preprocessor(const char *config_path, vlm_vit_config *v) {
  const char *slash = strrchr(config_path, '/');
  const int dl = slash ? (int)(slash - config_path) : 1;
  char path[4200];
  snprintf(path, sizeof path, "%.*s/preprocessor_config.json", dl, slash ? config_path : ".");
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return VLM_OK;   /* none: the defaults */
  char *json;
  vlm_status st = vlm_read_text_file(path, &json);
  if (st != VLM_OK) return st;
  cJSON *root;
  st = vlm_cfg_parse(json, path, &root);
  free(json);
  if (st != VLM_OK) return st;
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return vlm_error(VLM_ERR_FORMAT, "%s: not a JSON object", path);
  }
  double mean[3], std[3];
  int mode;
  vlm_vit_image_norm(v, mean, std, &mode);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "image_mean"),
              *s = cJSON_GetObjectItemCaseSensitive(root, "image_std");
  if (m && !cJSON_IsNull(m)) st = triple(m, mean, 0, path, "image_mean");
  if (st == VLM_OK && s && !cJSON_IsNull(s)) st = triple(s, std, 1, path, "image_std");
  /* size {"shortest_edge": N} with a center crop: open_clip's "shortest"; {"height", "width"}
   * without one: "squash" */
  const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size"),
              *crop = cJSON_GetObjectItemCaseSensitive(root, "do_center_crop");
  if (st == VLM_OK && cJSON_IsObject(size) && cJSON_GetObjectItemCaseSensitive(size, "height") &&
      !cJSON_GetObjectItemCaseSensitive(size, "shortest_edge") && cJSON_IsFalse(crop))
    mode = 1;
  const cJSON *se = cJSON_IsObject(size) ? cJSON_GetObjectItemCaseSensitive(size, "shortest_edge") : NULL,
              *cs = cJSON_GetObjectItemCaseSensitive(root, "crop_size");
  const cJSON *ch = cJSON_IsObject(cs) ? cJSON_GetObjectItemCaseSensitive(cs, "height") : cs;
  if (st == VLM_OK && cJSON_IsNumber(se) && cJSON_IsNumber(ch) && se->valuedouble != ch->valuedouble)
    vlm_log(VLM_LOG_WARN, "%s: size.shortest_edge %g then crop_size %g: vlm resizes the shorter side to the crop "
            "size (open_clip's transform), so image features differ from transformers' for this model", path,
            se->valuedouble, ch->valuedouble);
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "resample");
  if (st == VLM_OK && cJSON_IsNumber(rs) && rs->valuedouble != 3)
    vlm_log(VLM_LOG_WARN, "%s: resample %g: vlm resizes bicubic (3), so image features differ slightly from "
            "transformers' for this model", path, rs->valuedouble);
  cJSON_Delete(root);
  if (st != VLM_OK) return st;
  memcpy(v->image_mean, mean, sizeof mean);
  memcpy(v->image_std, std, sizeof std);
  v->resize_mode = mode;
  return VLM_OK;
}

void vlm_cfg_write_preprocess(cJSON *root, const vlm_vit_config *v) {
  double mean[3], std[3];
  int mode;
  vlm_vit_image_norm(v, mean, std, &mode);
  cJSON *pc = cJSON_AddObjectToObject(root, "preprocess_cfg");
  cJSON_AddItemToObject(pc, "mean", cJSON_CreateDoubleArray(mean, 3));
  cJSON_AddItemToObject(pc, "std", cJSON_CreateDoubleArray(std, 3));
  if (mode) cJSON_AddStringToObject(pc, "resize_mode", mode == 1 ? "squash" : "longest");
}

char *vlm_cfg_hf_preprocessor_json(const vlm_vit_config *v) {
  double mean[3], std[3];
  int mode;
  vlm_vit_image_norm(v, mean, std, &mode);
  const double n = (double)v->image_size;
  cJSON *r = cJSON_CreateObject();
  if (!r) return NULL;
  cJSON *crop = cJSON_AddObjectToObject(r, "crop_size"), *size = cJSON_AddObjectToObject(r, "size");
  cJSON_AddNumberToObject(crop, "height", n);
  cJSON_AddNumberToObject(crop, "width", n);
  cJSON_AddBoolToObject(r, "do_center_crop", mode != 1);
  cJSON_AddTrueToObject(r, "do_convert_rgb");
  cJSON_AddTrueToObject(r, "do_normalize");
  cJSON_AddTrueToObject(r, "do_rescale");
  cJSON_AddTrueToObject(r, "do_resize");
  cJSON_AddItemToObject(r, "image_mean", cJSON_CreateDoubleArray(mean, 3));
  cJSON_AddStringToObject(r, "image_processor_type", "CLIPImageProcessor");
  cJSON_AddItemToObject(r, "image_std", cJSON_CreateDoubleArray(std, 3));
  cJSON_AddNumberToObject(r, "resample", 3);   /* bicubic */
  cJSON_AddNumberToObject(r, "rescale_factor", 1.0 / 255);
  if (mode == 1) {   /* squash: both sides to the size, no crop */
    cJSON_AddNumberToObject(size, "height", n);
    cJSON_AddNumberToObject(size, "width", n);
  } else {   /* "longest" has no CLIPImageProcessor form: its shortest-side resize is the nearest */
    cJSON_AddNumberToObject(size, "shortest_edge", n);
  }
  char *s = cJSON_Print(r);
  cJSON_Delete(r);
  return s;
}
