/* CLIP on a device: copies of a parameter set between devices (the arena is
 * copied whole: the layout is the same on every device). */
#include <string.h>

#include "model/model.h"

void vlm_clip_params_copy(vlm_clip_params *dst, const vlm_clip_params *src) {
  VLM_CHECK(dst->arena.used == src->arena.used, "clip params copy: layouts differ (%zu vs %zu bytes)",
            dst->arena.used, src->arena.used);
  vlm_memcpy(dst->arena.base, dst->arena.device, src->arena.base, src->arena.device, src->arena.used);
}

vlm_status vlm_clip_params_to_device(vlm_clip_params *dst, const vlm_clip_params *src, const vlm_clip_config *c,
                                     vlm_device dev) {
  vlm_status s = vlm_clip_params_init_on(dst, c, dev);
  if (s != VLM_OK) return s;
  vlm_clip_params_copy(dst, src);
  return VLM_OK;
}

static void batch_layout(vlm_clip_batch *b, vlm_arena *a, const vlm_clip_config *c, int64_t B, int64_t L,
                         vlm_dtype ids_dtype) {
  int64_t S = c->vision.image_size;
  b->images = vlm_arena_tensor4(a, VLM_F32, B, 3, S, S);
  b->ids = vlm_arena_tensor2(a, ids_dtype, B, L);
}

vlm_status vlm_clip_batch_init_on(vlm_clip_batch *b, const vlm_clip_config *c, int64_t B, int64_t L,
                                  vlm_dtype ids_dtype, vlm_device dev) {
  memset(b, 0, sizeof *b);
  if (B < 1 || L < 1 || (ids_dtype != VLM_I32 && ids_dtype != VLM_I64))
    return vlm_error(VLM_ERR_ARG, "CLIP batch: batch %lld, length %lld, ids %s are not usable", (long long)B,
                     (long long)L, vlm_dtype_name(ids_dtype));
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  batch_layout(b, &m, c, B, L, ids_dtype);
  vlm_status s = vlm_arena_init(&b->arena, m.used, dev);
  if (s != VLM_OK) return vlm_error_prefix(s, "CLIP batch (%zu bytes)", m.used);
  batch_layout(b, &b->arena, c, B, L, ids_dtype);
  return VLM_OK;
}

void vlm_clip_batch_upload(vlm_clip_batch *b, const vlm_tensor *images, const vlm_tensor *ids) {
  char s1[96], s2[96];
  VLM_CHECK(vlm_same_shape(images, &b->images) && images->dtype == VLM_F32, "CLIP batch: images are %s, expected %s",
            vlm_shape_str(images, s1, sizeof s1), vlm_shape_str(&b->images, s2, sizeof s2));
  VLM_CHECK(vlm_same_shape(ids, &b->ids) && ids->dtype == b->ids.dtype, "CLIP batch: ids are %s, expected %s",
            vlm_shape_str(ids, s1, sizeof s1), vlm_shape_str(&b->ids, s2, sizeof s2));
  vlm_copy(&b->images, images);
  vlm_copy(&b->ids, ids);
}

void vlm_clip_batch_free(vlm_clip_batch *b) {
  vlm_arena_free(&b->arena);
  memset(b, 0, sizeof *b);
}
