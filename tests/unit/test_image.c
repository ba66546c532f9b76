/* Image decoding and CLIP preprocessing against PIL + torchvision.
 *
 *   - every image in ../shared/data/images vs fixtures/preprocess/<name>.safetensors:
 *     crop_u8 within one level on >= 99.9% of values, pixels within the matching
 *     tolerance (prints the exact / within-one fractions per image);
 *   - truncated.jpg (PIL refuses it) and crafted bad inputs fail cleanly, naming the file;
 *   - the max-pixels guard fires from the header (PNG and JPEG claiming huge sizes);
 *   - WebP written by libwebp's encoder: lossless round trips exactly (RGB, RGBA, opaque
 *     RGBA -> RGB, animated -> first frame), lossy equals libwebp's own decode, truncated /
 *     corrupt / huge-header files fail naming the file;
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
#include <sys/resource.h>
#include <zlib.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "datasets/datasets.h"
#include "gradcheck.h"

static char g_dir[4096];

static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
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

/* The first cuts[i] bytes of b (n bytes), i < k, each written to cutC.EXT and refused by the decoder,
 * the message naming the file (and holding what, when not NULL); labelled "KIND cut at C of N". */
static void expect_cuts_fail(const char *ext, const char *kind, const uint8_t *b, size_t n, const size_t *cuts,
                             size_t k, const char *what) {
  for (size_t i = 0; i < k; i++) {
    char name[64], label[96], p[4200];
    snprintf(name, sizeof name, "cut%zu.%s", cuts[i], ext);
    snprintf(label, sizeof label, "%s cut at %zu of %zu", kind, cuts[i], n);
    tpath(p, sizeof p, name);
    vt_write_file(p, b, cuts[i]);
    expect_fail(p, NULL, what, label);
  }
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static void test_png_roundtrip(void) {
  char p[4200];
  enum { W = 13, H = 7 };
  uint8_t src[W * H * 8];
  vlm_rng r;
  vlm_rng_seed(&r, 11);
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)vlm_rng_below(&r, 256);
  struct { int ct, bd, ch; vlm_img_mode mode; } cases[] = {
    {PNG_COLOR_TYPE_GRAY, 8, 1, VLM_IMG_L}, {PNG_COLOR_TYPE_GRAY, 16, 1, VLM_IMG_I16},
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
      if (img.mode == VLM_IMG_I16) /* all 16 bits, as native uint16 */
        for (int i = 0; i < W * H; i++) {
          uint16_t v;
          memcpy(&v, img.data + 2 * i, 2);
          bad += v != (src[2 * i] << 8 | src[2 * i + 1]);
        }
      else
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
    vlm_decode_opts o = {.jpeg_reduce_min_side = red[k].min_side};
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
  vt_write_file(p, "", 0);
  expect_fail(p, NULL, "empty file", "empty");
  uint8_t rnd[4096];
  vlm_rng r;
  vlm_rng_seed(&r, 5);
  for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)vlm_rng_below(&r, 256);
  rnd[0] = 0x42; rnd[1] = 0x00;
  tpath(p, sizeof p, "random.bin");
  vt_write_file(p, rnd, sizeof rnd);
  expect_fail(p, NULL, "unsupported format", "random bytes");
  tpath(p, sizeof p, "notes.jpg");
  vt_write_file(p, "this is a text file, not a JPEG\n", 32);
  expect_fail(p, NULL, "unsupported format", "text named .jpg");
  tpath(p, sizeof p, "anim.png");
  vt_write_file(p, "GIF89a\x01\x00\x01\x00", 10);
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
  uint8_t *png = vt_read_file(p, &n);
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
  vt_write_file(q, png, n);
  expect_fail(q, NULL, "CRC", "png bad CRC");
  png[idat + 8 + idat_len / 2] ^= 0x5a;
  size_t cuts[] = {4, 8, 20, 33, idat + 4, idat + 8 + idat_len / 3, idat + 8 + idat_len - 1};
  expect_cuts_fail("png", "png", png, n, cuts, sizeof cuts / sizeof *cuts, NULL);
  /* Without IEND (PIL reads it too: nothing after the image data is needed). */
  tpath(q, sizeof q, "noiend.png");
  vt_write_file(q, png, n - 12);
  CHECK(vlm_image_decode_file(q, NULL, &img) == VLM_OK && img.w == W, "png without IEND: %s", vlm_last_error());
  vlm_image_free(&img);
  /* A bad CRC in an ancillary chunk placed before IDAT: PIL refuses it, so do we. */
  {
    uint8_t *b = malloc(n + 64);
    size_t o = 33;  /* after signature + IHDR */
    memcpy(b, png, o);
    const char txt[] = "Comment\0hello";
    put_be32(b + o, sizeof txt - 1);
    memcpy(b + o + 4, "tEXt", 4);
    memcpy(b + o + 8, txt, sizeof txt - 1);
    put_be32(b + o + 8 + sizeof txt - 1, (uint32_t)crc32(0, b + o + 4, 4 + sizeof txt - 1) ^ 1u);
    size_t added = 12 + sizeof txt - 1;
    memcpy(b + o + added, png + o, n - o);
    tpath(q, sizeof q, "badtext.png");
    vt_write_file(q, b, n + added);
    expect_fail(q, NULL, "CRC", "png ancillary CRC");
    put_be32(b + o + 8 + sizeof txt - 1, (uint32_t)crc32(0, b + o + 4, 4 + sizeof txt - 1));
    vt_write_file(q, b, n + added);
    CHECK(vlm_image_decode_file(q, NULL, &img) == VLM_OK, "png with a tEXt chunk: %s", vlm_last_error());
    vlm_image_free(&img);
    /* The same tEXt declaring 2,113,929,241 bytes in a small file (found by fuzzing):
     * libpng would allocate the declared length; it fails cleanly without that. */
    put_be32(b + o, 0x7E000019u);
    tpath(q, sizeof q, "hugetext.png");
    vt_write_file(q, b, n + added);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    expect_fail(q, NULL, NULL, "png tEXt with a 2 GB length");
    getrusage(RUSAGE_SELF, &ru1);
    CHECK(ru1.ru_maxrss - ru0.ru_maxrss < 256 * 1024, "png tEXt with a 2 GB length: peak RSS grew %ld KB",
          ru1.ru_maxrss - ru0.ru_maxrss);
    free(b);
    /* A real 1 MB tEXt still decodes (within the allocation bound). */
    size_t tl = 1 << 20;
    b = malloc(n + tl + 64);
    memcpy(b, png, o);
    put_be32(b + o, (uint32_t)tl);
    memcpy(b + o + 4, "tEXt", 4);
    memcpy(b + o + 8, "Comment", 8);
    memset(b + o + 16, 'x', tl - 8);
    put_be32(b + o + 8 + tl, (uint32_t)crc32(0, b + o + 4, (uInt)(4 + tl)));
    memcpy(b + o + 12 + tl, png + o, n - o);
    tpath(q, sizeof q, "bigtext.png");
    vt_write_file(q, b, n + 12 + tl);
    CHECK(vlm_image_decode_file(q, NULL, &img) == VLM_OK && img.w == W, "png with a 1 MB tEXt: %s",
          vlm_last_error());
    vlm_image_free(&img);
    free(b);
  }
  /* Huge declared size: IHDR says 100000 x 100000 (valid CRC), nothing after it. */
  uint8_t head[33];
  memcpy(head, png, 33);
  put_be32(head + 16, 100000);
  put_be32(head + 20, 100000);
  put_be32(head + 29, (uint32_t)crc32(0, head + 12, 17));
  tpath(q, sizeof q, "huge.png");
  vt_write_file(q, head, sizeof head);
  expect_fail(q, NULL, "max-pixels", "png 100000x100000");
  /* The limit is configurable: 64x48 = 3072 pixels. */
  vlm_decode_opts small = {.max_pixels = 3071}, exact = {.max_pixels = 3072};
  expect_fail(p, &small, "max-pixels", "png over a small limit");
  CHECK(vlm_image_decode_file(p, &exact, &img) == VLM_OK, "png at the limit decodes: %s", vlm_last_error());
  vlm_image_free(&img);
  free(png);

  /* JPEG: cut at several points, and a SOF claiming 60000 x 60000. */
  tpath(p, sizeof p, "ok.jpg");
  write_jpeg(p, W, H, 3, pix, 90, 0);
  uint8_t *jpg = vt_read_file(p, &n);
  CHECK(jpg && vlm_image_decode_file(p, NULL, &img) == VLM_OK, "valid jpeg decodes");
  vlm_image_free(&img);
  size_t jcuts[] = {2, 3, 10, 100, 300, n / 2, n - 100, n - 2};
  expect_cuts_fail("jpg", "jpeg", jpg, n, jcuts, sizeof jcuts / sizeof *jcuts, NULL);
  tpath(q, sizeof q, "cut.jpg");
  vt_write_file(q, jpg, n / 2);
  expect_fail(q, NULL, "truncated", "jpeg cut in the scan says truncated");
  /* Progressive: the scans come one after another; a cut between or inside them is truncation too. */
  {
    char pp[4200];
    tpath(pp, sizeof pp, "prog.jpg");
    write_jpeg(pp, W, H, 3, pix, 90, 1);
    size_t pn;
    uint8_t *pj = vt_read_file(pp, &pn);
    CHECK(pj && vlm_image_decode_file(pp, NULL, &img) == VLM_OK, "valid progressive jpeg decodes");
    vlm_image_free(&img);
    size_t pcuts[7];
    for (int k = 1; k < 8; k++) pcuts[k - 1] = pn * (size_t)k / 8;
    expect_cuts_fail("jpg", "progressive jpeg", pj, pn, pcuts, 7, NULL);
    free(pj);
  }
  size_t sof = 0;
  for (size_t i = 2; i + 9 < n; i++)
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) { sof = i; break; }
  CHECK(sof > 0, "found SOF0");
  jpg[sof + 5] = 0xEA; jpg[sof + 6] = 0x60;  /* height 60000 */
  jpg[sof + 7] = 0xEA; jpg[sof + 8] = 0x60;  /* width 60000 */
  tpath(q, sizeof q, "huge.jpg");
  vt_write_file(q, jpg, n);
  expect_fail(q, NULL, "max-pixels", "jpeg 60000x60000");
  free(jpg);

  /* Mutations of valid files: decode succeeds or fails cleanly (ASan watches). */
  const char *valid[] = {"ok.png", "ok.jpg", "pal.png", "k.jpg"};
  for (int v = 0; v < 4; v++) {
    uint8_t *b = vt_read_file(tpath(p, sizeof p, valid[v]), &n);
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
  int64_t ow, oh;
  vlm_resize_shortest_size(640, 427, 224, &ow, &oh);
  CHECK(ow == 335 && oh == 224, "640x427 -> %lldx%lld", (long long)ow, (long long)oh);
  vlm_resize_shortest_size(427, 640, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 335, "427x640 -> %lldx%lld", (long long)ow, (long long)oh);
  vlm_resize_shortest_size(451, 300, 224, &ow, &oh);
  CHECK(ow == 336 && oh == 224, "451x300 -> %lldx%lld", (long long)ow, (long long)oh);
  vlm_resize_shortest_size(10, 10, 224, &ow, &oh);
  CHECK(ow == 224 && oh == 224, "10x10 -> %lldx%lld", (long long)ow, (long long)oh);

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

/* ------------------------------------------------------------ PIL golden resizes */
/* Pillow 13.0.0 Image.resize(BICUBIC) of a pattern image, bytes as hex: covers the pass
 * order (vertical first when h - oh > 2 (w - ow)), upscaling, L, premultiplied RGBA/LA, CMYK. */
static const struct { const char *mode; int w, h, ow, oh; const char *hex; } k_golden[] = {
  {"RGB", 31, 67, 11, 9, "779979847f6e7b868582966b8572797e8e808a7f64818084899271877a75838b79768177778185857a8075897982738278807d7e7e8183767c7b896f80777e79857a7592727b7a797a8b7f7a8d747e7f83779a76827e6f7a8a8580946985737d7d8f7c6e79736e7d8e7e75846c83807e779477807975828b857b7f73897d81778574817a768e74787e7e82877979897b7a79817491727d777579897f7b8b717e7d82779a767f7d8364858b83727b6e807c757d8f7079756d7f937e79816a83857e7994758175798f84818979818a7d738d84857f7a7b8d74797d7b83837a7b887779778173916f78797f6a81878481876a808278878a7e7f8464878d8275786b808276808c6e7b73788d8498817a7f89808788838e8772799082878775809081768b7f85837a7d9371"},
  {"RGB", 31, 67, 11, 60, "2e639991b1ae6b596a5c949ca292404262a19ab9626d5d70669e9fa6944a4568959daa96726a897da3c3a0897a6182bca6afa076708686acbfa48c806989afa4c15789796081819da160597986889e6c868f7466888775a6673f7f8d90a4714597776d71b3668c62465270a591ae366c448e71be709162525881ac98b13a6f4f9c7da17b79ac6d4e96719dd870518d7583b872828d7555a477a4aa76558d7c8bc178917274619e8bb68a366e816b8aaa69ab683c618c8dc0953b71667394b16bad6c44668f95a4cd638a58605c95adbea73f515ea7a59b6e8c4369669fb0c264445a6bafa4a47662517685af65b2585c588287c04d4f714e7f8e7d69b5366465808b83525660507d758f89a0424c4679a3ae735b62477e799991a342544e7fa5b6775f5f508574a9957d538e4776a1a28c7b4b5191819e87855f854d7d9fa990344f598889a36b92654e7b7c819297afad356a76b28bb74b53867a8a9a9a6ab13d757dba4dbe4f5087778b73b13d538c7a4d98907aae433e82b57cb74c5690895aa0927fb352458abe7db954495873639cc49f7c68346fb498a79a325c7d73a5ca747e6f3778a69fac7f376081838aa07f81838775a28b908e7179926b8ca48a888a6381ab8d957c77827e6a9dae9e856b5d82ada4c47b7b6e8c7cbda9ab9571627cb9b18c7e7f7d9b858ab1b08b745d8575a86881585a668b968a8e476e5d8e66af66475b5077949d4c903c656485728bc45d466a7c73a4a971a3504f73b690c9664a6e7c7cb0ad74a44d567cbba1d96b53897976a14797c83c487c7facd4215c937b80aa4a9acb454f8684b1b929645e7c7ab67bb762344a5f96b4b7427c316d75b881be633f4f6b9cbdba467e3d7877ab8c909b586d7485818c888d8c61697ba0999e6371797189938c918f5a716b9498746756567b988687834d65707a92a7726e625982a08d51865272797f79ac3a51626a887976836444695991c78152564f71b27d829168496c61989d865768547f9582908b6f4c916d85c3bf4a824972baba6da27b5195768bc0c34f684f7ca9c1715d83509086ab4c6f9270645b7490c95058528a8bab5373947a6c657d95cf495f57828baa5b427a4a467da965a286396e7464a0bc4c845d4d85b269a6883f747f6ca8c150896261528877a6a9af4e564e83b9b78a6e6e518981aeaeb2515d588ec09d8c723456898ea08d6a5e746ba2bd977e66537eae96a9976e657d73abc29b816d5a86b593bca1846a6b6d91b99ea94a6a6bae91a6838a7a5b748bb7a3a34d6f73a298ad86937959609da08a7e8142788d879fa2662c7c5fa67790557247628f90a56a69338c69ab7073a7563c818f88c67149836e6eb6937caf62438c6c95cf764c886576bd7b8bbf67508e7cad84589d8056719677a37a4753957dad89306c885f7e9b65a580315894878fc15b8b4b456882a1b09f2e49409094c466884e54558ea5baa0354f499c93d26ead4d64719da4c952557d7a98a78c7d6b4e697ea8aaa7565a5785a1b490806e5668737d7c978a4b466893a68e565d79756b81849c405146709aa76e5a614b7d67978c71a27e396a9a8d87bd4244776b95c97a578c3f6ca2958bc1474a7f7398cf865e9369668b8789aba82657629facb6407778667c908dafad2e5d6ba7b5bc447a7a637b8caa954982674f878387ab2f2b6fa172af3f4e8671498f867baf373477a673b1477d4f91508bb4ae79614960a3929e9646556e5c94bf8f7b652a68ac9ea3994c596f6d778e757d7d80618b74858a806f7f7e77967b83838968917c8b8f8773867e859b8e7f6153689891b47b75647568a5a19b8e665875a099ba7e78697d71b2a59f9870926d9d92d199557d577b84c7858d595677a09e939a597e618586cc874e635d7b638cb56141777560979e6a9855446da580ba6d466a7e69a0a26d9a5d4a63ae91cb60487f6661958f91c133386f999ece53558a636b9d9295c53a3f749ea1d3555d9267639fbdc7a94789508e97d08fbb5e5476a277c45c2f8b5c8ba6ae3d7a2f6266a7839ead9aa6566d799aad9782754b6592a69e55636179808e879a8452596e9d90b0598f7768959c85b77c5082838bbf8363983e728dac89ad4259898894a58567564b73629777876a545e95b77b7e477c809e68a18466725c4a88bc816b4c4788a673868d65717e556eb5ad617d3a78a49f639e7073836177bab44c853f65b0ad6aa279458a73928a69876a6044817eb8775a427479928b6e897467506884c15961477f7e96518c779336718a7a94cf616a724a8dc78e7f9d3c7998829b7e636f675198b34884535f428167a7a1ab8e534369afabc5696b588271a0a6ae484e487eb7b2856863467a7c94856252655a94b28b745b486e9e859d8d65566d6497b88f78605072a785af988a5e585292afa7a3405b649b88be7c906c595f9bb49fa7446164a48bba7e8d6e5992879cadbc75756a799bb5a27f95638486a489c27a3873848699a6626a6b5795a376a141a1659570b6827b77525f93916eaa4c326b8681bd73467d5d5c9e9584ba52417d8a88ac8b92815c509a9dbd9f3453818c9db36d93864b61a2a4c6a33d5882757baeb5c26a3e616ab5bcaa6d8e487583afb9c76d476a74c0a7ad6e6b518187c066a1866e7c7d90b48f5f82728d9e9274a78175848497bb9565777b99937d78b1565a6579a7b881646b6880958499a47561687973c1874c6e6e84a18b54a9716d6b7b7e7a9b797858886faeb98569696d87bf6aa17f385e8c81b6bc406c666490c578b286"},
  {"RGB", 67, 31, 9, 11, "7c829181838a858784888b7e85907a848b7e8274817c77847e798979906c7d8d72808d70848d73847e74837b7787737a8a757d8b7881858f6988826c8c7771887b768a7a7183736f8171737d747682786e7d6e80816c7c856c778270708373748877788a7a7c877d7f828281708783728881728d8176907779907c7d8975818d777c8f7b768f7c7e848e7c89937a84937e858d818988858d7e80917c828a807d7683728e6f7690727a916c7d8d70808e6f858b73847c74847a7685717980866982866c858b6a887e6d8c7571887a778a777183727080727577688a7b6c8f7e6f82826c7c856e7482716f8474748977788a7c7c69817d6e8184718586718982718d80769178798f7c7c8a75818d767882887c878d808a907c8e947b87967f8991828c8b86907f80927f"},
  {"RGB", 7, 5, 19, 23, "00275c002c6001366a1146791f548c2c5fa5396dbf4682d0519cdc61b3e878c3ff92ceffa7dcfcb5f998c0ff2dced108de601de80935ed003a002b60003065063b6f154a7e2459903165a43e73b94c85c95899d567ade27abcfb8fc8ffa1d6f7aff398bbff32c9ce10d96325e4103ce9004102336803386d0e43791e53892d63973b70a1497ead578bba6495c772a1d67eaeef88bcfc95cbeea3e798b0f33dbfc81fcf6834db1e4be005500f407c1146811d54902d67a13e79a74e8a9d5f979470979b818baa8b87bc8792d47ca3e27cb4da8ace979bdb4fabbd3cbc7453c73c6acc2970215297245a9d306baf4183c35599bd6aaf967fba7293a870a87e82ad6297936aaf6b81bf5a95c067ac967dba698fad63a0857ead6696b25a9d3769b23b71b84885cf5aa0e570b8d387d38f9fde4fb7ba43d07058d13d729f4087585d993674a34287965d9686719c908396ac9190c3968ecb4e82c15389c8629be175b2fa8acae09fe988b4f535cdc523ea663be92358a6236b49427d1a5a8e266c99457ca35b8fb76ea0cf7dade183b1e8639bb56a9ebc7aa5d68faff0a0bfd8a7df84b0ed34c5c024e4653ee5245ba2236b433e7913558b2068a4417abb588ccd6d9cd67da7dc84addf7fbe8f86b8979aa9aeb196c8b798bca3b68193ca4a9fab44c16a60c93b7a913b84414f8a1b63992a7bba4b90d66495db7f8bc89282b89a86b29ae15ea2d266baa87ad47594cd65979a7f7f6b9a6a6e917191738da25ea57c5ea84369a42c79ae3d97d25daef079a2e39874afae5085b84f76adfa32b5e33ad1a44bed5665db38758f4e7d486f86417a98657fb47d81c76a82c54a81ba418bc055ade372c6ff8faae3af5e95c52156cf1c3fb0ff1ab8e522d69e33f3454dde216488367a375a902b72a74c8cc1679cd16398cd568bc0588ec36cb0e586c9fe9ea6dbb84d82c9063bd1002198e51ca1ce25be913adc4557cc286b843e763e6281347e934f9ea869afb46ea0b36f82ac777ab18995cd9cabe0a88dc2ae4176b0053ab301246cb22e74a4388f7d54ad4e78ab42837f5b73557d6250986764b67579bf7b86a082936e88a05690ae65a1b875abb0649998376c8414497d143c3b79494476545b6a76795e9f85659e7c816e72a03d75b7357ecd3b8ccb3da09b4cb75660c62f6cd13271d13b72b53a6f7e3166532b60432f5d154c651e5270335e945170bc6a87b07ea6688dc01f94d10d92dc0d97ce0dae9223cc4140dd1150e60b4de01048b61c516831662d4277164a7d093d7e1248852760a14683be64a2aa85bf5d9fd511a3dd0094dc0090c500a68716c63736d90747e30043dd063eb1194e5e3a6f1f558a065e94184b9c21579c3874a3579da676bc8b97d44baee410a6df0686ca0e74a9158273289e3641b11351c01454c22057a134695d52872a6ba01672a93366ba3c72b155909e76b88392d563ace638b9ef17a3da1972af2b4f8439535d476839557a29648f35719d497f8e5c916270a54180b53484bb4e82d3588dc272aa9995cf61aee83cbff327c2f71f9fd42d5d96492e635e274967353d6a463f7761568e7a72a87c83b8688cc15891c65293c96297e56ca1cf87bd94abe149c2f721cdfd1bc8fd259bd03b4f845e154a79073a7d104079214f84406ea3618fc46f9fd46d9fd4699ed3689ed36a9ff074a9d791c693b5ea3ecbff13d4ff14ccff279bcf41487c68093e840032870040800f568a3079ad559dd168ace16ea9de70a6db72a5da6ea3f578addb95ca93baef38cfff0cd8ff11ceff289bcf4445776c03388a002e8c00418306598d287eb14fa3d865b2e76eaee373a9de76a8dd"},
  {"L", 40, 9, 17, 4, "65818571838973868c77898f7a8c92688e857b7d847e7f8881818c84849087867285737a89727e8b76828e7986937c899583877b92897e958c82988f859e6a81a16c86a1"},
  {"RGBA", 23, 17, 9, 7, "5b74919771738f756e6e8c8667738e8d727a887d7362786873778b80757d8180715e7e676d8a7a85616672786a5874656d8f7a876b5a78746d69796d6c8c79887255706f7179838058967670747367856b7b70745f977a7b7f6e6684636e79766b807887856a61785e6e7d6c5e636e6c85615e716d688ba36c6e6c6c7f4f6e846e5d909b7f59676c7c4b778b715a8279695e8287576c92927a608b9662668489636e8d9d856089915a72898f706d8fa58c647b8e4e6d7b954983978a726685784c75819a568099855666818447818c9c627e9a7f506e838f7c6f84875c678f79838e88747c6c82815d74997d778c877a706c888167779b7e7c70887f"},
  {"LA", 23, 17, 30, 8, "67796b777c918ca27f686b8080ae93aa87536a736a7c7c8d8daa876f707d7faa96b78d5a6f706b807d8a8eaf8b79767b7aa697c19366766c7086798482978c83969593b67c9855546451736142497d8c8e8d999199b982a05f60604f7d68444b7b8a91979b8d9abc87a9696d5c4d836d514e788392a09e8799b88dab8eae92b06f8779739180999e91b49abb92b08eae97b6748e7b7695829ca695ba6b5f706b90b79bbc7c977a7b9580a0a59abe78706f6591b56c6a7d9296bfaac5ad837e5d866a907a5e5e6b687f9095bdabcdae8e8c696b4c613f635f6765808f8ca5835bae7e99766d546b40645e696880878fb56e6a5c586a71778b514278597e797b887f807571615c686b7c94594a7b5b6d5d3d4b83807c79696366667c9763557c587e653a4a817e827f706b615e7e697b727380789698b87ba157664e447e67846c7f74788178949ab983a96376584b7d688b6e85767a83799399b98bb169825b4e7f688e71887980839585697259756f8b7490678c76a184a2766c978376795775708c77936c8f769f88ac7b72778267805975718e79957293759c8bb385827c856e86577492a48b79857e8498715e4f6a658f8aafa5b499ab8e81877a889f7a665569608c88b0a7b795b0898b8e768ba481705d68628c86ad7f5489848e9e9370"},
  {"CMYK", 12, 12, 5, 5, "6984919a81899f73858191817483949582878375829f6c8677845e797d688d6283a16d867482638275b17e6f878d5088848b677376b57e75868c528d73827a6c937b596a7e6f79a779857d749b775e6b7e618f8767739f93976d79917f658d8a6e7c8391"},
};

static void test_golden(void) {
  for (size_t g = 0; g < sizeof k_golden / sizeof *k_golden; g++) {
    vlm_img_mode mode = VLM_IMG_RGB;
    const char *m = k_golden[g].mode;
    if (!strcmp(m, "L")) mode = VLM_IMG_L;
    else if (!strcmp(m, "LA")) mode = VLM_IMG_LA;
    else if (!strcmp(m, "RGBA")) mode = VLM_IMG_RGBA;
    else if (!strcmp(m, "CMYK")) mode = VLM_IMG_CMYK;
    vlm_image in, out;
    vlm_image_alloc(&in, k_golden[g].w, k_golden[g].h, mode, 0);
    int c = in.channels;
    for (int y = 0; y < in.h; y++)
      for (int x = 0; x < in.w; x++)
        for (int ch = 0; ch < c; ch++)
          in.data[((size_t)y * in.w + x) * c + ch] = (uint8_t)((x * 37 + y * 91 + ch * 53 + (x * y % 7) * 11) % 256);
    CHECK(vlm_image_resize(&in, k_golden[g].ow, k_golden[g].oh, &out) == VLM_OK, "golden resize");
    size_t n = (size_t)k_golden[g].ow * k_golden[g].oh * c;
    CHECK(strlen(k_golden[g].hex) == 2 * n, "golden %zu: length", g);
    int bad = 0;
    for (size_t i = 0; i < n && 2 * i + 1 < strlen(k_golden[g].hex); i++) {
      unsigned v;
      sscanf(k_golden[g].hex + 2 * i, "%2x", &v);
      bad += out.data[i] != v;
    }
    CHECK(bad == 0, "golden %s %dx%d -> %dx%d: %d of %zu bytes differ from Pillow", m, k_golden[g].w, k_golden[g].h,
          k_golden[g].ow, k_golden[g].oh, bad, n);
    vlm_image_free(&in);
    vlm_image_free(&out);
  }
}

/* ------------------------------------------------------------ 16-bit gray (I;16) */
/* Pillow 13.0.0 opens a 16-bit gray PNG as I;16, resizes it with double weights (rounded,
 * clamped to 0..65535 after each pass) and converts it to RGB by saturating at 255.
 * Golden resizes of pattern (x*7919 + y*104729 + (x*y%13)*5003) % 65536, output samples as
 * 4-digit hex: vertical first (31x67 -> 11x9, 9x40 -> 9x13 one pass), horizontal first,
 * enlarging with overshoot clamped at 0 and 65535 (7x5 -> 19x23). */
static const struct { int w, h, ow, oh; const char *hex; } k_golden16[] = {
{31, 67, 11, 9, "840778d988357d5776b37d64655d8b417cb980ee827a863b79b86e4f89f77d48738c884980177cdd7bc5861d8a597a5483057b8b8efc7b6097a571847bd880f97e0e84585f9d62cb81108c71877ea4b787f4736a759480e4710172c8849f80b47c8c8b207b41757687ed80f7837476759b058a2c81b782cd78fa89b481168c7e904b90ae7e1c949b99457da4856e7a9d6a9d7de07d9680418482846e831288467d6872127d5b6cbd80eb826970aa84018ba17e327a4588bf81f0862e54107f4789617adf8520"},
  {67, 31, 9, 11, "7fcf89d08426833588b77fa77b9d7593803b8077759c762983507bb1807f808d80ad9060814877396b917e85854e8456813e76f57a8e8297795480828b4f78cd75057f16882382186d21837188c378b0888974ba6bc699a08ced8668843b81ad74e879d883aa7a427e23777281287eac844c85108ede94256ef86fb668e18ac287c576b47e407aea7d0e8e79840483195d17809da95f72a46119879c9562799178b96ed07ff39662753370a187f57b78719d7a7a790484ce7d6b7e7d8d6f754b83ac7c7c7a15"},
  {7, 5, 19, 23, "00000000000004490f6f1866241035d24d6761dc6e9577c181958c2796bba230ae90b726bae40000000000000c0e17b021a32d313c604f065fcf6c00761280898b709659a22aaeeeb7cabba503a504a80e0b1b94282c34133f684977524a5bc766e472bf7e788a079598a21fafa8b90cbd23201f22152c5e3b34497858f863a563cc59a154f75dde6cff7afa87a69452a20db0e2bb2bbfa7478e4ad2565766f477858bf995bb883563d44ba05177651b763284629293a1f3b290be15c31a712175e582e795aaa8f2c30bcc01af636e13405842f05bba706b80719078a1d4b497c199c7448f3d9567a3f3b8efcee3ee1cf6eacdb5744234ab34dc525b6a707c5d8e49a1b4b6b0c53dcb9490a597f7a87ac032d8a5fb18ffffd57e709128dc29284a83657079038c71a195b875c850cf3a7708801094afb1e9ce1ef2f5fe23cbb0617917071a9941de60da76298aaca16aba1fcb40d2b852915d1a75a59825b7dcde6debb7b8f34edb05b90d4739a65c3e734688e7a140bbcace31d63733be3ea0582f7c309d53c4ebd50ba560412f0000066b339057486fdd871aa127bd87d133d9c72b0c342e491e675285f5adddc1a6990d40ef04410b3d315151a56b71853da130bf64d454dd76447f47d84d3657a26d289615b12d972855d625f9230a354a4ae0655e8346a170c177d7a8e15974fb6f485c5647d74f0679899f359a8b7a035c3549e93e3443395dff8139a1dbc3b5db25e564aa4f9b6e6ffb3c27340d5e548d2b9ed1a183972c7447484a3b67565a7f2aa24fc5fcdeaae977d248bd37819f38c824bb4a987c7c9f94c062c718968e4fc634204f727d27a2aac82be21aed74db2ac61a8b8142f42a6944a06e339839cb25dd16a5cb50fc2deb4a207b34a2ceca32e56ff159c377b5aa9072613f4bd74f0260ad86bfc1a9da6da2d04bac27ff45c0790ba2bacc58e924f5b49d5a99eb92ad877f78e56144552071e4aea9cb3996af438e22e5425d7704a28ace51eca1f9cf77ae7e2c937faac5a35473af4c2d5f079af8b98e88ea3ba41eeb3fe6755ca258cfe7ef7afd2b5c8e6a369428c44cc1fc80ee459c515c8cd5acf57f1735f01c013e157426a234d111f18eff9f505861659530d123d0e986b141574a4686f4a8b37b9d33501a1f3ccb736ba226d1c8f2cfffff4a485d0695bdd793d85e898b3f2846b6840fa6a679ee320219293c21730ca21fd225f372ffff"},
  {40, 9, 17, 4, "7173657aa73695ed74b487c7990e7f1f68f4aae4748e74516aa8c46e6f6a7ad684b183336ccf91eb889d8ca26fef690179f88abc8e6f75c397be96357ace7e9e78b37a239fed8148628669b570206fcc762f61176cc97f276a6b7e5a7bf863198b9485936edc830797e1772d8837817c76bb76c1610a6ba48b10696ca35484f789c68e567ceb847f"},
  {9, 40, 9, 13, "5647740ca6da44445bfb9514d4769e108393a6837c449f838d473328879297b763276fb088d0827578d98970c0df79dd1c00b3f07aca9e6e888163b199cd84eb6c1c558e48256ef0904990186291862d36625ebe8469aac4a0f18b2796af60738be5b74650b6b4064ca87c5e9c949cb3664d853cab35431ae08080f8573881e5a47b6c207e8c528335773df0b5418a7b91d69a716aa684e84c5628123a4957c978f08f115622668370b8c9931a256e91b9d88c837eda619b6a7f83d278c101f99db44dff6e35961366b970ae64034207a019d3e99ebe6b4a6f2376da79967ea9d003fc83b58264676d95"},
};
/* Pillow 13 (Resize(16) bicubic, CenterCrop(16), convert RGB, as torchvision does) of a 37x23
 * I;16 image with values (x*37 + y*91 + (x*y%7)*11) % 400: the gray crop, row-major. */
static const char k_i16_crop16[] = "ffffff904e86baffcbf2ef3575b5fcffa6c180a8fcffff9e3c657dd8ffffcfa075b2ffffffff8b71b8ffffffff61687dffcaa0ed796ac8ffffa6a13e71c6f0fff73d6491e0ffffc350356deafffffff96a9ce6ffc6dbd9529bebfff0bfff9071ffffff7e586db0ffffd3ff706ea1ffffff976f9addffd4ff5c567dcbffffe7a354a8f6ffffe93350aee8ffffff7e397cfcffffa04e69beffffffec638896d5ff91b64d84d5fdffeebba454a3e9ffb6926984ffffffff868588edffff97ed5360fbffff603861aef8ff9ac6a75da2ddffffe9898cd6f1ffff943055b7f0fffff45599ddffffff475a83bef3ffff932874efffff6ec6937fceffceff92bd8ad3e5";

static void write_png16_gray(const char *path, int w, int h, const uint16_t *v, int trns, int interlace) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); abort(); }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) { fprintf(stderr, "png write failed\n"); abort(); }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 16, PNG_COLOR_TYPE_GRAY,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_color_16 tc;
  memset(&tc, 0, sizeof tc);
  tc.gray = (png_uint_16)trns;
  if (trns >= 0) png_set_tRNS(png, info, NULL, 0, &tc);
  png_write_info(png, info);
  uint8_t *be = malloc((size_t)w * h * 2);
  png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
  for (size_t i = 0; i < (size_t)w * h; i++) { be[2 * i] = (uint8_t)(v[i] >> 8); be[2 * i + 1] = (uint8_t)v[i]; }
  for (int y = 0; y < h; y++) rows[y] = be + (size_t)y * w * 2;
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  free(be);
  fclose(f);
}

