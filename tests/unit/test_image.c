/* Image decoding and CLIP preprocessing against PIL + torchvision.
 *
 *   - every image in ../shared/data/images vs fixtures/preprocess/<name>.safetensors:
 *     crop_u8 within one level on >= 99.9% of values, pixels within the matching
 *     tolerance (prints the exact / within-one fractions per image);
 *   - truncated.jpg (PIL refuses it) and crafted bad inputs fail cleanly, naming the file;
 *   - the max-pixels guard fires from the header (PNG and JPEG claiming huge sizes);
 *   - resampler properties (identity, constant images, PNG round trips of every colour
 *     type with libpng's writer), resize-mode geometry, RandomResizedCrop determinism. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "datasets/datasets.h"
#include "gradcheck.h"

static char g_dir[4096];

static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

static void write_raw(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); abort(); }
  if (n && fwrite(p, 1, n, f) != n) { perror(path); abort(); }
  fclose(f);
}

static uint8_t *read_raw(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)sz + 1);
  if (fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); fclose(f); return NULL; }
  fclose(f);
  *n = (size_t)sz;
  return p;
}

/* ------------------------------------------------------------ fixtures */
static const char *k_images[] = {"astronaut.png", "block.png", "camera.png", "chelsea.png",
                                 "horse.png", "palette_color.png", "retina.jpg", "rocket.jpg"};

static void test_fixtures(const char *shared) {
  char img_path[4096], fx_path[4096];
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, 224);
  const int64_t n = 3 * 224 * 224;
  uint8_t *u8 = malloc(n);
  float *px = vt_alloc(n), *ref_px = vt_alloc(n);
  for (size_t i = 0; i < sizeof k_images / sizeof *k_images; i++) {
    snprintf(img_path, sizeof img_path, "%s/data/images/%s", shared, k_images[i]);
    char stem[256];
    snprintf(stem, sizeof stem, "%s", k_images[i]);
    *strrchr(stem, '.') = 0;
    snprintf(fx_path, sizeof fx_path, "%s/fixtures/preprocess/%s.safetensors", shared, stem);
    vlm_safetensors st;
    if (vlm_st_open(&st, fx_path) != VLM_OK) {
      CHECK(0, "fixture %s: %s", fx_path, vlm_last_error());
      continue;
    }
    const vlm_st_entry *ec = vlm_st_find(&st, "crop_u8"), *ep = vlm_st_find(&st, "pixels");
    CHECK(ec && ep && ec->dtype == VLM_U8 && ec->end - ec->begin == (uint64_t)n, "%s: fixture entries", fx_path);
    if (!ec || !ep) { vlm_st_close(&st); continue; }
    CHECK(vlm_st_read_f32(&st, ep, ref_px, n) == VLM_OK, "read pixels");
    vlm_image img;
    vlm_status s = vlm_image_decode_file(img_path, NULL, &img);
    CHECK(s == VLM_OK, "%s: decode: %s", img_path, vlm_last_error());
    if (s) { vlm_st_close(&st); continue; }
    const char *mode = vlm_st_meta(&st, "mode");
    CHECK(mode && !strcmp(mode, vlm_img_mode_name(img.mode)), "%s: mode %s, PIL says %s", k_images[i],
          vlm_img_mode_name(img.mode), mode ? mode : "?");
    s = vlm_preprocess_image(&img, &cfg, u8, px);
    CHECK(s == VLM_OK, "%s: preprocess: %s", img_path, vlm_last_error());
    const uint8_t *ref = ec->data;
    int64_t exact = 0, one = 0;
    int worst = 0;
    for (int64_t k = 0; k < n; k++) {
      int d = abs((int)u8[k] - (int)ref[k]);
      exact += d == 0;
      one += d <= 1;
      if (d > worst) worst = d;
    }
    /* pixels: a one-level difference in crop_u8 is 1/255/std <= 0.0151; otherwise float32 exact. */
    double maxdiff_px = 0;
    int64_t px_bad = 0;
    for (int64_t k = 0; k < n; k++) {
      int c = (int)(k / (224 * 224));
      double tol = (u8[k] == ref[k] ? 1e-6 : 1.0 / 255.0 / cfg.std[c] + 1e-6) * (abs((int)u8[k] - ref[k]) <= 1);
      double d = fabs((double)px[k] - ref_px[k]);
      if (d > maxdiff_px) maxdiff_px = d;
      if (!(d <= tol)) px_bad++;
    }
    double fe = (double)exact / n, f1 = (double)one / n;
    printf("%-18s mode %-4s %4dx%-4d exact %.6f within-one %.6f max diff %d levels; pixels max |diff| %.3g\n",
           k_images[i], vlm_img_mode_name(img.mode), img.w, img.h, fe, f1, worst, maxdiff_px);
    CHECK(f1 >= 0.999, "%s: only %.5f of crop_u8 within one level", k_images[i], f1);
    CHECK(px_bad <= (int64_t)(0.001 * n), "%s: %lld pixels outside tolerance", k_images[i], (long long)px_bad);
    vlm_image_free(&img);
    vlm_st_close(&st);
  }
  free(u8);
  free(px);
  free(ref_px);

  /* truncated.jpg: PIL refuses it; so must we, naming the file. */
  snprintf(img_path, sizeof img_path, "%s/data/images/truncated.jpg", shared);
  vlm_image img;
  vlm_status s = vlm_image_decode_file(img_path, NULL, &img);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "truncated.jpg") && strstr(vlm_last_error(), "truncated"),
        "truncated.jpg: status %d, message '%s'", s, vlm_last_error());
  CHECK(img.data == NULL, "no image on error");
}

