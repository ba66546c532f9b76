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

/* The guard against decompression bombs: PIL's Image.MAX_IMAGE_PIXELS (1024 * 1024 * 1024 / 4 / 3
 * = 89,478,485), the limit open_clip's images meet, since it opens them with PIL: PIL warns
 * (DecompressionBombWarning) above it and refuses above twice it; vlm refuses where PIL starts
 * to warn, so every image open_clip reads without a warning is read. Lower (25M, as before), a
 * 28-50 MP camera photo that open_clip reads would be refused. At the limit an RGB image decodes to 268 MB, plus the file (read whole):
 * `vlm index` of one such image peaks at 274 MB (PNG) / 306 MB (JPEG) resident; a 7000x5000
 * photo at 126 MB (JPEG). The resize and crop work on a window of it, not a copy. */
#define VLM_DEFAULT_MAX_PIXELS 89478485LL

typedef struct {
  int64_t max_pixels;  /* <= 0: VLM_DEFAULT_MAX_PIXELS */
  /* Reduced-scale JPEG decoding (training speed, NOT bit-identical to PIL):
   * when > 0 and the image's shorter side is at least twice min_side, libjpeg
   * decodes at scale 1/2, 1/4 or 1/8, the smallest keeping the shorter side
   * >= min_side. 0: full-scale decode (exact PIL pixels). */
  int jpeg_reduce_min_side;
  /* What the over-the-limit message suggests: NULL: "raise --max-image-pixels to
   * allow it" (every vlm command that decodes images has that option); a caller
   * without it (the C API) says its own. */
  const char *limit_hint;
} vlm_decode_opts;

/* Decode a JPEG, PNG or WebP. name is used in messages (path, or a record name). */
vlm_status vlm_image_decode_mem(const void *buf, size_t n, const char *name, const vlm_decode_opts *opts,
                                vlm_image *out);
vlm_status vlm_image_decode_file(const char *path, const vlm_decode_opts *opts, vlm_image *out);
/* A name that says image: .jpg .jpeg .png .webp (any case), what the folder sources and the
 * tools' folder search take. */
int vlm_src_has_image_ext(const char *name);
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
 * as resizing everything and cropping, with work and memory for the window and the source
 * pixels under it, whatever the full size ow x oh (64-bit: it may pass 2^31). VLM_ERR_OOM
 * with a message when memory runs out. */
vlm_status vlm_resample_bicubic_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int64_t ow,
                                          int64_t oh, int64_t wx, int64_t wy, int ww, int wh);
/* PIL's bicubic resize of a one-channel 16-bit image (mode I;16): the same coefficients
 * and pass order as vlm_resample_bicubic_u8, but double weights and sums, rounded half away
 * from zero and clamped to [0, 65535] after each pass, as Pillow 13 does. */
void vlm_resample_bicubic_u16(const uint16_t *in, int w, int h, uint16_t *out, int ow, int oh);
vlm_status vlm_resample_bicubic_window_u16(const uint16_t *in, int w, int h, uint16_t *out, int64_t ow, int64_t oh,
                                           int64_t wx, int64_t wy, int ww, int wh);
/* PIL's nearest-neighbour resize: source x = (int)p_x, p_0 = 0.5 w / ow, p_{x+1} = p_x + w / ow
 * accumulated in double as PIL does. The window form gets the same positions without
 * stepping through the pixels before the window. */
void vlm_resample_nearest_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh);
vlm_status vlm_resample_nearest_window_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int64_t ow,
                                          int64_t oh, int64_t wx, int64_t wy, int ww, int wh);

/* ------------------------------------------------------------ per-mode rules (image_modes.c) */
/* PIL's Image.resize(size, BICUBIC) with its per-mode rules (see the top of this file). */
vlm_status vlm_image_resize(const vlm_image *in, int ow, int oh, vlm_image *out);
/* vlm_image_resize to ow x oh (64-bit) then vlm_image_crop to the window (zero outside the
 * resized image), computing only the window, in every mode: bit-identical to the two steps. */
