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
 * change is skipped.
 *
 * Every resampler here computes a window of the resized image. Each output pixel depends
 * only on its own coefficients, so a window is exactly the bytes that resizing everything
 * and cropping would give, for work and memory that follow the window and the source
 * pixels under it, not the full output size: CLIP's shortest-side resize of a 1 x 100000
 * image is 224 x 22400000, of which the center crop keeps 224 x 224. The full output size
 * is an int64 (it can pass 2^31). A window is computed in tiles that keep each pass's
 * coefficient table under COEF_BUDGET weights; only shrink factors in the thousands (a
 * 1 x 10^7 image squashed to 224 x 224) need more than one tile. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets.h"

#define PRECISION_BITS (32 - 8 - 2)
#define COEF_BUDGET ((int64_t)1 << 21)   /* weights in one pass's table of a tile (12 bytes each) */

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

/* ------------------------------------------------------------ coefficients */
typedef struct {
  int ksize;
  int *bounds;   /* [n][2]: first input index, count */
  double *k;     /* [n][ksize] normalized weights, zero past each count */
} coeffs_d;

typedef struct {
  int ksize;
  int *bounds;   /* [n][2]: first input index, count */
  int32_t *k;    /* [n][ksize] fixed-point weights */
} coeffs;

/* PIL's kernel size for a pass from in_size to out_size pixels, 2 ceil(support) + 1, capped
 * at in_size (no output pixel reads more than the whole line; huge factors cannot overflow). */
static int ksize_for(int in_size, int64_t out_size) {
  double scale = (double)in_size / (double)out_size, support = 2.0 * (scale < 1.0 ? 1.0 : scale);
  double ks = ceil(support) * 2 + 1;
  return ks > in_size ? in_size : (int)ks;
}

/* PIL's precompute_coeffs for the n output pixels from o0 on of a pass from in_size to
 * out_size pixels. 0 when out of memory. */
