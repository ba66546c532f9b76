/* Dataset sources on data the test makes in a temporary folder: each source reads good
 * samples and deliberately broken ones (missing file, corrupt image, empty caption, bad
 * UTF-8, malformed CSV record / JSON annotation, truncated and corrupt tar) without
 * crashing, each failure naming the sample. Also: CSV quoting (separators, doubled quotes,
 * newlines inside quotes), CRLF, blank lines, BOM, other separators and keys, a missing
 * column named at open; COCO grouping; tar ustar/pax/GNU long names; brace expansion;
 * folder and ImageFolder layouts; type auto-detection. What JSON readers disagree on (text
 * after the document, duplicate keys, ids past 2^53 - 1) refused; UTF-16 CSV named; braces
 * in a path that exists read literally; a WebDataset member twice in a sample refused. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets.h"
#include "datasets/source_internal.h"
#include "gradcheck.h"

static char g_dir[256];
static const char *g_shared;

static const char *P(const char *name) { return vt_path(g_dir, name); }

/* A small RGB PNG (w x h, colour seeded by v) into memory. */
static uint8_t *png_bytes(int w, int h, int v, size_t *n) {
  uint8_t *rgb = malloc((size_t)w * h * 3), *row = rgb;
  for (int y = 0; y < h; y++, row += (size_t)w * 3)
    for (int x = 0; x < w; x++) {
      row[x * 3] = (uint8_t)(v * 40 + x);
      row[x * 3 + 1] = (uint8_t)(v * 70 + y);
      row[x * 3 + 2] = (uint8_t)(v * 13);
    }
  uint8_t *png = vt_png_rgb(w, h, rgb, n);
  free(rgb);
  return png;
}

static void write_png(const char *path, int v) {
  size_t n;
  uint8_t *b = png_bytes(12, 10, v, &n);
  vt_write_file(path, b, n);
  free(b);
}

static void write_text(const char *path, const char *s) { vt_write_file(path, s, strlen(s)); }

/* A corrupt image: the shared truncated.jpg when present, else a PNG cut in half. */
static void write_corrupt(const char *path) {
  char src[1024];
  snprintf(src, sizeof src, "%s/data/images/truncated.jpg", g_shared);
  size_t n;
  uint8_t *b = NULL;
  FILE *f = fopen(src, "rb");
  if (f) {
    fclose(f);
    b = vt_read_file(src, &n);
  } else {
    b = png_bytes(40, 40, 3, &n);
    n /= 2;
  }
  vt_write_file(path, b, n);
  free(b);
}

static int decodes(const vlm_sample *s) {
  vlm_image im;
  if (!s->image_bytes) return 0;
  if (vlm_image_decode_mem(s->image_bytes, s->image_len, s->name, NULL, &im)) return 0;
  vlm_image_free(&im);
  return 1;
}

/* ------------------------------------------------------------------ tar writer */
static void tar_add_pax(FILE *f, const char *name, const void *d, size_t n) {
  char rec[1200];
  int body = (int)strlen(name) + 7;   /* " path=" + name + "\n" */
  int len = body + 1;
  while ((int)snprintf(NULL, 0, "%d", len) + body != len) len++;
  snprintf(rec, sizeof rec, "%d path=%s\n", len, name);
  vt_tar_header(f, "PaxHeaders/x", strlen(rec), 'x');
  vt_tar_data(f, rec, strlen(rec));
  vt_tar_add(f, "truncated-name-in-ustar-header", d, n);
}

static void tar_add_gnu(FILE *f, const char *name, const void *d, size_t n) {
  vt_tar_header(f, "././@LongLink", strlen(name) + 1, 'L');
  vt_tar_data(f, name, strlen(name) + 1);
  vt_tar_add(f, "short", d, n);
}

static void tar_end(FILE *f) {
  static const char zero[1024];
  fwrite(zero, 1, 1024, f);
}

