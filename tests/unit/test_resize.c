/* Resize windows and long, thin images.
 *
 *   - 1 x 100000 and 100000 x 1 images in every mode, and 1 x 10^7 (whose shortest-side
 *     resize, 224 x 2.24e9, does not fit an int), preprocess at 224 with a small peak RSS and
 *     give the pixels of a 1-D reference written from PIL's formulas (bicubic in 8 and 16
 *     bits, nearest by accumulated positions);
 *   - vlm_image_resize_window equals vlm_image_resize + vlm_image_crop byte for byte in every
 *     mode, whichever pass runs first, when a pass keeps its size, and for windows partly
 *     outside the image;
 *   - the preprocessing of moderately elongated images (7 x 3000, 3000 x 7) equals the full
 *     resize followed by the center crop;
 *   - the nearest window's positions equal PIL's accumulated ones over millions of steps;
 *   - a squash of 1 x 2e6 and 2e6 x 1 (kernels of 500001 taps, computed in tiles) matches the
 *     reference. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include "datasets/datasets.h"
#include "gradcheck.h"

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ 1-D references */
static double cubic(double x) {
  const double a = -0.5;
  x = fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Output i of PIL's bicubic pass from n to m samples of v: 8-bit fixed point (22 fraction
 * bits, rounded and clipped) or, with is16, Pillow 13's double sums rounded half away from
 * zero and clamped to 16 bits. */
static int ref_bicubic(const int *v, int n, int64_t m, int64_t i, int is16) {
  double scale = (double)n / (double)m, fs = scale < 1.0 ? 1.0 : scale, support = 2.0 * fs, ss = 1.0 / fs;
  double center = ((double)i + 0.5) * scale, lo_d = center - support + 0.5, hi_d = center + support + 0.5;
  int lo = lo_d < 0 ? 0 : (int)lo_d, hi = hi_d > n ? n : (int)hi_d;
  double *k = malloc(sizeof(double) * (size_t)(hi - lo)), sum = 0.0;
  for (int j = lo; j < hi; j++) sum += k[j - lo] = cubic((j - center + 0.5) * ss);
  int r;
  if (is16) {
    double acc = 0.0;
    for (int j = lo; j < hi; j++) acc += v[j] * (k[j - lo] / sum);
    long q = (long)(acc >= 0 ? acc + 0.5 : acc - 0.5);
    r = q < 0 ? 0 : q > 65535 ? 65535 : (int)q;
  } else {
    int64_t acc = 1 << 21;
    for (int j = lo; j < hi; j++) {
      double w = k[j - lo] / sum * (1 << 22);
      acc += (int64_t)v[j] * (int32_t)(w < 0 ? w - 0.5 : w + 0.5);
    }
    acc >>= 22;
    r = acc < 0 ? 0 : acc > 255 ? 255 : (int)acc;
  }
  free(k);
  return r;
}

/* PIL's nearest: source index of output i of an n -> m resize, positions accumulated one step
 * at a time (from the last call when i follows it). */
static int ref_nearest(int n, int64_t m, int64_t i) {
  static double p;
  static int64_t last_m = -1, last_i;
  static int last_n;
  double s = (double)n / (double)m;
  if (n != last_n || m != last_m || i < last_i) {
    p = 0.5 * s;
    last_i = 0, last_n = n, last_m = m;
  }
  for (; last_i < i; last_i++) p += s;
  return p >= n ? n - 1 : (int)p;
}

/* Peak RSS checks mean little under AddressSanitizer (its quarantine keeps freed memory). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_CHECKED 0
#endif
#endif
#ifndef RSS_CHECKED
#define RSS_CHECKED 1
#endif

/* ------------------------------------------------------------ thin images */
static const vlm_img_mode k_modes[] = {VLM_IMG_L, VLM_IMG_LA, VLM_IMG_P, VLM_IMG_1, VLM_IMG_RGB,
                                       VLM_IMG_RGBA, VLM_IMG_CMYK, VLM_IMG_I16};
enum { NMODES = sizeof k_modes / sizeof k_modes[0] };

