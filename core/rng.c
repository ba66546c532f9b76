/* Deterministic RNG: xoshiro256** seeded with splitmix64. */
#include "core/core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void vlm_rng_seed(vlm_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
  r->has_spare = 0;
  r->spare = 0;
}

void vlm_rng_seed_stream(vlm_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ 0x5851f42d4c957f2dull;
  uint64_t a = splitmix64(&x);
  x = stream + a;
  vlm_rng_seed(r, splitmix64(&x) ^ seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t vlm_rng_u64(vlm_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t vlm_rng_below(vlm_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;  /* reject the partial last bucket */
  uint64_t x;
  do x = vlm_rng_u64(r); while (x >= limit);
  return x % n;
}

double vlm_rng_uniform(vlm_rng *r) { return (double)(vlm_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float vlm_rng_normal(vlm_rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u1, u2 = vlm_rng_uniform(r);
  do u1 = vlm_rng_uniform(r); while (u1 <= 0.0);
  double mag = sqrt(-2.0 * log(u1));
  r->spare = (float)(mag * sin(2.0 * 3.14159265358979323846 * u2));
  r->has_spare = 1;
  return (float)(mag * cos(2.0 * 3.14159265358979323846 * u2));
}

void vlm_rng_fill_uniform(vlm_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)vlm_rng_uniform(r);
}

void vlm_rng_fill_normal(vlm_rng *r, float *x, size_t n, float mean, float std) {
  for (size_t i = 0; i < n; i++) x[i] = mean + std * vlm_rng_normal(r);
}

void vlm_rng_shuffle(vlm_rng *r, int64_t *x, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)vlm_rng_below(r, i);
    int64_t t = x[i - 1];
    x[i - 1] = x[j];
    x[j] = t;
  }
}