static uint16_t i16_at(const vlm_image *img, size_t i) {
  uint16_t v;
  memcpy(&v, img->data + 2 * i, 2);
  return v;
}

static void test_i16(void) {
  /* Golden resizes. */
  for (size_t g = 0; g < sizeof k_golden16 / sizeof *k_golden16; g++) {
    vlm_image in, out;
    CHECK(vlm_image_alloc(&in, k_golden16[g].w, k_golden16[g].h, VLM_IMG_I16, 0) == VLM_OK, "alloc I;16");
    CHECK(in.channels == 2 && !strcmp(vlm_img_mode_name(VLM_IMG_I16), "I;16"), "I;16: 2 bytes a pixel");
    for (int y = 0; y < in.h; y++)
      for (int x = 0; x < in.w; x++) {
        uint16_t v = (uint16_t)(((long)x * 7919 + (long)y * 104729 + (x * y % 13) * 5003) % 65536);
        memcpy(in.data + 2 * ((size_t)y * in.w + x), &v, 2);
      }
    CHECK(vlm_image_resize(&in, k_golden16[g].ow, k_golden16[g].oh, &out) == VLM_OK, "golden16 resize");
    size_t n = (size_t)k_golden16[g].ow * k_golden16[g].oh;
    CHECK(strlen(k_golden16[g].hex) == 4 * n, "golden16 %zu: length", g);
    int bad = 0, first = -1;
    for (size_t i = 0; i < n && 4 * i + 3 < strlen(k_golden16[g].hex); i++) {
      unsigned v;
      sscanf(k_golden16[g].hex + 4 * i, "%4x", &v);
      if (i16_at(&out, i) != v && first < 0) first = (int)i;
      bad += i16_at(&out, i) != v;
    }
    CHECK(bad == 0, "golden16 %dx%d -> %dx%d: %d of %zu samples differ from Pillow (first at %d)", k_golden16[g].w,
          k_golden16[g].h, k_golden16[g].ow, k_golden16[g].oh, bad, n, first);
    vlm_image_free(&in);
    vlm_image_free(&out);
  }
  /* RGB conversion saturates (no scaling): 0, 100, 255, 256, 65535 -> 0, 100, 255, 255, 255. */
  {
    static const uint16_t v[5] = {0, 100, 255, 256, 65535};
    static const uint8_t want[5] = {0, 100, 255, 255, 255};
    vlm_image in, rgb;
    CHECK(vlm_image_alloc(&in, 5, 1, VLM_IMG_I16, 0) == VLM_OK, "alloc");
    memcpy(in.data, v, sizeof v);
    CHECK(vlm_image_to_rgb(&in, &rgb) == VLM_OK, "I;16 to rgb");
    for (int i = 0; i < 5; i++)
      CHECK(rgb.data[3 * i] == want[i] && rgb.data[3 * i + 1] == want[i] && rgb.data[3 * i + 2] == want[i],
            "I;16 %u -> RGB %u, want %u", v[i], rgb.data[3 * i], want[i]);
    vlm_image_free(&in);
    vlm_image_free(&rgb);
  }
  /* Decode (plain, interlaced, with a gray tRNS, which PIL keeps as info only) then the whole
   * preprocessing: the crop equals Pillow's. */
  enum { W = 37, H = 23, N = 16 };
  uint16_t src[W * H];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) src[y * W + x] = (uint16_t)((x * 37 + y * 91 + (x * y % 7) * 11) % 400);
  for (int k = 0; k < 3; k++) {
    char p[4200];
    tpath(p, sizeof p, "g16.png");
    write_png16_gray(p, W, H, src, k == 2 ? 7 : -1, k == 1);
    vlm_image img;
    vlm_status s = vlm_image_decode_file(p, NULL, &img);
    CHECK(s == VLM_OK, "16-bit gray png %d: %s", k, vlm_last_error());
    if (s) continue;
    CHECK(img.mode == VLM_IMG_I16 && img.w == W && img.h == H, "16-bit gray png %d: mode %s", k,
          vlm_img_mode_name(img.mode));
    int bad = 0;
    for (size_t i = 0; i < (size_t)W * H; i++) bad += i16_at(&img, i) != src[i];
    CHECK(bad == 0, "16-bit gray png %d: %d samples differ", k, bad);
    vlm_preprocess_cfg cfg;
    vlm_preprocess_cfg_default(&cfg, N);
    uint8_t crop[3 * N * N];
    float px[3 * N * N];
    CHECK(vlm_preprocess_image(&img, &cfg, crop, px) == VLM_OK, "preprocess I;16");
    bad = 0;
    for (int i = 0; i < N * N; i++) {
      unsigned v;
      sscanf(k_i16_crop16 + 2 * i, "%2x", &v);
      for (int ch = 0; ch < 3; ch++) bad += crop[ch * N * N + i] != v;
    }
    CHECK(bad == 0, "16-bit gray png %d: %d crop bytes differ from Pillow", k, bad);
    vlm_image_free(&img);
  }
}

