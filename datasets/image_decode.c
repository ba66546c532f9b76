/* Image decoding: JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp) into PIL's modes.
 *
 * JPEG: libjpeg's defaults as PIL uses them (islow DCT, fancy upsampling).
 *   1 component -> L; 3 (YCbCr or RGB) -> RGB; 4 (CMYK or YCCK) -> CMYK, decoded by
 *   libjpeg as CMYK and inverted, as PIL does ("CMYK;I": it assumes Adobe's inverted
 *   convention for every 4-component JPEG). Any libjpeg error, and the "premature end
 *   of data" warning (libjpeg pads a truncated file with grey and goes on; PIL refuses
 *   it), is an error naming the file; other warnings (extraneous bytes) are ignored
 *   as PIL ignores them.
 * PNG: 1-bit gray -> 1 (0/255), 2/4/8-bit gray -> L (low depths scaled to 0..255),
 *   16-bit gray -> I;16 (all 16 bits, native-endian uint16; a gray tRNS is ignored),
 *   gray+alpha -> LA, palette -> P (indices + palette; tRNS ignored since PIL's RGB
 *   conversion ignores it), RGB -> RGB, RGBA -> RGBA; other 16-bit samples keep their
 *   high byte; interlaced images are de-interlaced by libpng. A non-palette tRNS is ignored
 *   (PIL keeps it as info only). A CRC error in any chunk before the end of the image data,
 *   or a file cut before the end of the image data, is an error; as in PIL, chunks after
 *   the image data are not read (a missing IEND is accepted). Stricter than PIL: it does
 *   not check IDAT CRCs.
 *
 * WebP (libwebp), as Pillow's WebPImagePlugin decodes it: the mode comes from
 *   WebPGetFeatures (has_alpha -> RGBA, else RGB), and the pixels from libwebp's
 *   WebPAnimDecoder with default options (MODE_RGBA, non-premultiplied, fancy
 *   upsampling for lossy), alpha dropped for RGB. Lossy, lossless, with and without
 *   alpha (ALPH chunk), extended (VP8X) files. An animated file gives its first frame
 *   composited on the canvas, which is what PIL's Image.open(...) shows (frame 0).
 *   Truncated or corrupt files (libwebp refuses them; so does PIL) are errors.
 *
 * All decoders check width * height against the max-pixels guard right after reading
 * the header, before allocating the pixel buffer. */
#define _DEFAULT_SOURCE 1 /* fileno */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "datasets/datasets.h"

const char *vlm_img_mode_name(vlm_img_mode m) {
  switch (m) {
    case VLM_IMG_L: return "L";
    case VLM_IMG_LA: return "LA";
    case VLM_IMG_P: return "P";
    case VLM_IMG_1: return "1";
    case VLM_IMG_RGB: return "RGB";
    case VLM_IMG_RGBA: return "RGBA";
    case VLM_IMG_CMYK: return "CMYK";
    case VLM_IMG_I16: return "I;16";
  }
  return "?";
}

int vlm_img_mode_channels(vlm_img_mode m) {
  switch (m) {
    case VLM_IMG_L: case VLM_IMG_P: case VLM_IMG_1: return 1;
    case VLM_IMG_LA: case VLM_IMG_I16: return 2;
    case VLM_IMG_RGB: return 3;
    case VLM_IMG_RGBA: case VLM_IMG_CMYK: return 4;
  }
  return 0;
}

/* w * h * c bytes, or 0 when that many cannot be addressed (size_t / ptrdiff_t). */
static size_t image_bytes(uint64_t w, uint64_t h, int c) {
  uint64_t lim = (uint64_t)SIZE_MAX < (uint64_t)PTRDIFF_MAX ? (uint64_t)SIZE_MAX : (uint64_t)PTRDIFF_MAX;
  if (w == 0 || h == 0 || c <= 0 || w > lim / h || w * h > lim / (uint64_t)c) return 0;
  return (size_t)(w * h * (uint64_t)c);
}

vlm_status vlm_image_alloc(vlm_image *img, int w, int h, vlm_img_mode mode, int zero) {
  memset(img, 0, sizeof *img);
  int c = vlm_img_mode_channels(mode);
  if (w <= 0 || h <= 0 || c <= 0) return vlm_error(VLM_ERR_ARG, "image: bad size %dx%d", w, h);
  size_t n = image_bytes((uint64_t)w, (uint64_t)h, c);
  if (!n) return vlm_error(VLM_ERR_OOM, "image: %dx%d %s is too large to address", w, h, vlm_img_mode_name(mode));
  img->data = zero ? calloc(n, 1) : malloc(n);
  if (!img->data) return vlm_error(VLM_ERR_OOM, "image: cannot allocate %dx%d %s", w, h, vlm_img_mode_name(mode));
  img->w = w;
  img->h = h;
  img->mode = mode;
  img->channels = c;
  return VLM_OK;
}