/* ------------------------------------------------------------ crafted files */
/* Write a PNG with libpng: rows of `bytes_per_row`, given colour type / depth / interlace. */
static void write_png(const char *path, int w, int h, int ct, int bd, int interlace, const uint8_t *pix,
                      const png_color *pal, int npal, const uint8_t *trns, int ntrns) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); abort(); }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) { fprintf(stderr, "png write failed\n"); abort(); }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bd, ct,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (pal) png_set_PLTE(png, info, pal, npal);
  if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
  png_write_info(png, info);
  size_t rb = png_get_rowbytes(png, info);
  png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)pix + (size_t)y * rb;
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  fclose(f);
}

/* Write a JPEG with libjpeg: comps 1 (gray), 3 (RGB) or 4 (CMYK, stored as given). */
static void write_jpeg(const char *path, int w, int h, int comps, const uint8_t *pix, int quality, int progressive) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); abort(); }
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)pix + (size_t)c.next_scanline * w * comps;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  fclose(f);
}

/* Expect a decode failure whose message names the file and contains `what`. */
static void expect_fail(const char *path, const vlm_decode_opts *o, const char *what, const char *label) {
  vlm_image img;
  vlm_status s = vlm_image_decode_file(path, o, &img);
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  CHECK(s != VLM_OK && strstr(vlm_last_error(), base) && (!what || strstr(vlm_last_error(), what)),
        "%s: status %d, message '%s' (want '%s')", label, s, s ? vlm_last_error() : "", what ? what : "");
  CHECK(img.data == NULL, "%s: no pixels on error", label);
  if (s == VLM_OK) vlm_image_free(&img);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static void test_png_roundtrip(void) {
  char p[4200];
  enum { W = 13, H = 7 };
  uint8_t src[W * H * 8], rgb8[W * H * 4];
  vlm_rng r;
  vlm_rng_seed(&r, 11);
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)vlm_rng_below(&r, 256);
  struct { int ct, bd, ch; vlm_img_mode mode; } cases[] = {
    {PNG_COLOR_TYPE_GRAY, 8, 1, VLM_IMG_L}, {PNG_COLOR_TYPE_GRAY, 16, 1, VLM_IMG_L},
    {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 2, VLM_IMG_LA}, {PNG_COLOR_TYPE_GRAY_ALPHA, 16, 2, VLM_IMG_LA},
    {PNG_COLOR_TYPE_RGB, 8, 3, VLM_IMG_RGB}, {PNG_COLOR_TYPE_RGB, 16, 3, VLM_IMG_RGB},
    {PNG_COLOR_TYPE_RGB_ALPHA, 8, 4, VLM_IMG_RGBA}, {PNG_COLOR_TYPE_RGB_ALPHA, 16, 4, VLM_IMG_RGBA},
  };
  for (int interlace = 0; interlace < 2; interlace++)
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
      tpath(p, sizeof p, "rt.png");
      write_png(p, W, H, cases[k].ct, cases[k].bd, interlace, src, NULL, 0, NULL, 0);
      vlm_image img;
      vlm_status s = vlm_image_decode_file(p, NULL, &img);
      CHECK(s == VLM_OK, "png ct %d bd %d: %s", cases[k].ct, cases[k].bd, vlm_last_error());
      if (s) continue;
      CHECK(img.mode == cases[k].mode && img.w == W && img.h == H, "png ct %d bd %d: mode %s %dx%d", cases[k].ct,
            cases[k].bd, vlm_img_mode_name(img.mode), img.w, img.h);
      int bytes = cases[k].bd / 8, bad = 0;
      for (int i = 0; i < W * H * cases[k].ch; i++) bad += img.data[i] != src[i * bytes];  /* high byte (big endian) */
      CHECK(bad == 0, "png ct %d bd %d interlace %d: %d samples differ", cases[k].ct, cases[k].bd, interlace, bad);
      vlm_image_free(&img);
    }
  /* Low-depth gray: 2/4-bit scaled to 0..255 (PIL's L;2 / L;4), 1-bit -> mode 1 with 0/255. */
  for (int bd = 1; bd <= 4; bd *= 2) {
    int rb = (W * bd + 7) / 8;
    uint8_t packed[H * 8];
    for (int y = 0; y < H; y++)
      for (int b = 0; b < rb; b++) packed[y * rb + b] = src[y * rb + b];
    tpath(p, sizeof p, "low.png");
    write_png(p, W, H, PNG_COLOR_TYPE_GRAY, bd, 0, packed, NULL, 0, NULL, 0);
    vlm_image img;
    vlm_status s = vlm_image_decode_file(p, NULL, &img);
    CHECK(s == VLM_OK && img.mode == (bd == 1 ? VLM_IMG_1 : VLM_IMG_L), "gray %d-bit: %s", bd, vlm_last_error());
    if (s) continue;
    int bad = 0, maxv = (1 << bd) - 1;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int bit = x * bd, v = (packed[y * rb + bit / 8] >> (8 - bd - bit % 8)) & maxv;
        bad += img.data[y * W + x] != v * 255 / maxv;
      }
    CHECK(bad == 0, "gray %d-bit: %d pixels differ", bd, bad);
    vlm_image_free(&img);
  }
  /* Palette (4-bit, with tRNS): indices and palette kept; RGB conversion ignores tRNS like PIL. */
  png_color pal[16];
  uint8_t trns[16];
  for (int i = 0; i < 16; i++) {
    pal[i].red = (uint8_t)(i * 16);
    pal[i].green = (uint8_t)(255 - i * 16);
    pal[i].blue = (uint8_t)(i * 7);
    trns[i] = (uint8_t)(i * 17);
  }
  int rb = (W * 4 + 7) / 8;
  tpath(p, sizeof p, "pal.png");
  write_png(p, W, H, PNG_COLOR_TYPE_PALETTE, 4, 1, src, pal, 16, trns, 16);
  vlm_image img, rgb;
  vlm_status s = vlm_image_decode_file(p, NULL, &img);
  CHECK(s == VLM_OK && img.mode == VLM_IMG_P && img.palette_n == 16, "palette png: %s", vlm_last_error());
  if (!s) {
    CHECK(vlm_image_to_rgb(&img, &rgb) == VLM_OK, "to rgb");
    int bad = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int idx = (src[y * rb + x / 2] >> (x % 2 ? 0 : 4)) & 15;
        bad += img.data[y * W + x] != idx || rgb.data[(y * W + x) * 3] != pal[idx].red ||
               rgb.data[(y * W + x) * 3 + 1] != pal[idx].green || rgb.data[(y * W + x) * 3 + 2] != pal[idx].blue;
      }
    CHECK(bad == 0, "palette png: %d pixels differ", bad);
    vlm_image_free(&rgb);
    vlm_image_free(&img);
  }
  (void)rgb8;
}

