/* The training chart's text: the bitmap font of apps/chart_font.c (glyph pixels,
 * widths, scaling, clipping at the buffer's edges) and the labels vlm_plot_png
 * (apps/train_log.c) draws into loss.png. tests/CMakeLists.txt compiles those two
 * apps files into this test. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/train_internal.h"
#include "gradcheck.h"

static const uint8_t black[3] = {0, 0, 0};

/* The expected pixels of a glyph, written out here independently of the font's table. */
static const char *const art_1[9] = {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."};
static const char *const art_A[9] = {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#", ".....", "....."};
static const char *const art_g[9] = {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."};

typedef struct {
  int w, h;
  uint8_t *px; /* w*h*3, between two guard zones */
  uint8_t *mem;
} image;

#define GUARD 256
static image img_new(int w, int h) {
  image im = {w, h, NULL, malloc((size_t)w * h * 3 + 2 * GUARD)};
  memset(im.mem, 0xA5, (size_t)w * h * 3 + 2 * GUARD);
  im.px = im.mem + GUARD;
  memset(im.px, 255, (size_t)w * h * 3);
  return im;
}
static int guards_intact(const image *im) {
  const uint8_t *tail = im->px + (size_t)im->w * im->h * 3;
  for (int i = 0; i < GUARD; i++)
    if (im->mem[i] != 0xA5 || tail[i] != 0xA5) return 0;
  return 1;
}
static int ink(const image *im, int x, int y) { return im->px[3 * ((size_t)y * im->w + x)] < 128; }
static int count_ink(const image *im) {
  int n = 0;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++) n += ink(im, x, y);
  return n;
}

/* Every pixel of the glyph cell at (x, y), scale s, matches art (and the spacing column is empty). */
static int cell_matches(const image *im, int x, int y, const char *const art[9], int s) {
  for (int r = 0; r < 9 * s; r++)
    for (int c = 0; c < 6 * s; c++) {
      int want = c < 5 * s && art[r / s][c / s] == '#';
      if (ink(im, x + c, y + r) != want) return 0;
    }
  return 1;
}

static int art_count(const char *const art[9]) {
  int n = 0;
  for (int r = 0; r < 9; r++)
    for (int c = 0; c < 5; c++) n += art[r][c] == '#';
  return n;
}

static void test_widths(void) {
  CHECK(vlm_font_width("", 1) == 0 && vlm_font_width("", 3) == 0, "empty string has width 0");
  CHECK(vlm_font_width("1", 1) == 5, "one glyph: 5 px, got %d", vlm_font_width("1", 1));
  CHECK(vlm_font_width("ab", 1) == 11, "two glyphs: 5 + 1 + 5, got %d", vlm_font_width("ab", 1));
  CHECK(vlm_font_width("R@1", 2) == 34, "scale 2: 3 * 12 - 2, got %d", vlm_font_width("R@1", 2));
  CHECK(vlm_font_width("text->image R@1", 1) == 15 * VLM_FONT_ADVANCE - 1, "legend name width");
}

static void test_glyph_pixels(void) {
  image im = img_new(40, 24);
  int w = vlm_font_draw(im.px, im.w, im.h, 3, 2, "1Ag", black, 1);
  CHECK(w == vlm_font_width("1Ag", 1), "draw returns the width (%d)", w);
  CHECK(cell_matches(&im, 3, 2, art_1, 1), "'1' pixels at (3, 2)");
  CHECK(cell_matches(&im, 3 + VLM_FONT_ADVANCE, 2, art_A, 1), "'A' pixels one cell to the right");
  CHECK(cell_matches(&im, 3 + 2 * VLM_FONT_ADVANCE, 2, art_g, 1), "'g' with its descender rows 7-8");
  int want = art_count(art_1) + art_count(art_A) + art_count(art_g);
  CHECK(count_ink(&im) == want, "no ink outside the three glyphs (%d px, want %d)", count_ink(&im), want);
  CHECK(!memcmp(im.px + 3 * (3 * im.w + 5), black, 3), "drawn in the given colour");
  free(im.mem);

  image big = img_new(40, 40);
  vlm_font_draw(big.px, big.w, big.h, 1, 1, "A1", black, 2);
  CHECK(cell_matches(&big, 1, 1, art_A, 2), "'A' at scale 2: each pixel a 2x2 block");
  CHECK(cell_matches(&big, 1 + 2 * VLM_FONT_ADVANCE, 1, art_1, 2), "'1' at scale 2, 12 px further");
  free(big.mem);

  /* the punctuation the chart uses and every letter draw something; a space and "" draw nothing */
  const char *need = "0123456789.,->@%()/:_+=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  int blank = 0;
  for (const char *p = need; *p; p++) {
    image g = img_new(8, 10);
    char s[2] = {*p, 0};
    vlm_font_draw(g.px, g.w, g.h, 0, 0, s, black, 1);
    if (count_ink(&g) == 0) blank++;
    free(g.mem);
  }
  CHECK(blank == 0, "%d needed characters have an empty glyph", blank);
  image sp = img_new(8, 10);
  vlm_font_draw(sp.px, sp.w, sp.h, 0, 0, " ", black, 1);
  vlm_font_draw(sp.px, sp.w, sp.h, 0, 0, "", black, 1);
  CHECK(count_ink(&sp) == 0, "space and empty string draw nothing");
  /* distinct glyphs for look-alikes */
  image a = img_new(12, 10), b = img_new(12, 10);
  vlm_font_draw(a.px, a.w, a.h, 0, 0, "0", black, 1);
  vlm_font_draw(b.px, b.w, b.h, 0, 0, "O", black, 1);
  CHECK(memcmp(a.px, b.px, (size_t)a.w * a.h * 3) != 0, "'0' and 'O' differ");
  free(a.mem);
  free(b.mem);
  /* a byte without a glyph is a visible box, not skipped */
  image u = img_new(8, 10);
  vlm_font_draw(u.px, u.w, u.h, 0, 0, "\x01", black, 1);
  CHECK(ink(&u, 0, 0) && ink(&u, 4, 6) && !ink(&u, 2, 3), "unknown byte drawn as a hollow box");
  free(u.mem);
  free(sp.mem);
}

static void test_clipping(void) {
  image im = img_new(17, 11);
  const int xs[] = {-40, -7, -3, 0, 5, 12, 14, 16, 17, 100}, ys[] = {-30, -8, -2, 0, 3, 6, 9, 10, 11, 50};
  for (int i = 0; i < 10; i++)
    for (int j = 0; j < 10; j++)
      for (int s = 1; s <= 3; s++) vlm_font_draw(im.px, im.w, im.h, xs[i], ys[j], "W@g_|%", black, s);
  vlm_font_draw(im.px, im.w, im.h, -2000000, -5, "a long label that starts far to the left", black, 2);
  CHECK(guards_intact(&im), "drawing across every edge wrote outside the buffer");
  CHECK(count_ink(&im) > 0, "partly visible text is drawn");
  /* a glyph cut by the left edge keeps its visible columns: '1' at x=-2 has its stem at column 0 */
  image one = img_new(6, 9);
  vlm_font_draw(one.px, one.w, one.h, -2, 0, "1", black, 1);
  CHECK(ink(&one, 0, 3) && !ink(&one, 1, 3) && ink(&one, 1, 6), "'1' clipped at the left edge");
  CHECK(guards_intact(&one), "clipped '1' stays in its buffer");
  free(one.mem);
  free(im.mem);
}

/* ---- the chart ---- */
static uint8_t *read_png(const char *path, int *w, int *h) {
  png_image pi;
  memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&pi, path)) return NULL;
  pi.format = PNG_FORMAT_RGB;
  uint8_t *buf = malloc(PNG_IMAGE_SIZE(pi));
  if (!png_image_finish_read(&pi, NULL, buf, 0, NULL)) {
    free(buf);
    return NULL;
  }
  *w = (int)pi.width;
  *h = (int)pi.height;
  return buf;
}