void vlm_image_free(vlm_image *img) {
  if (!img) return;
  free(img->data);
  memset(img, 0, sizeof *img);
}

static int64_t max_pixels(const vlm_decode_opts *o) {
  return o && o->max_pixels > 0 ? o->max_pixels : VLM_DEFAULT_MAX_PIXELS;
}

static vlm_status check_pixels(const char *name, int64_t w, int64_t h, const vlm_decode_opts *o) {
  if (w <= 0 || h <= 0) return vlm_error(VLM_ERR_FORMAT, "%s: image has an empty size %lldx%lld", name, (long long)w, (long long)h);
  int64_t lim = max_pixels(o);
  if (w * h > lim)
    return vlm_error(VLM_ERR_FORMAT, "%s: image is %lldx%lld = %lld pixels, over the max-pixels limit %lld "
                     "(possible decompression bomb; %s)",
                     name, (long long)w, (long long)h, (long long)(w * h), (long long)lim,
                     o && o->limit_hint ? o->limit_hint : "raise --max-image-pixels to allow it");
  return VLM_OK;
}

/* ------------------------------------------------------------------ JPEG */
typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void j_error_exit(j_common_ptr cinfo) {
  jerr_mgr *e = (jerr_mgr *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, e->msg);
  longjmp(e->jb, 1);
}

static void j_emit_message(j_common_ptr cinfo, int level) {
  jerr_mgr *e = (jerr_mgr *)cinfo->err;
  if (level < 0) {
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
      snprintf(e->msg, sizeof e->msg, "truncated file (premature end of JPEG data)");
      longjmp(e->jb, 1);
    }
    cinfo->err->num_warnings++;
  }
}

static vlm_status decode_jpeg(const uint8_t *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                              vlm_image *out) {
  struct jpeg_decompress_struct cinfo;
  jerr_mgr jerr;
  uint8_t *volatile pix = NULL;
  volatile int created = 0;
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = j_error_exit;
  jerr.pub.emit_message = j_emit_message;
  jerr.msg[0] = 0;
  if (setjmp(jerr.jb)) {
    if (created) jpeg_destroy_decompress(&cinfo);
    free(pix);
    return vlm_error(VLM_ERR_FORMAT, "%s: bad JPEG: %s", name, jerr.msg[0] ? jerr.msg : "decode error");
  }
  jpeg_create_decompress(&cinfo);
  created = 1;
  jpeg_mem_src(&cinfo, buf, (unsigned long)n);
  jpeg_read_header(&cinfo, TRUE);
  vlm_status st = check_pixels(name, cinfo.image_width, cinfo.image_height, opts);
  if (st) {
    jpeg_destroy_decompress(&cinfo);
    return st;
  }
  vlm_img_mode mode;
  switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; mode = VLM_IMG_L; break;
    case 3: cinfo.out_color_space = JCS_RGB; mode = VLM_IMG_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; mode = VLM_IMG_CMYK; break;
    default:
      jpeg_destroy_decompress(&cinfo);
      return vlm_error(VLM_ERR_UNSUPPORTED, "%s: JPEG with %d components is not supported", name,
                       cinfo.num_components);
  }
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  int min_side = opts ? opts->jpeg_reduce_min_side : 0;
  if (min_side > 0) {
    unsigned s = cinfo.image_width < cinfo.image_height ? cinfo.image_width : cinfo.image_height;
    unsigned denom = 1;
    while (denom < 8 && (s + 2 * denom - 1) / (2 * denom) >= (unsigned)min_side) denom *= 2;
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
  }
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
  VLM_CHECK(c == vlm_img_mode_channels(mode), "jpeg: unexpected output components %d", c);
  size_t nbytes = image_bytes((uint64_t)w, (uint64_t)h, c);
  pix = nbytes ? malloc(nbytes) : NULL;
  if (!pix) {
    jpeg_destroy_decompress(&cinfo);
    return vlm_error(VLM_ERR_OOM, "%s: cannot allocate %dx%d pixels", name, w, h);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pix + (size_t)cinfo.output_scanline * w * c;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (mode == VLM_IMG_CMYK)
    for (size_t i = 0, m = (size_t)w * h * 4; i < m; i++) pix[i] = (uint8_t)(255 - pix[i]);
  memset(out, 0, sizeof *out);
  out->w = w;
  out->h = h;
  out->mode = mode;
  out->channels = c;
  out->data = pix;
  return VLM_OK;
}