/* Sample j of channel ch along the long side of a thin image (alpha opaque, 1 bilevel). */
static int thin_value(vlm_img_mode mode, int j, int n, int ch) {
  if (mode == VLM_IMG_1) return (j / 7) % 2 ? 255 : 0;
  if (mode == VLM_IMG_P) return (j * 13) & 255;
  if ((mode == VLM_IMG_RGBA || mode == VLM_IMG_LA) && ch == vlm_img_mode_channels(mode) - 1) return 255;
  if (ch == 0) return j < n / 2 ? 30 : 200;   /* a step in the middle: the center crop sits on it */
  return (j * (17 + 8 * ch) + ch * 50) & 255;
}

static void thin_image(vlm_image *img, vlm_img_mode mode, int w, int h) {
  CHECK(vlm_image_alloc(img, w, h, mode, 0) == VLM_OK, "alloc %dx%d", w, h);
  int n = w > h ? w : h, c = img->channels;
  for (int j = 0; j < n; j++) {
    if (mode == VLM_IMG_I16) {
      uint16_t v = (uint16_t)thin_value(mode, j, n, 0);
      memcpy(img->data + 2 * (size_t)j, &v, 2);
    } else {
      for (int ch = 0; ch < c; ch++) img->data[(size_t)j * c + ch] = (uint8_t)thin_value(mode, j, n, ch);
    }
  }
  if (mode == VLM_IMG_P)
    for (int i = 0; i < 256; i++) {
      img->palette[3 * i] = (uint8_t)i;
      img->palette[3 * i + 1] = (uint8_t)(255 - i);
      img->palette[3 * i + 2] = (uint8_t)(i * 7);
    }
  img->palette_n = 256;
}

/* The RGB pixel at long-side output index i (of m) of a thin image, from the references;
 * 0 when the mode has no reference here (LA, CMYK: checked through the window tests). */
static int thin_expected(vlm_img_mode mode, int n, int64_t m, int64_t i, uint8_t rgb[3]) {
  static int *v;
  static int v_n, v_mode = -1, v_ch = -1;
  if (mode == VLM_IMG_P || mode == VLM_IMG_1) {
    int j = ref_nearest(n, m, i), idx = thin_value(mode, j, n, 0);
    for (int k = 0; k < 3; k++) rgb[k] = mode == VLM_IMG_1 ? (uint8_t)idx : (uint8_t)(k == 0 ? idx : k == 1 ? 255 - idx : idx * 7);
    return 1;
  }
  if (mode == VLM_IMG_LA || mode == VLM_IMG_CMYK) return 0;
  int nch = mode == VLM_IMG_L || mode == VLM_IMG_I16 ? 1 : 3;
  for (int ch = 0; ch < nch; ch++) {
    if (v_n != n || v_mode != (int)mode || v_ch != ch) {
      v = realloc(v, sizeof(int) * (size_t)n);
      for (int j = 0; j < n; j++) v[j] = thin_value(mode, j, n, ch);
      v_n = n, v_mode = (int)mode, v_ch = ch;
    }
    int r = ref_bicubic(v, n, m, i, mode == VLM_IMG_I16);
    rgb[ch] = (uint8_t)(r > 255 ? 255 : r);
  }
  if (nch == 1) rgb[1] = rgb[2] = rgb[0];
  return 1;
}

/* Preprocess a thin image at size n and compare with the references; adds the seconds to
 * *secs and returns how much the peak RSS grew in the call (KB). */