static int dark(const uint8_t *p) { return p[0] < 110 && p[1] < 110 && p[2] < 110; }

/* Where the text s (drawn at scale) appears in the chart in dark pixels, inside the
 * rectangle [x0, x1) x [y0, y1): every pixel of its glyphs dark, every other pixel of
 * its box not. Returns the x found, or -1. */
static int find_text(const uint8_t *rgb, int W, int H, const char *s, int scale, int x0, int y0, int x1, int y1,
                     int *y_found) {
  int tw = vlm_font_width(s, scale), th = VLM_FONT_HEIGHT * scale;
  image t = img_new(tw, th);
  vlm_font_draw(t.px, tw, th, 0, 0, s, black, scale);
  int found = -1;
  for (int y = y0; y + th <= y1 && y + th <= H && found < 0; y++)
    for (int x = x0; x + tw <= x1 && x + tw <= W && found < 0; x++) {
      int ok = 1;
      for (int r = 0; r < th && ok; r++)
        for (int c = 0; c < tw && ok; c++)
          if (ink(&t, c, r) != dark(rgb + 3 * ((size_t)(y + r) * W + x + c))) ok = 0;
      if (ok) {
        found = x;
        *y_found = y;
      }
    }
  free(t.mem);
  return found;
}

static int has_colour(const uint8_t *rgb, int W, int x0, int y0, int x1, int y1, const uint8_t *col) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      if (!memcmp(rgb + 3 * ((size_t)y * W + x), col, 3)) return 1;
  return 0;
}

