/* PIL's per-mode rules around the resamplers of image_resize.c: Image.resize for each mode
 * (bicubic for L, RGB, CMYK; premultiplied alpha for RGBA and LA; nearest for P and 1; 16-bit
 * bicubic for I;16), crop with zero padding, and convert("RGB"). */
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

/* ------------------------------------------------------------ per-mode rules */
#define MULDIV255(a, b) ((((a) * (b) + 128) >> 8) + ((a) * (b) + 128)) >> 8

static uint8_t clip_u(unsigned v) { return v > 255 ? 255 : (uint8_t)v; }

vlm_status vlm_image_resize(const vlm_image *in, int ow, int oh, vlm_image *out) {
  if (ow <= 0 || oh <= 0) return vlm_error(VLM_ERR_ARG, "resize: bad output size %dx%d", ow, oh);
  vlm_status st = vlm_image_alloc(out, ow, oh, in->mode, 0);
  if (st) return st;
  if (in->mode == VLM_IMG_P) {
    memcpy(out->palette, in->palette, sizeof out->palette);
    out->palette_n = in->palette_n;
  }
  int c = in->channels;
  if (ow == in->w && oh == in->h) {
    memcpy(out->data, in->data, (size_t)ow * oh * c);
    return VLM_OK;
  }
  if (in->mode == VLM_IMG_I16) {
    vlm_resample_bicubic_u16((const uint16_t *)(const void *)in->data, in->w, in->h,
                             (uint16_t *)(void *)out->data, ow, oh);
    return VLM_OK;
  }
  if (in->mode == VLM_IMG_P || in->mode == VLM_IMG_1) {
    vlm_resample_nearest_u8(in->data, in->w, in->h, c, out->data, ow, oh);
    return VLM_OK;
  }
  if (in->mode == VLM_IMG_RGBA || in->mode == VLM_IMG_LA) {
    /* Premultiply (PIL's RGBa / La), resize, un-premultiply. */
    size_t n = (size_t)in->w * in->h;
    uint8_t *pm = malloc(n * c);
    if (!pm) {
      vlm_image_free(out);
      return vlm_error(VLM_ERR_OOM, "resize: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
      const uint8_t *p = in->data + i * c;
      uint8_t *q = pm + i * c;
      unsigned a = p[c - 1];
      for (int k = 0; k < c - 1; k++) q[k] = (uint8_t)(MULDIV255((unsigned)p[k], a));
      q[c - 1] = (uint8_t)a;
    }
    vlm_resample_bicubic_u8(pm, in->w, in->h, c, out->data, ow, oh);
    free(pm);
    size_t m = (size_t)ow * oh;
    for (size_t i = 0; i < m; i++) {
      uint8_t *q = out->data + i * c;
      unsigned a = q[c - 1];
      if (a == 255 || a == 0) continue;
      for (int k = 0; k < c - 1; k++) q[k] = clip_u(255u * q[k] / a);
    }
    return VLM_OK;
  }
  vlm_resample_bicubic_u8(in->data, in->w, in->h, c, out->data, ow, oh);
  return VLM_OK;
}

vlm_status vlm_image_resize_window(const vlm_image *in, int ow, int oh, int wx, int wy, int ww, int wh,
                                   vlm_image *out) {
  if (ow <= 0 || oh <= 0) return vlm_error(VLM_ERR_ARG, "resize: bad output size %dx%d", ow, oh);
  int plain = in->mode == VLM_IMG_L || in->mode == VLM_IMG_RGB || in->mode == VLM_IMG_CMYK;
  int inside = wx >= 0 && wy >= 0 && ww > 0 && wh > 0 && wx + ww <= ow && wy + wh <= oh;
  if (!plain || !inside) {
    vlm_image r;
    vlm_status st = vlm_image_resize(in, ow, oh, &r);
    if (st) return st;
    st = vlm_image_crop(&r, wx, wy, ww, wh, out);
    vlm_image_free(&r);
    return st;
  }
  vlm_status st = vlm_image_alloc(out, ww, wh, in->mode, 0);
  if (st) return st;
  vlm_resample_bicubic_window_u8(in->data, in->w, in->h, in->channels, out->data, ow, oh, wx, wy, ww, wh);
  return VLM_OK;
}

vlm_status vlm_image_crop(const vlm_image *in, int left, int top, int w, int h, vlm_image *out) {
  if (w <= 0 || h <= 0) return vlm_error(VLM_ERR_ARG, "crop: bad size %dx%d", w, h);
  vlm_status st = vlm_image_alloc(out, w, h, in->mode, 1);
  if (st) return st;
  if (in->mode == VLM_IMG_P) {
    memcpy(out->palette, in->palette, sizeof out->palette);
    out->palette_n = in->palette_n;
  }
  int c = in->channels;
  int x0 = left < 0 ? 0 : left, x1 = left + w > in->w ? in->w : left + w;
  for (int y = 0; y < h; y++) {
    int sy = top + y;
    if (sy < 0 || sy >= in->h || x1 <= x0) continue;
    memcpy(out->data + ((size_t)y * w + (x0 - left)) * c, in->data + ((size_t)sy * in->w + x0) * c,
           (size_t)(x1 - x0) * c);
  }
  return VLM_OK;
}

vlm_status vlm_image_to_rgb(const vlm_image *in, vlm_image *out) {
  vlm_status st = vlm_image_alloc(out, in->w, in->h, VLM_IMG_RGB, 0);
  if (st) return st;
  size_t n = (size_t)in->w * in->h;
  const uint8_t *p = in->data;
  uint8_t *q = out->data;
  int c = in->channels;
  for (size_t i = 0; i < n; i++, p += c, q += 3) {
    switch (in->mode) {
      case VLM_IMG_L: case VLM_IMG_LA: case VLM_IMG_1:
        q[0] = q[1] = q[2] = p[0];
        break;
      case VLM_IMG_P: {
        const uint8_t *e = in->palette + 3 * (size_t)p[0];
        q[0] = e[0]; q[1] = e[1]; q[2] = e[2];
        break;
      }
      case VLM_IMG_RGB: case VLM_IMG_RGBA:
        q[0] = p[0]; q[1] = p[1]; q[2] = p[2];
        break;
      case VLM_IMG_I16: {
        /* PIL's I;16 -> RGB: the sample saturated to 255 (no scaling). */
        uint16_t v;
        memcpy(&v, p, sizeof v);
        q[0] = q[1] = q[2] = (uint8_t)(v > 255 ? 255 : v);
        break;
      }
      case VLM_IMG_CMYK: {
        int nk = 255 - p[3];
        for (int k = 0; k < 3; k++) {
          int v = nk - (int)(MULDIV255((unsigned)p[k], (unsigned)nk));
          q[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        break;
      }
    }
  }
  return VLM_OK;
}
