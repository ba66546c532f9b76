/* A map from a sample's group (the image a caption belongs to) to a row index:
 * open addressing over int64 keys, grown at half load. The evaluations use it
 * to encode each image once when a loader yields it once per caption. */
#include <stdlib.h>

#include "contrastive/contrastive.h"

static size_t slot_of(const vlm_group_map *m, int64_t g) {
  size_t i = (size_t)(((uint64_t)g * 0x9E3779B97F4A7C15ull) >> 17) & (m->cap - 1);
  while (m->val[i] >= 0 && m->key[i] != g) i = (i + 1) & (m->cap - 1);
  return i;
}

static int grow(vlm_group_map *m) {
  if (m->cap && 2 * (m->n + 1) <= m->cap) return 1;
  vlm_group_map g = {NULL, NULL, m->cap ? 2 * m->cap : 1024, 0};
  g.key = malloc(g.cap * sizeof *g.key);
  g.val = malloc(g.cap * sizeof *g.val);
  if (!g.key || !g.val) {
    free(g.key);
    free(g.val);
    return 0;
  }
  for (size_t i = 0; i < g.cap; i++) g.val[i] = -1;
  for (size_t i = 0; i < m->cap; i++)
    if (m->val[i] >= 0) {
      size_t s = slot_of(&g, m->key[i]);
      g.key[s] = m->key[i];
      g.val[s] = m->val[i];
      g.n++;
    }
  free(m->key);
  free(m->val);
  *m = g;
  return 1;
}

vlm_status vlm_group_map_add(vlm_group_map *m, int64_t group, int64_t row, int64_t *found) {
  VLM_CHECK(row >= 0, "group map: row %lld must be >= 0", (long long)row);
  if (!grow(m)) return vlm_error(VLM_ERR_OOM, "group map: out of memory (%zu groups)", m->n);
  size_t s = slot_of(m, group);
  if (m->val[s] >= 0) {
    *found = m->val[s];
    return VLM_OK;
  }
  m->key[s] = group;
  m->val[s] = row;
  m->n++;
  *found = -1;
  return VLM_OK;
}

int64_t *vlm_group_map_ref(vlm_group_map *m, int64_t group) {
  if (!m->cap) return NULL;
  size_t s = slot_of(m, group);
  return m->val[s] >= 0 ? &m->val[s] : NULL;
}

void vlm_group_map_free(vlm_group_map *m) {
  free(m->key);
  free(m->val);
  m->key = m->val = NULL;
  m->cap = m->n = 0;
}
