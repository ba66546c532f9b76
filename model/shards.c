/* A checkpoint's weights: one safetensors file or PyTorch checkpoint, or a sharded save
 * (transformers' save_pretrained with max_shard_size: NAME.safetensors.index.json or
 * pytorch_model.bin.index.json, whose "weight_map" names the shard file of every tensor, + the
 * shards beside it). A PyTorch checkpoint is read by core/torch_read.c (nothing executed); its
 * model state dict is picked out here. */
#define _DEFAULT_SOURCE 1 /* strdup */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

int vlm_weights_is_index(const char *path) { return ends_with(path, ".index.json"); }

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const vlm_st_entry *)a)->name, ((const vlm_st_entry *)b)->name);
}

/* A whole nn.Module pickled (torch.save(model), not its state_dict): its tensors sit under
 * the modules' _modules / _parameters / _buffers dicts. Those path components are removed,
 * which gives the state_dict names ("_modules.visual._modules.conv1._parameters.weight" ->
 * "visual.conv1.weight"). 1 when the file looked like one. */
static int module_names(vlm_safetensors *st, const char *path, vlm_status *s) {
  int any = 0;
  for (int i = 0; i < st->n_entries && !any; i++)
    any = !strncmp(st->entries[i].name, "_parameters.", 12) || !strncmp(st->entries[i].name, "_modules.", 9);
  *s = VLM_OK;
  if (!any) return 0;
  for (int i = 0; i < st->n_entries; i++) {
    char *n = st->entries[i].name, *w = n;
    for (const char *r = n; *r;) {
      const char *dot = strchr(r, '.');
      size_t len = dot ? (size_t)(dot - r) : strlen(r);
      int drop = (len == 8 && !strncmp(r, "_modules", 8)) || (len == 11 && !strncmp(r, "_parameters", 11)) ||
                 (len == 8 && !strncmp(r, "_buffers", 8));
      if (!drop) {
        if (w != n) *w++ = '.';
        memmove(w, r, len);
        w += len;
      }
      r += len + (dot != NULL);
    }
    *w = 0;
  }
  qsort(st->entries, (size_t)st->n_entries, sizeof *st->entries, cmp_entry);
  for (int i = 1; i < st->n_entries; i++)
    if (!strcmp(st->entries[i - 1].name, st->entries[i].name)) {
      *s = vlm_error(VLM_ERR_FORMAT, "%s: a pickled module with two tensors named \"%s\"", path, st->entries[i].name);
      break;
    }
  return 1;
}

/* Drop the attention masks (attributes or non-persistent buffers, not in a state_dict). */
static void drop_attn_masks(vlm_safetensors *st) {
  int k = 0;
  for (int i = 0; i < st->n_entries; i++) {
    const char *dot = strrchr(st->entries[i].name, '.');
    if (!strcmp(dot ? dot + 1 : st->entries[i].name, "attn_mask")) {
      free(st->entries[i].name);
      continue;
    }
    st->entries[k++] = st->entries[i];
  }
  st->n_entries = k;   /* still sorted */
}

/* The model's tensors of a PyTorch checkpoint, under their state_dict names:
 * - open_clip's training checkpoints ({"epoch", "name", "state_dict", "optimizer", ...}): the
 *   "state_dict" entry alone;
 * - a model trained under DistributedDataParallel: its "module." prefix dropped (as open_clip's
 *   loader does);
 * - a TorchScript module (OpenAI's CLIP archives): its attention masks dropped, tensors the
 *   modules keep beside their parameters (not in the model's state_dict);
 * - a whole module pickled (torch.save(model)): module_names (then "module." as above, for a
 *   DistributedDataParallel wrapper pickled whole). */
