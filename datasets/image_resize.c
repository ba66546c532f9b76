/* PIL-exact resampling of 8-bit images.
 *
 * Bicubic (a = -0.5), antialiased: when shrinking by a factor s > 1 the kernel is
 * stretched by s (support 2s), so each output pixel averages every input pixel under
 * it. For output pixel i of a pass from n to m pixels (scale = n / m):
 *   center = (i + 0.5) * scale,  support = 2 * max(scale, 1)
 *   xmin = max(0, (int)(center - support + 0.5)),  xmax = min(n, (int)(center + support + 0.5))
 *   w_j = cubic((j - center + 0.5) / max(scale, 1)) for j in [xmin, xmax), normalized to sum 1,
 * then quantized to integers with 22 fraction bits (round half away from zero). A pass
 * is out = clip8((2^21 + sum_j in_j * W_j) >> 22), clip8 saturating to [0, 255]. The
 * horizontal pass runs first and its 8-bit result feeds the vertical pass, except when the
 * height shrinks by more than twice as many pixels as the width (h - oh > 2 (w - ow)):
 * then the vertical pass runs first, as in Pillow >= 13 (PR 9549; older Pillow always
 * went horizontal first, which gives the same result everywhere else, including CLIP's
 * shortest-side resize of any image with aspect ratio <= 2). A pass whose size does not
 * change is skipped. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

#define PRECISION_BITS (32 - 8 - 2)

/* GCC prefers 256-bit vectors on AVX-512 targets; the resampler's int32 sums run
 * faster at 512 bits. (clang has no such target attribute.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define VLM_WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define VLM_WIDE_VECTORS
#endif

static double cubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

typedef struct {
  int ksize;
  int *bounds;   /* [out][2]: first input index, count */
  int32_t *k;    /* [out][ksize] fixed-point weights */
} coeffs;

/* PIL's precompute_coeffs: bounds and the normalized double weights ([out][ksize], zero
 * past each pixel's count). Returns ksize, 0 when out of memory. */
