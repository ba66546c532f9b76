/* libFuzzer target: the JPEG/PNG/WebP decoders and CLIP preprocessing on arbitrary
 * bytes. A decode either fails with a message naming the record or yields an
 * image that then preprocesses to 32x32 in every resize mode without error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vlm_decode_opts opts = {.max_pixels = 1 << 22, .jpeg_reduce_min_side = (size & 1) ? 16 : 0};
  vlm_image img;
  memset(&img, 0, sizeof img);
  if (vlm_image_decode_mem(data, size, "fuzz-input", &opts, &img) != VLM_OK) {
    if (!strstr(vlm_last_error(), "fuzz-input")) {
      fprintf(stderr, "error message does not name the record: %s\n", vlm_last_error());
      abort();
    }
    return 0;
  }
  static uint8_t crop[3 * 32 * 32];
  static float pixels[3 * 32 * 32];
  for (int m = 0; m < 3; m++) {
    vlm_preprocess_cfg cfg;
    vlm_preprocess_cfg_default(&cfg, 32);
    cfg.mode = (vlm_resize_mode)m;
    if (vlm_preprocess_image(&img, &cfg, crop, pixels) != VLM_OK) {
      fprintf(stderr, "preprocess failed on a decoded %dx%d image: %s\n", img.w, img.h, vlm_last_error());
      abort();
    }
  }
  vlm_image_free(&img);
  return 0;
}
