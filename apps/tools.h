/* Helpers shared by the user's tools (zeroshot, index, search): finding image
 * files, embedding files in batches with bad images skipped, progress lines. */
#ifndef VLM_APPS_TOOLS_H
#define VLM_APPS_TOOLS_H
#include <stdint.h>

#include "model/encode.h"

typedef struct {
  char **paths;
  int64_t n, cap;
  int64_t unsearched;   /* vlm_tools_collect: folders it could not search (each named on stderr) */
} vlm_pathlist;

/* 1 when the file starts like a JPEG, PNG or WebP (magic bytes, not the extension). */
int vlm_tools_is_image(const char *path);
/* Add arg: a file is added as given; a folder is searched recursively (links to folders
 * are not followed) and its images are added in sorted order: the files that start like
 * a JPEG, PNG or WebP, and every file named .jpg, .jpeg, .png or .webp (any case) even
 * when it cannot be read (no permission, empty, not an image), so that the decoding
 * names it and counts it as skipped instead of its vanishing (a pipe or device so named is
 * a warning, never opened); other files are ignored, except that one whose first bytes
 * cannot be read is named in a warning (it may be an image).
 * A folder that cannot be opened, or one nested more than VLM_TOOLS_MAX_DEPTH folders
 * deep, is left out with a warning "vlm CMD: warning: FOLDER: ..." on stderr and counted
 * in pl->unsearched; the rest is searched. A missing arg is an error naming it. */
#define VLM_TOOLS_MAX_DEPTH 64
vlm_status vlm_tools_collect(vlm_pathlist *pl, const char *arg, const char *cmd);
vlm_status vlm_pathlist_add(vlm_pathlist *pl, const char *path);
void vlm_pathlist_free(vlm_pathlist *pl);
/* Files named more than once (a folder and a file in it, two spellings of one folder, a
 * hard link): the first name only, the order kept. Returns how many names were dropped,
 * or -1 (out of memory). */
int64_t vlm_pathlist_drop_duplicates(vlm_pathlist *pl);

/* Progress of long work on stderr: on a terminal one line redrawn at most twice a second,
 * otherwise (a log file) a line every VLM_TOOLS_PROGRESS_EVERY_S seconds (the environment's
 * VLM_PROGRESS_EVERY=SECONDS, when set, instead); and a last line
 * when done reaches n. "CMD: done/n WHAT (pct%), rate WHAT/s[, K skipped (images)][, ETA s]". */
#define VLM_TOOLS_PROGRESS_EVERY_S 10.0
typedef struct {
  const char *cmd, *what;
  int64_t n, done, skipped;
  double t0, last, every;
  int on, tty;
} vlm_tools_progress;
void vlm_tools_progress_start(vlm_tools_progress *p, const char *cmd, const char *what, int64_t n, int on);
void vlm_tools_progress_add(vlm_tools_progress *p, int64_t k, int64_t skipped);

/* The class prompts of a zero-shot classifier (classes x templates: 80,000 for 1,000 classes
 * and open_clip's 80, minutes with a large text tower), embedded by vlm_tools_prompts_cb for
 * vlm_zeroshot_classifier with a progress line "CMD: k/n prompts" when there are more than
 * VLM_TOOLS_PROMPTS_QUIET of them. */
#define VLM_TOOLS_PROMPTS_QUIET 1000
typedef struct { vlm_encoder *enc; vlm_tools_progress pg; } vlm_tools_prompts;
void vlm_tools_prompts_start(vlm_tools_prompts *p, vlm_encoder *enc, const char *cmd, int64_t n);
vlm_status vlm_tools_prompts_cb(void *ctx, const char *const *texts, int n, float *out);

/* vlm zeroshot --classifier FILE: the classifier W [C, E] kept in a safetensors file (tensor
 * "classifier"; __metadata__ format "vlm-zeroshot-classifier", version, key, model_identity,
 * model, templates). The key hashes the model's identity, its precision and device, and every
 * prompt's token ids (class names, templates and tokenizer), so a file made for anything else
 * is not used. vlm_zs_cache_key writes 16 hex digits (vlm_hash) into key[n] (n >= 17). vlm_zs_cache_read:
 * 1 when FILE holds this key's classifier (W filled), 0 when FILE is absent or made for
 * something else, -1 on an error (message set; a file that is not a classifier is one).
 * vlm_zs_cache_write replaces FILE atomically. */
vlm_status vlm_zs_cache_key(vlm_encoder *e, const char *const *classes, int C, const char *const *tpl, int T,
                            char *key, size_t n);