/* A window of a resize equals the full resize cropped, byte for byte, whichever pass runs
 * first and when one pass keeps its size. */
static void test_resize_window(void) {
  static const int cases[][4] = {{640, 427, 335, 224}, {427, 640, 224, 335}, {300, 1000, 100, 200},
                                 {1000, 300, 200, 100}, {50, 80, 50, 40}, {80, 50, 40, 50}, {17, 23, 31, 29}};
  vlm_rng r;
  vlm_rng_seed(&r, 5);
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int w = cases[t][0], h = cases[t][1], ow = cases[t][2], oh = cases[t][3];
    for (int c = 1; c <= 3; c += 2) {
      uint8_t *in = malloc((size_t)w * h * c), *full = malloc((size_t)ow * oh * c);
      for (int i = 0; i < w * h * c; i++) in[i] = (uint8_t)vlm_rng_below(&r, 256);
      vlm_resample_bicubic_u8(in, w, h, c, full, ow, oh);
      int wx = (int)vlm_rng_below(&r, (uint64_t)ow), wy = (int)vlm_rng_below(&r, (uint64_t)oh);
      int ww = 1 + (int)vlm_rng_below(&r, (uint64_t)(ow - wx)), wh = 1 + (int)vlm_rng_below(&r, (uint64_t)(oh - wy));
      uint8_t *win = malloc((size_t)ww * wh * c);
      vlm_resample_bicubic_window_u8(in, w, h, c, win, ow, oh, wx, wy, ww, wh);
      int bad = 0;
      for (int y = 0; y < wh; y++)
        bad += memcmp(win + (size_t)y * ww * c, full + ((size_t)(wy + y) * ow + wx) * c, (size_t)ww * c) != 0;
      CHECK(bad == 0, "resize window %dx%d -> %dx%d, window %d,%d %dx%d, %d channels: %d rows differ", w, h, ow,
            oh, wx, wy, ww, wh, c, bad);
      free(in);
      free(full);
      free(win);
    }
  }
}

