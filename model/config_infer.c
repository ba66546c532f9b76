/* A CLIP config from somewhere other than a config file: read off the weights' shapes (OpenAI's
 * rule), or named on the command line (a built-in name, "openai" or a config file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config_json.h"
#include "model/model.h"

/* The shape of tensor `name` when it has `ndim` dimensions: 1, else 0. */
static int shape_of(const vlm_weights *w, const char *name, int ndim, int64_t *shape) {
  int k;
  const vlm_st_entry *e = vlm_weights_find(w, name, &k);
  if (!e || e->ndim != ndim) return 0;
  for (int d = 0; d < ndim; d++) shape[d] = e->shape[d];
  return 1;
}

/* Blocks 0, 1, ... of a tower (prefix "visual.transformer.resblocks."), counted while present. */
static int64_t count_layers(const vlm_weights *w, const char *prefix) {
  char name[256];
  int64_t n = 0, s[2];
  for (;; n++) {
    snprintf(name, sizeof name, "%s%lld.attn.in_proj_weight", prefix, (long long)n);
    if (!shape_of(w, name, 2, s) || n > 4096) return n;
  }
}

vlm_status vlm_clip_config_infer_openai(vlm_clip_config *c, const vlm_weights *w, const char *path) {
  int64_t conv[4], vpos[2], vproj[2], vfc[2], tok[2], tpos[2], lnf[1], tproj[2], tfc[2];
  int k;
  if (vlm_weights_find(w, "visual.layer1.0.conv1.weight", &k))
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a ResNet image tower (OpenAI's RN50 family): vlm runs ViT towers only",
                     path);
  const char *missing = !shape_of(w, "visual.conv1.weight", 4, conv)                            ? "visual.conv1.weight"
                      : !shape_of(w, "visual.positional_embedding", 2, vpos)                   ? "visual.positional_embedding"
                      : !shape_of(w, "visual.proj", 2, vproj)                                  ? "visual.proj"
                      : !shape_of(w, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, vfc) ? "visual.transformer.resblocks.0.mlp.c_fc.weight"
                      : !shape_of(w, "token_embedding.weight", 2, tok)                         ? "token_embedding.weight"
                      : !shape_of(w, "positional_embedding", 2, tpos)                          ? "positional_embedding"
                      : !shape_of(w, "ln_final.weight", 1, lnf)                                ? "ln_final.weight"
                      : !shape_of(w, "text_projection", 2, tproj)                              ? "text_projection"
                      : !shape_of(w, "transformer.resblocks.0.mlp.c_fc.weight", 2, tfc)        ? "transformer.resblocks.0.mlp.c_fc.weight"
                                                                                                : NULL;
  if (missing)
    return vlm_error(VLM_ERR_FORMAT,
                     "%s: cannot read a CLIP config off these weights: no tensor %s of the expected rank (the "
                     "config is inferred only for OpenAI-named ViT CLIP weights; give one with --config)",
                     path, missing);
  const int64_t vw = conv[0], patch = conv[2], tw = lnf[0];
  int64_t grid = 0;
  while (grid * grid < vpos[0] - 1 && grid < 4096) grid++;
  const char *why = conv[1] != 3 || conv[2] != conv[3]             ? "visual.conv1.weight is not [width, 3, P, P]"
                  : grid * grid != vpos[0] - 1 || vpos[1] != vw    ? "visual.positional_embedding is not [1 + G*G, width]"
                  : vproj[0] != vw || tproj[0] != tw              ? "a projection's rows differ from its tower's width"
                  : vproj[1] != tproj[1]                          ? "visual.proj and text_projection differ in embed_dim"
                  : tok[1] != tw || tpos[1] != tw                 ? "the text embeddings differ from ln_final's width"
                  : vfc[1] != vw || tfc[1] != tw                  ? "an MLP's input differs from its tower's width"
                  : vw % 64 || tw % 64                            ? "a width is not a multiple of 64 (OpenAI's head width)"
                                                                  : NULL;
  if (why) return vlm_error(VLM_ERR_FORMAT, "%s: cannot read a CLIP config off these weights: %s", path, why);
  char json[1024];
  snprintf(json, sizeof json,
           "{\"embed_dim\": %lld, \"quick_gelu\": true,"
           " \"vision_cfg\": {\"image_size\": %lld, \"patch_size\": %lld, \"layers\": %lld, \"width\": %lld,"
           " \"head_width\": 64},"
           " \"text_cfg\": {\"context_length\": %lld, \"vocab_size\": %lld, \"width\": %lld, \"heads\": %lld,"
           " \"layers\": %lld}}",
           (long long)vproj[1], (long long)(grid * patch), (long long)patch,
           (long long)count_layers(w, "visual.transformer.resblocks."), (long long)vw, (long long)tpos[0],
           (long long)tok[0], (long long)tw, (long long)(tw / 64), (long long)count_layers(w, "transformer.resblocks."));
  vlm_status s = vlm_clip_config_parse(c, json, path);
  if (s != VLM_OK) return s;
  if (vfc[0] < 1 || vfc[0] > VLM_CFG_MAX_MLP || tfc[0] < 1 || tfc[0] > VLM_CFG_MAX_MLP)
    return vlm_error(VLM_ERR_FORMAT, "%s: an MLP width (%lld, %lld) outside [1, %lld]", path, (long long)vfc[0],
                     (long long)tfc[0], (long long)VLM_CFG_MAX_MLP);
  c->vision.mlp_width = vfc[0];   /* any MLP ratio, exactly */
  c->text.mlp_width = tfc[0];
  return VLM_OK;
}