static void test_chart(void) {
  char dir[] = "/tmp/vlm_test_chart_XXXXXX";
  if (!mkdtemp(dir)) vt_skip("cannot make a temporary folder");
  char path[256];
  snprintf(path, sizeof path, "%s/loss.png", dir);
  enum { NP = 300, NE = 3 };
  vlm_log_point pts[NP];
  for (int i = 0; i < NP; i++) pts[i] = (vlm_log_point){10 * (i + 1), 0.5 + 3.7 * exp(-i / 60.0)};
  vlm_log_eval ev[NE];
  for (int i = 0; i < NE; i++)
    ev[i] = (vlm_log_eval){1000 * (i + 1), 2.0 - 0.4 * i, 0.2 + 0.2 * i, 0.1 + 0.1 * i, 0.3 + 0.2 * i, 0.25 + 0.2 * i};
  CHECK(vlm_plot_png(path, pts, NP, ev, NE, 0) == VLM_OK, "vlm_plot_png: %s", vlm_last_error());
  int W = 0, H = 0;
  uint8_t *rgb = read_png(path, &W, &H);
  CHECK(rgb && W == VLM_CHART_W && H == VLM_CHART_H, "chart read back as %dx%d", W, H);
  if (!rgb) return;

  /* legend names in each title row, beside their colour swatches */
  static const struct {
    const char *name;
    uint8_t rgb[3];
    int bottom;
  } legend[6] = {{"train loss", {31, 119, 180}, 0},       {"val loss", {214, 39, 40}, 0},
                 {"zero-shot top-1", {44, 160, 44}, 1},  {"text->image R@1", {148, 103, 189}, 1},
                 {"image->text R@1", {255, 127, 14}, 1}, {"unseen top-1", {140, 86, 75}, 1}};
  for (int i = 0; i < 6; i++) {
    int y1 = legend[i].bottom ? VLM_CHART_BOT_Y0 : VLM_CHART_TOP_Y0, y0 = y1 - VLM_CHART_TITLE_H, ty;
    int x = find_text(rgb, W, H, legend[i].name, 1, 0, y0, W, y1, &ty);
    CHECK(x >= 0, "legend name \"%s\" not found in its title row", legend[i].name);
    if (x >= 0)
      CHECK(has_colour(rgb, W, x - 25, ty, x, ty + VLM_FONT_CAP, legend[i].rgb), "swatch left of \"%s\"",
            legend[i].name);
  }
  int ty;
  CHECK(find_text(rgb, W, H, "loss", 2, 0, 0, W / 2, VLM_CHART_TOP_Y0, &ty) >= 0, "top panel title");
  CHECK(find_text(rgb, W, H, "evaluation", 2, 0, VLM_CHART_BOT_Y0 - VLM_CHART_TITLE_H, W / 2, VLM_CHART_BOT_Y0,
                  &ty) >= 0,
        "bottom panel title");
  CHECK(find_text(rgb, W, H, "step", 1, 0, VLM_CHART_BOT_Y0, W, H, &ty) >= 0, "x-axis title");
  /* y tick labels left of the panels: loss 0..5 in steps of 1 on top, 0..1 in quarters below */
  const char *ylabels[] = {"0", "1", "2", "3", "4", "5", "0.25", "0.5", "0.75"};
  for (int i = 0; i < 9; i++) {
    int y0 = i < 6 ? VLM_CHART_TOP_Y0 - 8 : VLM_CHART_BOT_Y0 - 8, y1 = i < 6 ? VLM_CHART_BOT_Y0 - 30 : H;
    CHECK(find_text(rgb, W, H, ylabels[i], 1, 0, y0, 52, y1, &ty) >= 0, "y tick label %s", ylabels[i]);
  }
  /* step labels: 0 .. 3000 in steps of 1000, compactly */
  const char *xlabels[] = {"1k", "2k", "3k"};
  for (int i = 0; i < 3; i++)
    CHECK(find_text(rgb, W, H, xlabels[i], 1, 40, VLM_CHART_BOT_Y0, W, H, &ty) >= 0, "x tick label %s", xlabels[i]);
  /* nothing cut at the canvas edge: the outermost rows and columns stay white */
  int edge = 0;
  for (int x = 0; x < W; x++) edge += !(rgb[3 * x] == 255 && rgb[3 * ((size_t)(H - 1) * W + x)] == 255);
  for (int y = 0; y < H; y++) edge += !(rgb[3 * (size_t)y * W] == 255 && rgb[3 * ((size_t)y * W + W - 1)] == 255);
  CHECK(edge == 0, "%d pixels drawn on the canvas border", edge);
  free(rgb);

  /* Without evaluations the legends name only what is drawn, and the empty panel says
   * why; a CoCa run's losses are labelled as what they are. */
  CHECK(vlm_plot_png(path, pts, NP, NULL, 0, 0) == VLM_OK, "no evaluations: %s", vlm_last_error());
  rgb = read_png(path, &W, &H);
  if (rgb) {
    CHECK(find_text(rgb, W, H, "train loss", 1, 0, 0, W, VLM_CHART_TOP_Y0, &ty) >= 0, "no evaluations: train loss named");
    CHECK(find_text(rgb, W, H, "val loss", 1, 0, 0, W, VLM_CHART_TOP_Y0, &ty) < 0, "no evaluations: val loss in the legend");
    CHECK(find_text(rgb, W, H, "zero-shot top-1", 1, 0, VLM_CHART_BOT_Y0 - VLM_CHART_TITLE_H, W, VLM_CHART_BOT_Y0, &ty) < 0,
          "no evaluations: a metric in the legend");
    CHECK(find_text(rgb, W, H, "no evaluation in this run (--val-data, --zeroshot-data)", 1, 0, VLM_CHART_BOT_Y0, W, H,
                    &ty) >= 0,
          "no evaluations: the empty panel says why");
    free(rgb);
  }
  vlm_log_eval only_loss[2] = {{100, 2.5, NAN, NAN, NAN, NAN}, {200, 2.0, NAN, NAN, NAN, NAN}};
  CHECK(vlm_plot_png(path, pts, NP, only_loss, 2, 1) == VLM_OK, "CoCa chart: %s", vlm_last_error());
  rgb = read_png(path, &W, &H);
  if (rgb) {
    CHECK(find_text(rgb, W, H, "train loss (contrastive + caption)", 1, 0, 0, W, VLM_CHART_TOP_Y0, &ty) >= 0,
          "CoCa: the train loss's legend");
    CHECK(find_text(rgb, W, H, "val loss (contrastive)", 1, 0, 0, W, VLM_CHART_TOP_Y0, &ty) >= 0,
          "CoCa: the val loss's legend");
    CHECK(find_text(rgb, W, H, "text->image R@1", 1, 0, VLM_CHART_BOT_Y0 - VLM_CHART_TITLE_H, W, VLM_CHART_BOT_Y0, &ty) < 0,
          "val loss only: a metric in the legend");
    free(rgb);
  }

  /* degenerate runs still give a chart: no data, one point, huge and tiny losses, NaN */
  vlm_log_point odd[3] = {{0, NAN}, {1, 1e12}, {2, 1e-12}};
  CHECK(vlm_plot_png(path, NULL, 0, NULL, 0, 0) == VLM_OK, "empty chart");
  CHECK(vlm_plot_png(path, odd, 3, NULL, 0, 0) == VLM_OK, "huge, tiny and NaN losses");
  CHECK(vlm_plot_png(path, odd + 2, 1, NULL, 0, 0) == VLM_OK, "one tiny loss");
  vlm_log_point big[2] = {{0, 3}, {123456789, 2}};
  CHECK(vlm_plot_png(path, big, 2, NULL, 0, 0) == VLM_OK, "a very long run");
  rgb = read_png(path, &W, &H);
  CHECK(rgb && find_text(rgb, W, H, "100M", 1, 40, VLM_CHART_BOT_Y0, W, H, &ty) >= 0, "step label 100M");
  free(rgb);
  unlink(path);
  rmdir(dir);
}

int main(int argc, char **argv) {
  test_widths();
  test_glyph_pixels();
  test_clipping();
  test_chart();
  return vt_finish();
}