/* ------------------------------------------------------------------ CSV */
static void test_csv(void) {
  mkdir(P("csv"), 0777);
  mkdir(P("csv/img"), 0777);
  write_png(P("csv/img/a.png"), 1);
  write_png(P("csv/img/b.png"), 2);
  write_corrupt(P("csv/img/bad.jpg"));
  const char *tsv =
      "\xEF\xBB\xBF" "filepath\ttitle\textra\r\n"
      "img/a.png\ta red thing\tx\r\n"
      "\r\n"
      "\"img/b.png\"\t\"a caption with \"\"quotes\"\", a\ttab and\na newline\"\ty\n"
      "img/missing.png\tnothing here\tz\n"
      "img/bad.jpg\ta corrupt jpeg\tz\n"
      "img/a.png\t   \tz\n"
      "img/a.png\tbad \xff\xfe utf8\tz\n"
      "img/a.png\n"
      "img/a.png\t\"unterminated quote\n"
      "more\n";
  write_text(P("csv/train.tsv"), tsv);
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  CHECK(vlm_source_open(&s, P("csv/train.tsv"), &o) == VLM_OK, "open tsv: %s", vlm_last_error());
  if (!s) return;
  CHECK(vlm_source_type(s) == VLM_DS_CSV, "auto type csv");
  CHECK(vlm_source_size(s) == 8, "8 records, got %lld", (long long)vlm_source_size(s));
  vlm_sample sm;
  CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && !strcmp(sm.caption, "a red thing") && decodes(&sm), "record 0: %s",
        vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 1, &sm) == VLM_OK && !strcmp(sm.caption, "a caption with \"quotes\", a\ttab and\na newline") &&
            decodes(&sm),
        "record 1 (quoted): '%s' %s", sm.caption ? sm.caption : "(null)", vlm_last_error());
  vlm_sample_free(&sm);
  /* samples are named by the line they start on: the blank line 3 and the quoted newline count */
  CHECK(vlm_source_get(s, 2, &sm) != VLM_OK && sm.fail == VLM_BAD_READ &&
            strstr(vlm_last_error(), "train.tsv:6 (img/missing.png)"),
        "missing image named with its line (6): %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 3, &sm) == VLM_OK && !decodes(&sm) && strstr(vlm_last_error(), "bad.jpg") &&
            strstr(sm.name, "train.tsv:7"),
        "corrupt image fails to decode, named (line 7): %s %s", sm.name, vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 4, &sm) != VLM_OK && sm.fail == VLM_BAD_CAPTION && strstr(vlm_last_error(), "empty caption"),
        "empty caption: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 5, &sm) != VLM_OK && sm.fail == VLM_BAD_CAPTION && strstr(vlm_last_error(), "UTF-8"),
        "bad UTF-8: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 6, &sm) != VLM_OK && strstr(vlm_last_error(), "fields"), "short record: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 7, &sm) != VLM_OK && strstr(vlm_last_error(), "unterminated"), "unterminated quote: %s",
        vlm_last_error());
  vlm_sample_free(&sm);
  vlm_source_close(s);

  /* open_clip's one-row-per-caption layout: rows naming the same image path are one image
   * (group = its first row), the path compared after unquoting and cleaning ("./" and "//"
   * dropped, as vlm index cleans paths: the same file) */
  write_text(P("csv/rows.tsv"), "filepath\ttitle\n"
                                "img/a.png\ta one\n"
                                "img/b.png\tb one\n"
                                "\"img/a.png\"\ta two\n"
                                "./img/a.png\ta, another spelling\n"
                                "img/b.png\tb two\n"
                                "img/b.png\n"
                                "img/a.png\t\"unterminated\n");
  CHECK(vlm_source_open(&s, P("csv/rows.tsv"), &o) == VLM_OK && vlm_source_size(s) == 7, "rows.tsv: %s", vlm_last_error());
  if (s) {
    const int64_t want[7] = {0, 1, 0, 0, 1, 1, 6};   /* a short record still names b; an unterminated one nothing */
    for (int i = 0; i < 7; i++) {
      vlm_source_get(s, i, &sm);
      CHECK(sm.group == want[i], "rows.tsv record %d: group %lld, want %lld", i, (long long)sm.group, (long long)want[i]);
      vlm_sample_free(&sm);
    }
    vlm_source_close(s);
  }
  /* a training loader's option: no grouping pass, a row's group is its index */
  o.csv_group_images = 0;
  CHECK(vlm_source_open(&s, P("csv/rows.tsv"), &o) == VLM_OK, "rows.tsv, no grouping: %s", vlm_last_error());
  if (s) {
    vlm_source_get(s, 2, &sm);
    CHECK(sm.group == 2, "rows.tsv without grouping: record 2 group %lld", (long long)sm.group);
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  /* open_clip reads CSV image paths relative to the working directory, vlm relative to the
   * file: a CSV written for open_clip fails, and the error says why */
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) && chdir(g_dir) == 0) {
    write_text("csv/oc.tsv", "filepath\ttitle\ncsv/img/a.png\tx\n");
    CHECK(vlm_source_open(&s, "csv/oc.tsv", &o) == VLM_OK, "oc.tsv: %s", vlm_last_error());
    if (s) {
      CHECK(vlm_source_get(s, 0, &sm) != VLM_OK && strstr(vlm_last_error(), "csv/csv/img/a.png") &&
                strstr(vlm_last_error(), "relative to the working directory"),
            "a path relative to the working directory: the error says so: %s", vlm_last_error());
      vlm_sample_free(&sm);
      vlm_source_close(s);
    }
    CHECK(chdir(cwd) == 0, "chdir back");
  }
  o.csv_group_images = 1;
  /* no path repeats: a row's group is its index */
  write_text(P("csv/distinct.tsv"), "filepath\ttitle\nimg/a.png\tx\nimg/b.png\ty\n");
  CHECK(vlm_source_open(&s, P("csv/distinct.tsv"), &o) == VLM_OK, "distinct.tsv: %s", vlm_last_error());
  if (s) {
    for (int i = 0; i < 2; i++) {
      CHECK(vlm_source_get(s, i, &sm) == VLM_OK && sm.group == i, "distinct.tsv record %d: group %lld", i,
            (long long)sm.group);
      vlm_sample_free(&sm);
    }
    vlm_source_close(s);
  }

  /* comma separator, other keys */
  write_text(P("csv/b.csv"), "id,path,text\n1,img/a.png,hello\n2,img/b.png,\"x, y\"\n");
  o.csv_separator = ',';
  o.csv_img_key = "path";
  o.csv_caption_key = "text";
  CHECK(vlm_source_open(&s, P("csv/b.csv"), &o) == VLM_OK && vlm_source_size(s) == 2, "csv with keys: %s", vlm_last_error());
  if (s) {
    CHECK(vlm_source_get(s, 1, &sm) == VLM_OK && !strcmp(sm.caption, "x, y"), "comma in quotes");
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  /* a missing column: named, header listed */
  vlm_source_opts_default(&o);
  CHECK(vlm_source_open(&s, P("csv/b.csv"), &o) != VLM_OK && strstr(vlm_last_error(), "'filepath'") &&
            strstr(vlm_last_error(), "id,path,text") && strstr(vlm_last_error(), "b.csv"),
        "missing column: %s", vlm_last_error());
  o.csv_separator = ',';
  CHECK(vlm_source_open(&s, P("csv/b.csv"), &o) != VLM_OK && strstr(vlm_last_error(), "'path'"),
        "missing column lists the header: %s", vlm_last_error());
  vlm_source_opts_default(&o);
  CHECK(vlm_source_open(&s, P("csv/nope.csv"), &o) != VLM_OK && strstr(vlm_last_error(), "nope.csv"), "missing csv: %s",
        vlm_last_error());
  write_text(P("csv/empty.csv"), "");
  CHECK(vlm_source_open(&s, P("csv/empty.csv"), &o) != VLM_OK && strstr(vlm_last_error(), "empty"), "empty csv: %s",
        vlm_last_error());
}

/* An image path naming a FIFO or a folder: a bad sample at once (vlm_src_read_file checks
 * the opened descriptor), not a read that waits for a writer. */
static void test_special_files(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  write_text(P("csv/special.tsv"), "filepath\ttitle\nfifo.png\tf\nimg\td\nimg/a.png\tok\n");
  int have_fifo = mkfifo(P("csv/fifo.png"), 0644) == 0;
  CHECK(vlm_source_open(&s, P("csv/special.tsv"), &o) == VLM_OK, "special.tsv: %s", vlm_last_error());
  if (s) {
    vlm_sample sm;
    if (have_fifo) {
      alarm(20);   /* a hang is a failure */
      CHECK(vlm_source_get(s, 0, &sm) != VLM_OK && sm.fail == VLM_BAD_READ && strstr(vlm_last_error(), "fifo.png") &&
                strstr(vlm_last_error(), "not a regular file"),
            "FIFO image: %s", vlm_last_error());
      alarm(0);
      vlm_sample_free(&sm);
    }
    CHECK(vlm_source_get(s, 1, &sm) != VLM_OK && strstr(vlm_last_error(), "is a directory"), "folder as image: %s",
          vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 2, &sm) == VLM_OK && decodes(&sm), "the next record reads: %s", vlm_last_error());
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
}

/* Read record i of an open CSV source: its caption, or NULL (the message in vlm_last_error). */
static char *csv_caption(vlm_source *s, int64_t i) {
  vlm_sample sm;
  char *cap = NULL;
  if (vlm_source_get(s, i, &sm) == VLM_OK && sm.caption) cap = strdup(sm.caption);
  vlm_sample_free(&sm);
  return cap;
}

/* The record scanner and the field splitter follow one rule, Python's csv (and pandas'): a
 * quote opens a quoted field only at the field's start, and after the closing quote the text
 * up to the separator is literal. Blank and whitespace-only lines are skipped wherever they
 * are; CR, LF and CRLF end records. */