static long thin_check(vlm_img_mode mode, int w, int h, int n, double *secs) {
  vlm_image img, out;
  thin_image(&img, mode, w, h);
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, n);
  long rss0 = peak_rss_kb();
  double t0 = now_s();
  vlm_status st = vlm_preprocess_rgb(&img, &cfg, &out);
  *secs += now_s() - t0;
  long grew = peak_rss_kb() - rss0;
  CHECK(st == VLM_OK, "preprocess %s %dx%d: %s", vlm_img_mode_name(mode), w, h, st ? vlm_last_error() : "");
  if (st) {
    vlm_image_free(&img);
    return grew;
  }
  int64_t ow, oh;
  vlm_resize_shortest_size(w, h, n, &ow, &oh);
  int64_t m = w < h ? oh : ow, off = (int64_t)nearbyint((double)(m - n) / 2.0);
  int bad = 0, checked = 0;
  uint8_t rgb[3];
  for (int i = 0; i < n; i++) {
    if (!thin_expected(mode, w < h ? h : w, m, off + i, rgb)) break;
    checked = 1;
    for (int t = 0; t < n; t++) {   /* the short side is a copy of the long one's profile */
      int y = w < h ? i : t, x = w < h ? t : i;
      bad += memcmp(out.data + ((size_t)y * n + x) * 3, rgb, 3) != 0;
    }
  }
  CHECK(bad == 0, "thin %s %dx%d at %d: %d pixels differ from the 1-D reference", vlm_img_mode_name(mode), w, h, n,
        bad);
  if (!checked) {   /* no reference: at least the short side repeats the long side's profile */
    for (int i = 0; i < n; i++)
      for (int t = 1; t < n; t++) {
        int y = w < h ? i : t, x = w < h ? t : i, y0 = w < h ? i : 0, x0 = w < h ? 0 : i;
        bad += memcmp(out.data + ((size_t)y * n + x) * 3, out.data + ((size_t)y0 * n + x0) * 3, 3) != 0;
      }
    CHECK(bad == 0, "thin %s %dx%d at %d: %d pixels break the profile", vlm_img_mode_name(mode), w, h, n, bad);
  }
  vlm_image_free(&out);
  vlm_image_free(&img);
  return grew;
}

static void test_thin(void) {
  int64_t ow, oh;
  vlm_resize_shortest_size(1, 100000, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 22400000, "1x100000 -> %lldx%lld", (long long)ow, (long long)oh);
  vlm_resize_shortest_size(1, 10000000, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 2240000000LL, "1x10^7 -> %lldx%lld (past 2^31)", (long long)ow, (long long)oh);
  vlm_resize_shortest_size(10000000, 1, 224, &ow, &oh);
  CHECK(ow == 2240000000LL && oh == 224, "10^7x1 -> %lldx%lld", (long long)ow, (long long)oh);

  /* 1 x 100000 and 100000 x 1 in every mode: 224 x 22.4e6 before the crop (5 GB in RGBA). */
  long grew = 0;
  double secs = 0;
  for (int k = 0; k < NMODES; k++)
    for (int tall = 0; tall < 2; tall++) {
      long g = thin_check(k_modes[k], tall ? 1 : 100000, tall ? 100000 : 1, 224, &secs);
      if (g > grew) grew = g;
    }
  printf("1x100000 and 100000x1, %d modes: %.1f ms in all, peak RSS grew at most %ld KB\n", NMODES, secs * 1e3, grew);
  if (RSS_CHECKED) CHECK(grew < 64 * 1024, "thin images: peak RSS grew %ld KB (the crop needs a few)", grew);

  /* 1 x 10^7 (10 MB in L and P): the resize is 224 x 2.24e9, past int. The P reference steps
   * through the 1.12e9 positions before the crop. */
  secs = 0;
  grew = thin_check(VLM_IMG_L, 1, 10000000, 224, &secs);
  long g = thin_check(VLM_IMG_L, 10000000, 1, 224, &secs);
  if (g > grew) grew = g;
  g = thin_check(VLM_IMG_P, 1, 10000000, 224, &secs);
  if (g > grew) grew = g;
  printf("1x10^7 and 10^7x1: %.1f ms in all, peak RSS grew at most %ld KB\n", secs * 1e3, grew);
  if (RSS_CHECKED) CHECK(grew < 64 * 1024, "1x10^7: peak RSS grew %ld KB", grew);
}

/* ------------------------------------------------------------ windows in every mode */
static void random_image(vlm_image *img, vlm_img_mode mode, int w, int h, vlm_rng *r) {
  CHECK(vlm_image_alloc(img, w, h, mode, 0) == VLM_OK, "alloc");
  size_t n = (size_t)w * h * img->channels;
  for (size_t i = 0; i < n; i++) img->data[i] = (uint8_t)vlm_rng_below(r, 256);
  if (mode == VLM_IMG_1)
    for (size_t i = 0; i < n; i++) img->data[i] = img->data[i] & 1 ? 255 : 0;
  if (mode == VLM_IMG_RGBA || mode == VLM_IMG_LA)   /* some fully transparent and opaque pixels */
    for (size_t i = 0; i < (size_t)w * h; i++) {
      uint8_t *a = img->data + i * img->channels + img->channels - 1;
      if (*a < 40) *a = 0;
      else if (*a > 210) *a = 255;
    }
  for (int i = 0; i < 768; i++) img->palette[i] = (uint8_t)vlm_rng_below(r, 256);
  img->palette_n = 256;
}