vlm_status vlm_image_resize_window(const vlm_image *in, int64_t ow, int64_t oh, int64_t wx, int64_t wy, int ww,
                                   int wh, vlm_image *out);
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

/* torchvision Resize(N) output size for a w x h image (shorter side N, other int(N*long/short));
 * 64-bit: a 1 x 10^7 image at N = 224 is 224 x 2.24e9. */
void vlm_resize_shortest_size(int w, int h, int n, int64_t *ow, int64_t *oh);

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


/* ------------------------------------------------------------ dataset sources (source_*.c)
 * A source yields (image, caption) samples. All but WebDataset are random access
 * (an index of offsets / paths / generated ids is kept, never the images); WebDataset
 * is read shard by shard, streaming. Every read of a bad sample (missing or unreadable
 * file, bad caption, malformed record) returns an error status whose message names the
 * file and the record; the loader skips, counts and reports it. Sources are safe to
 * read from several threads at once (vlm_source_get / separate shard readers). */
typedef enum {
  VLM_DS_AUTO = 0, VLM_DS_CSV, VLM_DS_COCO, VLM_DS_WDS, VLM_DS_FOLDER, VLM_DS_IMAGEFOLDER, VLM_DS_SHAPES
} vlm_ds_type;
const char *vlm_ds_type_name(vlm_ds_type t);
int vlm_ds_type_parse(const char *s, vlm_ds_type *out);   /* 1 if known: auto|csv|coco|wds|folder|imagefolder|shapes */

typedef struct {
  vlm_ds_type type;            /* VLM_DS_AUTO: from the spec (.csv/.tsv, .json, .tar / brace pattern, folder, "shapes...") */
  char csv_separator;          /* '\t' (open_clip's default) */
  const char *csv_img_key;     /* "filepath" */
  const char *csv_caption_key; /* "title" */
  const char *coco_images;     /* COCO image folder; NULL: beside the annotations file (see source_coco.c) */
  uint64_t seed;               /* shapes: generator seed */
  int shapes_size;             /* shapes: image side in pixels; 0: 64 (the loader passes its image size) */
  int csv_group_images;        /* CSV: rows naming the same image path are one group (1; see source_csv.c); a
                                * training loader clears it (only evaluation reads groups; it spares a pass) */
} vlm_source_opts;
void vlm_source_opts_default(vlm_source_opts *o);

/* Why a sample is bad (vlm_sample.fail, set by a failing read). */
typedef enum { VLM_BAD_NONE = 0, VLM_BAD_READ, VLM_BAD_DECODE, VLM_BAD_CAPTION } vlm_bad_reason;

/* One sample before decoding. Exactly one of image_bytes (an encoded file) and
 * pixels.data (a generated RGB image: shapes) is set. */
typedef struct {
  char name[512];          /* for messages: "train.csv:17 (img/a.jpg)", "shard-0003.tar:000042" */
  uint8_t *image_bytes;    /* malloc'ed */
  size_t image_len;
  vlm_image pixels;
  char *caption;           /* UTF-8, malloc'ed */
  int label;               /* class index (ImageFolder, shapes), -1 when none */
  int64_t group;           /* the image a caption belongs to (COCO: its image id; CSV: the first row naming
                            * the same image path); else the sample index */
  vlm_bad_reason fail;     /* after a failed read: why (read error / bad caption) */
} vlm_sample;
void vlm_sample_free(vlm_sample *s);