static void test_csv_grammar(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  /* an odd number of quotes after a quoted start: no record swallowed */
  write_text(P("csv/stop.tsv"),
             "filepath\ttitle\n"
             "img/a.png\t\"Stop\" sign, 30\" wide\n"
             "img/b.png\ta purple star\n"
             "img/a.png\t\"a\"b\"c\"\tx\n"
             "img/b.png\ta green star\n");
  CHECK(vlm_source_open(&s, P("csv/stop.tsv"), &o) == VLM_OK && vlm_source_size(s) == 4, "stop.tsv: 4 records, got %lld: %s",
        s ? (long long)vlm_source_size(s) : -1LL, vlm_last_error());
  if (s && vlm_source_size(s) == 4) {
    const char *want[4] = {"Stop sign, 30\" wide", "a purple star", "ab\"c\"", "a green star"};
    for (int i = 0; i < 4; i++) {
      char *cap = csv_caption(s, i);
      CHECK(cap && !strcmp(cap, want[i]), "stop.tsv record %d: '%s', want '%s'", i, cap ? cap : vlm_last_error(), want[i]);
      free(cap);
    }
  }
  vlm_source_close(s);
  s = NULL;
  /* whitespace-only lines: skipped, not glued onto the record before them */
  write_text(P("csv/ws.tsv"), "filepath\ttitle\n \nimg/a.png\tx\n  \r\n\nimg/b.png\ty\n \t\n");
  CHECK(vlm_source_open(&s, P("csv/ws.tsv"), &o) == VLM_OK, "whitespace lines: %s", vlm_last_error());
  if (s) {
    CHECK(vlm_source_size(s) == 3, "whitespace lines: 3 records (' \\t' is two fields with a tab separator), got %lld",
          (long long)vlm_source_size(s));
    char *a = csv_caption(s, 0), *b = csv_caption(s, 1);
    CHECK(a && !strcmp(a, "x") && b && !strcmp(b, "y"), "whitespace lines: captions '%s' '%s'", a ? a : "(null)",
          b ? b : "(null)");
    free(a);
    free(b);
    vlm_source_close(s);
    s = NULL;
  }
  o.csv_separator = ',';
  write_text(P("csv/ws.csv"), "filepath,title\n \t \nimg/a.png,x\n");
  CHECK(vlm_source_open(&s, P("csv/ws.csv"), &o) == VLM_OK && vlm_source_size(s) == 1, "spaces and tabs line skipped (','): %s",
        vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  /* old Mac line ends; a BOM before a quoted header field */
  write_text(P("csv/cr.csv"), "\xEF\xBB\xBF\"filepath\",title\rimg/a.png,\"one\r\"\rimg/b.png,two\r");
  CHECK(vlm_source_open(&s, P("csv/cr.csv"), &o) == VLM_OK && vlm_source_size(s) == 2, "CR line ends: %s", vlm_last_error());
  if (s) {
    char *a = csv_caption(s, 0), *b = csv_caption(s, 1);
    CHECK(a && !strcmp(a, "one\r") && b && !strcmp(b, "two"), "CR line ends: '%s' '%s'", a ? a : "(null)", b ? b : "(null)");
    free(a);
    free(b);
    vlm_source_close(s);
    s = NULL;
  }
  vlm_source_opts_default(&o);
  /* a header and no records: said so */
  write_text(P("csv/header_only.tsv"), "filepath\ttitle\n\n");
  CHECK(vlm_source_open(&s, P("csv/header_only.tsv"), &o) != VLM_OK && strstr(vlm_last_error(), "header_only.tsv") &&
            strstr(vlm_last_error(), "no records"),
        "header only: %s", vlm_last_error());
  /* the columns are found wherever they are: 300 before them */
  size_t cap = 8192, n = 0;
  char *wide = malloc(cap);
  for (int k = 0; k < 300; k++) n += (size_t)snprintf(wide + n, cap - n, "c%d\t", k);
  n += (size_t)snprintf(wide + n, cap - n, "filepath\ttitle\n");
  for (int k = 0; k < 300; k++) n += (size_t)snprintf(wide + n, cap - n, "x\t");
  snprintf(wide + n, cap - n, "img/a.png\tfar right\n");
  write_text(P("csv/wide.tsv"), wide);
  free(wide);
  CHECK(vlm_source_open(&s, P("csv/wide.tsv"), &o) == VLM_OK && vlm_source_size(s) == 1, "302 columns: %s", vlm_last_error());
  if (s) {
    char *c = csv_caption(s, 0);
    CHECK(c && !strcmp(c, "far right"), "column 302 read: %s", c ? c : vlm_last_error());
    free(c);
    vlm_source_close(s);
    s = NULL;
  }
  /* the CSV file itself a FIFO */
  if (mkfifo(P("csv/pipe.tsv"), 0644) == 0) {
    alarm(20);
    CHECK(vlm_source_open(&s, P("csv/pipe.tsv"), &o) != VLM_OK && strstr(vlm_last_error(), "not a regular file"),
          "FIFO CSV: %s", vlm_last_error());
    alarm(0);
  }
}

/* ------------------------------------------------------------------ COCO */
static void test_coco(void) {
  mkdir(P("coco"), 0777);
  mkdir(P("coco/annotations"), 0777);
  mkdir(P("coco/val2017"), 0777);
  write_png(P("coco/val2017/1.png"), 1);
  const char *js =
      "{\"images\": [{\"id\": 7, \"file_name\": \"1.png\"}, {\"id\": 9, \"file_name\": \"missing.png\"}],\n"
      " \"annotations\": [{\"image_id\": 7, \"id\": 1, \"caption\": \"cap one\"},\n"
      "   {\"image_id\": 7, \"id\": 2, \"caption\": \"cap two\"},\n"
      "   {\"image_id\": 9, \"id\": 3, \"caption\": \"no file\"},\n"
      "   {\"image_id\": 99, \"id\": 4, \"caption\": \"unknown image\"},\n"
      "   {\"image_id\": 7, \"id\": 5},\n"
      "   {\"image_id\": 7, \"id\": 6, \"caption\": \"  \"}]}";
  write_text(P("coco/annotations/captions_val2017.json"), js);
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  CHECK(vlm_source_open(&s, P("coco/annotations/captions_val2017.json"), &o) == VLM_OK, "open coco: %s", vlm_last_error());
  if (!s) return;
  CHECK(vlm_source_type(s) == VLM_DS_COCO && vlm_source_size(s) == 6, "coco: 6 captions");
  vlm_sample sm;
  CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && !strcmp(sm.caption, "cap one") && sm.group == 7 && decodes(&sm),
        "coco 0: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 1, &sm) == VLM_OK && !strcmp(sm.caption, "cap two") && sm.group == 7, "coco 1 grouped");
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 2, &sm) != VLM_OK && strstr(vlm_last_error(), "missing.png"), "coco missing file: %s",
        vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 3, &sm) != VLM_OK && strstr(vlm_last_error(), "99"), "coco unknown image: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 4, &sm) != VLM_OK && sm.fail == VLM_BAD_CAPTION && strstr(vlm_last_error(), "annotation 4"),
        "coco no caption: %s", vlm_last_error());
  vlm_sample_free(&sm);
  CHECK(vlm_source_get(s, 5, &sm) != VLM_OK && strstr(vlm_last_error(), "empty caption"), "coco empty caption: %s",
        vlm_last_error());
  vlm_sample_free(&sm);
  vlm_source_close(s);
  /* explicit image folder */
  o.coco_images = P("coco/val2017");
  write_text(P("coco/caps.json"), js);
  CHECK(vlm_source_open(&s, P("coco/caps.json"), &o) == VLM_OK, "coco with --coco-images");
  if (s) {
    CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && decodes(&sm), "coco image from the given folder");
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  vlm_source_opts_default(&o);
  write_text(P("coco/broken.json"), "{\"images\": [1, 2");
  CHECK(vlm_source_open(&s, P("coco/broken.json"), &o) != VLM_OK && strstr(vlm_last_error(), "broken.json") &&
            strstr(vlm_last_error(), "JSON"),
        "malformed json: %s", vlm_last_error());
  write_text(P("coco/other.json"), "{\"a\": 1}");
  CHECK(vlm_source_open(&s, P("coco/other.json"), &o) != VLM_OK && strstr(vlm_last_error(), "COCO"), "not coco: %s",
        vlm_last_error());
  write_text(P("coco/badimg.json"), "{\"images\": [{\"id\": \"x\"}], \"annotations\": []}");
  CHECK(vlm_source_open(&s, P("coco/badimg.json"), &o) != VLM_OK && strstr(vlm_last_error(), "images[0]"),
        "bad image entry: %s", vlm_last_error());
}

/* Malformed annotations name their own problem (an image with id -1 exists, so a fallback
 * of -1 would find it); a \u0000 in a caption is reported, not a cut caption; one image id
 * for two files is refused. */