/* ------------------------------------------------------------------ PNG */
typedef struct {
  const uint8_t *buf;
  size_t n, pos;
  char msg[256];
  size_t alloc_max;   /* the largest single allocation libpng may make */
} png_src;

/* libpng's allocations. libpng 1.6 allocates an ancillary chunk (tEXt, iCCP, ...)
 * at its declared length before reading it, and its chunk-size limit
 * (png_set_chunk_malloc_max) only warns: a hostile 2 GB tEXt length in a
 * 186-byte file (found by fuzzing) made one 2 GB allocation, touched. Nothing
 * libpng needs is larger than the file plus an inflated profile or text and two
 * rows, so a larger request fails; libpng then drops the chunk and the decode
 * ends in a "bad PNG" error (on that file: the next chunk's type is invalid). */
static png_voidp p_malloc(png_structp png, png_alloc_size_t size) {
  const png_src *s = png_get_mem_ptr(png);
  if (s && size > s->alloc_max) return NULL;
  return malloc(size);
}

static void p_free(png_structp png, png_voidp ptr) {
  (void)png;
  free(ptr);
}

static void p_read(png_structp png, png_bytep dst, size_t len) {
  png_src *s = png_get_io_ptr(png);
  if (len > s->n - s->pos) {
    snprintf(s->msg, sizeof s->msg, "truncated file (ends at byte %zu, %zu more bytes needed)", s->n,
             len - (s->n - s->pos));
    png_error(png, "truncated");
  }
  memcpy(dst, s->buf + s->pos, len);
  s->pos += len;
}

static void p_error(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  if (!s->msg[0]) snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void p_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static vlm_status decode_png(const uint8_t *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                             vlm_image *out) {
  /* The size is in IHDR, the first chunk: check it before libpng reads further. */
  if (n >= 24 && !memcmp(buf + 12, "IHDR", 4)) {
    uint32_t w0 = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
    uint32_t h0 = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
    if (w0 > 0 && h0 > 0 && w0 <= 0x7fffffffu && h0 <= 0x7fffffffu) {
      vlm_status st0 = check_pixels(name, w0, h0, opts);
      if (st0) return st0;
    }
  }
  png_src src = {buf, n, 0, {0}, 0};
  uint32_t w_hdr = n >= 24 ? (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19] : 0;
  src.alloc_max = n + ((size_t)16 << 20) + (size_t)w_hdr * 16;   /* the file, 16 MB, two 8-byte-pixel rows */
  png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &src, p_error, p_warning, &src, p_malloc,
                                             p_free);
  if (!png) return vlm_error(VLM_ERR_OOM, "%s: cannot create a PNG reader", name);
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return vlm_error(VLM_ERR_OOM, "%s: cannot create a PNG reader", name);
  }
  uint8_t *volatile pix = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pix);
    return vlm_error(VLM_ERR_FORMAT, "%s: bad PNG: %s", name, src.msg[0] ? src.msg : "decode error");
  }
  png_set_read_fn(png, &src, p_read);
  /* A CRC error in any chunk read is an error (PIL refuses ancillary ones too). */
  png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  /* Inflated ancillary chunks (zTXt, iCCP) within the same bound (p_malloc). */
  png_set_chunk_malloc_max(png, (png_alloc_size_t)src.alloc_max);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  vlm_status st = check_pixels(name, w, h, opts);
  if (st) {
    png_destroy_read_struct(&png, &info, NULL);
    return st;
  }
  int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
  vlm_img_mode mode;
  vlm_image img;
  memset(&img, 0, sizeof img);
  switch (ct) {
    case PNG_COLOR_TYPE_GRAY:
      mode = bd == 1 ? VLM_IMG_1 : bd == 16 ? VLM_IMG_I16 : VLM_IMG_L;
      if (bd < 8) png_set_expand_gray_1_2_4_to_8(png);
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: mode = VLM_IMG_LA; break;
    case PNG_COLOR_TYPE_PALETTE: {
      mode = VLM_IMG_P;
      if (bd < 8) png_set_packing(png);
      png_colorp pal = NULL;
      int np = 0;
      if (png_get_PLTE(png, info, &pal, &np) & PNG_INFO_PLTE) {
        if (np > 256) np = 256;
        for (int i = 0; i < np; i++) {
          img.palette[3 * i] = pal[i].red;
          img.palette[3 * i + 1] = pal[i].green;
          img.palette[3 * i + 2] = pal[i].blue;
        }
        img.palette_n = np;
      }
      break;
    }
    case PNG_COLOR_TYPE_RGB: mode = VLM_IMG_RGB; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: mode = VLM_IMG_RGBA; break;
    default:
      png_destroy_read_struct(&png, &info, NULL);
      return vlm_error(VLM_ERR_FORMAT, "%s: bad PNG: colour type %d", name, ct);
  }
  /* Sizes in size_t: a row of a wide image passes 2^31 bytes (600000000 RGBA pixels). */
  int c = vlm_img_mode_channels(mode);
  size_t rowb = (size_t)w * (size_t)c, nbytes = image_bytes(w, h, c);
  if (!nbytes) {
    png_destroy_read_struct(&png, &info, NULL);
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: a %ux%u %s image is too large to address here", name, (unsigned)w,
                     (unsigned)h, vlm_img_mode_name(mode));
  }
  if (bd == 16 && mode != VLM_IMG_I16) png_set_strip_16(png);
  int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != rowb) png_error(png, "unexpected row size after transforms");
  pix = malloc(nbytes);
  if (!pix) png_error(png, "out of memory");
  /* png_read_image's loop (every pass over every row, libpng de-interlacing) without its array
   * of row pointers, which takes 8 bytes a row: 80 MB for a 1 x 10^7 image. */
  for (int pass = 0; pass < passes; pass++)
    for (png_uint_32 y = 0; y < h; y++) png_read_row(png, pix + (size_t)y * rowb, NULL);
  /* No png_read_end: like PIL, chunks after the image data (and a missing IEND) are not read. */
  png_destroy_read_struct(&png, &info, NULL);
  if (mode == VLM_IMG_I16) /* big-endian samples -> native uint16 */
    for (size_t i = 0; i < (size_t)w * h; i++) {
      uint16_t v = (uint16_t)(pix[2 * i] << 8 | pix[2 * i + 1]);
      memcpy(pix + 2 * i, &v, sizeof v);
    }
  img.w = (int)w;
  img.h = (int)h;
  img.mode = mode;
  img.channels = c;
  img.data = pix;
  *out = img;
  return VLM_OK;
}