static vlm_status pick_state_dict(vlm_safetensors *st, const char *path) {
  const char *kind = vlm_st_meta(st, "format");
  vlm_status s;
  if (module_names(st, path, &s)) {   /* then on to "module." (a pickled DDP wrapper) */
    if (s != VLM_OK) return s;
    drop_attn_masks(st);
  } else if (kind && !strcmp(kind, "torchscript")) {
    drop_attn_masks(st);
    return VLM_OK;
  }
  int nested = 0, module = st->n_entries > 0;
  for (int i = 0; i < st->n_entries; i++) nested |= !strncmp(st->entries[i].name, "state_dict.", 11);
  if (nested) {
    s = vlm_st_keep_prefix(st, "state_dict.");
    if (s != VLM_OK) return s;
  }
  for (int i = 0; i < st->n_entries; i++) module &= !strncmp(st->entries[i].name, "module.", 7);
  return module ? vlm_st_keep_prefix(st, "module.") : VLM_OK;
}

int vlm_is_torch_name(const char *path) {
  return ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin") || ends_with(path, ".ckpt");
}

/* A safetensors file by its first bytes: a little-endian u64 header length, then '{'. */
static int safetensors_bytes(const char *path) {
  FILE *f = fopen(path, "rb");
  unsigned char b[9];
  const int ok = f && fread(b, 1, 9, f) == 9 && b[8] == '{' && !b[7] && !b[6] && !b[5];
  if (f) fclose(f);
  return ok;
}

/* One weights file: safetensors, or a PyTorch checkpoint (a zip archive); a file under a
 * PyTorch name (.bin, .pt) that holds safetensors is read as such. */
static vlm_status open_file(vlm_safetensors *st, const char *path) {
  if (!vlm_torch_sniff(path) && (!vlm_is_torch_name(path) || safetensors_bytes(path))) return vlm_st_open(st, path);
  vlm_status s = vlm_torch_open(st, path);
  if (s == VLM_OK && (s = pick_state_dict(st, path)) != VLM_OK) vlm_st_close(st);
  if (s == VLM_OK && st->n_entries == 0) {
    vlm_st_close(st);
    s = vlm_error(VLM_ERR_FORMAT, "%s: a PyTorch checkpoint holding no tensors", path);
  }
  return s;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const vlm_weight_ref *)a)->name, ((const vlm_weight_ref *)b)->name);
}

void vlm_weights_close(vlm_weights *w) {
  for (int i = 0; i < w->n_shards; i++) vlm_st_close(&w->shards[i]);
  free(w->shards);
  for (int i = 0; i < w->n_map; i++) free(w->map[i].name);
  free(w->map);
  memset(w, 0, sizeof *w);
}

/* The shard index of file `name` (relative to the index's directory), opened on first use. */
static vlm_status shard_of(vlm_weights *w, const char *index, const char *name, char **files, int *shard) {
  for (int i = 0; i < w->n_shards; i++)
    if (!strcmp(files[i], name)) { *shard = i; return VLM_OK; }
  if (!name[0] || name[0] == '/' || strstr(name, ".."))
    return vlm_error(VLM_ERR_FORMAT, "%s: weight_map: shard file \"%s\" is not a file name beside the index", index,
                     name);
  const char *slash = strrchr(index, '/');
  int dir_len = slash ? (int)(slash - index) : 1;
  size_t n = (size_t)dir_len + strlen(name) + 2;
  char *path = malloc(n);
  if (!path) return vlm_error(VLM_ERR_OOM, "%s: out of memory", index);
  snprintf(path, n, "%.*s/%s", dir_len, slash ? index : ".", name);
  vlm_status s = open_file(&w->shards[w->n_shards], path);
  free(path);
  if (s != VLM_OK) return vlm_error_prefix(s, "%s", index);
  files[w->n_shards] = (char *)name;
  *shard = w->n_shards++;
  return VLM_OK;
}