static void test_jpeg_kinds(void) {
  char p[4200];
  enum { W = 40, H = 24 };
  uint8_t pix[W * H * 4];
  /* Smooth content so quality 100 reproduces it within a few levels. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 4; c++) pix[(y * W + x) * 4 + c] = (uint8_t)(40 + 3 * x + 2 * y + 20 * c);
  uint8_t rgb[W * H * 3], gray[W * H];
  for (int i = 0; i < W * H; i++) {
    memcpy(rgb + 3 * i, pix + 4 * i, 3);
    gray[i] = pix[4 * i];
  }
  struct { int comps, prog; const uint8_t *src; vlm_img_mode mode; } cases[] = {
    {3, 0, rgb, VLM_IMG_RGB}, {3, 1, rgb, VLM_IMG_RGB}, {1, 0, gray, VLM_IMG_L}, {1, 1, gray, VLM_IMG_L},
    {4, 0, pix, VLM_IMG_CMYK}, {4, 1, pix, VLM_IMG_CMYK}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    tpath(p, sizeof p, "k.jpg");
    write_jpeg(p, W, H, cases[k].comps, cases[k].src, 100, cases[k].prog);
    vlm_image img;
    vlm_status s = vlm_image_decode_file(p, NULL, &img);
    CHECK(s == VLM_OK, "jpeg comps %d prog %d: %s", cases[k].comps, cases[k].prog, vlm_last_error());
    if (s) continue;
    CHECK(img.mode == cases[k].mode && img.w == W && img.h == H, "jpeg comps %d: mode %s", cases[k].comps,
          vlm_img_mode_name(img.mode));
    int worst = 0;
    for (int i = 0; i < W * H * cases[k].comps; i++) {
      int want = cases[k].src[i];
      if (cases[k].comps == 4) want = 255 - want;  /* stored Adobe-inverted, PIL inverts back */
      int d = abs(img.data[i] - want);
      if (d > worst) worst = d;
    }
    CHECK(worst <= 4, "jpeg comps %d prog %d: max diff %d", cases[k].comps, cases[k].prog, worst);
    vlm_image_free(&img);
  }
  /* CMYK -> RGB with PIL's formula: C=0 M=255 Y=255 K=0 (stored inverted) is pure red. */
  uint8_t cmyk[16 * 16 * 4];
  for (int i = 0; i < 16 * 16; i++) { cmyk[4 * i] = 255; cmyk[4 * i + 1] = 0; cmyk[4 * i + 2] = 0; cmyk[4 * i + 3] = 255; }
  tpath(p, sizeof p, "red_cmyk.jpg");
  write_jpeg(p, 16, 16, 4, cmyk, 100, 0);
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, 8);
  uint8_t out[3 * 8 * 8];
  CHECK(vlm_preprocess_file(p, NULL, &cfg, out, NULL) == VLM_OK, "cmyk preprocess: %s", vlm_last_error());
  CHECK(out[0] >= 253 && out[64] <= 2 && out[128] <= 2, "cmyk red: got %d %d %d", out[0], out[64], out[128]);

  /* Reduced-scale decode: 1/2, 1/4, 1/8 picked so the shorter side stays >= the target. */
  enum { BW = 256, BH = 160 };
  uint8_t *big = malloc(BW * BH * 3);
  for (int i = 0; i < BW * BH * 3; i++) big[i] = (uint8_t)(i * 7);
  tpath(p, sizeof p, "big.jpg");
  write_jpeg(p, BW, BH, 3, big, 90, 0);
  free(big);
  struct { int min_side, w, h; } red[] = {{0, 256, 160}, {100, 256, 160}, {80, 128, 80}, {40, 64, 40},
                                          {20, 32, 20}, {5, 32, 20}};
  for (size_t k = 0; k < sizeof red / sizeof *red; k++) {
    vlm_decode_opts o = {0, red[k].min_side};
    vlm_image img;
    vlm_status s = vlm_image_decode_file(p, &o, &img);
    CHECK(s == VLM_OK && img.w == red[k].w && img.h == red[k].h, "reduce %d: %dx%d, want %dx%d", red[k].min_side,
          img.w, img.h, red[k].w, red[k].h);
    vlm_image_free(&img);
  }
}

