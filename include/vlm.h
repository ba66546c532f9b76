/* vlm.h: the public C API of vlm (libvlm.so, pkg-config name "vlm").
 *
 * Load a CLIP or CoCa model (an open_clip or Hugging Face checkpoint directory, as
 * the `vlm` command reads), embed images and texts into L2-normalized vectors,
 * classify images zero-shot the way open_clip does, and caption images (CoCa).
 *
 *   #include <vlm.h>
 *   const char *err;
 *   vlm_model *m = vlm_model_load("vit-b-32/", &err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   int E = vlm_model_embed_dim(m);
 *   float *img = malloc(E * sizeof(float)), *txt = malloc(2 * E * sizeof(float));
 *   const char *path = "cat.jpg", *texts[2] = {"a photo of a cat", "a photo of a dog"};
 *   if (vlm_embed_image_files(m, &path, 1, img) || vlm_embed_texts(m, texts, 2, txt))
 *     fprintf(stderr, "%s\n", vlm_get_last_error());
 *   // cosine similarity = dot product of the unit vectors
 *   vlm_model_free(m);
 *
 * Build: cc app.c $(pkg-config --cflags --libs vlm)   (add -lm if app.c uses libm)
 *
 * Conventions
 *   - Functions returning int return -1 on failure and 0 on success (or what the
 *     function says: vlm_classify's count); functions returning a pointer return
 *     NULL on failure. The reason is then in vlm_get_last_error() (per thread, valid until the next failing call
 *     on the same thread; successful calls leave it as it is), and names the file
 *     and the problem.
 *   - Bad input (missing or corrupt files, bad ids, NULL arguments) never aborts.
 *   - Embeddings are float[n * vlm_model_embed_dim(m)], row i for input i, each
 *     row L2-normalized (open_clip's normalize=True), written into caller memory.
 *   - A vlm_model may be used from several threads; calls on one model are
 *     serialized by a lock (each call itself runs multi-threaded with OpenMP).
 *     A calling thread's working buffers are freed when it exits. The library
 *     installs no signal handlers.
 *   - Preprocessing is open_clip's eval transform, reproduced exactly: resize the
 *     shorter side to the model's image size (PIL bicubic, antialiased), center
 *     crop, RGB, normalize with the OpenAI mean/std, unless the checkpoint names
 *     another transform (open_clip's preprocess_cfg: mean, std, resize_mode
 *     "squash" or "longest"; a Hugging Face preprocessor_config.json).
 */
#ifndef VLM_PUBLIC_H
#define VLM_PUBLIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VLM_API __attribute__((visibility("default")))
#else
#define VLM_API
#endif

/* The API version this header describes (vlm_api_version() gives the library's). */
#define VLM_API_VERSION 2
VLM_API int vlm_api_version(void);

/* The message of the last failure on this thread ("" if none has failed). */
VLM_API const char *vlm_get_last_error(void);

/* ------------------------------------------------------------------ models */
typedef struct vlm_model vlm_model;   /* opaque */

typedef struct {
  /* Vocabulary for the text tower: a folder with vocab.json + merges.txt, or
   * bpe_simple_vocab_16e6.txt(.gz). NULL: the model directory's tokenizer/, its
   * vocab.json + merges.txt, the tokenizer/ of the `vlm train` run a checkpoint
   * belongs to (RUN/tokenizer/ for RUN/checkpoints/NAME), or the model directory's
   * bpe_simple_vocab_16e6.txt(.gz), the first found; a model without one still
   * loads and embeds images (text calls then fail). A tokenizer with more ids than
   * the model's vocabulary fails the load. */
  const char *tokenizer;
  int batch_size;   /* images / texts per forward pass (its activations are allocated at load); <= 0: 32 */
  int threads;      /* CPU threads of every call on this model, from any thread; 0: VLM_THREADS or all
                       cores; at most 4096 (more, or < 0, fails the load). Other models and the
                       calling thread's own OpenMP setting are left as they are. */
  int bf16;         /* 1: bf16 matmul inputs with f32 accumulation, the weights converted once
                       (faster on CPUs with AVX512-BF16/AMX; features within ~1e-5 cosine of
                       f32). This model's calls only: other models keep their precision.
                       0: f32. */
} vlm_model_options;

/* Load a model: a directory (open_clip_config.json + open_clip_model.safetensors,
 * or config.json + model.safetensors in open_clip or Hugging Face form; PyTorch
 * checkpoints, open_clip_pytorch_model.bin / pytorch_model.bin, in place of the
 * safetensors), a config file with the weights beside it, or a weights file (its
 * config beside it; OpenAI's TorchScript archives read it off their shapes). Nothing
 * in a PyTorch file is executed. On failure returns NULL and, when err is
 * not NULL, sets *err to the message (as vlm_get_last_error()). */
VLM_API vlm_model *vlm_model_load(const char *path, const char **err);
/* The same with options (opt may be NULL). */
VLM_API vlm_model *vlm_model_load_ex(const char *path, const vlm_model_options *opt, const char **err);
/* The same on a device (API version 2): "cpu" (or NULL) or "cuda": the weights are
 * uploaded once, each batch is uploaded and its features copied back. "cuda" fails
 * (NULL, *err says why) when no GPU is usable. */