vlm_status vlm_weights_open(vlm_weights *w, const char *path) {
  memset(w, 0, sizeof *w);
  if (!vlm_weights_is_index(path)) {
    if (!(w->shards = calloc(1, sizeof *w->shards))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    vlm_status s = open_file(&w->shards[0], path);
    if (s != VLM_OK) {
      free(w->shards);
      w->shards = NULL;
      return s;
    }
    w->n_shards = 1;
    return VLM_OK;
  }
  char *json;
  vlm_status s = vlm_read_text_file(path, &json);
  if (s != VLM_OK) return s;
  cJSON *root = cJSON_Parse(json);
  free(json);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map) || !map->child) {
    cJSON_Delete(root);
    return vlm_error(VLM_ERR_FORMAT, "%s: %s", path, root ? "no \"weight_map\" object naming the tensors' shard files"
                                                          : "not valid JSON");
  }
  int n = cJSON_GetArraySize(map);
  char **files = calloc((size_t)n, sizeof *files);
  w->shards = calloc((size_t)n, sizeof *w->shards);
  w->map = calloc((size_t)n, sizeof *w->map);
  if (!files || !w->shards || !w->map) s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  for (const cJSON *e = map->child; s == VLM_OK && e; e = e->next) {
    if (!cJSON_IsString(e) || !e->string)
      s = vlm_error(VLM_ERR_FORMAT, "%s: weight_map: \"%s\": not a shard file name", path, e->string ? e->string : "");
    int k = 0;
    if (s == VLM_OK) s = shard_of(w, path, e->valuestring, files, &k);
    if (s != VLM_OK) break;
    /* a shard whose DDP "module." prefix was dropped (pick_state_dict): the index's name too */
    const char *name = e->string;
    if (!strncmp(name, "module.", 7) && !vlm_st_find(&w->shards[k], name) && vlm_st_find(&w->shards[k], name + 7))
      name += 7;
    /* transformers reads every tensor of the shards the index names and only warns about
     * the rest: an entry whose shard lacks the tensor is a warning here too (the tensor
     * then counts as missing when the model asks for it) */
    if (!vlm_st_find(&w->shards[k], name))
      vlm_log(VLM_LOG_WARN, "%s: weight_map puts \"%s\" in %s, which does not hold it", path, name,
              e->valuestring);
    if (!(w->map[w->n_map].name = strdup(name))) s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    w->map[w->n_map++].shard = k;
  }
  free(files);   /* the names pointed into the cJSON tree */
  cJSON_Delete(root);
  if (s == VLM_OK) {
    qsort(w->map, (size_t)w->n_map, sizeof *w->map, cmp_name);
    for (int i = 1; i < w->n_map && s == VLM_OK; i++)
      if (!strcmp(w->map[i - 1].name, w->map[i].name))
        s = vlm_error(VLM_ERR_FORMAT, "%s: weight_map names \"%s\" twice", path, w->map[i].name);
  }
  if (s != VLM_OK) vlm_weights_close(w);
  return s;
}

const vlm_st_entry *vlm_weights_find(const vlm_weights *w, const char *name, int *shard) {
  if (!w->map) {
    *shard = 0;
    return vlm_st_find(&w->shards[0], name);
  }
  vlm_weight_ref key = {(char *)name, 0};
  const vlm_weight_ref *r = bsearch(&key, w->map, (size_t)w->n_map, sizeof key, cmp_name);
  if (!r) return NULL;
  *shard = r->shard;
  return vlm_st_find(&w->shards[r->shard], name);
}

const char *vlm_weights_kind(const char *path) {
  /* from the names and the zip directory only: no tensor is read */
  if (vlm_weights_is_index(path)) return ends_with(path, ".bin.index.json") ? "PyTorch checkpoint, sharded"
                                                                            : "safetensors, sharded";
  int script = 0;
  if (!vlm_torch_sniff(path)) return "safetensors";
  if (vlm_torch_kind(path, &script) != VLM_OK) return "unreadable";
  return script ? "TorchScript archive" : "PyTorch checkpoint";
}