static void test_coco_annotations(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  o.coco_images = P("coco/val2017");
  write_text(P("coco/anns.json"),
             "{\"images\": [{\"id\": -1, \"file_name\": \"1.png\"}, {\"id\": 3, \"file_name\": \"1.png\"},"
             "  {\"id\": 3, \"file_name\": \"1.png\"}],\n"
             " \"annotations\": [{\"caption\": \"no id\"}, {\"image_id\": \"3\", \"caption\": \"a string\"},\n"
             "   {\"image_id\": 1e300, \"caption\": \"huge\"}, [3], {\"image_id\": 3.5, \"caption\": \"half\"},\n"
             "   {\"image_id\": 3, \"caption\": \"cut\\u0000 here\"}, {\"image_id\": 3, \"caption\": \"a \\\\u0000 is text\"},\n"
             "   {\"image_id\": -1, \"caption\": \"minus one\"}]}");
  CHECK(vlm_source_open(&s, P("coco/anns.json"), &o) == VLM_OK && vlm_source_size(s) == 8, "coco anns: %s",
        vlm_last_error());
  if (s) {
    const char *want[6] = {"annotation 0: no \"image_id\"", "annotation 1: \"image_id\" is not an integer",
                           "annotation 2: \"image_id\" is out of", "annotation 3: not an object",
                           "annotation 4: \"image_id\" is not an integer", "caption holds a NUL"};
    vlm_sample sm;
    for (int i = 0; i < 6; i++) {
      CHECK(vlm_source_get(s, i, &sm) != VLM_OK && strstr(vlm_last_error(), want[i]) && !strstr(vlm_last_error(), "-1"),
            "coco annotation %d: %s", i, vlm_last_error());
      vlm_sample_free(&sm);
    }
    CHECK(vlm_source_get(s, 5, &sm) != VLM_OK && sm.fail == VLM_BAD_CAPTION && strstr(vlm_last_error(), "annotation 5"),
          "NUL caption: a caption failure naming the annotation");
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 6, &sm) == VLM_OK && !strcmp(sm.caption, "a \\u0000 is text"), "escaped backslash kept: %s",
          sm.caption ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 7, &sm) == VLM_OK && sm.group == -1 && decodes(&sm), "image id -1 works: %s", vlm_last_error());
    vlm_sample_free(&sm);
    vlm_source_close(s);
    s = NULL;
  }
  /* one id for two different files: refused, naming the id */
  write_text(P("coco/dup.json"),
             "{\"images\": [{\"id\": 5, \"file_name\": \"1.png\"}, {\"id\": 6, \"file_name\": \"2.png\"},"
             " {\"id\": 5, \"file_name\": \"other.png\"}], \"annotations\": [{\"image_id\": 5, \"caption\": \"x\"}]}");
  CHECK(vlm_source_open(&s, P("coco/dup.json"), &o) != VLM_OK && strstr(vlm_last_error(), "dup.json") &&
            strstr(vlm_last_error(), "images[0] and images[2]") && strstr(vlm_last_error(), "id 5"),
        "duplicate image id: %s", vlm_last_error());
  write_text(P("coco/nulname.json"),
             "{\"images\": [{\"id\": 5, \"file_name\": \"1.png\\u0000.txt\"}], \"annotations\": [{\"image_id\": 5, \"caption\": \"x\"}]}");
  CHECK(vlm_source_open(&s, P("coco/nulname.json"), &o) != VLM_OK && strstr(vlm_last_error(), "images[0]") &&
            strstr(vlm_last_error(), "NUL"),
        "NUL in a file name: %s", vlm_last_error());
}