typedef struct vlm_source vlm_source;
typedef struct vlm_shard_reader vlm_shard_reader;
/* One source (no "::"). Errors name the spec and the problem (missing file, bad header, ...). */
vlm_status vlm_source_open(vlm_source **out, const char *spec, const vlm_source_opts *o);
void vlm_source_close(vlm_source *s);
const char *vlm_source_spec(const vlm_source *s);
vlm_ds_type vlm_source_type(const vlm_source *s);
int vlm_source_is_stream(const vlm_source *s);      /* 1: WebDataset shards */
int64_t vlm_source_size(const vlm_source *s);        /* samples; -1 when unknown (WebDataset) */
vlm_status vlm_source_get(vlm_source *s, int64_t i, vlm_sample *out);   /* random access */
int64_t vlm_source_num_shards(const vlm_source *s);
vlm_status vlm_shard_open(vlm_source *s, int64_t shard, vlm_shard_reader **out);
/* 1: a sample (out filled), 0: end of shard, -1: a bad sample or a broken shard
 * (message set; after a truncated/corrupt tar the next call returns 0). */
int vlm_shard_next(vlm_shard_reader *r, vlm_sample *out);
void vlm_shard_close(vlm_shard_reader *r);
/* Class names (ImageFolder sub-folders with '_' shown as ' ', shapes classes), NULL when the
 * source has none. */
const char *const *vlm_source_classnames(const vlm_source *s, int *n);
/* Caption check shared by the sources: non-empty after whitespace, valid UTF-8. On failure the
 * message names `name` and the problem. */
vlm_status vlm_caption_check(const char *name, const char *text, size_t len);

/* ------------------------------------------------------------ the shapes set (shapes.c)
 * Synthetic images of one or two coloured geometric shapes on a neutral background (solid,
 * gradient or noise; never saturated, so never a shape's colour), with captions naming them.
 * Everything is a pure function of (split, seed, index): the same sample on every machine.
 * Classes (zero-shot) are colour + kind, "red circle": class = colour * VLM_SHAPES_KINDS + kind.
 * A fixed 6 of the 48 combinations (12.5%, one per colour and kind) never appear in the train
 * split, alone or in pairs; the val split has one shape per image, uniform over all 48 classes
 * (so about 1 in 8 is unseen), label = its class. Train captions mention size and position
 * only part of the time; a val caption is its class description ("a red circle"). Specs:
 * "shapes" (train, VLM_SHAPES_TRAIN_DEFAULT samples: generated on demand, so a long run sees
 * no image twice), "shapes:val" (1000), with an optional count: "shapes:5000",
 * "shapes:val:2000", "shapes:train:300". */
#define VLM_SHAPES_TRAIN_DEFAULT 1000000
#define VLM_SHAPES_COLORS 8
#define VLM_SHAPES_KINDS 6
#define VLM_SHAPES_CLASSES (VLM_SHAPES_COLORS * VLM_SHAPES_KINDS)
typedef enum { VLM_SHAPES_TRAIN = 0, VLM_SHAPES_VAL = 1 } vlm_shapes_split;
const char *vlm_shapes_color_name(int color);      /* "red" */
const char *vlm_shapes_kind_name(int kind);        /* "circle" */
const char *vlm_shapes_class_name(int cls);        /* "red circle"; NULL when out of range */
const char *const *vlm_shapes_classnames(void);    /* all VLM_SHAPES_CLASSES names, by class */
int vlm_shapes_class_unseen(int cls);              /* 1: held out of the train split */
/* Generate sample `index` of the split: *rgb (allocated, RGB size x size), *caption (malloc'ed),
 * *label (the class for val and for single-shape train images, -1 for two shapes). */
vlm_status vlm_shapes_generate(vlm_shapes_split split, uint64_t seed, int64_t index, int size, vlm_image *rgb,
                               char **caption, int *label);

/* ------------------------------------------------------------ the loader (loader.c)
 * Worker threads read, decode, augment and tokenize ahead of the model into a
 * bounded queue of batches. The sample order depends only on (seed, epoch,
 * rank, world), never on the number of workers; bad samples are skipped (the
 * batch is filled with the next good ones in order), counted and reported. */
typedef struct vlm_loader vlm_loader;
typedef struct vlm_tokenizer vlm_tokenizer;