static void test_bad_inputs(void) {
  char p[4200], q[4200];
  vlm_image img;
  /* empty file, random bytes, text named .jpg, other formats */
  tpath(p, sizeof p, "empty.png");
  write_raw(p, "", 0);
  expect_fail(p, NULL, "empty file", "empty");
  uint8_t rnd[4096];
  vlm_rng r;
  vlm_rng_seed(&r, 5);
  for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)vlm_rng_below(&r, 256);
  rnd[0] = 0x42; rnd[1] = 0x00;
  tpath(p, sizeof p, "random.bin");
  write_raw(p, rnd, sizeof rnd);
  expect_fail(p, NULL, "unsupported format", "random bytes");
  tpath(p, sizeof p, "notes.jpg");
  write_raw(p, "this is a text file, not a JPEG\n", 32);
  expect_fail(p, NULL, "unsupported format", "text named .jpg");
  tpath(p, sizeof p, "anim.png");
  write_raw(p, "GIF89a\x01\x00\x01\x00", 10);
  expect_fail(p, NULL, "GIF", "gif named .png");
  tpath(p, sizeof p, "missing.jpg");
  expect_fail(p, NULL, "cannot open", "missing file");

  /* A valid PNG, then: bad CRC in IDAT, IDAT cut at several points. */
  enum { W = 64, H = 48 };
  uint8_t pix[W * H * 3];
  for (int i = 0; i < W * H * 3; i++) pix[i] = (uint8_t)vlm_rng_below(&r, 256);
  tpath(p, sizeof p, "ok.png");
  write_png(p, W, H, PNG_COLOR_TYPE_RGB, 8, 0, pix, NULL, 0, NULL, 0);
  size_t n;
  uint8_t *png = read_raw(p, &n);
  CHECK(png && vlm_image_decode_file(p, NULL, &img) == VLM_OK, "valid png decodes");
  vlm_image_free(&img);
  size_t idat = 0;
  for (size_t off = 8; off + 8 <= n;) {
    uint32_t len = be32(png + off);
    if (!memcmp(png + off + 4, "IDAT", 4)) { idat = off; break; }
    off += 12 + len;
  }
  CHECK(idat > 0, "found IDAT");
  uint32_t idat_len = be32(png + idat);
  png[idat + 8 + idat_len / 2] ^= 0x5a;
  tpath(q, sizeof q, "badcrc.png");
  write_raw(q, png, n);
  expect_fail(q, NULL, "CRC", "png bad CRC");
  png[idat + 8 + idat_len / 2] ^= 0x5a;
  size_t cuts[] = {4, 8, 20, 33, idat + 4, idat + 8 + idat_len / 3, idat + 8 + idat_len - 1, n - 12};
  for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
    tpath(q, sizeof q, "cut.png");
    write_raw(q, png, cuts[k]);
    char label[64];
    snprintf(label, sizeof label, "png cut at %zu of %zu", cuts[k], n);
    expect_fail(q, NULL, NULL, label);
  }
  /* Huge declared size: IHDR says 100000 x 100000 (valid CRC), nothing after it. */
  uint8_t head[33];
  memcpy(head, png, 33);
  put_be32(head + 16, 100000);
  put_be32(head + 20, 100000);
  put_be32(head + 29, (uint32_t)crc32(0, head + 12, 17));
  tpath(q, sizeof q, "huge.png");
  write_raw(q, head, sizeof head);
  expect_fail(q, NULL, "max-pixels", "png 100000x100000");
  /* The limit is configurable: 64x48 = 3072 pixels. */
  vlm_decode_opts small = {3071, 0}, exact = {3072, 0};
  expect_fail(p, &small, "max-pixels", "png over a small limit");
  CHECK(vlm_image_decode_file(p, &exact, &img) == VLM_OK, "png at the limit decodes: %s", vlm_last_error());
  vlm_image_free(&img);
  free(png);

  /* JPEG: cut at several points, and a SOF claiming 60000 x 60000. */
  tpath(p, sizeof p, "ok.jpg");
  write_jpeg(p, W, H, 3, pix, 90, 0);
  uint8_t *jpg = read_raw(p, &n);
  CHECK(jpg && vlm_image_decode_file(p, NULL, &img) == VLM_OK, "valid jpeg decodes");
  vlm_image_free(&img);
  size_t jcuts[] = {2, 3, 10, 100, 300, n / 2, n - 100, n - 2};
  for (size_t k = 0; k < sizeof jcuts / sizeof *jcuts; k++) {
    tpath(q, sizeof q, "cut.jpg");
    write_raw(q, jpg, jcuts[k]);
    char label[64];
    snprintf(label, sizeof label, "jpeg cut at %zu of %zu", jcuts[k], n);
    expect_fail(q, NULL, NULL, label);
  }
  tpath(q, sizeof q, "cut.jpg");
  write_raw(q, jpg, n / 2);
  expect_fail(q, NULL, "truncated", "jpeg cut in the scan says truncated");
  size_t sof = 0;
  for (size_t i = 2; i + 9 < n; i++)
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) { sof = i; break; }
  CHECK(sof > 0, "found SOF0");
  jpg[sof + 5] = 0xEA; jpg[sof + 6] = 0x60;  /* height 60000 */
  jpg[sof + 7] = 0xEA; jpg[sof + 8] = 0x60;  /* width 60000 */
  tpath(q, sizeof q, "huge.jpg");
  write_raw(q, jpg, n);
  expect_fail(q, NULL, "max-pixels", "jpeg 60000x60000");
  free(jpg);

  /* Mutations of valid files: decode succeeds or fails cleanly (ASan watches). */
  const char *valid[] = {"ok.png", "ok.jpg", "pal.png", "k.jpg"};
  for (int v = 0; v < 4; v++) {
    uint8_t *b = read_raw(tpath(p, sizeof p, valid[v]), &n);
    if (!b) continue;
    uint8_t *m = malloc(n);
    for (int trial = 0; trial < 60; trial++) {
      memcpy(m, b, n);
      int flips = 1 + (int)vlm_rng_below(&r, 8);
      for (int f = 0; f < flips; f++) m[8 + vlm_rng_below(&r, n - 8)] = (uint8_t)vlm_rng_below(&r, 256);
      vlm_image im;
      vlm_status s = vlm_image_decode_mem(m, n, valid[v], NULL, &im);
      if (s == VLM_OK) {
        CHECK(im.data && im.w > 0 && im.h > 0, "mutated %s decoded to an empty image", valid[v]);
        vlm_image_free(&im);
      } else {
        CHECK(strstr(vlm_last_error(), valid[v]) != NULL, "mutated %s: message '%s'", valid[v], vlm_last_error());
      }
    }
    free(m);
    free(b);
  }
}