/* ------------------------------------------------------------------ WebP */
static const char *webp_status_name(VP8StatusCode c) {
  switch (c) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file (not enough data for the header)";
  }
  return "unknown error";
}

static vlm_status decode_webp(const uint8_t *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                              vlm_image *out) {
  /* Header only: size, alpha, animation; no pixel buffer yet. */
  WebPBitstreamFeatures f;
  VP8StatusCode sc = WebPGetFeatures(buf, n, &f);
  if (sc != VP8_STATUS_OK) return vlm_error(VLM_ERR_FORMAT, "%s: bad WebP: %s", name, webp_status_name(sc));
  vlm_status st = check_pixels(name, f.width, f.height, opts);
  if (st) return st;
  vlm_img_mode mode = f.has_alpha ? VLM_IMG_RGBA : VLM_IMG_RGB;
  WebPAnimDecoderOptions dopt;
  if (!WebPAnimDecoderOptionsInit(&dopt)) return vlm_error(VLM_ERR_UNSUPPORTED, "%s: libwebp version mismatch", name);
  dopt.color_mode = MODE_RGBA;
  dopt.use_threads = 0;
  WebPData data = {buf, n};
  /* The RIFF size says how long the file is: a shorter one was cut (named in the errors). */
  uint32_t riff = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 | (uint32_t)buf[7] << 24;
  const char *why = (uint64_t)riff + 8 > n ? "truncated file" : "corrupt data";
  WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &dopt);
  if (!dec)
    return vlm_error(VLM_ERR_FORMAT, "%s: bad WebP: %s (RIFF size %llu, file %zu bytes)", name, why,
                     (unsigned long long)riff + 8, n);
  WebPAnimInfo info;
  uint8_t *rgba = NULL;
  int ts = 0;
  if (!WebPAnimDecoderGetInfo(dec, &info)) {
    WebPAnimDecoderDelete(dec);
    return vlm_error(VLM_ERR_FORMAT, "%s: bad WebP: cannot read the canvas", name);
  }
  st = check_pixels(name, info.canvas_width, info.canvas_height, opts);
  if (st) {
    WebPAnimDecoderDelete(dec);
    return st;
  }
  if (!WebPAnimDecoderGetNext(dec, &rgba, &ts) || !rgba) {
    WebPAnimDecoderDelete(dec);
    return vlm_error(VLM_ERR_FORMAT, "%s: bad WebP: %s in the image data", name, why);
  }
  int w = (int)info.canvas_width, h = (int)info.canvas_height;
  vlm_image img;
  st = vlm_image_alloc(&img, w, h, mode, 0);
  if (st) {
    WebPAnimDecoderDelete(dec);
    return vlm_error(VLM_ERR_OOM, "%s: cannot allocate %dx%d pixels", name, w, h);
  }
  size_t np = (size_t)w * h;
  if (mode == VLM_IMG_RGBA) {
    memcpy(img.data, rgba, np * 4);
  } else {
    for (size_t i = 0; i < np; i++) {
      img.data[3 * i] = rgba[4 * i];
      img.data[3 * i + 1] = rgba[4 * i + 1];
      img.data[3 * i + 2] = rgba[4 * i + 2];
    }
  }
  WebPAnimDecoderDelete(dec);
  *out = img;
  return VLM_OK;
}

