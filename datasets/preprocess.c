/* CLIP preprocessing as open_clip builds it (open_clip/transform.py image_transform)
 * on a PIL image with torchvision:
 *   shortest: Resize(N, bicubic) on the shorter side (other side int(N * long / short)),
 *             CenterCrop(N) with offsets int(round((h - N) / 2.0)) (round half to even);
 *   squash:   Resize((N, N));
 *   longest:  ResizeKeepRatio(N, longest=1): ratio = max(h / N, w / N), size
 *             (round(h / ratio), round(w / ratio)); then CenterCropOrPad(N, fill 0): pad
 *             left/top by (N - w) // 2, right/bottom by the rest, then crop with offsets
 *             int((h - N) / 2.0);
 * then convert("RGB"), ToTensor (x / 255 in float32), Normalize ((x - mean) / std in float32). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

int vlm_resize_mode_parse(const char *s, vlm_resize_mode *out) {
  if (!strcmp(s, "shortest")) *out = VLM_RESIZE_SHORTEST;
  else if (!strcmp(s, "squash")) *out = VLM_RESIZE_SQUASH;
  else if (!strcmp(s, "longest")) *out = VLM_RESIZE_LONGEST;
  else return 0;
  return 1;
}

const char *vlm_resize_mode_name(vlm_resize_mode m) {
  return m == VLM_RESIZE_SQUASH ? "squash" : m == VLM_RESIZE_LONGEST ? "longest" : "shortest";
}

void vlm_preprocess_cfg_default(vlm_preprocess_cfg *cfg, int size) {
  static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  cfg->size = size;
  cfg->mode = VLM_RESIZE_SHORTEST;
  memcpy(cfg->mean, mean, sizeof mean);
  memcpy(cfg->std, std, sizeof std);
}

/* Python's round() on a double: half to even (the default FP rounding mode). */
static int64_t pyround(double x) { return (int64_t)nearbyint(x); }

void vlm_resize_shortest_size(int w, int h, int n, int64_t *ow, int64_t *oh) {
  int shrt = w <= h ? w : h, lng = w <= h ? h : w;
  int64_t new_long = (int64_t)((double)((int64_t)n * lng) / shrt);   /* < 2^62 */
  if (w <= h) { *ow = n; *oh = new_long; }
  else { *ow = new_long; *oh = n; }
}

vlm_status vlm_preprocess_rgb(const vlm_image *img, const vlm_preprocess_cfg *cfg, vlm_image *out) {
  int n = cfg->size, w = img->w, h = img->h;
  int64_t ow, oh;   /* the resized size before the crop: may pass 2^31 (only the crop is computed) */
  memset(out, 0, sizeof *out);
  if (n <= 0) return vlm_error(VLM_ERR_ARG, "preprocess: bad size %d", n);
  switch (cfg->mode) {
    case VLM_RESIZE_SQUASH: ow = oh = n; break;
    case VLM_RESIZE_LONGEST: {
      double ratio = fmax((double)h / n, (double)w / n);
      oh = pyround(h / ratio);
      ow = pyround(w / ratio);
      if (oh < 1) oh = 1;
      if (ow < 1) ow = 1;
      break;
    }
    default: vlm_resize_shortest_size(w, h, n, &ow, &oh); break;
  }
  int64_t left, top;
  if (cfg->mode == VLM_RESIZE_LONGEST) {
    /* CenterCropOrPad: pad (left/top get the floor half), then crop with int() offsets. */
    int64_t pl = n > ow ? (n - ow) / 2 : 0, pt = n > oh ? (n - oh) / 2 : 0;
    int64_t pw = ow + (n > ow ? n - ow : 0), ph = oh + (n > oh ? n - oh : 0);
    left = (int64_t)((pw - n) / 2.0) - pl;
    top = (int64_t)((ph - n) / 2.0) - pt;
  } else {
    left = pyround((double)(ow - n) / 2.0);
    top = pyround((double)(oh - n) / 2.0);
  }
  vlm_image c;
  vlm_status st = vlm_image_resize_window(img, ow, oh, left, top, n, n, &c);
  if (st) return st;
  st = vlm_image_to_rgb(&c, out);
  vlm_image_free(&c);
  return st;
}

