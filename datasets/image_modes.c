/* PIL's per-mode rules around the resamplers of image_resize.c: Image.resize for each mode
 * (bicubic for L, RGB, CMYK; premultiplied alpha for RGBA and LA; nearest for P and 1; 16-bit
 * bicubic for I;16), crop with zero padding, and convert("RGB"). */
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

/* ------------------------------------------------------------ per-mode rules */
#define MULDIV255(a, b) ((((a) * (b) + 128) >> 8) + ((a) * (b) + 128)) >> 8

static uint8_t clip_u(unsigned v) { return v > 255 ? 255 : (uint8_t)v; }

/* The window [x0, x0+ww) x [y0, y0+wh), inside the ow x oh resize of in, per mode into dst
 * (ww x wh pixels of in's mode). */
static vlm_status resize_part(const vlm_image *in, int64_t ow, int64_t oh, int64_t x0, int64_t y0, int ww, int wh,
                              uint8_t *dst) {
  int w = in->w, h = in->h, c = in->channels;
  if (ow == w && oh == h) {   /* PIL copies: no premultiplied round trip */
    for (int y = 0; y < wh; y++)
      memcpy(dst + (size_t)y * ww * c, in->data + ((size_t)(y0 + y) * w + (size_t)x0) * c, (size_t)ww * c);
    return VLM_OK;
  }
  if (in->mode == VLM_IMG_I16)
    return vlm_resample_bicubic_window_u16((const uint16_t *)(const void *)in->data, w, h, (uint16_t *)(void *)dst,
                                           ow, oh, x0, y0, ww, wh);
  if (in->mode == VLM_IMG_P || in->mode == VLM_IMG_1)
    return vlm_resample_nearest_window_u8(in->data, w, h, c, dst, ow, oh, x0, y0, ww, wh);
  if (in->mode != VLM_IMG_RGBA && in->mode != VLM_IMG_LA)
    return vlm_resample_bicubic_window_u8(in->data, w, h, c, dst, ow, oh, x0, y0, ww, wh);
  /* Premultiply (PIL's RGBa / La), resize, un-premultiply. */
  size_t n = (size_t)w * h;
  uint8_t *pm = malloc(n * c);
  if (!pm) return vlm_error(VLM_ERR_OOM, "resize: out of memory (%dx%d %s)", w, h, vlm_img_mode_name(in->mode));
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = in->data + i * c;
    uint8_t *q = pm + i * c;
    unsigned a = p[c - 1];
    for (int k = 0; k < c - 1; k++) q[k] = (uint8_t)(MULDIV255((unsigned)p[k], a));
    q[c - 1] = (uint8_t)a;
  }
  vlm_status st = vlm_resample_bicubic_window_u8(pm, w, h, c, dst, ow, oh, x0, y0, ww, wh);
  free(pm);
  if (st) return st;
  for (size_t i = 0, m = (size_t)ww * wh; i < m; i++) {
    uint8_t *q = dst + i * c;
    unsigned a = q[c - 1];
    if (a == 255 || a == 0) continue;
    for (int k = 0; k < c - 1; k++) q[k] = clip_u(255u * q[k] / a);
  }
  return VLM_OK;
}

vlm_status vlm_image_resize(const vlm_image *in, int ow, int oh, vlm_image *out) {
  return vlm_image_resize_window(in, ow, oh, 0, 0, ow, oh, out);
}

vlm_status vlm_image_resize_window(const vlm_image *in, int64_t ow, int64_t oh, int64_t wx, int64_t wy, int ww,
                                   int wh, vlm_image *out) {
  memset(out, 0, sizeof *out);
  if (ow <= 0 || oh <= 0)
    return vlm_error(VLM_ERR_ARG, "resize: bad output size %lldx%lld", (long long)ow, (long long)oh);
  if (ww <= 0 || wh <= 0) return vlm_error(VLM_ERR_ARG, "resize: bad window size %dx%d", ww, wh);
  /* The part of the window inside the resized image; the rest is 0 (vlm_image_crop's pad). */
  int64_t x0 = wx > 0 ? wx : 0, x1 = wx + ww < ow ? wx + ww : ow;
  int64_t y0 = wy > 0 ? wy : 0, y1 = wy + wh < oh ? wy + wh : oh;
  int inside = x0 == wx && y0 == wy && x1 == wx + ww && y1 == wy + wh;
  vlm_status st = vlm_image_alloc(out, ww, wh, in->mode, !inside);
  if (st) return st;
  if (in->mode == VLM_IMG_P) {
    memcpy(out->palette, in->palette, sizeof out->palette);
    out->palette_n = in->palette_n;
  }
  if (x1 <= x0 || y1 <= y0) return VLM_OK;
  if (inside) {
    st = resize_part(in, ow, oh, x0, y0, ww, wh, out->data);
  } else {
    vlm_image part;
    int pw = (int)(x1 - x0), ph = (int)(y1 - y0), c = in->channels;
    st = vlm_image_alloc(&part, pw, ph, in->mode, 0);
    if (!st) st = resize_part(in, ow, oh, x0, y0, pw, ph, part.data);
    for (int y = 0; !st && y < ph; y++)
      memcpy(out->data + ((size_t)(y0 - wy + y) * ww + (size_t)(x0 - wx)) * c, part.data + (size_t)y * pw * c,
             (size_t)pw * c);
    vlm_image_free(&part);
  }
  if (st) vlm_image_free(out);
  return st;
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