/* The format a weights file was read as (core/torch_read.c's "format" metadata). */
static const char *weights_kind(const vlm_weights *w) {
  const char *k = w->n_shards > 0 ? vlm_st_meta(&w->shards[0], "format") : NULL;
  return k ? k : "";
}

/* open: the weights already open, or NULL (opened and closed here). */
static vlm_status infer_from(vlm_clip_config *c, const char *weights, const vlm_weights *open,
                             int require_torchscript) {
  vlm_weights own;
  vlm_status s = open ? VLM_OK : vlm_weights_open(&own, weights);
  if (s != VLM_OK) return s;
  const vlm_weights *w = open ? open : &own;
  char quoted[4200];
  if (require_torchscript && strcmp(weights_kind(w), "torchscript"))
    s = vlm_error(VLM_ERR_FORMAT,
                  "%s: no model config beside these weights (open_clip_config.json, config.json, or open_clip's "
                  "../params.txt), and only a TorchScript archive (OpenAI's releases) has its config read off its shapes. Name the config: "
                  "vlm convert --model %s --config NAME|FILE --to open_clip --out DIR (NAME: a built-in such as "
                  "ViT-B-32, or 'openai' for OpenAI's rules; FILE: an open_clip or Hugging Face config JSON)",
                  weights, vlm_shell_word(weights, quoted, sizeof quoted));
  else
    s = vlm_clip_config_infer_openai(c, w, weights);
  if (!open) vlm_weights_close(&own);
  return s;
}

int vlm_clip_config_reads_weights(const char *cfg, const char *spec) {
  return spec ? !strcmp(spec, "openai") : !(cfg && cfg[0]);
}

vlm_status vlm_clip_config_resolve(vlm_clip_config *c, const char *cfg, const char *weights, const vlm_weights *w,
                                   int *is_hf) {
  if (is_hf) *is_hf = 0;
  if (cfg && cfg[0]) return vlm_clip_config_load(c, cfg, is_hf);
  return infer_from(c, weights, w, 1);
}