static int same_image(const vlm_image *a, const vlm_image *b) {
  return a->w == b->w && a->h == b->h && a->mode == b->mode &&
         !memcmp(a->data, b->data, (size_t)a->w * a->h * a->channels) &&
         (a->mode != VLM_IMG_P || !memcmp(a->palette, b->palette, sizeof a->palette));
}

static void test_windows(void) {
  static const int cases[][4] = {{640, 427, 335, 224}, {427, 640, 224, 335}, {300, 1000, 100, 200},
                                 {1000, 300, 200, 100}, {50, 80, 50, 40},    {80, 50, 40, 50},
                                 {17, 23, 31, 29},      {23, 17, 23, 17},    {9, 400, 40, 1777},
                                 {400, 9, 1777, 40},    {3, 5, 1, 1},        {1, 1, 7, 300}};
  vlm_rng r;
  vlm_rng_seed(&r, 7);
  int trials = 0;
  for (int k = 0; k < NMODES; k++)
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
      for (int rep = 0; rep < 3; rep++) {
        int w = cases[t][0], h = cases[t][1], ow = cases[t][2], oh = cases[t][3];
        vlm_image in, full, ref, win;
        random_image(&in, k_modes[k], w, h, &r);
        /* Windows inside, and (rep 2) reaching past the resized image on some side. */
        int wx = (int)vlm_rng_below(&r, (uint64_t)ow), wy = (int)vlm_rng_below(&r, (uint64_t)oh);
        int ww = 1 + (int)vlm_rng_below(&r, (uint64_t)(ow - wx)), wh = 1 + (int)vlm_rng_below(&r, (uint64_t)(oh - wy));
        if (rep == 2) {
          wx -= (int)vlm_rng_below(&r, 6);
          wy -= (int)vlm_rng_below(&r, 6);
          ww += (int)vlm_rng_below(&r, 9);
          wh += (int)vlm_rng_below(&r, 9);
        }
        CHECK(vlm_image_resize(&in, ow, oh, &full) == VLM_OK, "full resize");
        CHECK(vlm_image_crop(&full, wx, wy, ww, wh, &ref) == VLM_OK, "crop");
        vlm_status st = vlm_image_resize_window(&in, ow, oh, wx, wy, ww, wh, &win);
        CHECK(st == VLM_OK && same_image(&win, &ref), "%s %dx%d -> %dx%d, window %d,%d %dx%d: differs from resize + crop",
              vlm_img_mode_name(k_modes[k]), w, h, ow, oh, wx, wy, ww, wh);
        trials++;
        vlm_image_free(&in); vlm_image_free(&full); vlm_image_free(&ref); vlm_image_free(&win);
      }
  printf("%d resize windows equal resize + crop\n", trials);
}

/* open_clip's preprocessing of 7 x 3000 and 3000 x 7 (resized 96 x 41142) against the full
 * resize, the center crop and the RGB conversion done step by step. */
static void test_elongated(void) {
  vlm_rng r;
  vlm_rng_seed(&r, 9);
  for (int k = 0; k < NMODES; k++)
    for (int tall = 0; tall < 2; tall++) {
      int w = tall ? 7 : 3000, h = tall ? 3000 : 7, n = k_modes[k] == VLM_IMG_L ? 224 : 96;
      vlm_image in, full, crop, rgb, got;
      random_image(&in, k_modes[k], w, h, &r);
      int64_t ow, oh;
      vlm_resize_shortest_size(w, h, n, &ow, &oh);
      int left = (int)nearbyint((ow - n) / 2.0), top = (int)nearbyint((oh - n) / 2.0);
      CHECK(vlm_image_resize(&in, (int)ow, (int)oh, &full) == VLM_OK, "full resize");
      CHECK(vlm_image_crop(&full, left, top, n, n, &crop) == VLM_OK && vlm_image_to_rgb(&crop, &rgb) == VLM_OK,
            "crop");
      vlm_preprocess_cfg cfg;
      vlm_preprocess_cfg_default(&cfg, n);
      CHECK(vlm_preprocess_rgb(&in, &cfg, &got) == VLM_OK && same_image(&got, &rgb),
            "%s %dx%d at %d: preprocess differs from the full resize + center crop", vlm_img_mode_name(k_modes[k]), w,
            h, n);
      vlm_image_free(&in); vlm_image_free(&full); vlm_image_free(&crop); vlm_image_free(&rgb); vlm_image_free(&got);
    }
}

