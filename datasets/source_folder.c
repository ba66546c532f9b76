/* Folder sources.
 *   folder:      DIR/x.jpg with its caption in DIR/x.txt (a sidecar file beside each image),
 *                sub-folders included (searched recursively; links to folders are not
 *                followed, hidden names skipped); an image without its .txt is a bad sample
 *                (reported when read).
 *   imagefolder: DIR/<class>/x.jpg, one sub-folder per class (classnames sorted bytewise,
 *                label = index; a class folder's sub-folders searched, as torchvision's
 *                ImageFolder); the caption is "a photo of a {class}." with '_' read as ' '.
 * Images are .jpg .jpeg .png .webp (any case), listed once at open and sorted by path, so the
 * sample order is the same on every machine; only the paths are kept.
 * vlm_src_folder_has_captions tells the two apart when a folder holds only sub-folders. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/source_internal.h"

typedef struct {
  char *dir;
  int imagefolder;
  char **paths;    /* [n] relative to dir */
  int *labels;     /* [n] imagefolder */
  int64_t n;
} folder_src;

static void folder_free(void *p) {
  folder_src *f = p;
  for (int64_t i = 0; i < f->n; i++) free(f->paths[i]);
  free(f->paths);
  free(f->labels);
  free(f->dir);
  free(f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names in dir matching want (1 images, 2 sub-folders). */
static vlm_status list_dir(const char *dir, int want, char ***out, int64_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return vlm_error(VLM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  size_t cap = 64, k = 0;
  char **v = malloc(cap * sizeof *v);
  if (!v) { closedir(d); return vlm_error(VLM_ERR_OOM, "out of memory"); }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *full = vlm_src_join(dir, e->d_name);
    struct stat st;
    int ok = full && stat(full, &st) == 0;
    free(full);
    if (!ok) continue;
    if (want == 1 && !(S_ISREG(st.st_mode) && vlm_src_has_image_ext(e->d_name))) continue;
    if (want == 2 && !S_ISDIR(st.st_mode)) continue;
    if (k == cap) {
      cap *= 2;
      char **nv = realloc(v, cap * sizeof *v);
      if (!nv) goto oom;
      v = nv;
    }
    if (!(v[k] = strdup(e->d_name))) goto oom;
    k++;
  }
  closedir(d);
  qsort(v, k, sizeof *v, cmp_str);
  *out = v;
  *n = (int64_t)k;
  return VLM_OK;
oom:
  closedir(d);
  for (size_t i = 0; i < k; i++) free(v[i]);
  free(v);
  return vlm_error(VLM_ERR_OOM, "out of memory listing %s", dir);
}

typedef struct {
  char **v;
  size_t n, cap;
} name_list;

static int name_push(name_list *l, char *s) {
  if (!s) return 0;
  if (l->n == l->cap) {
    size_t nc = l->cap ? 2 * l->cap : 64;
    char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) { free(s); return 0; }
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = s;
  return 1;
}

static void name_list_free(name_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

/* The image files under root/rel (rel "" for root itself), as paths relative to root, into out;
 * sub-folders searched, links to folders not followed. */
static vlm_status list_images_rec(const char *root, const char *rel, name_list *out) {
  char *dir = *rel ? vlm_src_join(root, rel) : strdup(root);
  if (!dir) return vlm_error(VLM_ERR_OOM, "out of memory");
  DIR *d = opendir(dir);
  if (!d) {
    vlm_status st = vlm_error(VLM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    free(dir);
    return st;
  }
  vlm_status st = VLM_OK;
  struct dirent *e;
  while (st == VLM_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *full = vlm_src_join(dir, e->d_name);
    char *sub = *rel ? vlm_src_join(rel, e->d_name) : strdup(e->d_name);
    struct stat ls, fs;
    if (!full || !sub) st = vlm_error(VLM_ERR_OOM, "out of memory");
    else if (lstat(full, &ls) != 0) ;
    else if (S_ISDIR(ls.st_mode)) st = list_images_rec(root, sub, out);
    else if (vlm_src_has_image_ext(e->d_name) && stat(full, &fs) == 0 && S_ISREG(fs.st_mode)) {
      if (!name_push(out, sub)) st = vlm_error(VLM_ERR_OOM, "out of memory listing %s", dir);
      sub = NULL;
    }
    free(full);
    free(sub);
  }
  closedir(d);
  free(dir);
  return st;
}

/* 1 when dir/name.txt is among the (sorted) names of its folder. */
static int has_sidecar(char **names, size_t n, const char *img) {
  const char *dot = strrchr(img, '.');
  size_t stem = dot ? (size_t)(dot - img) : strlen(img);
  char *txt = malloc(stem + 5);
  if (!txt) return 0;
  memcpy(txt, img, stem);
  memcpy(txt + stem, ".txt", 5);
  int found = bsearch(&txt, names, n, sizeof *names, cmp_str) != NULL;
  free(txt);
  return found;
}

/* 1 when some image under dir (sub-folders searched, links to folders not followed) has its
 * caption beside it (x.jpg + x.txt); stops at the first. */
int vlm_src_folder_has_captions(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  name_list names = {0}, subs = {0};
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *full = vlm_src_join(dir, e->d_name);
    struct stat ls;
    if (full && lstat(full, &ls) == 0 && S_ISDIR(ls.st_mode)) {
      if (!name_push(&subs, full)) break;
    } else {
      free(full);
      if (!name_push(&names, strdup(e->d_name))) break;
    }
  }
  closedir(d);
  int found = 0;
  if (names.n) qsort(names.v, names.n, sizeof *names.v, cmp_str);
  for (size_t i = 0; i < names.n && !found; i++)
    found = vlm_src_has_image_ext(names.v[i]) && has_sidecar(names.v, names.n, names.v[i]);
  for (size_t i = 0; i < subs.n && !found; i++) found = vlm_src_folder_has_captions(subs.v[i]);
  name_list_free(&names);
  name_list_free(&subs);
  return found;
}

static vlm_status folder_get(vlm_source *s, int64_t i, vlm_sample *out) {
  folder_src *f = s->impl;
  char *img = vlm_src_join(f->dir, f->paths[i]);
  if (!img) return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "out of memory"));
  snprintf(out->name, sizeof out->name, "%s", img);
  vlm_status st;
  if (f->imagefolder) {
    int lab = f->labels[i];
    char cap[1100];
    snprintf(cap, sizeof cap, "a photo of a %s.", s->classnames[lab]);
    out->caption = strdup(cap);
    out->label = lab;
  } else {
    size_t L = strlen(img);
    char *txt = malloc(L + 5);
    if (!txt) { free(img); return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "out of memory")); }
    memcpy(txt, img, L + 1);
    char *dot = strrchr(txt, '.');
    strcpy(dot ? dot : txt + L, ".txt");
    uint8_t *b;
    size_t n;
    st = vlm_src_read_file(txt, (size_t)1 << 20, &b, &n);
    if (st) {
      vlm_error_prefix(st, "%s: caption", img);
      free(txt);
      free(img);
      return vlm_src_fail(out, VLM_BAD_CAPTION, st);
    }
    while (n && (b[n - 1] == '\n' || b[n - 1] == '\r')) b[--n] = 0;
    st = vlm_caption_check(txt, (const char *)b, n);
    free(txt);
    if (st) {
      free(b);
      free(img);
      return vlm_src_fail(out, VLM_BAD_CAPTION, st);
    }
    out->caption = (char *)b;
  }
  if (!out->caption) { free(img); return vlm_src_fail(out, VLM_BAD_READ, vlm_error(VLM_ERR_OOM, "out of memory")); }
  st = vlm_src_read_file(img, (size_t)1 << 28, &out->image_bytes, &out->image_len);
  free(img);
  if (st) return vlm_src_fail(out, VLM_BAD_READ, st);
  return VLM_OK;
}