typedef struct {
  const char *data;            /* one spec or several joined with "::" */
  vlm_source_opts src;
  const double *upsampling;    /* --train-data-upsampling-factors, one per source; NULL: by size */
  int n_upsampling;            /* the number of factors in upsampling (must equal the source count) */
  double temperature;          /* > 0: p_i proportional to n_i^(1/T) (--data-temperature); 0: off */
  int batch_size;
  int workers;                 /* 0: decode in the calling thread */
  uint64_t seed;
  int rank, world;             /* shards / samples split across ranks */
  int train;                   /* 1: shuffle + RandomResizedCrop(scale 0.9-1.0) as open_clip; 0: eval order + resize/center crop */
  vlm_preprocess_cfg pre;
  vlm_decode_opts decode;
  int context_length;
  int32_t pad_id;              /* 0 as open_clip */
  vlm_tokenizer *tokenizer;    /* cloned per worker */
  int64_t samples_per_epoch;   /* 0: the sources' total */
  int drop_last;               /* training: 1 */
  int queue_samples;           /* decoded samples held ahead (memory bound); 0: 2 batches (see loader.c) */
  int shuffle_buffer;          /* WebDataset sample shuffle buffer; 0: 1000 */
} vlm_loader_cfg;
void vlm_loader_cfg_default(vlm_loader_cfg *c);

typedef struct {
  float *images;     /* [n, 3, S, S] */
  int32_t *ids;      /* [n, context_length] */
  int *labels;       /* [n] (-1 when none) */
  int64_t *groups;   /* [n] the samples' groups; with several sources + (source number << 48) */
  int n;             /* batch_size, less for the last batch when !drop_last */
  int64_t index;     /* batch number in the epoch (0-based, skipped batches counted) */
  int64_t seq_end;   /* stream position after this batch (vlm_loader_start_epoch_at) */
} vlm_batch;

typedef struct {
  int64_t samples;            /* good samples delivered this epoch */
  int64_t bad;                /* skipped this epoch (all reasons) */
  int64_t bad_distinct;       /* different samples among them: training cycles its data, so a bad sample
                               * read again in a later pass of the epoch counts once here */
  int64_t bad_read, bad_decode, bad_caption;
  double wait_s;              /* time vlm_loader_next spent waiting for a batch (0 workers: all of its work) */
  int64_t ahead_max;          /* most items planned ahead of the consumer (bounded by the queue) */
  char last_error[512];
} vlm_loader_stats;

vlm_status vlm_loader_open(vlm_loader **out, const vlm_loader_cfg *c);
/* Start epoch `epoch`, skipping the first skip_batches batches (a resumed run's data position):
 * the first skip_batches * batch_size items of the epoch's stream are skipped unread, which is
 * exact when those items held no bad sample. */
vlm_status vlm_loader_start_epoch(vlm_loader *l, int64_t epoch, int64_t skip_batches);
/* Exact resume: start at batch number `batch` and stream position `seq` (a vlm_batch.seq_end). */
vlm_status vlm_loader_start_epoch_at(vlm_loader *l, int64_t epoch, int64_t batch, int64_t seq);
/* 1: *b holds the next batch (valid until the next call), 0: end of the epoch. */
int vlm_loader_next(vlm_loader *l, vlm_batch *b);
void vlm_loader_stats_get(const vlm_loader *l, vlm_loader_stats *st);
int64_t vlm_loader_batches_per_epoch(const vlm_loader *l);   /* -1 when unknown */
/* This rank's samples in an epoch (before drop_last takes whole batches); -1 when unknown
 * (a WebDataset source without samples_per_epoch). */
int64_t vlm_loader_samples_per_epoch(const vlm_loader *l);
int vlm_loader_queue_size(const vlm_loader *l);               /* W: decoded samples held at most */
const char *const *vlm_loader_classnames(const vlm_loader *l, int *n);
void vlm_loader_close(vlm_loader *l);

#ifdef __cplusplus
}
#endif
#endif