/* ------------------------------------------------------------------ WebDataset */
static void test_wds(void) {
  mkdir(P("wds"), 0777);
  size_t n1, n2;
  uint8_t *p1 = png_bytes(12, 10, 1, &n1), *p2 = png_bytes(9, 9, 2, &n2);
  char bad[1024];
  snprintf(bad, sizeof bad, "%s", P("wds/bad.jpg"));
  write_corrupt(bad);
  size_t nb;
  uint8_t *jb = vt_read_file(bad, &nb);
  FILE *f = fopen(P("wds/shard-000.tar"), "wb");
  vt_tar_add(f, "000000.png", p1, n1);
  vt_tar_add(f, "000000.txt", "first caption\n", 14);
  vt_tar_add(f, "000000.json", "{}", 2);
  vt_tar_add(f, "000001.png", p2, n2);
  vt_tar_add(f, "000001.txt", "", 0);
  vt_tar_add(f, "000002.txt", "no image", 8);
  vt_tar_add(f, "000003.jpg", jb, nb);
  vt_tar_add(f, "000003.txt", "corrupt", 7);
  char longname[300];
  memset(longname, 'd', 150);
  snprintf(longname + 150, sizeof longname - 150, "/sample.seg.png");
  tar_add_pax(f, longname, p1, n1);
  snprintf(longname + 150, sizeof longname - 150, "/sample.txt");
  tar_add_gnu(f, longname, "long names", 10);
  tar_end(f);
  fclose(f);
  /* shard 1: a good sample, then truncated inside the next member */
  f = fopen(P("wds/shard-001.tar"), "wb");
  vt_tar_add(f, "a/k1.png", p2, n2);
  vt_tar_add(f, "a/k1.txt", "second shard", 12);
  vt_tar_add(f, "a/k2.png", p1, n1);
  fclose(f);
  size_t n;
  uint8_t *whole = vt_read_file(P("wds/shard-001.tar"), &n);
  vt_write_file(P("wds/shard-001.tar"), whole, n - 100);
  free(whole);
  /* shard 2: not a tar */
  char junk[700];
  memset(junk, 'x', sizeof junk - 1);
  junk[sizeof junk - 1] = 0;
  write_text(P("wds/shard-002.tar"), junk);

  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  char pat[1024];
  snprintf(pat, sizeof pat, "%s/wds/shard-{000..003}.tar", g_dir);
  CHECK(vlm_source_open(&s, pat, &o) == VLM_OK, "open wds: %s", vlm_last_error());
  if (s) {
    CHECK(vlm_source_is_stream(s) && vlm_source_num_shards(s) == 4 && vlm_source_size(s) == -1, "4 shards (one missing)");
    vlm_shard_reader *r;
    vlm_sample sm;
    CHECK(vlm_shard_open(s, 0, &r) == VLM_OK, "shard 0");
    int k = vlm_shard_next(r, &sm);
    CHECK(k == 1 && !strcmp(sm.caption, "first caption") && decodes(&sm) && strstr(sm.name, "shard-000.tar:000000"),
          "wds sample 0 (%d) %s", k, sm.name);
    /* named by the shard's path (its folder too: a/x.tar and b/x.tar are told apart) */
    CHECK(k == 1 && strstr(sm.name, "wds/shard-000.tar:000000"), "wds sample 0 named with the shard's path: %s", sm.name);
    vlm_sample_free(&sm);
    k = vlm_shard_next(r, &sm);
    CHECK(k == -1 && strstr(vlm_last_error(), "000001") && strstr(vlm_last_error(), "empty caption"), "empty caption: %s",
          vlm_last_error());
    vlm_sample_free(&sm);
    k = vlm_shard_next(r, &sm);
    CHECK(k == -1 && strstr(vlm_last_error(), "000002") && strstr(vlm_last_error(), "no image") &&
              strstr(vlm_last_error(), "its members: .txt") && !strstr(vlm_last_error(), "first dot"),
          "no image, the members named: %s", vlm_last_error());
    k = vlm_shard_next(r, &sm);
    CHECK(k == 1 && !decodes(&sm) && strstr(sm.name, "000003"), "corrupt jpeg read, fails to decode");
    vlm_sample_free(&sm);
    k = vlm_shard_next(r, &sm);
    /* pax "ddd.../sample.seg.png" and GNU "ddd.../sample.txt": one key; .seg.png is not an image */
    CHECK(k == -1 && strstr(vlm_last_error(), "ddd/sample: no image") &&
              strstr(vlm_last_error(), "its members: .seg.png, .txt (a key ends at the first dot of the file name"),
          "long names grouped, ext seg.png, the dotted name explained: %s", vlm_last_error());
    CHECK(vlm_shard_next(r, &sm) == 0, "end of shard 0");
    CHECK(vlm_shard_next(r, &sm) == 0, "stays at the end");
    vlm_shard_close(r);

    CHECK(vlm_shard_open(s, 1, &r) == VLM_OK, "shard 1");
    k = vlm_shard_next(r, &sm);
    CHECK(k == 1 && !strcmp(sm.caption, "second shard") && strstr(sm.name, "a/k1"), "shard 1 sample");
    vlm_sample_free(&sm);
    k = vlm_shard_next(r, &sm);
    CHECK(k == -1 && strstr(vlm_last_error(), "shard-001.tar") && strstr(vlm_last_error(), "offset") &&
              strstr(vlm_last_error(), "truncated"),
          "truncated tar named with offset: %s", vlm_last_error());
    CHECK(vlm_shard_next(r, &sm) == 0, "after truncation: end");
    vlm_shard_close(r);

    CHECK(vlm_shard_open(s, 2, &r) == VLM_OK, "shard 2");
    k = vlm_shard_next(r, &sm);
    CHECK(k == -1 && strstr(vlm_last_error(), "shard-002.tar") && strstr(vlm_last_error(), "checksum"),
          "not a tar: %s", vlm_last_error());
    CHECK(vlm_shard_next(r, &sm) == 0, "corrupt: end");
    vlm_shard_close(r);
    CHECK(vlm_shard_open(s, 3, &r) != VLM_OK && strstr(vlm_last_error(), "shard-003.tar"), "missing shard named: %s",
          vlm_last_error());
    vlm_source_close(s);
  }
  free(p1);
  free(p2);
  free(jb);
  /* the pax path overrides the ustar name */
  f = fopen(P("wds/pax.tar"), "wb");
  uint8_t *p3 = png_bytes(5, 5, 4, &n1);
  tar_add_pax(f, "some/dir/pax_key.png", p3, n1);
  vt_tar_add(f, "some/dir/pax_key.txt", "pax caption", 11);
  tar_end(f);
  fclose(f);
  free(p3);
  CHECK(vlm_source_open(&s, P("wds/pax.tar"), &o) == VLM_OK, "single .tar: %s", vlm_last_error());
  if (s) {
    vlm_shard_reader *r;
    vlm_sample sm;
    CHECK(vlm_shard_open(s, 0, &r) == VLM_OK && vlm_shard_next(r, &sm) == 1 && strstr(sm.name, "some/dir/pax_key") &&
              !strcmp(sm.caption, "pax caption") && decodes(&sm),
          "pax path: %s", vlm_last_error());
    vlm_sample_free(&sm);
    vlm_shard_close(r);
    vlm_source_close(s);
  }
  /* a header claiming 200 MB over a few bytes: an error, not a 200 MB allocation */
  f = fopen(P("wds/huge.tar"), "wb");
  vt_tar_header(f, "big.png", 200u << 20, '0');
  fwrite("abc", 1, 3, f);
  fclose(f);
  CHECK(vlm_source_open(&s, P("wds/huge.tar"), &o) == VLM_OK, "huge.tar");
  if (s) {
    vlm_shard_reader *r;
    vlm_sample sm;
    CHECK(vlm_shard_open(s, 0, &r) == VLM_OK && vlm_shard_next(r, &sm) == -1 && strstr(vlm_last_error(), "huge.tar") &&
              strstr(vlm_last_error(), "truncated member 'big.png'") && strstr(vlm_last_error(), "offset 0"),
          "huge claimed size: %s", vlm_last_error());
    vlm_shard_close(r);
    vlm_source_close(s);
  }
  snprintf(pat, sizeof pat, "%s/wds/none-{0..3}.tar", g_dir);
  CHECK(vlm_source_open(&s, pat, &o) != VLM_OK && strstr(vlm_last_error(), "none-0.tar"), "no shard: %s", vlm_last_error());

  /* brace expansion */
  char **v;
  int64_t nv;
  CHECK(vlm_wds_expand("s-{0000..0011}.tar", &v, &nv, 100) && nv == 12 && !strcmp(v[0], "s-0000.tar") &&
            !strcmp(v[11], "s-0011.tar"),
        "numeric range");
  for (int64_t i = 0; i < nv; i++) free(v[i]);
  free(v);
  CHECK(vlm_wds_expand("{a,b}/x-{1..3}.tar", &v, &nv, 100) && nv == 6 && !strcmp(v[0], "a/x-1.tar") &&
            !strcmp(v[5], "b/x-3.tar"),
        "two braces");
  for (int64_t i = 0; i < nv; i++) free(v[i]);
  free(v);
  CHECK(vlm_wds_expand("x{8..10}", &v, &nv, 100) && nv == 3 && !strcmp(v[2], "x10"), "unpadded range");
  for (int64_t i = 0; i < nv; i++) free(v[i]);
  free(v);
  const char *badp[] = {"x{1..}", "x{", "x}", "x{a..3}", "{{}"};
  for (int i = 0; i < 5; i++) CHECK(!vlm_wds_expand(badp[i], &v, &nv, 100), "malformed pattern %s refused", badp[i]);
  CHECK(!vlm_wds_expand("{0..999999}", &v, &nv, 1000) && strstr(vlm_last_error(), "more than"), "expansion bounded");
}

/* Keys longer than any fixed buffer still pair their members (GNU long names); a shard path
 * that is not a regular file says what it is. */