vlm_status vlm_clip_config_named(vlm_clip_config *c, const char *spec, const char *weights, const vlm_weights *w,
                                 int *is_hf) {
  if (is_hf) *is_hf = 0;
  if (!strcmp(spec, "openai")) return infer_from(c, weights, w, 0);
  struct stat sb;
  if (stat(spec, &sb) == 0 && S_ISREG(sb.st_mode)) return vlm_clip_config_load(c, spec, is_hf);
  if (vlm_clip_config_builtin(c, spec) == VLM_OK) return VLM_OK;
  char list[512];
  vlm_clip_builtin_names(list, sizeof list);
  return vlm_error(VLM_ERR_ARG,
                   "--config %s: neither a config file nor a built-in config (%s; -quickgelu variants) nor 'openai'",
                   spec, list);
}

/* ------------------------------------------------------------------ open_clip's params.txt
 * open_clip's training writes LOGS/RUN/params.txt ("name: value" per argument) beside
 * LOGS/RUN/checkpoints/epoch_N.pt; its "model" line names the architecture. */

int vlm_is_openclip_params(const char *path) {
  const char *slash = strrchr(path, '/');
  return !strcmp(slash ? slash + 1 : path, "params.txt");
}

/* "force_image_size: VALUE": None, N (open_clip writes one size as an int), [N] or [N, N]; a
 * non-square size has no vlm config. *size: 0 for None. */
static vlm_status force_image_size(const char *path, const char *v, int64_t *size) {
  *size = 0;
  if (!strcmp(v, "None")) return VLM_OK;
  const char *p = v;
  const char close = *p == '[' ? ']' : *p == '(' ? ')' : 0;
  if (close) p++;
  long long dims[2] = {0, 0};
  int n = 0, ok = 1;
  while (ok && n < 2) {
    char *end;
    while (*p == ' ') p++;
    dims[n++] = strtoll(p, &end, 10);
    ok = end != p;
    p = end;
    while (*p == ' ') p++;
    if (*p != ',') break;
    p++;
  }
  if (close) ok &= *p++ == close;
  ok &= !*p && dims[0] >= 1 && dims[0] <= (1 << 16);
  if (!ok) return vlm_error(VLM_ERR_FORMAT, "%s: force_image_size: %s: not a size (None, N, [N] or [N, N])", path, v);
  if (n == 2 && dims[1] != dims[0])
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: force_image_size: %s: a non-square image size, which vlm's ViT does "
                     "not take", path, v);
  *size = dims[0];
  return VLM_OK;
}

vlm_status vlm_openclip_params_model(const char *path, char *name, size_t n, int64_t *image_size) {
  char *text;
  *image_size = 0;
  vlm_status s = vlm_read_text_file(path, &text);
  if (s != VLM_OK) return s;
  int quick = 0, found = 0;
  for (char *line = text, *next; s == VLM_OK && line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
    if (!strncmp(line, "model: ", 7) && len > 7 && len - 7 < n - 12) {
      snprintf(name, n, "%s", line + 7);
      found = 1;
    }
    if (!strcmp(line, "force_quick_gelu: True")) quick = 1;
    if (!strncmp(line, "force_image_size: ", 18)) s = force_image_size(path, line + 18, image_size);
  }
  free(text);
  if (s != VLM_OK) return s;
  if (!found) return vlm_error(VLM_ERR_FORMAT, "%s: no \"model: NAME\" line (open_clip's training parameters)", path);
  size_t k = strlen(name);
  if (quick && (k < 10 || strcmp(name + k - 10, "-quickgelu"))) snprintf(name + k, n - k, "-quickgelu");
  return VLM_OK;
}

vlm_status vlm_openclip_params_image_size(vlm_vit_config *v, int64_t size, const char *path) {
  if (!size) return VLM_OK;
  if (size % v->patch_size || size / v->patch_size > VLM_CFG_MAX_GRID)
    return vlm_error(VLM_ERR_FORMAT, "%s: force_image_size: %lld is not a multiple of the model's patch size %lld "
                     "(or a grid above %d)", path, (long long)size, (long long)v->patch_size, VLM_CFG_MAX_GRID);
  v->image_size = size;
  return VLM_OK;
}