void vlm_image_to_tensor(const vlm_image *rgb, const vlm_preprocess_cfg *cfg, uint8_t *crop_u8, float *pixels) {
  VLM_CHECK(rgb->mode == VLM_IMG_RGB, "to_tensor: image must be RGB, got %s", vlm_img_mode_name(rgb->mode));
  size_t hw = (size_t)rgb->w * rgb->h;
  /* torchvision: ToTensor divides by 255 in float32, Normalize subtracts the mean then divides
   * by the std in float32. Only 256 inputs per channel: tabulate with exactly those steps. */
  float lut[3][256];
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) {
      float x = (float)v / 255.0f;
      lut[c][v] = (x - cfg->mean[c]) / cfg->std[c];
    }
  const uint8_t *p = rgb->data;
  for (size_t i = 0; i < hw; i++, p += 3)
    for (int c = 0; c < 3; c++) {
      if (crop_u8) crop_u8[c * hw + i] = p[c];
      if (pixels) pixels[c * hw + i] = lut[c][p[c]];
    }
}

vlm_status vlm_preprocess_image(const vlm_image *img, const vlm_preprocess_cfg *cfg, uint8_t *crop_u8,
                                float *pixels) {
  vlm_image rgb;
  vlm_status st = vlm_preprocess_rgb(img, cfg, &rgb);
  if (st) return st;
  vlm_image_to_tensor(&rgb, cfg, crop_u8, pixels);
  vlm_image_free(&rgb);
  return VLM_OK;
}

vlm_status vlm_preprocess_file(const char *path, const vlm_decode_opts *opts, const vlm_preprocess_cfg *cfg,
                               uint8_t *crop_u8, float *pixels) {
  vlm_image img;
  vlm_status st = vlm_image_decode_file(path, opts, &img);
  if (st) return st;
  st = vlm_preprocess_image(&img, cfg, crop_u8, pixels);
  vlm_image_free(&img);
  if (st) return vlm_error_prefix(st, "%s", path);
  return VLM_OK;
}

vlm_status vlm_image_resized_crop(const vlm_image *img, int left, int top, int w, int h, int ow, int oh,
                                  vlm_image *out) {
  vlm_image c, r;
  memset(out, 0, sizeof *out);
  vlm_status st = vlm_image_crop(img, left, top, w, h, &c);
  if (st) return st;
  st = vlm_image_resize(&c, ow, oh, &r);
  vlm_image_free(&c);
  if (st) return st;
  st = vlm_image_to_rgb(&r, out);
  vlm_image_free(&r);
  return st;
}

vlm_status vlm_random_resized_crop(const vlm_image *img, int size, double scale_lo, double scale_hi,
                                   double ratio_lo, double ratio_hi, vlm_rng *r, vlm_image *out) {
  int width = img->w, height = img->h;
  double area = (double)width * height, lr0 = log(ratio_lo), lr1 = log(ratio_hi);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = area * (scale_lo + (scale_hi - scale_lo) * vlm_rng_uniform(r));
    double ar = exp(lr0 + (lr1 - lr0) * vlm_rng_uniform(r));
    int w = (int)pyround(sqrt(target * ar)), h = (int)pyround(sqrt(target / ar));
    if (0 < w && w <= width && 0 < h && h <= height) {
      int i = (int)vlm_rng_below(r, (uint64_t)(height - h + 1));
      int j = (int)vlm_rng_below(r, (uint64_t)(width - w + 1));
      return vlm_image_resized_crop(img, j, i, w, h, size, size, out);
    }
  }
  double in_ratio = (double)width / height;
  int w, h;
  if (in_ratio < ratio_lo) { w = width; h = (int)pyround(w / ratio_lo); }
  else if (in_ratio > ratio_hi) { h = height; w = (int)pyround(h * ratio_hi); }
  else { w = width; h = height; }
  return vlm_image_resized_crop(img, (width - w) / 2, (height - h) / 2, w, h, size, size, out);
}