/* ------------------------------------------------------------ WebP */
static void put_le(uint8_t *p, uint32_t v, int nb) {
  for (int i = 0; i < nb; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int decode_ok(const char *path, vlm_image *img, const char *label) {
  vlm_status s = vlm_image_decode_file(path, NULL, img);
  CHECK(s == VLM_OK, "%s: decode failed: %s", label, s ? vlm_last_error() : "");
  return s == VLM_OK;
}

static void test_webp(void) {
  char p[4200];
  const int w = 37, h = 23;
  uint8_t *rgba = malloc((size_t)w * h * 4), *rgb = malloc((size_t)w * h * 3), *opaque = malloc((size_t)w * h * 4);
  vlm_rng r;
  vlm_rng_seed(&r, 11);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      for (int c = 0; c < 3; c++) {
        uint8_t v = (uint8_t)((x * 7 + y * 5 + c * 60 + (int)vlm_rng_below(&r, 24)) & 255);
        rgb[3 * i + c] = rgba[4 * i + c] = opaque[4 * i + c] = v;
      }
      rgba[4 * i + 3] = (uint8_t)(1 + (x * 13 + y * 29) % 255);  /* never 0: lossless keeps RGB */
      opaque[4 * i + 3] = 255;
    }
  vlm_image img;
  uint8_t *enc = NULL;
  size_t n;

  /* Lossless RGB: exact. */
  n = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &enc);
  CHECK(n > 0, "WebPEncodeLosslessRGB");
  tpath(p, sizeof p, "ll_rgb.webp");
  vt_write_file(p, enc, n);
  if (decode_ok(p, &img, "lossless RGB")) {
    CHECK(img.mode == VLM_IMG_RGB && img.w == w && img.h == h, "lossless RGB: mode %s %dx%d",
          vlm_img_mode_name(img.mode), img.w, img.h);
    CHECK(img.mode == VLM_IMG_RGB && !memcmp(img.data, rgb, (size_t)w * h * 3), "lossless RGB: pixels differ");
    vlm_image_free(&img);
  }
  /* Truncated at several points, and garbage after the magic: errors naming the file. */
  size_t cuts[] = {n - 1, n / 2, 30, 16, 13};
  expect_cuts_fail("webp", "webp", enc, n, cuts, sizeof cuts / sizeof cuts[0], "WebP");
  {
    uint8_t g[200];
    memcpy(g, enc, 12);
    vlm_rng_seed(&r, 3);
    for (size_t i = 12; i < sizeof g; i++) g[i] = (uint8_t)vlm_rng_below(&r, 256);
    put_le(g + 4, sizeof g - 8, 4);
    tpath(p, sizeof p, "garbage.webp");
    vt_write_file(p, g, sizeof g);
    expect_fail(p, NULL, "bad WebP", "garbage after RIFF/WEBP");
    /* a valid VP8L chunk header with garbage bitstream after the size fields */
    memcpy(g, enc, 25 < n ? 25 : n);
    tpath(p, sizeof p, "garbage2.webp");
    vt_write_file(p, g, sizeof g);
    expect_fail(p, NULL, "bad WebP", "garbage VP8L bitstream");
  }
  /* The max-pixels guard on a real file, from the header. */
  {
    vlm_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = (int64_t)w * h - 1;
    tpath(p, sizeof p, "ll_rgb.webp");
    expect_fail(p, &o, "max-pixels", "webp over a small max-pixels");
    o.max_pixels = (int64_t)w * h;
    vlm_status s = vlm_image_decode_file(p, &o, &img);
    CHECK(s == VLM_OK, "webp at exactly max-pixels: %s", s ? vlm_last_error() : "");
    if (s == VLM_OK) vlm_image_free(&img);
  }
  WebPFree(enc);

  /* Headers claiming huge sizes, with no data behind them: the guard fires, nothing is
   * allocated (a 16384x16384 VP8L, a 20000x20000 animated VP8X canvas). */
  {
    uint8_t b[64];
    memset(b, 0, sizeof b);
    memcpy(b, "RIFF", 4); put_le(b + 4, 4 + 8 + 5, 4); memcpy(b + 8, "WEBPVP8L", 8); put_le(b + 16, 5, 4);
    b[20] = 0x2f;
    uint32_t bits = (16384 - 1) | (uint32_t)(16384 - 1) << 14;  /* alpha 0, version 0 */
    put_le(b + 21, bits, 4);
    tpath(p, sizeof p, "huge_vp8l.webp");
    vt_write_file(p, b, 26);
    expect_fail(p, NULL, "max-pixels", "VP8L claiming 16384x16384");
    memset(b, 0, sizeof b);
    memcpy(b, "RIFF", 4); put_le(b + 4, 4 + 18 + 14, 4); memcpy(b + 8, "WEBPVP8X", 8); put_le(b + 16, 10, 4);
    b[20] = 0x02 | 0x10;  /* animation, alpha */
    put_le(b + 24, 20000 - 1, 3);
    put_le(b + 27, 20000 - 1, 3);
    memcpy(b + 30, "ANIM", 4); put_le(b + 34, 6, 4);
    tpath(p, sizeof p, "huge_anim.webp");
    vt_write_file(p, b, 44);
    expect_fail(p, NULL, "max-pixels", "animated VP8X claiming 20000x20000");
  }

  /* Lossless RGBA: exact, mode RGBA; an opaque RGBA image is encoded without alpha -> RGB. */
  n = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &enc);
  tpath(p, sizeof p, "ll_rgba.webp");
  vt_write_file(p, enc, n);
  WebPFree(enc);
  if (decode_ok(p, &img, "lossless RGBA")) {
    CHECK(img.mode == VLM_IMG_RGBA && !memcmp(img.data, rgba, (size_t)w * h * 4), "lossless RGBA: mode %s or pixels",
          vlm_img_mode_name(img.mode));
    vlm_image_free(&img);
  }
  n = WebPEncodeLosslessRGBA(opaque, w, h, w * 4, &enc);
  tpath(p, sizeof p, "ll_opaque.webp");
  vt_write_file(p, enc, n);
  WebPFree(enc);
  if (decode_ok(p, &img, "lossless opaque RGBA")) {
    CHECK(img.mode == VLM_IMG_RGB && !memcmp(img.data, rgb, (size_t)w * h * 3), "opaque RGBA: mode %s (want RGB) or pixels",
          vlm_img_mode_name(img.mode));
    vlm_image_free(&img);
  }

  /* Lossy, without and with alpha: the same bytes as libwebp's plain decoder, close to the source. */
  for (int alpha = 0; alpha < 2; alpha++) {
    n = alpha ? WebPEncodeRGBA(rgba, w, h, w * 4, 80.f, &enc) : WebPEncodeRGB(rgb, w, h, w * 3, 80.f, &enc);
    CHECK(n > 0, "lossy encode");
    tpath(p, sizeof p, alpha ? "lossy_rgba.webp" : "lossy_rgb.webp");
    vt_write_file(p, enc, n);
    int ww = 0, hh = 0;
    uint8_t *ref = alpha ? WebPDecodeRGBA(enc, n, &ww, &hh) : WebPDecodeRGB(enc, n, &ww, &hh);
    if (decode_ok(p, &img, alpha ? "lossy RGBA" : "lossy RGB")) {
      int c = alpha ? 4 : 3;
      CHECK(img.mode == (alpha ? VLM_IMG_RGBA : VLM_IMG_RGB) && ref && ww == w && hh == h,
            "lossy: mode %s", vlm_img_mode_name(img.mode));
      if (img.channels == c && ref) {
        CHECK(!memcmp(img.data, ref, (size_t)w * h * c), "lossy %s: differs from WebPDecode", alpha ? "RGBA" : "RGB");
        double err = 0;
        const uint8_t *src = alpha ? rgba : rgb;
        for (size_t i = 0; i < (size_t)w * h * c; i++) err += fabs((double)img.data[i] - src[i]);
        err /= (double)w * h * c;
        CHECK(err < 25, "lossy: mean abs error %.2f vs the source", err);
      }
      vlm_image_free(&img);
    }
    WebPFree(ref);
    WebPFree(enc);
  }

  /* Animated (2 lossless frames): the first frame, as PIL's Image.open shows it. */
  {
    WebPAnimEncoderOptions eo;
    WebPAnimEncoderOptionsInit(&eo);
    WebPAnimEncoder *ae = WebPAnimEncoderNew(w, h, &eo);
    WebPConfig cfg;
    WebPConfigInit(&cfg);
    cfg.lossless = 1;
    cfg.exact = 1;
    WebPPicture pic;
    int ok = ae != NULL;
    for (int f = 0; f < 2 && ok; f++) {
      WebPPictureInit(&pic);
      pic.use_argb = 1;
      pic.width = w;
      pic.height = h;
      if (f == 0) ok = WebPPictureImportRGBA(&pic, rgba, w * 4);
      else {
        uint8_t *inv = malloc((size_t)w * h * 4);
        for (size_t i = 0; i < (size_t)w * h * 4; i++) inv[i] = (i & 3) == 3 ? 255 : (uint8_t)(255 - rgba[i]);
        ok = WebPPictureImportRGBA(&pic, inv, w * 4);
        free(inv);
      }
      ok = ok && WebPAnimEncoderAdd(ae, &pic, f * 100, &cfg);
      WebPPictureFree(&pic);
    }
    WebPData out;
    WebPDataInit(&out);
    ok = ok && WebPAnimEncoderAdd(ae, NULL, 200, NULL) && WebPAnimEncoderAssemble(ae, &out);
    CHECK(ok, "animated webp encode");
    if (ok) {
      tpath(p, sizeof p, "anim.webp");
      vt_write_file(p, out.bytes, out.size);
      if (decode_ok(p, &img, "animated")) {
        CHECK(img.mode == VLM_IMG_RGBA && img.w == w && img.h == h && !memcmp(img.data, rgba, (size_t)w * h * 4),
              "animated: first frame (mode %s %dx%d)", vlm_img_mode_name(img.mode), img.w, img.h);
        vlm_image_free(&img);
      }
      size_t cut = out.size - 10;
      tpath(p, sizeof p, "anim_cut.webp");
      vt_write_file(p, out.bytes, cut);
      expect_fail(p, NULL, "WebP", "animated webp cut");
    }
    WebPDataClear(&out);
    WebPAnimEncoderDelete(ae);
  }
  free(rgba);
  free(rgb);
  free(opaque);
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
  test_webp();
  test_resample();
  test_resize_window();
  test_golden();
  test_i16();
  test_geometry();
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd)) {}
  return vt_finish();
}
