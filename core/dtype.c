/* dtypes: sizes, safetensors names, bf16/f16 conversion. */
#include "core/core.h"

#include <string.h>

static const struct { const char *name; size_t size; } k_dtypes[VLM_DTYPE_COUNT] = {
  [VLM_F32] = {"F32", 4}, [VLM_BF16] = {"BF16", 2}, [VLM_F16] = {"F16", 2}, [VLM_F64] = {"F64", 8},
  [VLM_I8] = {"I8", 1},   [VLM_I16] = {"I16", 2},   [VLM_I32] = {"I32", 4}, [VLM_I64] = {"I64", 8},
  [VLM_U8] = {"U8", 1},   [VLM_U16] = {"U16", 2},   [VLM_U32] = {"U32", 4}, [VLM_U64] = {"U64", 8},
  [VLM_BOOL] = {"BOOL", 1},
};

size_t vlm_dtype_size(vlm_dtype dt) { return (unsigned)dt < VLM_DTYPE_COUNT ? k_dtypes[dt].size : 0; }
const char *vlm_dtype_name(vlm_dtype dt) { return (unsigned)dt < VLM_DTYPE_COUNT ? k_dtypes[dt].name : "?"; }

int vlm_dtype_from_name(const char *name, vlm_dtype *out) {
  for (int i = 0; i < VLM_DTYPE_COUNT; i++)
    if (!strcmp(name, k_dtypes[i].name)) { *out = (vlm_dtype)i; return 1; }
  return 0;
}

uint16_t vlm_f32_to_bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
  uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
  return (uint16_t)((v.u + rounding) >> 16);
}

float vlm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) u = sign;
    else { /* subnormal: normalize */
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) { man <<= 1; exp--; }
      man &= 0x3ffu;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
  else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  union { uint32_t u; float f; } v = {u};
  return v.f;
}

uint16_t vlm_f32_to_f16(float f) {
  union { float f; uint32_t u; } v = {f};
  uint32_t sign = (v.u >> 16) & 0x8000u, a = v.u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow to inf (rounds past 65504) */
  if (a < 0x38800000u) {                                 /* subnormal or zero in f16 */
    if (a < 0x33000000u) return (uint16_t)sign;
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;                            /* 14..24 */
    uint32_t half = 1u << (shift - 1), rem = m & ((1u << shift) - 1), q = m >> shift;
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t q = ((a >> 13) - ((127 - 15) << 10)), rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
  return (uint16_t)(sign | q);
}

void vlm_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) dst[i] = vlm_f32_to_bf16(src[i]);
}

void vlm_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) dst[i] = vlm_bf16_to_f32(src[i]);
}
