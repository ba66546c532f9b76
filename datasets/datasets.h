/* datasets: image decoding (JPEG via libjpeg-turbo, PNG via libpng, WebP via
 * libwebp) and the CLIP preprocessing of open_clip's PIL + torchvision
 * pipeline, reproduced exactly: same decoded pixels, same resampler (PIL's fixed-point separable
 * antialiased bicubic), same per-mode rules, same crop offsets, same float32
 * normalization.
 *
 * Images keep the "mode" PIL would give them, because PIL resizes each mode
 * differently and only converts to RGB after the resize and crop:
 *   L     8-bit gray, resized in one channel;
 *   LA    gray + alpha, resized premultiplied (PIL's "La"), alpha dropped by
 *         the RGB conversion;
 *   P     palette indices (the palette travels with the image), resized with
 *         nearest neighbour on the indices; tRNS is ignored by the RGB
 *         conversion, as in PIL;
 *   1     bilevel (1-bit gray PNG), stored as 0/255, nearest neighbour;
 *   RGB;
 *   RGBA  resized premultiplied ("RGBa"), un-premultiplied, alpha dropped;
 *   I;16  16-bit gray PNG (VLM_IMG_I16): the full 16-bit samples, resized with PIL's
 *         16-bit arithmetic (double weights, each pass rounded half away from zero and
 *         clamped to 0..65535), converted to RGB by saturation: min(v, 255) in every
 *         channel, no scaling (so a 16-bit photo comes out almost all white, as in PIL);
 *         a gray tRNS is ignored, as PIL's RGB conversion ignores it;
 *   CMYK  4-component JPEG (CMYK or YCCK), resized in CMYK, converted with
 *         PIL's formula (R = (255-K) - C*(255-K)/255, ...); the decoded values
 *         are inverted first, as PIL does for every 4-component JPEG ("CMYK;I",
 *         it assumes Adobe's inverted convention, Adobe marker or not).
 * WebP (lossy, lossless, extended, with or without alpha) is RGB or RGBA as in
 * PIL (RGBA when the header says it has alpha), decoded with libwebp's
 * animation decoder as Pillow does; an animated WebP gives its first frame.
 * 16-bit PNG samples keep their high byte, as PIL does for RGB, RGBA and
 * gray+alpha; 16-bit gray is I;16 (above). Pillow 9.4 opens 16-bit gray as mode I
 * (int32, no clamping between the passes, always horizontal first) and can differ
 * from Pillow 13 where the first pass overshoots; vlm follows Pillow 13. EXIF
 * orientation is ignored, as PIL and open_clip do by default. Resize follows Pillow >= 13 (see vlm_resample_bicubic_u8).
 *
 * Verified against Pillow 13.0.0: the 8 images of fixtures/preprocess are
 * bit-identical (crop_u8 and pixels); 22 more images (RGB/L/LA/RGBA/P with
 * tRNS/4-bit P/1-bit/16-bit RGB/RGBA/LA PNGs, baseline/progressive/4:4:4/4:2:2/
 * gray/CMYK JPEGs, sizes from 50 to 2000 pixels, aspect up to 20:1) x 3 resize
 * modes x 3 sizes (224, 97, 300) gave bit-identical crops as well, and so did
 * 63 16-bit gray PNGs (random full-range and < 256 values, hard 0/65535 edges,
 * gradients, with and without tRNS, 17x3 to 1000x130 and 40x900) x 3 modes x 3 sizes.
 * WebP decoding was compared with Pillow 9.4 on the same libwebp (1.2.4): lossy
 * (q20/75/95, odd sizes), lossless, lossy and lossless RGBA, animated (first
 * frame, RGBA and opaque) and tiny files all decode byte-identical, same mode.
 * RandomResizedCrop draws from vlm_rng, so its crops cannot equal torch's
 * random stream; the geometry and the resize do.
 *
 * Everything here is reentrant (no global state; libjpeg/libpng objects are
 * per call): decode and preprocess can run in parallel loader threads.
 *
 * Errors (vlm_status + vlm_last_error) name the file and the problem: an
 * unsupported format (detected by magic bytes, never by extension), a
 * truncated file (libjpeg's "premature end of data" warning is an error here,
 * as PIL refuses such files), corrupt data, and images with more pixels than
 * the max-pixels guard, which is checked from the header before any pixel
 * buffer is allocated. */
#ifndef VLM_DATASETS_H
#define VLM_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  VLM_IMG_L = 0, VLM_IMG_LA, VLM_IMG_P, VLM_IMG_1, VLM_IMG_RGB, VLM_IMG_RGBA, VLM_IMG_CMYK,
  VLM_IMG_I16   /* 16-bit gray PNG (PIL's "I;16"): native-endian uint16 samples, 2 bytes a pixel */
} vlm_img_mode;

const char *vlm_img_mode_name(vlm_img_mode m);   /* PIL's spelling: "L", "RGBA", ... */
int vlm_img_mode_channels(vlm_img_mode m);

typedef struct {
  int w, h;
  vlm_img_mode mode;
  int channels;             /* bytes per pixel, interleaved */
  uint8_t *data;            /* h * w * channels, row-major; malloc'ed */
  uint8_t palette[256 * 3]; /* mode P: RGB triplets */
  int palette_n;
} vlm_image;

/* open_clip's suggested guard against decompression bombs. */
#define VLM_DEFAULT_MAX_PIXELS 25000000LL

typedef struct {
  int64_t max_pixels;  /* <= 0: VLM_DEFAULT_MAX_PIXELS */
  /* Reduced-scale JPEG decoding (training speed, NOT bit-identical to PIL):
   * when > 0 and the image's shorter side is at least twice min_side, libjpeg
   * decodes at scale 1/2, 1/4 or 1/8, the smallest keeping the shorter side
   * >= min_side. 0: full-scale decode (exact PIL pixels). */
  int jpeg_reduce_min_side;
} vlm_decode_opts;

