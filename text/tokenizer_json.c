/* A Hugging Face fast tokenizer's tokenizer.json, read as the vocab.json + merges.txt pair it
 * holds: "model": {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"],
 * ...], "end_of_word_suffix": "</w>"}, plus "added_tokens" ([{"id", "content"}]) that the
 * vocabulary may lack. Only a CLIP byte-level BPE is accepted: its normalizer and pre-tokenizer
 * are the ones vlm implements (open_clip's cleaning and pattern), which the end-of-word suffix
 * and the byte symbols (checked when the tokenizer is built) identify. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "text/tokenizer_internal.h"

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->cap ? b->cap * 2 : 1 << 16) + n + 1;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

/* One merge as "a b\n"; 0 when it is neither "a b" nor ["a", "b"]. */
static int put_merge(sbuf *m, const cJSON *e) {
  if (cJSON_IsString(e) && e->valuestring) {
    put(m, e->valuestring, strlen(e->valuestring));
  } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
             cJSON_IsString(e->child->next)) {
    const char *a = e->child->valuestring, *b = e->child->next->valuestring;
    if (strchr(a, ' ') || strchr(b, ' ')) return 0;   /* not expressible as a merges.txt line */
    put(m, a, strlen(a));
    put(m, " ", 1);
    put(m, b, strlen(b));
  } else {
    return 0;
  }
  put(m, "\n", 1);
  return 1;
}

vlm_status vlm_tokenizer_load_hf_json(vlm_tokenizer **out, const char *path) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  vlm_status s = vlm_tok_read_plain(path, &text, &len);
  if (s != VLM_OK) return s;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *eow = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  sbuf m = {0};
  char *vtext = NULL;
  if (!root) s = vlm_error(VLM_ERR_FORMAT, "%s: not valid JSON", path);
  else if (!cJSON_IsObject(model)) s = vlm_error(VLM_ERR_FORMAT, "%s: no \"model\" object (not a tokenizer.json)", path);
  else if (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "BPE")))
    s = vlm_error(VLM_ERR_UNSUPPORTED, "%s: model.type is %s, not BPE: not a CLIP tokenizer", path,
                  cJSON_IsString(type) ? type->valuestring : "not a string");
  else if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
    s = vlm_error(VLM_ERR_FORMAT, "%s: model.vocab (an object) or model.merges (an array) is missing", path);
  else if (!(cJSON_IsString(eow) && !strcmp(eow->valuestring, "</w>")))
    s = vlm_error(VLM_ERR_UNSUPPORTED, "%s: model.end_of_word_suffix is not \"</w>\": not CLIP's byte-level BPE", path);
  /* added tokens the vocabulary lacks (their ids) join it */
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; s == VLM_OK && a; a = a->next) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || !c->valuestring[0]) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: added_tokens: an entry without an integer id and a content", path);
    } else if (!cJSON_GetObjectItemCaseSensitive(vocab, c->valuestring)) {
      cJSON *n = cJSON_CreateNumber(id->valuedouble);
      if (!n || !cJSON_AddItemToObject(vocab, c->valuestring, n)) s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    }
  }
  int k = 0;
  for (const cJSON *e = s == VLM_OK ? merges->child : NULL; e; e = e->next, k++)
    if (!put_merge(&m, e)) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: model.merges[%d]: neither \"a b\" nor [\"a\", \"b\"]", path, k);
      break;
    }
  if (s == VLM_OK && m.oom) s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  if (s == VLM_OK && !(vtext = cJSON_PrintUnformatted(vocab))) s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  if (s == VLM_OK) {
    if (!m.p) put(&m, "", 0);
    s = m.oom ? vlm_error(VLM_ERR_OOM, "%s: out of memory", path)
              : vlm_tok_load_hf_text(out, vtext, strlen(vtext), m.p, m.n, path, path);
  }
  free(vtext);
  free(m.p);
  cJSON_Delete(root);
  return s;
}