static void test_wds_paths(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  FILE *f;
  size_t n1;
  char pat[1024];
  char key[600] = "d/", nm[700];
  memset(key + 2, 'z', 450);   /* keys "d/zzz...z/0" and "d/zzz...z/1": 454 bytes */
  key[452] = 0;
  f = fopen(P("wds/longkey.tar"), "wb");
  uint8_t *p4 = png_bytes(6, 6, 5, &n1);
  snprintf(nm, sizeof nm, "%s/0.png", key);
  tar_add_gnu(f, nm, p4, n1);
  snprintf(nm, sizeof nm, "%s/0.txt", key);
  tar_add_gnu(f, nm, "long key", 8);
  snprintf(nm, sizeof nm, "%s/1.png", key);
  tar_add_gnu(f, nm, p4, n1);
  snprintf(nm, sizeof nm, "%s/1.txt", key);
  tar_add_gnu(f, nm, "next key", 8);
  tar_end(f);
  fclose(f);
  free(p4);
  CHECK(vlm_source_open(&s, P("wds/longkey.tar"), &o) == VLM_OK, "longkey.tar: %s", vlm_last_error());
  if (s) {
    vlm_shard_reader *r;
    vlm_sample sm;
    CHECK(vlm_shard_open(s, 0, &r) == VLM_OK, "longkey shard");
    int k = vlm_shard_next(r, &sm);
    CHECK(k == 1 && sm.caption && !strcmp(sm.caption, "long key") && decodes(&sm), "454-byte key paired: %s",
          k == 1 ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    k = vlm_shard_next(r, &sm);
    CHECK(k == 1 && sm.caption && !strcmp(sm.caption, "next key"), "next long key: %s", k == 1 ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_shard_next(r, &sm) == 0, "longkey: end");
    vlm_shard_close(r);
    vlm_source_close(s);
    s = NULL;
  }
  /* a shard path that is not a regular file says what it is */
  mkdir(P("wds/dir.tar"), 0777);
  CHECK(vlm_source_open(&s, P("wds/dir.tar"), &o) != VLM_OK && strstr(vlm_last_error(), "dir.tar: is a directory"),
        "folder as shard: %s", vlm_last_error());
  if (mkfifo(P("wds/pipe.tar"), 0644) == 0) {
    alarm(20);
    CHECK(vlm_source_open(&s, P("wds/pipe.tar"), &o) != VLM_OK && strstr(vlm_last_error(), "pipe.tar: not a regular file"),
          "FIFO as shard: %s", vlm_last_error());
    alarm(0);
  }
  snprintf(pat, sizeof pat, "%s/wds/{pax,dir}.tar", g_dir);
  CHECK(vlm_source_open(&s, pat, &o) == VLM_OK, "one good shard of two: %s", vlm_last_error());
  if (s) {
    vlm_shard_reader *r = NULL;
    CHECK(vlm_shard_open(s, 1, &r) != VLM_OK && strstr(vlm_last_error(), "dir.tar: is a directory"),
          "folder shard named when read: %s", vlm_last_error());
    vlm_source_close(s);
  }
}

/* What JSON readers disagree on is refused, naming the file and the place: text after the
 * document (Python: "Extra data"), a key twice in one object (cJSON keeps the first, Python
 * the last), ids past 2^53 - 1 (read as doubles: 2^53 + 1 would become 2^53). An empty
 * file_name is named as such. */
static void test_coco_strict(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  char imgs[512];   /* P's buffers are reused */
  snprintf(imgs, sizeof imgs, "%s", P("coco/val2017"));
  o.coco_images = imgs;
  vlm_source *s = NULL;
  const char *doc = "{\"images\": [{\"id\": 7, \"file_name\": \"1.png\"}], \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"}]}";
  char buf[4096];
  snprintf(buf, sizeof buf, "%s garbage", doc);
  write_text(P("coco/trail.json"), buf);
  size_t at = strlen(doc) + 1;   /* the 'g', after the space */
  char want[64];
  snprintf(want, sizeof want, "at byte %zu", at);
  CHECK(vlm_source_open(&s, P("coco/trail.json"), &o) != VLM_OK && strstr(vlm_last_error(), "trail.json") &&
            strstr(vlm_last_error(), "extra data") && strstr(vlm_last_error(), want),
        "text after the document: %s", vlm_last_error());
  snprintf(buf, sizeof buf, "%s%s", doc, doc);
  write_text(P("coco/two.json"), buf);
  snprintf(want, sizeof want, "at byte %zu", strlen(doc));
  CHECK(vlm_source_open(&s, P("coco/two.json"), &o) != VLM_OK && strstr(vlm_last_error(), "extra data") &&
            strstr(vlm_last_error(), want),
        "two documents: %s", vlm_last_error());
  snprintf(buf, sizeof buf, "\n %s \r\n\t\n", doc);   /* whitespace around it is fine */
  write_text(P("coco/ws.json"), buf);
  CHECK(vlm_source_open(&s, P("coco/ws.json"), &o) == VLM_OK && vlm_source_size(s) == 1, "whitespace after: %s",
        vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  /* duplicate keys: at the top, inside an annotation, in a large object (sorted) */
  write_text(P("coco/dupkey.json"),
             "{\"images\": [{\"id\": 7, \"file_name\": \"1.png\"}], \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"}],"
             " \"annotations\": [{\"image_id\": 7, \"caption\": \"b\"}, {\"image_id\": 7, \"caption\": \"c\"}]}");
  CHECK(vlm_source_open(&s, P("coco/dupkey.json"), &o) != VLM_OK && strstr(vlm_last_error(), "dupkey.json") &&
            strstr(vlm_last_error(), "\"annotations\" appears twice") && strstr(vlm_last_error(), "top-level"),
        "duplicate top-level key: %s", vlm_last_error());
  write_text(P("coco/dupcap.json"),
             "{\"images\": [{\"id\": 7, \"file_name\": \"1.png\"}], \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"},"
             " {\"image_id\": 7, \"caption\": \"b\", \"caption\": \"c\"}]}");
  CHECK(vlm_source_open(&s, P("coco/dupcap.json"), &o) != VLM_OK &&
            strstr(vlm_last_error(), "\"caption\" appears twice in the object at annotations[1]"),
        "duplicate key in an annotation: %s", vlm_last_error());
  char *big = malloc(1 << 16);
  size_t k = (size_t)snprintf(big, 1 << 16, "{\"info\": {");
  for (int i = 0; i < 500; i++) k += (size_t)snprintf(big + k, (1 << 16) - k, "\"k%d\": %d, ", i, i);
  snprintf(big + k, (1 << 16) - k, "\"k250\": 0}, \"images\": [], \"annotations\": []}");
  write_text(P("coco/dupbig.json"), big);
  free(big);
  CHECK(vlm_source_open(&s, P("coco/dupbig.json"), &o) != VLM_OK &&
            strstr(vlm_last_error(), "\"k250\" appears twice in the object at info"),
        "duplicate key in a large object: %s", vlm_last_error());
  /* the same key in different objects is fine */
  write_text(P("coco/samekeys.json"),
             "{\"images\": [{\"id\": 7, \"file_name\": \"1.png\"}, {\"id\": 8, \"file_name\": \"1.png\"}],"
             " \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"}, {\"image_id\": 8, \"caption\": \"b\"}]}");
  CHECK(vlm_source_open(&s, P("coco/samekeys.json"), &o) == VLM_OK && vlm_source_size(s) == 2, "keys per object: %s",
        vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  /* images[k]'s problem named: an empty file_name, an id past 2^53 - 1 */
  write_text(P("coco/emptyname.json"),
             "{\"images\": [{\"id\": 7, \"file_name\": \"\"}], \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"}]}");
  CHECK(vlm_source_open(&s, P("coco/emptyname.json"), &o) != VLM_OK &&
            strstr(vlm_last_error(), "images[0]: \"file_name\" is empty"),
        "empty file_name: %s", vlm_last_error());
  write_text(P("coco/noname.json"), "{\"images\": [{\"id\": 7}], \"annotations\": [{\"image_id\": 7, \"caption\": \"a\"}]}");
  CHECK(vlm_source_open(&s, P("coco/noname.json"), &o) != VLM_OK && strstr(vlm_last_error(), "images[0]: has no \"file_name\""),
        "no file_name: %s", vlm_last_error());
  write_text(P("coco/bigid.json"),
             "{\"images\": [{\"id\": 9007199254740993, \"file_name\": \"1.png\"}, {\"id\": 9007199254740992, \"file_name\": "
             "\"2.png\"}], \"annotations\": [{\"image_id\": 9007199254740993, \"caption\": \"a\"}]}");
  CHECK(vlm_source_open(&s, P("coco/bigid.json"), &o) != VLM_OK && strstr(vlm_last_error(), "images[0]: \"id\" is out of range") &&
            strstr(vlm_last_error(), "2^53") && !strstr(vlm_last_error(), "same id"),
        "image id past 2^53 - 1: %s", vlm_last_error());
  write_text(P("coco/bigann.json"),
             "{\"images\": [{\"id\": 9007199254740991, \"file_name\": \"1.png\"}], \"annotations\": ["
             "{\"image_id\": 9007199254740993, \"caption\": \"a\"}, {\"image_id\": 9007199254740991, \"caption\": \"b\"}]}");
  CHECK(vlm_source_open(&s, P("coco/bigann.json"), &o) == VLM_OK && vlm_source_size(s) == 2, "2^53 - 1 is an id: %s",
        vlm_last_error());
  if (s) {
    vlm_sample sm;
    CHECK(vlm_source_get(s, 0, &sm) != VLM_OK && strstr(vlm_last_error(), "annotation 0: \"image_id\" is out of range") &&
              strstr(vlm_last_error(), "2^53"),
          "annotation image_id past 2^53 - 1: %s", vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 1, &sm) == VLM_OK && sm.group == 9007199254740991LL, "id 2^53 - 1 read exactly: %s",
          vlm_last_error());
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
}