/* ------------------------------------------------------------ resampling and geometry */
static void test_resample(void) {
  vlm_rng r;
  vlm_rng_seed(&r, 3);
  /* Constant images stay constant under any resize; same size is a copy. */
  int sizes[][4] = {{17, 9, 5, 3}, {5, 3, 17, 9}, {100, 1, 7, 1}, {1, 1, 13, 4}, {300, 200, 224, 149}, {7, 7, 7, 3}};
  for (int k = 0; k < 6; k++) {
    int w = sizes[k][0], h = sizes[k][1], ow = sizes[k][2], oh = sizes[k][3];
    uint8_t *in = malloc((size_t)w * h * 3), *out = malloc((size_t)ow * oh * 3);
    for (int v = 0; v <= 255; v += 51) {
      memset(in, v, (size_t)w * h * 3);
      vlm_resample_bicubic_u8(in, w, h, 3, out, ow, oh);
      int bad = 0;
      for (int i = 0; i < ow * oh * 3; i++) bad += out[i] != v;
      CHECK(bad == 0, "constant %d %dx%d -> %dx%d: %d differ", v, w, h, ow, oh, bad);
    }
    free(in);
    free(out);
  }
  uint8_t a[6 * 5], b[6 * 5];
  for (int i = 0; i < 30; i++) a[i] = (uint8_t)vlm_rng_below(&r, 256);
  vlm_resample_bicubic_u8(a, 6, 5, 1, b, 6, 5);
  CHECK(!memcmp(a, b, 30), "identity resize is a copy");
  /* Hand-computed: 2 -> 1 averages with weights 1/2 (2^21 each in fixed point). */
  uint8_t two[2] = {10, 21}, one;
  vlm_resample_bicubic_u8(two, 2, 1, 1, &one, 1, 1);
  CHECK(one == 16, "2->1 average of 10 and 21 rounds to 16, got %d", one);  /* (31 * 2^21 + 2^21) >> 22 */
  /* RGBA premultiplied: opaque red beside transparent blue shrinks to red (PIL's RGBa), not purple. */
  vlm_image rgba, small;
  vlm_image_alloc(&rgba, 2, 1, VLM_IMG_RGBA, 0);
  const uint8_t px[8] = {255, 0, 0, 255, 0, 0, 255, 0};
  memcpy(rgba.data, px, 8);
  CHECK(vlm_image_resize(&rgba, 1, 1, &small) == VLM_OK, "rgba resize");
  CHECK(small.data[0] == 255 && small.data[1] == 0 && small.data[2] == 0 && small.data[3] == 128,
        "rgba premultiplied: got %d %d %d %d", small.data[0], small.data[1], small.data[2], small.data[3]);
  vlm_image_free(&small);
  vlm_image_free(&rgba);
  /* LA likewise. */
  vlm_image la;
  vlm_image_alloc(&la, 2, 1, VLM_IMG_LA, 0);
  const uint8_t lpx[4] = {200, 255, 0, 0};
  memcpy(la.data, lpx, 4);
  /* premultiplied 200 and 0 average to 100 at alpha 128; 255 * 100 / 128 = 199 (PIL's integer un-premultiply) */
  CHECK(vlm_image_resize(&la, 1, 1, &small) == VLM_OK && small.data[0] == 199 && small.data[1] == 128,
        "la premultiplied: got %d %d", small.data[0], small.data[1]);
  vlm_image_free(&small);
  vlm_image_free(&la);
  /* Nearest for P: 2x1 indices to 5x1: floor((x + 0.5) * 2 / 5) = 0 0 0 1 1 (x=2: 1.0 -> 1? (2.5*0.4)=1.0). */
  vlm_image pimg;
  vlm_image_alloc(&pimg, 2, 1, VLM_IMG_P, 0);
  pimg.data[0] = 3; pimg.data[1] = 9;
  CHECK(vlm_image_resize(&pimg, 4, 1, &small) == VLM_OK, "p resize");
  CHECK(small.data[0] == 3 && small.data[1] == 3 && small.data[2] == 9 && small.data[3] == 9, "p nearest: %d %d %d %d",
        small.data[0], small.data[1], small.data[2], small.data[3]);
  vlm_image_free(&small);
  vlm_image_free(&pimg);
}

