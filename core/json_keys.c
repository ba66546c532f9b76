/* A JSON tree's objects checked for a key given twice (core.h: vlm_json_unique_keys). */
#include "core/core.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A key twice in one object, anywhere in the tree: an error naming the key and where it is
 * (path: the object's place, e.g. "annotations[3]"; depth is bounded by cJSON's nesting
 * limit). Objects of a few keys are compared pairwise, larger ones sorted (n log n). */
static int cmp_key(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static vlm_status check_keys(const char *file, const cJSON *node, char *path, size_t plen, size_t pcap) {
  if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return VLM_OK;
  if (cJSON_IsObject(node)) {
    size_t k = 0;
    for (const cJSON *c = node->child; c; c = c->next) k++;
    const char *dup = NULL;
    if (k > 1 && k <= 8) {
      for (const cJSON *a = node->child; a && !dup; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
          if (!strcmp(a->string, b->string)) { dup = a->string; break; }
    } else if (k > 8) {
      char **keys = malloc(k * sizeof *keys);
      if (!keys) return vlm_error(VLM_ERR_OOM, "%s: out of memory checking the JSON keys", file);
      size_t i = 0;
      for (const cJSON *c = node->child; c; c = c->next) keys[i++] = c->string;
      qsort(keys, k, sizeof *keys, cmp_key);
      for (i = 1; i < k && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i])) dup = keys[i];
      free(keys);
    }
    if (dup)
      return vlm_error(VLM_ERR_FORMAT, "%s: the key \"%.200s\" appears twice in %s%s (JSON readers disagree on which "
                       "counts: Python's json keeps the last, cJSON the first); remove one", file, dup,
                       plen ? "the object at " : "the top-level object", path);
  }
  int i = 0;
  for (const cJSON *c = node->child; c; c = c->next, i++) {
    if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
    size_t n = plen;
    if (n + 1 < pcap) {
      int w = cJSON_IsObject(node) ? snprintf(path + n, pcap - n, "%s%.100s", n ? "." : "", c->string)
                                   : snprintf(path + n, pcap - n, "[%d]", i);
      n += w > 0 ? (size_t)w : 0;
      if (n >= pcap) n = pcap - 1;
    }
    vlm_status st = check_keys(file, c, path, n, pcap);
    path[plen] = 0;
    if (st) return st;
  }
  return VLM_OK;
}

vlm_status vlm_json_unique_keys(const struct cJSON *root, const char *file) {
  char where[256] = "";
  return check_keys(file, root, where, 0, sizeof where);
}