VLM_API vlm_model *vlm_model_load_on(const char *path, const vlm_model_options *opt, const char *device,
                                     const char **err);
VLM_API void vlm_model_free(vlm_model *m);   /* NULL is fine */

VLM_API int vlm_model_embed_dim(const vlm_model *m);       /* E */
VLM_API int vlm_model_image_size(const vlm_model *m);      /* S: the input is S x S */
VLM_API int vlm_model_context_length(const vlm_model *m);  /* text tokens per caption */
VLM_API int vlm_model_vocab_size(const vlm_model *m);
VLM_API int vlm_model_has_tokenizer(const vlm_model *m);   /* 1 if texts can be embedded */
/* A hash of the config and every weight ("clip-" or, for a CoCa model, "coca-" + 16
 * hex digits), the identity `vlm index` stores: equal for the same weights in either
 * checkpoint layout. */
VLM_API const char *vlm_model_identity(const vlm_model *m);

/* ------------------------------------------------------------------ embedding */
/* Image files (JPEG, PNG, WebP; the format from the first bytes) -> out[n, E].
 * Fails on the first unreadable file, naming it (nothing is skipped). */
VLM_API int vlm_embed_image_files(vlm_model *m, const char *const *paths, int n, float *out);
/* One 8-bit RGB image in memory: width x height pixels, 3 bytes each (R, G, B),
 * rows stride bytes apart (stride 0: width * 3) -> out[E]. Preprocessed as above. */
VLM_API int vlm_embed_image_rgb(vlm_model *m, const uint8_t *rgb, int width, int height, int stride,
                                float *out);
/* Already preprocessed images: pixels[n, 3, S, S] float, channel-major, normalized
 * -> out[n, E]. */
VLM_API int vlm_embed_pixels(vlm_model *m, const float *pixels, int n, float *out);
/* UTF-8 texts -> out[n, E] (open_clip's tokenizer: cleaned, lower-cased, BPE,
 * truncated to the context length). Needs a tokenizer. */
VLM_API int vlm_embed_texts(vlm_model *m, const char *const *texts, int n, float *out);
/* Token ids[n, len] (start/end tokens included, padded with 0; len <= the context
 * length, every id in [0, vocab)) -> out[n, E]. No tokenizer needed. */
VLM_API int vlm_embed_token_ids(vlm_model *m, const int32_t *ids, int n, int len, float *out);

/* ------------------------------------------------------------------ zero-shot */
typedef struct vlm_classifier vlm_classifier;   /* opaque: the class embeddings */

typedef struct {
  int index;      /* class index into the names given to vlm_classifier_new */
  float prob;     /* softmax over all classes of the logits */
  float logit;    /* 100 * cosine(image, class) */
} vlm_class_score;

/* open_clip's zero-shot classifier for n_classes names: for each class the texts of
 * every template (with "{}" or "{c}" replaced by the name), embedded, normalized,
 * averaged and renormalized. Templates: templates[n_templates] when not NULL (each
 * must hold "{}" or "{c}", as a `vlm zeroshot --templates` file's lines; a NULL,
 * empty or placeholder-less entry fails, naming its index), else the built-in set
 * named by template_set: "openai" (CLIP's 80 ImageNet prompts, also when NULL),
 * "simple" (its 7-prompt subset) or "shapes" (`vlm zeroshot --templates shapes`, for
 * the synthetic shapes set); template_set is not read when templates is given.
 * Needs a tokenizer. */
VLM_API vlm_classifier *vlm_classifier_new(vlm_model *m, const char *const *classes, int n_classes,
                                           const char *template_set, const char *const *templates,
                                           int n_templates);
VLM_API void vlm_classifier_free(vlm_classifier *c);   /* NULL is fine */
VLM_API int vlm_classifier_size(const vlm_classifier *c);   /* number of classes */
/* The k best classes (best first) for one image embedding (E floats, as from
 * vlm_embed_*) into out[k]; k is clamped to the class count. Returns how many
 * were written, or -1. */
VLM_API int vlm_classify(const vlm_classifier *c, const float *image_embedding, int k, vlm_class_score *out);
/* Convenience: embed an image file and classify it with c (built on the same model). */
VLM_API int vlm_classify_image_file(vlm_model *m, const vlm_classifier *c, const char *path, int k,
                                    vlm_class_score *out);

/* ------------------------------------------------------------------ captions */
/* A caption for an image file into out[out_size], NUL-terminated (UTF-8): greedy
 * decoding as `vlm caption` does by default, on the model's device. Returns 0, or -1
 * on failure. A caption longer than out_size - 1 bytes is cut to its longest prefix
 * that fits and ends at a character boundary (no UTF-8 character is split): a buffer
 * with room to spare (strlen(out) < out_size - 4) shows it was not cut. Needs a CoCa model (an open_clip checkpoint
 * with multimodal_cfg) and its tokenizer; a CLIP model returns -1 with the message
 * "captioning is not supported for CLIP models". */
VLM_API int vlm_caption(vlm_model *m, const char *image_path, char *out, size_t out_size);

#ifdef __cplusplus
}
#endif
#endif