/* Excel's "Unicode text" (UTF-16 with a byte-order mark) is named as such, not shown as bytes. */
static void test_csv_utf16(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  const char *txt = "filepath\ttitle\nimg/a.png\ta caption\n";
  size_t n = strlen(txt);
  for (int be = 0; be <= 1; be++) {
    uint8_t *u = malloc(2 * n + 2);
    u[0] = be ? 0xFE : 0xFF;
    u[1] = be ? 0xFF : 0xFE;
    for (size_t i = 0; i < n; i++) {
      u[2 + 2 * i + be] = (uint8_t)txt[i];
      u[2 + 2 * i + !be] = 0;
    }
    vt_write_file(P("csv/u16.tsv"), u, 2 * n + 2);
    CHECK(vlm_source_open(&s, P("csv/u16.tsv"), &o) != VLM_OK && strstr(vlm_last_error(), "u16.tsv") &&
              strstr(vlm_last_error(), be ? "UTF-16 (big-endian)" : "UTF-16 (little-endian)") &&
              strstr(vlm_last_error(), "save it as UTF-8") && !strstr(vlm_last_error(), "\xff\xfe"),
          "UTF-16 %s: %s", be ? "BE" : "LE", vlm_last_error());
    /* without the mark: the NULs of the header are pointed at */
    vt_write_file(P("csv/u16.tsv"), u + 2, 2 * n);
    CHECK(vlm_source_open(&s, P("csv/u16.tsv"), &o) != VLM_OK && strstr(vlm_last_error(), "NUL bytes: UTF-16"),
          "UTF-16 without its mark (%d): %s", be, vlm_last_error());
    free(u);
  }
}

/* A path with braces that exists as written is that file or folder, not a pattern; a pattern
 * that finds nothing says that the braces were read as one. */