static void test_geometry(void) {
  int ow, oh;
  vlm_resize_shortest_size(640, 427, 224, &ow, &oh);
  CHECK(ow == 335 && oh == 224, "640x427 -> %dx%d", ow, oh);
  vlm_resize_shortest_size(427, 640, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 335, "427x640 -> %dx%d", ow, oh);
  vlm_resize_shortest_size(451, 300, 224, &ow, &oh);
  CHECK(ow == 336 && oh == 224, "451x300 -> %dx%d", ow, oh);
  vlm_resize_shortest_size(10, 10, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 224, "10x10 -> %dx%d", ow, oh);

  /* longest: 640x427 white -> 224x149 centered: rows 37..185 white, the rest 0 (pad fill). */
  vlm_image img, out;
  vlm_image_alloc(&img, 640, 427, VLM_IMG_RGB, 0);
  memset(img.data, 255, (size_t)640 * 427 * 3);
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, 224);
  cfg.mode = VLM_RESIZE_LONGEST;
  CHECK(vlm_preprocess_rgb(&img, &cfg, &out) == VLM_OK && out.w == 224 && out.h == 224, "longest");
  int bad = 0;
  for (int y = 0; y < 224; y++)
    for (int x = 0; x < 224; x++) bad += out.data[(y * 224 + x) * 3] != ((y >= 37 && y < 186) ? 255 : 0);
  CHECK(bad == 0, "longest: %d pixels off the padded layout", bad);
  vlm_image_free(&out);
  /* squash: all white. */
  cfg.mode = VLM_RESIZE_SQUASH;
  CHECK(vlm_preprocess_rgb(&img, &cfg, &out) == VLM_OK && out.w == 224 && out.h == 224, "squash");
  bad = 0;
  for (int i = 0; i < 224 * 224 * 3; i++) bad += out.data[i] != 255;
  CHECK(bad == 0, "squash: %d pixels not white", bad);
  vlm_image_free(&out);
  /* shortest: the crop offset uses round-half-even: 335 - 224 = 111 -> round(55.5) = 56. Mark column 56. */
  vlm_image r335;
  vlm_image_alloc(&r335, 335, 224, VLM_IMG_L, 1);
  for (int y = 0; y < 224; y++) r335.data[y * 335 + 56] = 200;
  cfg.mode = VLM_RESIZE_SHORTEST;
  CHECK(vlm_preprocess_rgb(&r335, &cfg, &out) == VLM_OK, "shortest");
  CHECK(out.data[0] == 200 && out.data[3] == 0, "crop offset 56: got %d %d", out.data[0], out.data[3]);
  vlm_image_free(&out);
  vlm_image_free(&r335);
  /* normalization: the float32 steps of ToTensor + Normalize. */
  vlm_image_alloc(&r335, 4, 4, VLM_IMG_RGB, 0);
  for (int i = 0; i < 48; i++) r335.data[i] = (uint8_t)(i * 5);
  vlm_preprocess_cfg_default(&cfg, 4);
  float px[48];
  uint8_t u8[48];
  CHECK(vlm_preprocess_image(&r335, &cfg, u8, px) == VLM_OK, "normalize");
  bad = 0;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 16; i++) {
      float x = (float)(uint8_t)(i * 3 * 5 + c * 5) / 255.0f;
      bad += px[c * 16 + i] != (x - cfg.mean[c]) / cfg.std[c] || u8[c * 16 + i] != (uint8_t)(i * 15 + c * 5);
    }
  CHECK(bad == 0, "normalize: %d values differ", bad);
  vlm_image_free(&r335);

  /* RandomResizedCrop: seeded, deterministic, right size, varies with the seed. */
  vlm_image o1, o2, o3;
  vlm_rng r1, r2, r3;
  vlm_image_free(&img);
  vlm_image_alloc(&img, 400, 380, VLM_IMG_RGB, 0);
  for (int i = 0; i < 400 * 380 * 3; i++) img.data[i] = (uint8_t)(i * 31 / 7);
  vlm_rng_seed(&r1, 42); vlm_rng_seed(&r2, 42); vlm_rng_seed(&r3, 43);
  CHECK(vlm_random_resized_crop(&img, 64, 0.9, 1.0, 3.0 / 4, 4.0 / 3, &r1, &o1) == VLM_OK, "rrc");
  CHECK(vlm_random_resized_crop(&img, 64, 0.9, 1.0, 3.0 / 4, 4.0 / 3, &r2, &o2) == VLM_OK, "rrc");
  CHECK(vlm_random_resized_crop(&img, 64, 0.9, 1.0, 3.0 / 4, 4.0 / 3, &r3, &o3) == VLM_OK, "rrc");
  CHECK(o1.w == 64 && o1.h == 64 && o1.mode == VLM_IMG_RGB, "rrc size");
  CHECK(!memcmp(o1.data, o2.data, 64 * 64 * 3), "rrc same seed, same crop");
  CHECK(memcmp(o1.data, o3.data, 64 * 64 * 3) != 0, "rrc other seed, other crop");
  vlm_image_free(&o1); vlm_image_free(&o2); vlm_image_free(&o3);
  /* Fallback: a 1000x10 strip never fits the ratio range -> central crop 13x10 (round(10 * 4/3)). */
  vlm_image strip, so;
  vlm_image_alloc(&strip, 1000, 10, VLM_IMG_L, 0);
  for (int i = 0; i < 10000; i++) strip.data[i] = (uint8_t)(i % 1000 < 500 ? 0 : 255);
  CHECK(vlm_random_resized_crop(&strip, 8, 0.9, 1.0, 3.0 / 4, 4.0 / 3, &r1, &so) == VLM_OK, "rrc fallback");
  CHECK(so.w == 8 && so.h == 8, "rrc fallback size");
  vlm_image_free(&so);
  vlm_image_free(&strip);
  vlm_image_free(&img);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  snprintf(g_dir, sizeof g_dir, "/tmp/vlm_test_image_XXXXXX");
  if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
  if (shared) test_fixtures(shared);
  else printf("no ../shared: fixture comparison skipped\n");
  test_png_roundtrip();
  test_jpeg_kinds();
  test_bad_inputs();
  test_resample();
  test_geometry();
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd)) {}
  return vt_finish();
}