vlm_status vlm_src_open_folder(vlm_source *s, const char *dir, int imagefolder) {
  folder_src *f = calloc(1, sizeof *f);
  if (!f) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->impl = f;
  s->free_impl = folder_free;
  f->imagefolder = imagefolder;
  f->dir = strdup(dir);
  if (!f->dir) return vlm_error(VLM_ERR_OOM, "out of memory");
  size_t L = strlen(f->dir);
  while (L > 1 && f->dir[L - 1] == '/') f->dir[--L] = 0;
  vlm_status st;
  if (!imagefolder) {
    name_list imgs = {0};
    st = list_images_rec(f->dir, "", &imgs);
    if (st) { name_list_free(&imgs); return st; }
    if (imgs.n) qsort(imgs.v, imgs.n, sizeof *imgs.v, cmp_str);
    f->paths = imgs.v;
    f->n = (int64_t)imgs.n;
    if (f->n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: no images (.jpg .jpeg .png .webp) in the folder or its sub-folders", dir);
  } else {
    char **cls;
    int64_t nc;
    st = list_dir(dir, 2, &cls, &nc);
    if (st) return st;
    if (nc == 0) { free(cls); return vlm_error(VLM_ERR_FORMAT, "%s: no class sub-folders (ImageFolder layout)", dir); }
    if (nc > 1000000) nc = 1000000;
    s->classnames = cls;
    s->n_classes = (int)nc;
    size_t cap = 64;
    f->paths = malloc(cap * sizeof *f->paths);
    f->labels = malloc(cap * sizeof *f->labels);
    if (!f->paths || !f->labels) return vlm_error(VLM_ERR_OOM, "out of memory");
    for (int c = 0; c < s->n_classes; c++) {
      name_list imgs = {0};   /* the class folder's images, its sub-folders searched (as torchvision) */
      st = list_images_rec(f->dir, cls[c], &imgs);
      if (st) { name_list_free(&imgs); return st; }
      if (imgs.n) qsort(imgs.v, imgs.n, sizeof *imgs.v, cmp_str);
      for (size_t k = 0; k < imgs.n; k++) {
        if ((size_t)f->n == cap) {
          cap *= 2;
          char **np = realloc(f->paths, cap * sizeof *np);
          if (np) f->paths = np;
          int *nl = realloc(f->labels, cap * sizeof *nl);
          if (nl) f->labels = nl;
          if (!np || !nl) { name_list_free(&imgs); return vlm_error(VLM_ERR_OOM, "out of memory"); }
        }
        f->paths[f->n] = imgs.v[k];
        imgs.v[k] = NULL;
        f->labels[f->n] = c;
        f->n++;
      }
      name_list_free(&imgs);
    }
    if (f->n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: the class sub-folders hold no images", dir);
    /* images beside the class folders belong to no class: say so rather than drop them silently */
    char **loose;
    int64_t nl;
    if (list_dir(f->dir, 1, &loose, &nl) == VLM_OK) {
      if (nl > 0)
        vlm_log(VLM_LOG_WARN, "%s: %lld image%s not in a class sub-folder, not used (first: %s)", dir, (long long)nl,
                nl == 1 ? " is" : "s are", loose[0]);
      for (int64_t k = 0; k < nl; k++) free(loose[k]);
      free(loose);
    }
    /* display names: '_' -> ' ' */
    for (int c = 0; c < s->n_classes; c++)
      for (char *p = s->classnames[c]; *p; p++)
        if (*p == '_') *p = ' ';
  }
  s->size = f->n;
  s->get = folder_get;
  return VLM_OK;
}