/* Decode a JPEG, PNG or WebP. name is used in messages (path, or a record name). */
vlm_status vlm_image_decode_mem(const void *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                                vlm_image *out);
vlm_status vlm_image_decode_file(const char *path, const vlm_decode_opts *opts, vlm_image *out);
void vlm_image_free(vlm_image *img);
/* Allocate an image (data uninitialised, or zeroed when zero != 0). */
vlm_status vlm_image_alloc(vlm_image *img, int w, int h, vlm_img_mode mode, int zero);

/* ------------------------------------------------------------ resampling (image_resize.c) */
/* PIL's antialiased bicubic resize (a = -0.5) of an 8-bit interleaved image with c channels:
 * horizontal pass then vertical (vertical first when h - oh > 2 (w - ow), as Pillow >= 13 does),
 * fixed-point coefficients (22 fraction bits), rounding and clipping to 8 bits after each pass;
 * a pass whose size does not change is skipped. */
void vlm_resample_bicubic_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh);
/* Only the window [wx, wx+ww) x [wy, wy+wh) of that resize (out is ww x wh): the same bytes
 * as resizing everything and cropping, for less work. */
void vlm_resample_bicubic_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh,
                                    int wx, int wy, int ww, int wh);
/* PIL's bicubic resize of a one-channel 16-bit image (mode I;16): the same coefficients
 * and pass order as vlm_resample_bicubic_u8, but double weights and sums, rounded half away
 * from zero and clamped to [0, 65535] after each pass, as Pillow 13 does. */
void vlm_resample_bicubic_u16(const uint16_t *in, int w, int h, uint16_t *out, int ow, int oh);
/* PIL's nearest-neighbour resize: source x = floor((x + 0.5) * w / ow). */
void vlm_resample_nearest_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh);

/* PIL's Image.resize(size, BICUBIC) with its per-mode rules (see the top of this file). */
vlm_status vlm_image_resize(const vlm_image *in, int ow, int oh, vlm_image *out);
/* vlm_image_resize then vlm_image_crop to the window (zero outside the resized image), with
 * only the window computed where the mode allows (L, RGB, CMYK). */
vlm_status vlm_image_resize_window(const vlm_image *in, int ow, int oh, int wx, int wy, int ww, int wh,
                                   vlm_image *out);
/* Crop the box [left, left+w) x [top, top+h); parts outside the image are 0 (torchvision's pad
 * with fill 0: palette index 0 for P, (0,0,0,0) for RGBA and CMYK). */
vlm_status vlm_image_crop(const vlm_image *in, int left, int top, int w, int h, vlm_image *out);
/* PIL's convert("RGB"). */
vlm_status vlm_image_to_rgb(const vlm_image *in, vlm_image *out);

/* ------------------------------------------------------------ CLIP preprocessing (preprocess.c) */
typedef enum { VLM_RESIZE_SHORTEST = 0, VLM_RESIZE_SQUASH, VLM_RESIZE_LONGEST } vlm_resize_mode;
int vlm_resize_mode_parse(const char *s, vlm_resize_mode *out);   /* 1 if known */
const char *vlm_resize_mode_name(vlm_resize_mode m);

typedef struct {
  int size;                 /* output is size x size */
  vlm_resize_mode mode;
  float mean[3], std[3];
} vlm_preprocess_cfg;

/* size, shortest, OpenAI mean/std. */
void vlm_preprocess_cfg_default(vlm_preprocess_cfg *cfg, int size);

/* torchvision Resize(N) output size for a w x h image (shorter side N, other int(N*long/short)). */
void vlm_resize_shortest_size(int w, int h, int n, int *ow, int *oh);

/* The geometric part: resize per the mode, crop/pad to size x size, convert to RGB.
 * out: an RGB image of size x size. */
vlm_status vlm_preprocess_rgb(const vlm_image *img, const vlm_preprocess_cfg *cfg, vlm_image *out);
/* Full pipeline: crop_u8 [3,N,N] (may be NULL) and pixels [3,N,N] float32 normalized
 * ((x / 255 - mean) / std in float32 as torchvision computes it). */
vlm_status vlm_preprocess_image(const vlm_image *img, const vlm_preprocess_cfg *cfg, uint8_t *crop_u8,
                                float *pixels);
/* ToTensor + Normalize of an RGB image (any size): crop_u8 [3,h,w] (may be NULL), pixels [3,h,w]
 * (may be NULL). Used after vlm_random_resized_crop in training. */
void vlm_image_to_tensor(const vlm_image *rgb, const vlm_preprocess_cfg *cfg, uint8_t *crop_u8, float *pixels);
vlm_status vlm_preprocess_file(const char *path, const vlm_decode_opts *opts, const vlm_preprocess_cfg *cfg,
                               uint8_t *crop_u8, float *pixels);

/* open_clip training augmentation: torchvision RandomResizedCrop(size, scale, ratio, bicubic)
 * with draws from r (10 attempts, then the central-crop fallback), converted to RGB. */
vlm_status vlm_random_resized_crop(const vlm_image *img, int size, double scale_lo, double scale_hi,
                                   double ratio_lo, double ratio_hi, vlm_rng *r, vlm_image *out);
/* Crop box then resize (PIL resize of the crop), RGB out. Used by RandomResizedCrop. */
vlm_status vlm_image_resized_crop(const vlm_image *img, int left, int top, int w, int h, int ow, int oh,
                                  vlm_image *out);

#ifdef __cplusplus
}
#endif
#endif