static int coeffs_make_d(int in_size, int out_size, int **bounds_out, double **k_out) {
  double scale = (double)in_size / out_size, fscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * fscale;
  int ksize = (int)ceil(support) * 2 + 1;
  int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
  double *kd = malloc(sizeof(double) * (size_t)ksize * (size_t)out_size);
  if (!bounds || !kd) {
    free(bounds); free(kd);
    return 0;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, ss = 1.0 / fscale, ww = 0.0;
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = kd + (size_t)xx * ksize;
    for (int x = 0; x < xmax; x++) {
      k[x] = cubic((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < ksize; x++) k[x] = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  *bounds_out = bounds;
  *k_out = kd;
  return ksize;
}

static int coeffs_make(coeffs *c, int in_size, int out_size) {
  double *kd = NULL;
  c->ksize = coeffs_make_d(in_size, out_size, &c->bounds, &kd);
  if (!c->ksize) return 0;
  c->k = malloc(sizeof(int32_t) * (size_t)c->ksize * (size_t)out_size);
  if (!c->k) {
    free(c->bounds); free(kd);
    return 0;
  }
  for (size_t i = 0; i < (size_t)c->ksize * (size_t)out_size; i++) {
    double v = kd[i];
    c->k[i] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
  }
  free(kd);
  return 1;
}

static void coeffs_free(coeffs *c) {
  free(c->bounds);
  free(c->k);
}

static inline uint8_t clip8(int32_t v) {
  if (v >= ((int32_t)1 << PRECISION_BITS << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> PRECISION_BITS);
}

/* Vertical pass: in has rows starting at source row `first` (width w, c channels); out
 * has oh rows. Integer arithmetic as PIL's (32-bit sums cannot overflow: the weights'
 * absolute sum stays well under 2^31 / 255), vectorized across the row. acc: w * c ints. */
VLM_WIDE_VECTORS
static void pass_v_acc(const uint8_t *in, int first, int w, int c, uint8_t *out, int oh, const coeffs *cf,
                       int32_t *restrict acc) {
  size_t stride = (size_t)w * c;
  for (int yy = 0; yy < oh; yy++) {
    int ymin = cf->bounds[2 * yy] - first, n = cf->bounds[2 * yy + 1];
    const int32_t *k = cf->k + (size_t)yy * cf->ksize;
    for (size_t i = 0; i < stride; i++) acc[i] = (int32_t)1 << (PRECISION_BITS - 1);
    for (int y = 0; y < n; y++) {
      const uint8_t *restrict row = in + (size_t)(ymin + y) * stride;
      int32_t kk = k[y];
      for (size_t i = 0; i < stride; i++) acc[i] += (int32_t)row[i] * kk;
    }
    uint8_t *orow = out + (size_t)yy * stride;
    for (size_t i = 0; i < stride; i++) orow[i] = clip8(acc[i]);
  }
}

static void pass_v(const uint8_t *in, int first, int w, int c, uint8_t *out, int oh, const coeffs *cf) {
  int32_t *acc = malloc(sizeof(int32_t) * (size_t)w * c);
  if (!acc) VLM_CHECK(0, "resample: out of memory");
  pass_v_acc(in, first, w, c, out, oh, cf, acc);
  free(acc);
}

/* out (h wide, w tall) = transpose of in (w wide, h tall), C-byte pixels, in 32x32 tiles. */
#define DEFINE_TRANSPOSE(C)                                                                        \
  static void transpose##C(const uint8_t *in, int w, int h, uint8_t *out) {                        \
    enum { T = 32 };                                                                               \
    for (int y0 = 0; y0 < h; y0 += T)                                                              \
      for (int x0 = 0; x0 < w; x0 += T) {                                                          \
        int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;                            \
        for (int x = x0; x < x1; x++) {                                                            \
          uint8_t *o = out + ((size_t)x * h) * C;                                                  \
          for (int y = y0; y < y1; y++) {                                                          \
            const uint8_t *p = in + ((size_t)y * w + x) * C;                                       \
            for (int ch = 0; ch < C; ch++) o[(size_t)y * C + ch] = p[ch];                          \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
  }
DEFINE_TRANSPOSE(1)
DEFINE_TRANSPOSE(2)
DEFINE_TRANSPOSE(4)

/* 3-byte pixels move as one 4-byte load and store: the extra byte read is the
 * next pixel of the same row (never for the last column), and the extra byte
 * written is the next pixel of the output row, which a later tile or the next
 * step of the same loop overwrites (never for the last output pixel, y = h-1,
 * whose spill would land in the next output row, already written). */
static void transpose3(const uint8_t *in, int w, int h, uint8_t *out) {
  enum { T = 32 };
  for (int y0 = 0; y0 < h; y0 += T)
    for (int x0 = 0; x0 < w; x0 += T) {
      int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;
      int yfast = y1 < h ? y1 : h - 1;
      for (int x = x0; x < x1; x++) {
        uint8_t *o = out + (size_t)x * h * 3;
        const uint8_t *p = in + (size_t)x * 3;
        int y = y0;
        if (x + 1 < w)
          for (; y < yfast; y++) {
            uint32_t v;
            memcpy(&v, p + (size_t)y * w * 3, 4);
            memcpy(o + (size_t)y * 3, &v, 4);
          }
        for (; y < y1; y++)
          for (int ch = 0; ch < 3; ch++) o[(size_t)y * 3 + ch] = p[(size_t)y * w * 3 + ch];
      }
    }
}

static void transpose(const uint8_t *in, int w, int h, int c, uint8_t *out) {
  switch (c) {
    case 1: transpose1(in, w, h, out); return;
    case 2: transpose2(in, w, h, out); return;
    case 3: transpose3(in, w, h, out); return;
    case 4: transpose4(in, w, h, out); return;
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) out[((size_t)x * h + y) * c + ch] = in[((size_t)y * w + x) * c + ch];
}

/* Horizontal pass over h rows: the same sums as PIL's, computed band by band (BAND rows)
 * as a vertical pass on the transposed band, so they vectorize, then transposed back. */
static void pass_h(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, const coeffs *cf) {
  enum { BAND = 32 };
  uint8_t *t_in = malloc((size_t)w * BAND * c), *t_out = malloc((size_t)ow * BAND * c);
  int32_t *acc = malloc(sizeof(int32_t) * BAND * (size_t)c);
  if (!t_in || !t_out || !acc) VLM_CHECK(0, "resample: out of memory");
  for (int y0 = 0; y0 < h; y0 += BAND) {
    int r = h - y0 < BAND ? h - y0 : BAND;
    transpose(in + (size_t)y0 * w * c, w, r, c, t_in);    /* r wide, w tall */
    pass_v_acc(t_in, 0, r, c, t_out, ow, cf, acc);        /* r wide, ow tall */
    transpose(t_out, r, ow, c, out + (size_t)y0 * ow * c); /* ow wide, r tall */
  }
  free(t_in);
  free(t_out);
  free(acc);
}

/* The window [wx, wx+ww) x [wy, wy+wh) of the w x h -> ow x oh resize: each output pixel
 * depends only on its own coefficients, so computing a window gives exactly the bytes that
 * resizing everything and cropping would (the pass order still follows the full sizes). */
void vlm_resample_bicubic_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh,
                                    int wx, int wy, int ww, int wh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0 && c > 0, "resample: bad sizes %dx%d -> %dx%d", w, h, ow, oh);
  VLM_CHECK(wx >= 0 && wy >= 0 && ww > 0 && wh > 0 && wx + ww <= ow && wy + wh <= oh,
            "resample: window %d,%d %dx%d outside %dx%d", wx, wy, ww, wh, ow, oh);
  int need_h = ow != w, need_v = oh != h;
  if (!need_h || !need_v) {
    /* A pass that keeps its size is a plain copy of the window's rows or columns. */
    size_t rowb = (size_t)(need_h ? ow : w) * c;
    uint8_t *full = malloc((size_t)(need_h ? ow : w) * (need_v ? oh : h) * c);
    VLM_CHECK(full, "resample: out of memory");
    vlm_resample_bicubic_u8(in, w, h, c, full, ow, oh);
    for (int y = 0; y < wh; y++)
      memcpy(out + (size_t)y * ww * c, full + (size_t)(wy + y) * rowb + (size_t)wx * c, (size_t)ww * c);
    free(full);
    return;
  }
  coeffs ch = {0}, cv = {0};
  VLM_CHECK(coeffs_make(&ch, w, ow) && coeffs_make(&cv, h, oh), "resample: out of memory");
  coeffs chw = {ch.ksize, ch.bounds + 2 * (size_t)wx, ch.k + (size_t)wx * ch.ksize};
  coeffs cvw = {cv.ksize, cv.bounds + 2 * (size_t)wy, cv.k + (size_t)wy * cv.ksize};
  if (oh < h && h - oh > 2 * (w - ow)) {
    /* Pillow >= 13 (python-pillow PR 9549) runs the vertical pass first when the height
     * shrinks by more than twice as many pixels as the width; older Pillow always went
     * horizontal first. Only the rounding between the passes differs. */
    uint8_t *tmp = malloc((size_t)w * wh * c);
    VLM_CHECK(tmp, "resample: out of memory");
    pass_v(in, 0, w, c, tmp, wh, &cvw);
    pass_h(tmp, w, wh, c, out, ww, &chw);
    free(tmp);
  } else {
    /* Only the source rows the vertical pass reads. */
    int first = cvw.bounds[0], last = cvw.bounds[2 * wh - 2] + cvw.bounds[2 * wh - 1];
    uint8_t *tmp = malloc((size_t)(last - first) * ww * c);
    VLM_CHECK(tmp, "resample: out of memory");
    pass_h(in + (size_t)first * w * c, w, last - first, c, tmp, ww, &chw);
    pass_v(tmp, first, ww, c, out, wh, &cvw);
    free(tmp);
  }
  coeffs_free(&ch);
  coeffs_free(&cv);
}

void vlm_resample_bicubic_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0 && c > 0, "resample: bad sizes %dx%d -> %dx%d", w, h, ow, oh);
  int need_h = ow != w, need_v = oh != h;
  if (need_h && need_v) {
    vlm_resample_bicubic_window_u8(in, w, h, c, out, ow, oh, 0, 0, ow, oh);
    return;
  }
  if (!need_h && !need_v) {
    memcpy(out, in, (size_t)w * h * c);
    return;
  }
  coeffs cf = {0};
  VLM_CHECK(coeffs_make(&cf, need_h ? w : h, need_h ? ow : oh), "resample: out of memory");
  if (need_h) pass_h(in, w, h, c, out, ow, &cf);
  else pass_v(in, 0, w, c, out, oh, &cf);
  coeffs_free(&cf);
}

/* ------------------------------------------------------------ 16-bit gray (PIL's I;16) */
/* Pillow 13's 16bpc passes: double sums of sample * weight in input order, rounded half
 * away from zero, clamped to [0, 65535]. (Older Pillow source stored the sum byte by byte,
 * keeping the low byte of sums above 65535; Pillow 13.0.0 measurably clamps.) */
static uint16_t store16(double ss) {
  int v = (int)(ss >= 0.0 ? ss + 0.5 : ss - 0.5);
  return (uint16_t)(v < 0 ? 0 : v > 65535 ? 65535 : v);
}

/* One pass over n lines of in_len samples each (stride between samples `step`, between
 * lines `lstride`), giving out_len samples per line (out strides ostep, olstride). */
static void pass16(const uint16_t *in, int n, size_t lstride, size_t step, uint16_t *out, size_t olstride,
                   size_t ostep, int out_len, int ksize, const int *bounds, const double *kd) {
  for (int l = 0; l < n; l++) {
    const uint16_t *line = in + (size_t)l * lstride;
    uint16_t *oline = out + (size_t)l * olstride;
    for (int o = 0; o < out_len; o++) {
      int xmin = bounds[2 * o], cnt = bounds[2 * o + 1];
      const double *k = kd + (size_t)o * ksize;
      double ss = 0.0;
      for (int x = 0; x < cnt; x++) ss += line[(size_t)(xmin + x) * step] * k[x];
      oline[(size_t)o * ostep] = store16(ss);
    }
  }
}

void vlm_resample_bicubic_u16(const uint16_t *in, int w, int h, uint16_t *out, int ow, int oh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0, "resample: bad sizes %dx%d -> %dx%d", w, h, ow, oh);
  int need_h = ow != w, need_v = oh != h;
  if (!need_h && !need_v) {
    memcpy(out, in, sizeof(uint16_t) * (size_t)w * h);
    return;
  }
  int *bh = NULL, *bv = NULL;
  double *kh = NULL, *kv = NULL;
  int ksh = need_h ? coeffs_make_d(w, ow, &bh, &kh) : 1;
  int ksv = need_v ? coeffs_make_d(h, oh, &bv, &kv) : 1;
  VLM_CHECK(ksh && ksv, "resample: out of memory");
  if (!need_v) {
    pass16(in, h, (size_t)w, 1, out, (size_t)ow, 1, ow, ksh, bh, kh);
  } else if (!need_h) {
    pass16(in, w, 1, (size_t)w, out, 1, (size_t)w, oh, ksv, bv, kv);
  } else if (oh < h && h - oh > 2 * (w - ow)) {
    /* Vertical first, as Pillow >= 13 does for every mode (see the top of this file). */
    uint16_t *tmp = malloc(sizeof(uint16_t) * (size_t)w * oh);
    VLM_CHECK(tmp, "resample: out of memory");
    pass16(in, w, 1, (size_t)w, tmp, 1, (size_t)w, oh, ksv, bv, kv);
    pass16(tmp, oh, (size_t)w, 1, out, (size_t)ow, 1, ow, ksh, bh, kh);
    free(tmp);
  } else {
    uint16_t *tmp = malloc(sizeof(uint16_t) * (size_t)ow * h);
    VLM_CHECK(tmp, "resample: out of memory");
    pass16(in, h, (size_t)w, 1, tmp, (size_t)ow, 1, ow, ksh, bh, kh);
    pass16(tmp, ow, 1, (size_t)ow, out, 1, (size_t)ow, oh, ksv, bv, kv);
    free(tmp);
  }
  free(bh); free(kh); free(bv); free(kv);
}

/* PIL's affine nearest (ImagingScaleAffine): positions accumulate in double from
 * (0.5 * scale), truncated. */
void vlm_resample_nearest_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0 && c > 0, "resample: bad sizes");
  int *xi = malloc(sizeof(int) * (size_t)ow);
  VLM_CHECK(xi, "resample: out of memory");
  double sx = (double)w / ow, sy = (double)h / oh, xo = sx * 0.5, yo = sy * 0.5;
  for (int x = 0; x < ow; x++, xo += sx) {
    int v = xo < 0 ? -1 : (int)xo;
    xi[x] = v < 0 ? 0 : v >= w ? w - 1 : v;
  }
  for (int y = 0; y < oh; y++, yo += sy) {
    int v = yo < 0 ? -1 : (int)yo;
    v = v < 0 ? 0 : v >= h ? h - 1 : v;
    const uint8_t *row = in + (size_t)v * w * c;
    uint8_t *orow = out + (size_t)y * ow * c;
    for (int x = 0; x < ow; x++) memcpy(orow + (size_t)x * c, row + (size_t)xi[x] * c, (size_t)c);
  }
  free(xi);
}