static int coeffs_make_d(coeffs_d *c, int in_size, int64_t out_size, int64_t o0, int n) {
  double scale = (double)in_size / (double)out_size, fscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * fscale, ss = 1.0 / fscale;
  c->ksize = ksize_for(in_size, out_size);
  c->bounds = malloc(sizeof(int) * 2 * (size_t)n);
  c->k = malloc(sizeof(double) * (size_t)c->ksize * (size_t)n);
  if (!c->bounds || !c->k) {
    free(c->bounds); free(c->k);
    c->bounds = NULL; c->k = NULL;
    return 0;
  }
  for (int i = 0; i < n; i++) {
    double center = ((double)(o0 + i) + 0.5) * scale, ww = 0.0;
    /* (int) of the bounds as PIL, clamped first so that no cast can overflow. */
    double lo = center - support + 0.5, hi = center + support + 0.5;
    int xmin = lo < 0 ? 0 : (int)lo, xmax = hi >= in_size ? in_size : (int)hi;
    xmax -= xmin;
    double *k = c->k + (size_t)i * c->ksize;
    for (int x = 0; x < xmax; x++) {
      k[x] = cubic((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < c->ksize; x++) k[x] = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
    c->bounds[2 * i] = xmin;
    c->bounds[2 * i + 1] = xmax;
  }
  return 1;
}

static int coeffs_make(coeffs *c, int in_size, int64_t out_size, int64_t o0, int n) {
  coeffs_d d;
  if (!coeffs_make_d(&d, in_size, out_size, o0, n)) return 0;
  c->ksize = d.ksize;
  c->bounds = d.bounds;
  c->k = malloc(sizeof(int32_t) * (size_t)c->ksize * (size_t)n);
  if (!c->k) {
    free(d.bounds); free(d.k);
    c->bounds = NULL;
    return 0;
  }
  for (size_t i = 0; i < (size_t)c->ksize * (size_t)n; i++) {
    double v = d.k[i];
    c->k[i] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
  }
  free(d.k);
  return 1;
}

/* The source pixels [lo, hi) that the n outputs of a table read (bounds only grow with the output). */
static void coeffs_span(const int *bounds, int n, int *lo, int *hi) {
  *lo = bounds[0];
  *hi = bounds[2 * n - 2] + bounds[2 * n - 1];
}

/* Pixels of a tile along an axis whose pass has kernel size ksize (1: no pass). */
static int tile_len(int ksize, int len) {
  int64_t t = COEF_BUDGET / ksize;
  return t < 1 ? 1 : t < len ? (int)t : len;
}

/* ------------------------------------------------------------ 8-bit passes */
static inline uint8_t clip8(int32_t v) {
  if (v >= ((int32_t)1 << PRECISION_BITS << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> PRECISION_BITS);
}

/* Vertical pass: in holds source rows from row `first` on, istride bytes apart; out gets oh
 * rows of w pixels (c channels), ostride bytes apart. Integer arithmetic as PIL's (32-bit
 * sums cannot overflow: the weights' absolute sum stays well under 2^31 / 255), vectorized
 * across the row. acc: w * c ints. */
VLM_WIDE_VECTORS
static void pass_v_acc(const uint8_t *in, size_t istride, int first, int w, int c, uint8_t *out, size_t ostride,
                       int oh, const coeffs *cf, int32_t *restrict acc) {
  size_t n = (size_t)w * c;
  for (int yy = 0; yy < oh; yy++) {
    int ymin = cf->bounds[2 * yy] - first, cnt = cf->bounds[2 * yy + 1];
    const int32_t *k = cf->k + (size_t)yy * cf->ksize;
    for (size_t i = 0; i < n; i++) acc[i] = (int32_t)1 << (PRECISION_BITS - 1);
    for (int y = 0; y < cnt; y++) {
      const uint8_t *restrict row = in + (size_t)(ymin + y) * istride;
      int32_t kk = k[y];
      for (size_t i = 0; i < n; i++) acc[i] += (int32_t)row[i] * kk;
    }
    uint8_t *orow = out + (size_t)yy * ostride;
    for (size_t i = 0; i < n; i++) orow[i] = clip8(acc[i]);
  }
}

static int pass_v(const uint8_t *in, size_t istride, int first, int w, int c, uint8_t *out, size_t ostride, int oh,
                  const coeffs *cf) {
  int32_t *acc = malloc(sizeof(int32_t) * (size_t)w * c);
  if (!acc) return 0;
  pass_v_acc(in, istride, first, w, c, out, ostride, oh, cf, acc);
  free(acc);
  return 1;
}

/* out (h wide, w tall, rows os bytes apart) = transpose of in (w wide, h tall, rows is bytes
 * apart), C-byte pixels, in 32x32 tiles. */
#define DEFINE_TRANSPOSE(C)                                                                        \
  static void transpose##C(const uint8_t *in, size_t is, int w, int h, uint8_t *out, size_t os) {  \
    enum { T = 32 };                                                                               \
    for (int y0 = 0; y0 < h; y0 += T)                                                              \
      for (int x0 = 0; x0 < w; x0 += T) {                                                          \
        int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;                            \
        for (int x = x0; x < x1; x++) {                                                            \
          uint8_t *o = out + (size_t)x * os;                                                       \
          for (int y = y0; y < y1; y++) {                                                          \
            const uint8_t *p = in + (size_t)y * is + (size_t)x * C;                                \
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
 * whose spill would land past the output row). */
static void transpose3(const uint8_t *in, size_t is, int w, int h, uint8_t *out, size_t os) {
  enum { T = 32 };
  for (int y0 = 0; y0 < h; y0 += T)
    for (int x0 = 0; x0 < w; x0 += T) {
      int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;
      int yfast = y1 < h ? y1 : h - 1;
      for (int x = x0; x < x1; x++) {
        uint8_t *o = out + (size_t)x * os;
        const uint8_t *p = in + (size_t)x * 3;
        int y = y0;
        if (x + 1 < w)
          for (; y < yfast; y++) {
            uint32_t v;
            memcpy(&v, p + (size_t)y * is, 4);
            memcpy(o + (size_t)y * 3, &v, 4);
          }
        for (; y < y1; y++)
          for (int ch = 0; ch < 3; ch++) o[(size_t)y * 3 + ch] = p[(size_t)y * is + ch];
      }
    }
}

static void transpose(const uint8_t *in, size_t is, int w, int h, int c, uint8_t *out, size_t os) {
  switch (c) {
    case 1: transpose1(in, is, w, h, out, os); return;
    case 2: transpose2(in, is, w, h, out, os); return;
    case 3: transpose3(in, is, w, h, out, os); return;
    case 4: transpose4(in, is, w, h, out, os); return;
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) out[(size_t)x * os + (size_t)y * c + ch] = in[(size_t)y * is + (size_t)x * c + ch];
}

/* Horizontal pass over h rows (istride bytes apart) of the w source pixels from column `first`
 * on, giving ow pixels a row (ostride bytes apart): the same sums as PIL's, computed band by
 * band (BAND rows) as a vertical pass on the transposed band, so they vectorize, then
 * transposed back. 0 when out of memory. */
static int pass_h(const uint8_t *in, size_t istride, int first, int w, int h, int c, uint8_t *out, size_t ostride,
                  int ow, const coeffs *cf) {
  enum { BAND = 32 };
  int band = h < BAND ? h : BAND;
  uint8_t *t_in = malloc((size_t)w * band * c), *t_out = malloc((size_t)ow * band * c);
  int32_t *acc = malloc(sizeof(int32_t) * band * (size_t)c);
  int ok = t_in && t_out && acc;
  for (int y0 = 0; ok && y0 < h; y0 += band) {
    int r = h - y0 < band ? h - y0 : band;
    size_t rb = (size_t)r * c;
    transpose(in + (size_t)y0 * istride, istride, w, r, c, t_in, rb);       /* r wide, w tall */
    pass_v_acc(t_in, rb, first, r, c, t_out, rb, ow, cf, acc);             /* r wide, ow tall */
    transpose(t_out, rb, r, ow, c, out + (size_t)y0 * ostride, ostride);   /* ow wide, r tall */
  }
  free(t_in);
  free(t_out);
  free(acc);
  return ok;
}

/* One tile [tx, tx+tw) x [ty, ty+th) of the w x h -> ow x oh resize into out (rows ostride
 * bytes apart), reading only the source pixels under it; the pass order follows the full
 * sizes. 0 when out of memory. */
static int tile_u8(const uint8_t *in, int w, int h, int c, int64_t ow, int64_t oh, int64_t tx, int64_t ty, int tw,
                   int th, uint8_t *out, size_t ostride) {
  int need_h = ow != w, need_v = oh != h, ok = 0;
  coeffs ch = {0}, cv = {0};
  uint8_t *tmp = NULL;
  if ((need_h && !coeffs_make(&ch, w, ow, tx, tw)) || (need_v && !coeffs_make(&cv, h, oh, ty, th))) goto done;
  int x0 = (int)tx, x1 = (int)tx + tw, y0 = (int)ty, y1 = (int)ty + th;   /* source columns and rows */
  if (need_h) coeffs_span(ch.bounds, tw, &x0, &x1);
  if (need_v) coeffs_span(cv.bounds, th, &y0, &y1);
  size_t istride = (size_t)w * c;
  const uint8_t *src = in + (size_t)y0 * istride + (size_t)x0 * c;
  if (!need_h && !need_v) {
    for (int y = 0; y < th; y++) memcpy(out + (size_t)y * ostride, src + (size_t)y * istride, (size_t)tw * c);
    ok = 1;
  } else if (!need_v) {
    ok = pass_h(src, istride, x0, x1 - x0, th, c, out, ostride, tw, &ch);
  } else if (!need_h) {
    ok = pass_v(src, istride, y0, tw, c, out, ostride, th, &cv);
  } else if (oh < h && h - oh > 2 * (w - ow)) {
    /* Pillow >= 13 (python-pillow PR 9549) runs the vertical pass first when the height
     * shrinks by more than twice as many pixels as the width; older Pillow always went
     * horizontal first. Only the rounding between the passes differs. */
    size_t tb = (size_t)(x1 - x0) * c;
    tmp = malloc(tb * th);
    ok = tmp && pass_v(src, istride, y0, x1 - x0, c, tmp, tb, th, &cv) &&
         pass_h(tmp, tb, x0, x1 - x0, th, c, out, ostride, tw, &ch);
  } else {
    size_t tb = (size_t)tw * c;
    tmp = malloc(tb * (y1 - y0));
    ok = tmp && pass_h(src, istride, x0, x1 - x0, y1 - y0, c, tmp, tb, tw, &ch) &&
         pass_v(tmp, tb, y0, tw, c, out, ostride, th, &cv);
  }
done:
  free(tmp);
  free(ch.bounds); free(ch.k);
  free(cv.bounds); free(cv.k);
  return ok;
}

static void check_window(int w, int h, int c, int64_t ow, int64_t oh, int64_t wx, int64_t wy, int ww, int wh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0 && c > 0, "resample: bad sizes %dx%d -> %lldx%lld", w, h,
            (long long)ow, (long long)oh);
  VLM_CHECK(wx >= 0 && wy >= 0 && ww > 0 && wh > 0 && wx + ww <= ow && wy + wh <= oh,
            "resample: window %lld,%lld %dx%d outside %lldx%lld", (long long)wx, (long long)wy, ww, wh,
            (long long)ow, (long long)oh);
}

static vlm_status oom(int w, int h, int64_t ow, int64_t oh, int ww, int wh) {
  return vlm_error(VLM_ERR_OOM, "resize: out of memory resizing %dx%d to %lldx%lld (window %dx%d)", w, h,
                   (long long)ow, (long long)oh, ww, wh);
}

vlm_status vlm_resample_bicubic_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int64_t ow, int64_t oh,
                                          int64_t wx, int64_t wy, int ww, int wh) {
  check_window(w, h, c, ow, oh, wx, wy, ww, wh);
  int tw = tile_len(ow != w ? ksize_for(w, ow) : 1, ww), th = tile_len(oh != h ? ksize_for(h, oh) : 1, wh);
  size_t ostride = (size_t)ww * c;
  for (int y = 0; y < wh; y += th)
    for (int x = 0; x < ww; x += tw)
      if (!tile_u8(in, w, h, c, ow, oh, wx + x, wy + y, ww - x < tw ? ww - x : tw, wh - y < th ? wh - y : th,
                   out + (size_t)y * ostride + (size_t)x * c, ostride))
        return oom(w, h, ow, oh, ww, wh);
  return VLM_OK;
}

void vlm_resample_bicubic_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh) {
  VLM_CHECK(vlm_resample_bicubic_window_u8(in, w, h, c, out, ow, oh, 0, 0, ow, oh) == VLM_OK, "%s",
            vlm_last_error());
}

/* ------------------------------------------------------------ 16-bit gray (PIL's I;16) */
/* Pillow 13's 16bpc passes: double sums of sample * weight in input order, rounded half
 * away from zero, clamped to [0, 65535]. (Older Pillow source stored the sum byte by byte,
 * keeping the low byte of sums above 65535; Pillow 13.0.0 measurably clamps.) */
static uint16_t store16(double ss) {
  int v = (int)(ss >= 0.0 ? ss + 0.5 : ss - 0.5);
  return (uint16_t)(v < 0 ? 0 : v > 65535 ? 65535 : v);
}

/* One pass over n lines (line l at in + l * lstride; its source sample j at (j - first) * step),
 * giving out_len samples a line (out strides olstride between lines, ostep between samples). */
static void pass16(const uint16_t *in, int n, size_t lstride, size_t step, int first, uint16_t *out, size_t olstride,
                   size_t ostep, int out_len, const coeffs_d *cf) {
  for (int l = 0; l < n; l++) {
    const uint16_t *line = in + (size_t)l * lstride;
    uint16_t *oline = out + (size_t)l * olstride;
    for (int o = 0; o < out_len; o++) {
      int xmin = cf->bounds[2 * o] - first, cnt = cf->bounds[2 * o + 1];
      const double *k = cf->k + (size_t)o * cf->ksize;
      double ss = 0.0;
      for (int x = 0; x < cnt; x++) ss += line[(size_t)(xmin + x) * step] * k[x];
      oline[(size_t)o * ostep] = store16(ss);
    }
  }
}

/* As tile_u8 for one 16-bit channel; ostride in samples. */
static int tile_u16(const uint16_t *in, int w, int h, int64_t ow, int64_t oh, int64_t tx, int64_t ty, int tw, int th,
                    uint16_t *out, size_t ostride) {
  int need_h = ow != w, need_v = oh != h, ok = 0;
  coeffs_d ch = {0}, cv = {0};
  uint16_t *tmp = NULL;
  if ((need_h && !coeffs_make_d(&ch, w, ow, tx, tw)) || (need_v && !coeffs_make_d(&cv, h, oh, ty, th))) goto done;
  int x0 = (int)tx, x1 = (int)tx + tw, y0 = (int)ty, y1 = (int)ty + th;
  if (need_h) coeffs_span(ch.bounds, tw, &x0, &x1);
  if (need_v) coeffs_span(cv.bounds, th, &y0, &y1);
  const uint16_t *src = in + (size_t)y0 * w + x0;
  int xw = x1 - x0, yh = y1 - y0;
  ok = 1;
  if (!need_h && !need_v) {
    for (int y = 0; y < th; y++) memcpy(out + (size_t)y * ostride, src + (size_t)y * w, sizeof(uint16_t) * tw);
  } else if (!need_v) {
    pass16(src, th, (size_t)w, 1, x0, out, ostride, 1, tw, &ch);
  } else if (!need_h) {
    pass16(src, tw, 1, (size_t)w, y0, out, 1, ostride, th, &cv);
  } else if (oh < h && h - oh > 2 * (w - ow)) {
    /* Vertical first, as Pillow >= 13 does for every mode (see the top of this file). */
    tmp = malloc(sizeof(uint16_t) * (size_t)xw * th);
    if (!tmp) ok = 0;
    else {
      pass16(src, xw, 1, (size_t)w, y0, tmp, 1, (size_t)xw, th, &cv);
      pass16(tmp, th, (size_t)xw, 1, x0, out, ostride, 1, tw, &ch);
    }
  } else {
    tmp = malloc(sizeof(uint16_t) * (size_t)tw * yh);
    if (!tmp) ok = 0;
    else {
      pass16(src, yh, (size_t)w, 1, x0, tmp, (size_t)tw, 1, tw, &ch);
      pass16(tmp, tw, 1, (size_t)tw, y0, out, 1, ostride, th, &cv);
    }
  }
done:
  free(tmp);
  free(ch.bounds); free(ch.k);
  free(cv.bounds); free(cv.k);
  return ok;
}

vlm_status vlm_resample_bicubic_window_u16(const uint16_t *in, int w, int h, uint16_t *out, int64_t ow, int64_t oh,
                                           int64_t wx, int64_t wy, int ww, int wh) {
  check_window(w, h, 1, ow, oh, wx, wy, ww, wh);
  int tw = tile_len(ow != w ? ksize_for(w, ow) : 1, ww), th = tile_len(oh != h ? ksize_for(h, oh) : 1, wh);
  for (int y = 0; y < wh; y += th)
    for (int x = 0; x < ww; x += tw)
      if (!tile_u16(in, w, h, ow, oh, wx + x, wy + y, ww - x < tw ? ww - x : tw, wh - y < th ? wh - y : th,
                    out + (size_t)y * ww + x, (size_t)ww))
        return oom(w, h, ow, oh, ww, wh);
  return VLM_OK;
}

void vlm_resample_bicubic_u16(const uint16_t *in, int w, int h, uint16_t *out, int ow, int oh) {
  VLM_CHECK(vlm_resample_bicubic_window_u16(in, w, h, out, ow, oh, 0, 0, ow, oh) == VLM_OK, "%s", vlm_last_error());
}

/* ------------------------------------------------------------ nearest (modes P and 1) */
/* PIL's affine nearest (ImagingScaleAffine) reads source pixel (int)p_i for output pixel i,
 * where p_0 = 0.5 * s and p_{i+1} = p_i + s in double (s = w / ow): accumulated, which differs
 * from (i + 0.5) * s in the last bits. affine_pos gives p_n without n additions: while p stays
 * in one binade [2^(e-1), 2^e), every double there is a multiple of its ulp u, so each sum
 * p + s rounds to p + R u with the same R = round(s / u) (unless s / u ends in exactly .5,
 * where the tie goes to the even neighbour and depends on p: those steps run one by one),
 * and k such steps land exactly on p + k R u. */
static double affine_pos(double s, int64_t n) {
  double p = 0.5 * s;
  while (n > 0) {
    int e;
    frexp(p, &e);
    double top = ldexp(1.0, e), u = ldexp(1.0, e - 53), q = s / u, fq = floor(q);
    if (p + s < top && q - fq != 0.5) {
      int64_t r = (int64_t)nearbyint(q), m = (int64_t)(p / u);
      if (r == 0) break;   /* s is under half an ulp of p: p never moves */
      /* Step j (from m + j r) stays below top while m + j r + q < 2^53. */
      int64_t k = ((((int64_t)1 << 53) - m - (int64_t)fq - 1) / r) + 1;
      if (k > n) k = n;
      p = ldexp((double)(m + k * r), e - 53);
      n -= k;
    } else {
      p += s;
      n--;
    }
  }
  return p;
}

static int coord(double p, int n) { return p < 0 ? 0 : p >= n ? n - 1 : (int)p; }

vlm_status vlm_resample_nearest_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int64_t ow, int64_t oh,
                                          int64_t wx, int64_t wy, int ww, int wh) {
  check_window(w, h, c, ow, oh, wx, wy, ww, wh);
  int *xi = malloc(sizeof(int) * (size_t)ww);
  if (!xi) return oom(w, h, ow, oh, ww, wh);
  double sx = (double)w / (double)ow, sy = (double)h / (double)oh;
  double xo = affine_pos(sx, wx), yo = affine_pos(sy, wy);
  for (int x = 0; x < ww; x++, xo += sx) xi[x] = coord(xo, w);
  for (int y = 0; y < wh; y++, yo += sy) {
    const uint8_t *row = in + (size_t)coord(yo, h) * w * c;
    uint8_t *orow = out + (size_t)y * ww * c;
    for (int x = 0; x < ww; x++) memcpy(orow + (size_t)x * c, row + (size_t)xi[x] * c, (size_t)c);
  }
  free(xi);
  return VLM_OK;
}

/* The full resize, accumulating every position as PIL does (the reference the window is
 * tested against). */
void vlm_resample_nearest_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh) {
  VLM_CHECK(w > 0 && h > 0 && ow > 0 && oh > 0 && c > 0, "resample: bad sizes");
  int *xi = malloc(sizeof(int) * (size_t)ow);
  VLM_CHECK(xi, "resample: out of memory");
  double sx = (double)w / ow, sy = (double)h / oh, xo = sx * 0.5, yo = sy * 0.5;
  for (int x = 0; x < ow; x++, xo += sx) xi[x] = coord(xo, w);
  for (int y = 0; y < oh; y++, yo += sy) {
    const uint8_t *row = in + (size_t)coord(yo, h) * w * c;
    uint8_t *orow = out + (size_t)y * ow * c;
    for (int x = 0; x < ow; x++) memcpy(orow + (size_t)x * c, row + (size_t)xi[x] * c, (size_t)c);
  }
  free(xi);
}
