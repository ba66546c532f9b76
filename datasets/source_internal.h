/* Internals shared by datasets/source*.c, tar.c and loader.c (not part of the public contract). */
#ifndef VLM_DATASETS_SOURCE_INTERNAL_H
#define VLM_DATASETS_SOURCE_INTERNAL_H
#include <stdio.h>

#include "datasets/datasets.h"

struct vlm_source {
  char *spec;
  vlm_ds_type type;
  vlm_source_opts opts;        /* string fields not owned (used at open only) */
  int64_t size;                /* -1: unknown (streams) */
  int64_t n_shards;            /* streams: shard count; else 0 */
  char **classnames;           /* owned, NULL when none */
  int n_classes;
  void *impl;
  vlm_status (*get)(vlm_source *s, int64_t i, vlm_sample *out);
  vlm_status (*shard_open)(vlm_source *s, int64_t shard, vlm_shard_reader **out);
  void (*free_impl)(void *impl);
};

/* Type-specific openers: fill s (size, impl, get/shard_open/free_impl, classnames). */
vlm_status vlm_src_open_csv(vlm_source *s, const char *path);
vlm_status vlm_src_open_coco(vlm_source *s, const char *path);
vlm_status vlm_src_open_wds(vlm_source *s, const char *pattern);
vlm_status vlm_src_open_folder(vlm_source *s, const char *dir, int imagefolder);
vlm_status vlm_src_open_shapes(vlm_source *s, const char *spec);
/* 1 when an image under dir (sub-folders searched) has its caption beside it (x.jpg + x.txt):
 * auto-detection's caption folder, not an ImageFolder. */
int vlm_src_folder_has_captions(const char *dir);

/* Open a regular file for reading without blocking on a FIFO: open(O_NONBLOCK), fstat the
 * descriptor, refuse anything but a regular file ("is a directory", "not a regular file (a
 * pipe)", ...), then clear O_NONBLOCK. Returns the fd, or -1 with the message set (naming the
 * path; what, e.g. "shard", goes into "cannot open <what>"). */
int vlm_src_open_regular(const char *path, const char *what);
/* Whole file into memory (malloc'ed, NUL-terminated); errors name the file. max: size guard. */
vlm_status vlm_src_read_file(const char *path, size_t max, uint8_t **out, size_t *n);
/* Set a failure on a sample: message "name: problem" and the reason; returns code. */
vlm_status vlm_src_fail(vlm_sample *out, vlm_bad_reason why, vlm_status code);
/* path joined to dir unless absolute; malloc'ed. */
char *vlm_src_join(const char *dir, const char *path);
/* The folder part of a path ("." when none); malloc'ed. */
char *vlm_src_dirname(const char *path);

/* ---- tar (tar.c): a streaming ustar / pax / GNU reader over a FILE*. */
typedef struct vlm_tar vlm_tar;
typedef struct {
  char *name;       /* full path (pax path / GNU long name applied); owned by the reader */
  uint8_t *data;    /* the file's bytes, malloc'ed: the caller takes it (free) */
  size_t size;
  int64_t offset;   /* the header's byte offset in the archive */
} vlm_tar_entry;
/* name: used in messages. The reader does not own f unless own_file. */
vlm_tar *vlm_tar_new(FILE *f, const char *name, int own_file);
/* 1: a regular file (e filled), 0: end of archive, -1: error (message names the archive
 * and the offset; further calls return 0). Non-file entries are skipped. */
int vlm_tar_next(vlm_tar *t, vlm_tar_entry *e);
void vlm_tar_free(vlm_tar *t);
#define VLM_TAR_MAX_ENTRY ((size_t)1 << 28)   /* 256 MiB: a larger member is an error */

/* ---- WebDataset grouping over a tar (source_wds.c; also used by the fuzz target) */
/* Brace expansion of a shard pattern: "a-{000..009}.tar", "{a,b}.tar" (nested and several
 * braces allowed; at most max results). 0 on a malformed pattern (message set). */
int vlm_wds_expand(const char *pattern, char ***out, int64_t *n, int64_t max);
vlm_shard_reader *vlm_wds_reader_new(vlm_tar *tar, const char *shard_name, int64_t shard_index);
#endif
