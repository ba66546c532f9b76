/* model/ private: reading open_clip model_cfg fields with cJSON, shared by the
 * CLIP (config.c) and CoCa (coca_config.c) parsers. Every error names the
 * source file, the section ("vision_cfg.") and the key. */
#ifndef VLM_MODEL_CONFIG_JSON_H
#define VLM_MODEL_CONFIG_JSON_H
#include <cjson/cJSON.h>

#include "core/core.h"
#include "vision/vision.h"

#define VLM_CFG_BIG ((int64_t)1 << 30)

/* Parse a config file's text: not JSON, or a key twice in one object (Python keeps the last,
 * cJSON finds the first), is an error naming src. *root: the tree, for cJSON_Delete. */
vlm_status vlm_cfg_parse(const char *json, const char *src, cJSON **root);
/* Integer field: required (dflt < 0) or defaulted; must be in [lo, hi]; [n, n] pairs (square
 * sizes) read as n. */
vlm_status vlm_cfg_int(const cJSON *obj, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                       const char *src, const char *sect);
/* Positive number up to 64 (mlp_ratio, layer_norm_eps), dflt when absent. */
vlm_status vlm_cfg_ratio(const cJSON *obj, const char *key, double dflt, double *out, const char *src,
                         const char *sect);
/* Python's truth of the value (as open_clip reads the same JSON): absent, null, false, 0,
 * "", [] and {} are false. */
int vlm_cfg_truthy(const cJSON *obj, const char *key);
/* An error for the first of keys (NULL-terminated) that is set: options vlm does not implement. */
vlm_status vlm_cfg_reject(const cJSON *obj, const char *const *keys, const char *src, const char *sect);
/* A string field that, when present, must equal want. */
vlm_status vlm_cfg_check_string(const cJSON *obj, const char *key, const char *want, const char *src,
                                const char *sect);
/* open_clip's norm_kwargs (the LayerNorm's keyword arguments, honoured by open_clip's towers): only
 * "eps" is supported; *eps = 1e-5 (nn.LayerNorm's default) when absent. */
vlm_status vlm_cfg_norm_eps(const cJSON *obj, double *eps, const char *src, const char *sect);
/* open_clip's act_kwargs: must be absent, null or {} (vlm's GELU and QuickGELU take none). */
vlm_status vlm_cfg_no_act_kwargs(const cJSON *obj, const char *src, const char *sect);
/* Size limits far above any published CLIP / CoCa (ViT-bigG: width 1664, 16 heads of
 * 104, MLP 8192; SigLIP's 250k vocabulary; 1024 px in 14 px patches is a 73 grid), and
 * low enough that every parameter and activation size stays far inside 64 bits (a
 * hostile config fails here, with its file and field named, not in an overflowed
 * allocation). */
#define VLM_CFG_MAX_WIDTH ((int64_t)1 << 16)    /* widths, embed_dim */
#define VLM_CFG_MAX_MLP ((int64_t)1 << 18)      /* MLP hidden width */
#define VLM_CFG_MAX_HEADS ((int64_t)1 << 12)
#define VLM_CFG_MAX_GRID 512                    /* image_size / patch_size */
#define VLM_CFG_MAX_CONTEXT ((int64_t)1 << 16)  /* text positions, pooler queries */
#define VLM_CFG_MAX_VOCAB ((int64_t)1 << 24)
typedef struct {
  const char *what;   /* "vision_cfg.width" */
  int64_t value, max;
} vlm_cfg_limit;
/* The first value above its max, as an error naming src and the field. */
vlm_status vlm_cfg_limits(const vlm_cfg_limit *l, int n, const char *src);
/* heads given directly, or width / head_width (default 64); must divide width. */
vlm_status vlm_cfg_heads(const cJSON *obj, int64_t width, int64_t *heads, const char *src, const char *sect);
/* The ViT's geometry from vision_cfg vc, as the CLIP and CoCa parsers share it: image_size,
 * patch_size (dividing it), layers, width, heads (vlm_cfg_heads) and mlp_ratio (default 4) into
 * v's mlp_width. Errors say "vision_cfg.". */
vlm_status vlm_cfg_vit_geometry(const cJSON *vc, vlm_vit_config *v, const char *src);
/* The same fields written back into vc (head_width, and an mlp_ratio that gives mlp_width back). */
void vlm_cfg_write_vit_geometry(cJSON *vc, const vlm_vit_config *v);
/* A text tower's context_length, vocab_size, width, heads, layers and mlp_ratio written into o
 * (text_cfg of CLIP and CoCa, CoCa's multimodal_cfg). */
void vlm_cfg_write_tower(cJSON *o, int64_t context_length, int64_t vocab_size, int64_t width, int64_t heads,
                         int64_t layers, int64_t mlp_width);
/* A ratio r with (int64)(width * r) == mlp, as open_clip computes the MLP width. */
double vlm_cfg_mlp_ratio(int64_t width, int64_t mlp);

/* The image transform (config_image.c): open_clip's root["preprocess_cfg"], and the Hugging Face
 * preprocessor_config.json beside config_path (none: unchanged), into v's image_mean, image_std
 * and resize_mode. */
vlm_status vlm_cfg_preprocess(const cJSON *root, vlm_vit_config *v, const char *src);
vlm_status vlm_cfg_hf_preprocessor(const char *config_path, vlm_vit_config *v);
/* root["preprocess_cfg"] = {mean, std} (and resize_mode when not "shortest"), as open_clip writes it. */
void vlm_cfg_write_preprocess(cJSON *root, const vlm_vit_config *v);
/* A Hugging Face preprocessor_config.json (CLIPImageProcessor) for v's transform; malloc'd, NULL on OOM. */
char *vlm_cfg_hf_preprocessor_json(const vlm_vit_config *v);
#endif