/* The nearest window starts from PIL's accumulated position without stepping to it. */
static void test_nearest_positions(void) {
  static const int64_t cases[][2] = {{1000, 10000000}, {997, 9999991}, {3, 7777777}, {5, 1 << 23},
                                     {1000000, 333},   {7, 8000000},   {1, 9000001}};
  vlm_rng r;
  vlm_rng_seed(&r, 13);
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int h = (int)cases[t][0], oh = (int)cases[t][1];
    uint8_t *in = malloc(4 * (size_t)h), *full = malloc(4 * (size_t)oh), win[4 * 64];
    for (int y = 0; y < h; y++) memcpy(in + 4 * (size_t)y, &y, 4);   /* each row holds its index */
    vlm_resample_nearest_u8(in, 1, h, 4, full, 1, oh);
    int bad = 0;
    for (int rep = 0; rep < 40; rep++) {
      int wh = 1 + (int)vlm_rng_below(&r, 64), wy = rep == 0 ? oh - wh : (int)vlm_rng_below(&r, (uint64_t)(oh - wh + 1));
      CHECK(vlm_resample_nearest_window_u8(in, 1, h, 4, win, 1, oh, 0, wy, 1, wh) == VLM_OK, "nearest window");
      bad += memcmp(win, full + 4 * (size_t)wy, 4 * (size_t)wh) != 0;
    }
    CHECK(bad == 0, "nearest %d -> %d: %d of 40 windows differ from the accumulated positions", h, oh, bad);
    free(in);
    free(full);
  }
}

/* Squash 1 x 2e6 and 2e6 x 1 to 16 x 16: one pass shrinks 125000 times (500001 taps), so its
 * coefficients come in tiles of a few outputs. */
static void test_tiles(void) {
  const int n = 2000000, s = 16;
  int *v = malloc(sizeof(int) * n);
  static const vlm_img_mode modes[2] = {VLM_IMG_L, VLM_IMG_I16};
  for (int mi = 0; mi < 2; mi++) {
    vlm_img_mode mode = modes[mi];
    for (int tall = 0; tall < 2; tall++) {
      vlm_image img, out;
      CHECK(vlm_image_alloc(&img, tall ? 1 : n, tall ? n : 1, mode, 0) == VLM_OK, "alloc");
      for (int j = 0; j < n; j++) {
        v[j] = (int)((j * 2654435761u) >> 24);   /* noise */
        if (mode == VLM_IMG_I16) {
          uint16_t x = (uint16_t)(v[j] / 2);   /* under 256: the RGB conversion keeps it */
          v[j] = x;
          memcpy(img.data + 2 * (size_t)j, &x, 2);
        } else {
          img.data[j] = (uint8_t)v[j];
        }
      }
      vlm_preprocess_cfg cfg;
      vlm_preprocess_cfg_default(&cfg, s);
      cfg.mode = VLM_RESIZE_SQUASH;
      long rss0 = peak_rss_kb();
      CHECK(vlm_preprocess_rgb(&img, &cfg, &out) == VLM_OK, "squash");
      long grew = peak_rss_kb() - rss0;
      if (RSS_CHECKED)
        CHECK(grew < 64 * 1024, "squash %s %dx%d: peak RSS grew %ld KB", vlm_img_mode_name(mode), img.w, img.h, grew);
      int bad = 0;
      for (int i = 0; i < s; i++) {
        int e = ref_bicubic(v, n, s, i, mode == VLM_IMG_I16);
        for (int t = 0; t < s; t++) bad += out.data[((size_t)(tall ? i : t) * s + (tall ? t : i)) * 3] != e;
      }
      CHECK(bad == 0, "squash %s %dx%d: %d pixels differ from the reference", vlm_img_mode_name(mode), img.w, img.h,
            bad);
      vlm_image_free(&img);
      vlm_image_free(&out);
    }
  }
  free(v);
}

int main(void) {
  test_thin();   /* first: its peak RSS check needs a low peak before it */
  test_windows();
  test_elongated();
  test_nearest_positions();
  test_tiles();
  return vt_finish();
}