/* ------------------------------------------------------------------ dispatch */
static const char *sniff_other(const uint8_t *b, size_t n) {
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "GIF";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "TIFF";
  if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return "HEIF/AVIF (ISO media)";
  if (n >= 4 && !memcmp(b, "\xff\x0a", 2)) return "JPEG XL";
  return NULL;
}

vlm_status vlm_image_decode_mem(const void *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                                vlm_image *out) {
  const uint8_t *b = buf;
  memset(out, 0, sizeof *out);
  if (!name) name = "<memory>";
  if (n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: empty file", name);
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) return decode_jpeg(b, n, name, opts, out);
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return decode_png(b, n, name, opts, out);
  if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return decode_webp(b, n, name, opts, out);
  const char *other = sniff_other(b, n);
  if (other) return vlm_error(VLM_ERR_UNSUPPORTED, "%s: unsupported format (%s); vlm reads JPEG, PNG and WebP", name, other);
  return vlm_error(VLM_ERR_UNSUPPORTED, "%s: unsupported format (not a JPEG, PNG or WebP file)", name);
}

/* The most bytes read from one image file: above any encoded image of VLM_DEFAULT_MAX_PIXELS
 * (an uncompressed 16-bit RGBA PNG of 89.5 M pixels is 716 MB), and a bound on what a stream
 * that never ends (a pipe fed from /dev/zero) can take. */
#define VLM_MAX_IMAGE_FILE_BYTES ((size_t)1 << 30)

vlm_status vlm_image_decode_file(const char *path, const vlm_decode_opts *opts, vlm_image *out) {
  memset(out, 0, sizeof *out);
  struct stat pre;   /* a device is not opened at all (/dev/zero would be read without end) */
  if (stat(path, &pre) == 0 && (S_ISCHR(pre.st_mode) || S_ISBLK(pre.st_mode) || S_ISSOCK(pre.st_mode)))
    return vlm_error(VLM_ERR_IO, "%s: %s, not an image file", path, S_ISSOCK(pre.st_mode) ? "a socket" : "a device");
  FILE *f = fopen(path, "rb");
  if (!f) {
    const int e = errno;
    struct stat ls;   /* a link whose target is gone (or locked) is said as such: the link itself is there */
    if (lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode))
      return vlm_error(VLM_ERR_IO, "%s: a link whose target cannot be read (%s)", path, strerror(e));
    return vlm_error(VLM_ERR_IO, "%s: cannot open: %s", path, strerror(e));
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {   /* fopen opens folders; reading one fails */
    fclose(f);
    return vlm_error(VLM_ERR_IO, "%s: is a folder, not an image file", path);
  }
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      if (cap >= VLM_MAX_IMAGE_FILE_BYTES) {   /* a pipe that does not end */
        free(buf);
        fclose(f);
        return vlm_error(VLM_ERR_FORMAT, "%s: more than %zu MB: not an image file vlm reads", path,
                         VLM_MAX_IMAGE_FILE_BYTES >> 20);
      }
      cap = cap ? cap * 2 : 1 << 16;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return vlm_error(VLM_ERR_OOM, "%s: out of memory reading the file", path);
      }
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (err) {
    free(buf);
    return vlm_error(VLM_ERR_IO, "%s: read error: %s", path, strerror(err));
  }
  vlm_status st = vlm_image_decode_mem(buf, n, path, opts, out);
  free(buf);
  return st;
}
