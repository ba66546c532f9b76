/* vlm_hash (core.h): the 64-bit hash of model identities and cache keys. */
#include <string.h>

#include "core/core.h"

void vlm_hash_init(vlm_hash *s) {
  for (int l = 0; l < 4; l++) s->h[l] = (uint64_t)l + 1;
}

void vlm_hash_bytes(vlm_hash *s, const void *data, size_t n) {
  const uint8_t *p = data;
  const uint64_t m = 0x9E3779B97F4A7C15ull;
  size_t i = 0;
  for (; i + 32 <= n; i += 32)   /* four lanes of 8 bytes */
    for (int l = 0; l < 4; l++) {
      uint64_t w;
      memcpy(&w, p + i + 8 * l, 8);
      s->h[l] = (s->h[l] ^ w) * m;
      s->h[l] ^= s->h[l] >> 29;
    }
  for (; i < n; i++) s->h[0] = (s->h[0] ^ p[i]) * m;
  s->h[1] = (s->h[1] ^ n) * m;   /* the length: "ab" + "c" is not "a" + "bc" */
}

uint64_t vlm_hash_final(const vlm_hash *s) {
  uint64_t h = 0;
  for (int l = 0; l < 4; l++) {
    h ^= s->h[l];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  return h;
}