static void test_brace_paths(void) {
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  mkdir(P("br"), 0777);
  write_png(P("br/a.png"), 1);
  write_text(P("br/x{1}.tsv"), "filepath\ttitle\na.png\ta caption\na.png\tanother\n");
  CHECK(vlm_source_open(&s, P("br/x{1}.tsv"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_CSV && vlm_source_size(s) == 2,
        "x{1}.tsv read as the file: %s", vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  o.type = VLM_DS_CSV;   /* the type given: the same file */
  CHECK(vlm_source_open(&s, P("br/x{1}.tsv"), &o) == VLM_OK && vlm_source_size(s) == 2, "x{1}.tsv as csv: %s",
        vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  o.type = VLM_DS_AUTO;
  mkdir(P("br/photos {0..1}"), 0777);
  mkdir(P("br/photos {0..1}/sub"), 0777);
  write_png(P("br/photos {0..1}/sub/p.png"), 2);
  write_text(P("br/photos {0..1}/sub/p.txt"), "a photo");
  CHECK(vlm_source_open(&s, P("br/photos {0..1}"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_FOLDER &&
            vlm_source_size(s) == 1,
        "folder 'photos {0..1}' read as the folder: %s", vlm_last_error());
  vlm_source_close(s);
  s = NULL;
  size_t n1;
  uint8_t *p1 = png_bytes(8, 8, 1, &n1);
  FILE *f = fopen(P("br/d{1}.tar"), "wb");
  vt_tar_add(f, "k.png", p1, n1);
  vt_tar_add(f, "k.txt", "a shard", 7);
  tar_end(f);
  fclose(f);
  free(p1);
  CHECK(vlm_source_open(&s, P("br/d{1}.tar"), &o) == VLM_OK && vlm_source_num_shards(s) == 1, "d{1}.tar is one shard: %s",
        vlm_last_error());
  if (s) {
    vlm_shard_reader *r = NULL;
    vlm_sample sm;
    CHECK(vlm_shard_open(s, 0, &r) == VLM_OK && vlm_shard_next(r, &sm) == 1 && !strcmp(sm.caption, "a shard"),
          "d{1}.tar read: %s", vlm_last_error());
    vlm_sample_free(&sm);
    vlm_shard_close(r);
    vlm_source_close(s);
    s = NULL;
  }
  /* no such path: a pattern as before, and the error says so */
  CHECK(vlm_source_open(&s, P("br/x{2}.tsv"), &o) != VLM_OK && strstr(vlm_last_error(), "x2.tsv") &&
            strstr(vlm_last_error(), "read as a shard pattern"),
        "x{2}.tsv, absent: %s", vlm_last_error());
  write_text(P("br/y3.tsv"), "filepath\ttitle\na.png\ta caption\n");
  CHECK(vlm_source_open(&s, P("br/y{3..4}.tsv"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_WDS,
        "a pattern that finds a file stays a pattern: %s", vlm_last_error());
  vlm_source_close(s);
}

/* A sample with two members of one name (a.txt twice, or a.txt and a.TXT) is a bad sample
 * naming the member, as webdataset refuses it; the shard's other samples are read. */
static void test_wds_duplicates(void) {
  size_t n1;
  uint8_t *p1 = png_bytes(8, 8, 1, &n1);
  FILE *f = fopen(P("wds/dupmember.tar"), "wb");
  vt_tar_add(f, "a.png", p1, n1);
  vt_tar_add(f, "a.txt", "first", 5);
  vt_tar_add(f, "a.txt", "second", 6);
  vt_tar_add(f, "b.png", p1, n1);
  vt_tar_add(f, "b.txt", "good one", 8);
  vt_tar_add(f, "c.TXT", "upper", 5);
  vt_tar_add(f, "c.png", p1, n1);
  vt_tar_add(f, "c.txt", "lower", 5);
  vt_tar_add(f, "d.png", p1, n1);
  vt_tar_add(f, "d.txt", "last", 4);
  tar_end(f);
  fclose(f);
  free(p1);
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  CHECK(vlm_source_open(&s, P("wds/dupmember.tar"), &o) == VLM_OK, "open: %s", vlm_last_error());
  if (!s) return;
  vlm_shard_reader *r = NULL;
  vlm_sample sm;
  CHECK(vlm_shard_open(s, 0, &r) == VLM_OK, "shard");
  int k = vlm_shard_next(r, &sm);
  CHECK(k == -1 && sm.fail == VLM_BAD_READ && strstr(vlm_last_error(), "dupmember.tar:a: two members named a.txt"),
        "a.txt twice: %s", vlm_last_error());
  vlm_sample_free(&sm);
  k = vlm_shard_next(r, &sm);
  CHECK(k == 1 && !strcmp(sm.caption, "good one"), "the next sample read (%d)", k);
  vlm_sample_free(&sm);
  k = vlm_shard_next(r, &sm);
  CHECK(k == -1 && strstr(vlm_last_error(), ":c: two members named c.txt"), "c.TXT and c.txt: %s", vlm_last_error());
  vlm_sample_free(&sm);
  k = vlm_shard_next(r, &sm);
  CHECK(k == 1 && !strcmp(sm.caption, "last"), "the last sample read (%d)", k);
  vlm_sample_free(&sm);
  CHECK(vlm_shard_next(r, &sm) == 0, "end");
  vlm_shard_close(r);
  vlm_source_close(s);
}

/* ------------------------------------------------------------------ folders */
static void test_folders(void) {
  mkdir(P("fold"), 0777);
  write_png(P("fold/a.png"), 1);
  write_text(P("fold/a.txt"), "caption a\n");
  write_png(P("fold/b.png"), 2);
  write_png(P("fold/c.PNG"), 3);
  write_text(P("fold/c.txt"), "\n");
  write_corrupt(P("fold/d.jpg"));
  write_text(P("fold/d.txt"), "caption d");
  write_text(P("fold/notes.md"), "ignored");
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s = NULL;
  CHECK(vlm_source_open(&s, P("fold"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_FOLDER, "folder: %s", vlm_last_error());
  if (s) {
    CHECK(vlm_source_size(s) == 4, "4 images");
    vlm_sample sm;
    CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && !strcmp(sm.caption, "caption a") && decodes(&sm), "folder a");
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 1, &sm) != VLM_OK && sm.fail == VLM_BAD_CAPTION && strstr(vlm_last_error(), "b.txt"),
          "missing sidecar named: %s", vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 2, &sm) != VLM_OK && strstr(vlm_last_error(), "empty caption"), "empty sidecar: %s",
          vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 3, &sm) == VLM_OK && !decodes(&sm) && strstr(vlm_last_error(), "d.jpg"), "corrupt in folder");
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  mkdir(P("inet"), 0777);
  mkdir(P("inet/dog_house"), 0777);
  mkdir(P("inet/cat"), 0777);
  write_png(P("inet/cat/x.png"), 1);
  write_png(P("inet/dog_house/y.png"), 2);
  write_corrupt(P("inet/dog_house/z.jpg"));
  mkdir(P("inet/cat/more"), 0777);   /* a class folder's sub-folders are the class's too (torchvision) */
  write_png(P("inet/cat/more/w.png"), 3);
  CHECK(vlm_source_open(&s, P("inet"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_IMAGEFOLDER, "imagefolder: %s",
        vlm_last_error());
  if (s) {
    int nc;
    const char *const *cn = vlm_source_classnames(s, &nc);
    CHECK(cn && nc == 2 && !strcmp(cn[0], "cat") && !strcmp(cn[1], "dog house"), "classnames sorted, '_' -> ' '");
    CHECK(vlm_source_size(s) == 4, "4 images (one in a class's sub-folder), got %lld", (long long)vlm_source_size(s));
    vlm_sample sm;
    CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && sm.label == 0 && strstr(sm.name, "cat/more/w.png"),
          "the nested image is the class's: %s", sm.name);
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 2, &sm) == VLM_OK && sm.label == 1 && !strcmp(sm.caption, "a photo of a dog house.") &&
              decodes(&sm),
          "imagefolder sample: %s", sm.caption ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 3, &sm) == VLM_OK && !decodes(&sm), "corrupt image in a class folder");
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  /* captioned images in sub-folders: a caption folder searched recursively, not an ImageFolder
   * whose captions would be "a photo of a <sub-folder>." (the .txt files were ignored) */
  mkdir(P("capsub"), 0777);
  mkdir(P("capsub/2023"), 0777);
  mkdir(P("capsub/2024"), 0777);
  mkdir(P("capsub/2024/june"), 0777);
  mkdir(P("capsub/.hidden"), 0777);
  write_png(P("capsub/2023/a.png"), 1);
  write_text(P("capsub/2023/a.txt"), "caption a\n");
  write_png(P("capsub/2024/june/b.png"), 2);
  write_text(P("capsub/2024/june/b.txt"), "caption b");
  write_png(P("capsub/.hidden/h.png"), 3);
  write_text(P("capsub/.hidden/h.txt"), "hidden");
  CHECK(vlm_source_open(&s, P("capsub"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_FOLDER,
        "sub-folders of captioned images: a caption folder: %s", s ? vlm_ds_type_name(vlm_source_type(s)) : vlm_last_error());
  if (s) {
    CHECK(vlm_source_size(s) == 2, "2 captioned images in sub-folders, not %lld", (long long)vlm_source_size(s));
    vlm_sample sm;
    CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && !strcmp(sm.caption, "caption a") && strstr(sm.name, "2023/a.png") &&
              decodes(&sm),
          "first sub-folder's sidecar caption: %s", sm.caption ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 1, &sm) == VLM_OK && !strcmp(sm.caption, "caption b") && decodes(&sm),
          "nested sub-folder's sidecar caption: %s", sm.caption ? sm.caption : vlm_last_error());
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  /* top-level pairs and a sub-folder of pairs: both read */
  mkdir(P("mixed"), 0777);
  mkdir(P("mixed/sub"), 0777);
  write_png(P("mixed/top.png"), 1);
  write_text(P("mixed/top.txt"), "top");
  write_png(P("mixed/sub/deep.png"), 2);
  write_text(P("mixed/sub/deep.txt"), "deep");
  CHECK(vlm_source_open(&s, P("mixed"), &o) == VLM_OK && vlm_source_type(s) == VLM_DS_FOLDER, "mixed folder: %s",
        vlm_last_error());
  if (s) {
    CHECK(vlm_source_size(s) == 2, "the sub-folder's image too, %lld", (long long)vlm_source_size(s));
    vlm_sample sm;
    CHECK(vlm_source_get(s, 0, &sm) == VLM_OK && !strcmp(sm.caption, "deep"), "sorted by path: sub/deep.png first");
    vlm_sample_free(&sm);
    vlm_source_close(s);
  }
  mkdir(P("emptydir"), 0777);
  CHECK(vlm_source_open(&s, P("emptydir"), &o) != VLM_OK && strstr(vlm_last_error(), "emptydir"), "empty folder: %s",
        vlm_last_error());
  CHECK(vlm_source_open(&s, P("nothing-here"), &o) != VLM_OK && strstr(vlm_last_error(), "nothing-here"),
        "missing path: %s", vlm_last_error());
  vlm_ds_type t;
  CHECK(vlm_ds_type_parse("imagefolder", &t) && t == VLM_DS_IMAGEFOLDER && !vlm_ds_type_parse("xml", &t), "type parse");
  CHECK(!strcmp(vlm_ds_type_name(VLM_DS_WDS), "wds"), "type name");
  CHECK(vlm_source_open(&s, "a.csv::b.csv", &o) != VLM_OK && strstr(vlm_last_error(), "::"), "'::' refused here");
}

int main(int argc, char **argv) {
  g_shared = vt_shared_dir(argc, argv);
  snprintf(g_dir, sizeof g_dir, "/tmp/vlm_test_sources_XXXXXX");
  if (!mkdtemp(g_dir)) vt_skip("cannot make a temp dir");
  test_csv();
  test_csv_grammar();
  test_special_files();
  test_coco();
  test_coco_annotations();
  test_wds();
  test_wds_paths();
  test_coco_strict();
  test_csv_utf16();
  test_brace_paths();
  test_wds_duplicates();
  test_folders();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", g_dir);
  return vt_finish();
}