int vlm_zs_cache_read(const char *path, const char *key, int64_t C, int64_t E, float *W);
vlm_status vlm_zs_cache_write(const char *path, const char *key, const vlm_encoder *e, const char *model, int T,
                              int64_t C, const float *W);
/* The classifier W [C, E] of zeroshot and eval: read from classifier (a path, or NULL for
 * none) when it holds this one, else built (a progress line "CMD: k/n prompts" when there are
 * many) and, with a path, written there. vlm_tools_classifier_dir_ok: 1 when classifier's
 * folder exists, else 0 with a message "vlm CMD: ..." on stderr (checked before any work). */
vlm_status vlm_tools_classifier(vlm_encoder *e, const char *cmd, const char *model, const char *classifier,
                                const char *const *classes, int C, const char *const *tpl, int T, int batch,
                                float *W);
int vlm_tools_classifier_dir_ok(const char *cmd, const char *classifier);

/* Embed n image files into out[n, E] (unit rows), batch by batch, decoding (with decode:
 * --max-image-pixels; NULL: the defaults) and preprocessing a batch in parallel. ok[i] = 1
 * if file i was embedded, 0 if it was skipped (its message printed as "vlm CMD: skipped:
 * <error>"). progress != 0 prints a progress line on stderr. Returns the number skipped,
 * or -1 on a fatal error. */
int64_t vlm_tools_embed_files(vlm_encoder *e, char *const *paths, int64_t n, float *out, int *ok,
                              const vlm_decode_opts *decode, const char *cmd, int progress);

/* Split a comma-separated list (trimmed, empty items are an error) or read one
 * item per non-empty line of a file (trimmed; a UTF-8 BOM at its start skipped). Free with
 * vlm_zeroshot_strings_free. */
vlm_status vlm_tools_split_list(const char *s, char ***out, int *n);
vlm_status vlm_tools_read_lines(const char *path, char ***out, int *n, int keep_empty);

/* JSON string (quoted, escaped) to f. Bytes that are not valid UTF-8 (a file name in
 * another encoding) are each written as \ufffd (U+FFFD), so the output is valid JSON for
 * every parser, at the price of that name's exact bytes (docs/JSON.md). */
void vlm_tools_json_str(FILE *f, const char *s);
/* The same as a malloc'd string (NULL when out of memory); NULL s is "". */
char *vlm_tools_json_quote(const char *s);
/* A name in a line of text output: control characters (a newline or an escape sequence in a
 * file name) as C escapes (\n, \t, \r, \xNN), so one result stays one line and nothing
 * reaches the terminal as a command; other bytes as they are (--json gives the exact name). */
void vlm_tools_text_str(FILE *f, const char *s);

/* Whether path can be written as the atomic writers write it (a temporary file beside it,
 * created and removed now): for commands that work long before they write, so that a missing
 * or read-only folder, or a directory in the way, is an error before the work, not after. */
vlm_status vlm_tools_check_writable(const char *path);

/* ---- the index file (index_file.c): safetensors with
 *   embeddings  F32 [N, E]   unit rows
 *   items       U8  [bytes]  the N paths (or texts), UTF-8, back to back
 *   offsets     I64 [N + 1]  item i is items[offsets[i], offsets[i+1])
 *   file_size   I64 [N]      bytes of each image file (0 for texts)
 *   mtime_ns    I64 [N]      its modification time (0 for texts)
 *   __metadata__: format "vlm-index", version "1", kind "images" | "texts",
 *     model_identity (vlm_encoder.identity), model (the --model path),
 *     embed_dim, count. */
typedef struct {
  vlm_safetensors st;
  int64_t n, E;
  const float *emb;             /* [n, E] (in the mapping; vlm_st_open aligns a misaligned tensor) */
  const char *items;            /* not NUL-terminated: use the offsets */
  const int64_t *off, *size, *mtime;
  const char *kind, *identity, *model;
} vlm_index;

/* Open and validate (every error names the file and the problem). */
vlm_status vlm_index_open(vlm_index *ix, const char *path);
void vlm_index_close(vlm_index *ix);
/* Item i as a malloc'd NUL-terminated string (NULL on OOM). */
char *vlm_index_item(const vlm_index *ix, int64_t i);
/* Write an index atomically. items[n] are NUL-terminated strings; size/mtime may be NULL. */
vlm_status vlm_index_write(const char *path, const char *kind, const char *identity, const char *model,
                           const float *emb, int64_t n, int64_t E, char *const *items, const int64_t *size,
                           const int64_t *mtime);
/* Embeddings as a NumPy .npy (format 1.0, '<f4', C order, shape (n, E)), atomically. */
vlm_status vlm_write_npy(const char *path, const float *x, int64_t n, int64_t E);
#endif
