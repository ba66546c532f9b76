/* Checkpoints as other tools write them (bench/peer/interop_check.py runs the same cases against
 * transformers and open_clip themselves): a sharded save (model.safetensors.index.json + shards),
 * broken PyTorch pickles (an error naming the file), a directory holding both
 * layouts, LayerNorm eps (HF layer_norm_eps, open_clip norm_kwargs) through both writers, and
 * eos pooling, which open_clip's config cannot express. Made from the tiny-clip fixture's HF
 * weights in a temporary directory. argv[1]: the ../shared folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"
#include "model/model.h"

static char g_tmp[256];
static char g_fx[4096];

static void put(const char *dir, const char *name, const char *text) { vt_put(dir, name, text, strlen(text)); }

/* A fresh directory under the test's temporary one. */
static const char *subdir(const char *name) { return vt_subdir(g_tmp, name); }

static char *fixture_text(const char *name) {
  char p[4400], *s = NULL;
  snprintf(p, sizeof p, "%s/%s", g_fx, name);
  CHECK(vlm_read_text_file(p, &s) == VLM_OK, "%s", vlm_last_error());
  return s;
}

/* The fixture's HF weights split over n shards (tensor i in shard i % n) with
 * model.safetensors.index.json and config.json. Broken on request: bad_shard_name for shard 2's
 * tensors in the map, drop_from_map leaves tensor 3 out of the map, extra_tensor adds one the
 * model does not have. */
static void write_sharded(const char *dir, int n, const char *bad_shard_name, int drop_from_map, int extra_tensor) {
  char p[4400];
  snprintf(p, sizeof p, "%s/model_hf.safetensors", g_fx);
  vlm_safetensors st;
  if (vlm_st_open(&st, p) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }
  vlm_st_writer *w[8];
  size_t cap = 1 << 16, len = 0;
  char *idx = malloc(cap);
  len += (size_t)snprintf(idx + len, cap - len, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
  for (int k = 0; k < n; k++) w[k] = vlm_st_writer_new();
  int listed = 0;
  for (int i = 0; i < st.n_entries; i++) {
    const vlm_st_entry *e = &st.entries[i];
    int k = i % n;
    vlm_tensor t = vlm_st_tensor(e);
    CHECK(vlm_st_writer_add_tensor(w[k], e->name, &t) == VLM_OK, "%s", vlm_last_error());
    if (drop_from_map && i == 3) continue;
    char shard[64];
    snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", k + 1, n);
    len += (size_t)snprintf(idx + len, cap - len, "%s\"%s\": \"%s\"", listed++ ? ", " : "", e->name,
                            bad_shard_name && k == 1 ? bad_shard_name : shard);
  }
  static float x = 1;   /* the writer keeps the pointer until it saves */
  if (extra_tensor) {
    CHECK(vlm_st_writer_add(w[n - 1], "text_model.extra.weight", VLM_F32, 0, NULL, &x) == VLM_OK, "extra");
  }
  snprintf(idx + len, cap - len, "}}\n");
  put(dir, "model.safetensors.index.json", idx);
  for (int k = 0; k < n; k++) {
    snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", dir, k + 1, n);
    CHECK(vlm_st_writer_save(w[k], p) == VLM_OK, "%s", vlm_last_error());
    vlm_st_writer_free(w[k]);
  }
  free(idx);
  vlm_st_close(&st);
  char *cfg = fixture_text("config_hf.json");
  if (cfg) put(dir, "config.json", cfg);
  free(cfg);
}

static int same_params(vlm_clip_params *a, vlm_clip_params *b) {
  return a->arena.used == b->arena.used && !memcmp(a->arena.base, b->arena.base, a->arena.used);
}

static void sharded(void) {
  char p[4400];
  vlm_clip_config c0, c;
  vlm_clip_params p0, p1;
  vlm_ckpt_format fmt;
  snprintf(p, sizeof p, "%s/config_hf.json", g_fx);
  if (vlm_clip_load(p, &c0, &p0, &fmt) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }

  const char *d = subdir("sharded");
  write_sharded(d, 3, NULL, 0, 0);
  vlm_status s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s == VLM_OK && fmt == VLM_CKPT_HF, "sharded HF directory: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(same_params(&p0, &p1), "sharded: the parameters differ from the single file's");
    vlm_clip_params_free(&p1);
  }
  char cfg[4400], weights[4400];
  snprintf(p, sizeof p, "%s/config.json", d);
  CHECK(vlm_model_paths(p, cfg, weights, sizeof cfg) == VLM_OK && strstr(weights, "model.safetensors.index.json"),
        "a config file's weights: the index beside it (%s)", weights);
  s = vlm_clip_load(p, &c, &p1, &fmt);
  CHECK(s == VLM_OK, "sharded, by its config file: %s", vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p1);

  /* a shard missing: the error names the index and the shard */
  snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", d);
  remove(p);
  s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "model.safetensors.index.json") &&
            strstr(vlm_last_error(), "model-00002-of-00003.safetensors"),
        "missing shard: %s", vlm_last_error());

  d = subdir("sharded-bad-name");
  write_sharded(d, 3, "../x.safetensors", 0, 0);
  s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "\"../x.safetensors\" is not a file name beside the index"),
        "shard outside the directory: %s", vlm_last_error());

  /* a tensor the map does not list is unexpected (named with its shard), and missing */
  d = subdir("sharded-unlisted");
  write_sharded(d, 2, NULL, 1, 1);
  s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "1 missing, 2 unexpected") &&
            strstr(vlm_last_error(), "text_model.extra.weight (in "),
        "unlisted tensors: %s", vlm_last_error());

  d = subdir("sharded-no-map");
  put(d, "model.safetensors.index.json", "{\"metadata\": {}}");
  char *cfgtext = fixture_text("config_hf.json");
  if (cfgtext) put(d, "config.json", cfgtext);
  free(cfgtext);
  s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "no \"weight_map\""), "index without a map: %s", vlm_last_error());
  vlm_clip_params_free(&p0);
}

/* open_clip's CustomTextCLIP keeps its text tower under "text.": the same model. */
static void custom_text(void) {
  char p[4400];
  snprintf(p, sizeof p, "%s/model.safetensors", g_fx);
  vlm_safetensors st;
  if (vlm_st_open(&st, p) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }
  vlm_st_writer *w = vlm_st_writer_new();
  for (int i = 0; i < st.n_entries; i++) {
    const vlm_st_entry *e = &st.entries[i];
    char name[300];
    int text = strncmp(e->name, "visual.", 7) && strcmp(e->name, "logit_scale");
    snprintf(name, sizeof name, "%s%s", text ? "text." : "", e->name);
    vlm_tensor t = vlm_st_tensor(e);
    CHECK(vlm_st_writer_add_tensor(w, name, &t) == VLM_OK, "%s", vlm_last_error());
  }
  const char *d = subdir("custom-text");
  snprintf(p, sizeof p, "%s/open_clip_model.safetensors", d);
  CHECK(vlm_st_writer_save(w, p) == VLM_OK, "%s", vlm_last_error());
  vlm_st_writer_free(w);
  vlm_st_close(&st);
  char *cfg = fixture_text("config.json");
  if (!cfg) return;
  char *brace = strchr(cfg, '{');
  char *edited = malloc(strlen(cfg) + 64);
  sprintf(edited, "{\"model_cfg\": {\"custom_text\": true, %s}", brace ? brace + 1 : cfg);
  put(d, "open_clip_config.json", edited);
  free(edited);
  free(cfg);
  vlm_clip_config c, c0;
  vlm_clip_params p0, p1;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load(d, &c, &p1, &fmt);
  CHECK(s == VLM_OK, "custom_text CLIP: %s", vlm_last_error());
  if (s == VLM_OK && vlm_clip_load(g_fx, &c0, &p0, &fmt) == VLM_OK) {
    CHECK(same_params(&p0, &p1), "custom_text: the parameters differ from the fixture's");
    vlm_clip_params_free(&p0);
  }
  if (s == VLM_OK) vlm_clip_params_free(&p1);
}

/* PyTorch pickles that are not valid archives: the error names the file (the valid ones are
 * test_torch_ckpt.c's). */
static void pickles(void) {
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  const char *d = subdir("hf-bin");
  char *cfg = fixture_text("config_hf.json"), *oc = fixture_text("config.json");
  if (!cfg || !oc) return;
  put(d, "config.json", cfg);
  put(d, "pytorch_model.bin", "PK not really");
  vlm_status s = vlm_clip_load(d, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "pytorch_model.bin:"), "a broken HF pickle: %s", vlm_last_error());
  d = subdir("oc-bin");
  put(d, "open_clip_config.json", oc);
  put(d, "open_clip_pytorch_model.bin", "PK not really");
  s = vlm_clip_load(d, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "open_clip_pytorch_model.bin:"), "a broken open_clip pickle: %s",
        vlm_last_error());
  /* both layouts, open_clip's as a pickle only: the HF pair (safetensors) is used */
  put(d, "config.json", cfg);
  vt_copy_file(vt_path(g_fx, "model_hf.safetensors"), vt_path(d, "model.safetensors"));
  s = vlm_clip_load(d, &c, &p, &fmt);
  CHECK(s == VLM_OK && fmt == VLM_CKPT_HF, "open_clip pickle + HF safetensors: %s", vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  free(cfg);
  free(oc);
}

static vlm_clip_config g_base;   /* the fixture's config */

static void eps_round_trip(void) {
  vlm_clip_config c = g_base, r;
  c.vision.ln_eps = 1e-6f;
  c.text.ln_eps = 1e-3f;
  for (int f = 0; f < 2; f++) {
    char *json = vlm_clip_config_to_json(&c, f ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP);
    if (!json) { CHECK(0, "to_json: %s", vlm_last_error()); continue; }
    vlm_status s = f ? vlm_clip_config_parse_hf(&r, json, "hf") : vlm_clip_config_parse(&r, json, "oc");
    CHECK(s == VLM_OK && r.vision.ln_eps == 1e-6f && r.text.ln_eps == 1e-3f, "%s eps round trip: %g %g (%s)",
          f ? "HF" : "open_clip", r.vision.ln_eps, r.text.ln_eps, s == VLM_OK ? "" : vlm_last_error());
    CHECK(strstr(json, f ? "\"layer_norm_eps\":\t1e-06" : "\"eps\":\t1e-06"), "eps written as 1e-06: %s", json);
    free(json);
  }
  char *json = vlm_clip_config_to_json(&g_base, VLM_CKPT_OPENCLIP);
  CHECK(json && !strstr(json, "norm_kwargs"), "no norm_kwargs for the default eps");
  free(json);
}

/* Older CLIPConfigs: text_config_dict / vision_config_dict read over text_config / vision_config,
 * as transformers reads them. */
static void hf_config_dicts(void) {
  const char *json = "{\"projection_dim\": 8, \"text_config\": {\"hidden_size\": 64, \"hidden_act\": \"gelu\"}, "
                     "\"text_config_dict\": {\"hidden_size\": 16, \"intermediate_size\": 20, \"num_attention_heads\": 2, "
                     "\"num_hidden_layers\": 1, \"vocab_size\": 30, \"max_position_embeddings\": 7, \"hidden_act\": "
                     "\"gelu\"}, \"vision_config_dict\": {\"hidden_size\": 12, \"intermediate_size\": 24, "
                     "\"num_attention_heads\": 3, \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 4, "
                     "\"hidden_act\": \"gelu\"}}";
  vlm_clip_config c;
  vlm_status s = vlm_clip_config_parse_hf(&c, json, "old.json");
  CHECK(s == VLM_OK && c.text.width == 16 && c.text.mlp_width == 20 && c.text.vocab_size == 30 &&
            c.text.context_length == 7 && c.vision.width == 12 && c.vision.heads == 3 && c.vision.image_size == 8 &&
            !c.quick_gelu,
        "*_config_dict: %s (text width %lld, vision width %lld)", s == VLM_OK ? "" : vlm_last_error(),
        (long long)c.text.width, (long long)c.vision.width);
}

static void openclip_kwargs(void) {
  static const char *const bad[][2] = {
      {"\"norm_kwargs\": {\"elementwise_affine\": false}", "text_cfg.norm_kwargs.elementwise_affine: not supported"},
      {"\"norm_kwargs\": {\"eps\": -1}", "text_cfg.norm_kwargs.eps: must be a number"},
      {"\"act_kwargs\": {\"approximate\": \"tanh\"}", "text_cfg.act_kwargs: not supported"},
  };
  vlm_clip_config c;
  char json[2048];
  const char *fmt = "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 8, \"patch_size\": 4, \"layers\": 1, "
                    "\"width\": 8, \"head_width\": 4}, \"text_cfg\": {\"context_length\": 4, \"vocab_size\": 10, "
                    "\"width\": 8, \"heads\": 2, \"layers\": 1, %s}}";
  for (int i = 0; i < 3; i++) {
    snprintf(json, sizeof json, fmt, bad[i][0]);
    vlm_status s = vlm_clip_config_parse(&c, json, "cfg.json");
    CHECK(s != VLM_OK && strstr(vlm_last_error(), bad[i][1]), "%s: %s", bad[i][0], vlm_last_error());
  }
  snprintf(json, sizeof json, fmt, "\"act_kwargs\": {}, \"norm_kwargs\": {\"eps\": 1e-6}");
  CHECK(vlm_clip_config_parse(&c, json, "cfg.json") == VLM_OK && c.text.ln_eps == 1e-6f && c.vision.ln_eps == 1e-5f,
        "empty act_kwargs, norm_kwargs eps: %s", vlm_last_error());
  vlm_coca_config cc;
  CHECK(vlm_coca_config_builtin(&cc, "coca-tiny") == VLM_OK, "coca-tiny");
  char *coca = vlm_coca_config_to_json(&cc);
  if (coca) {
    char *at = strstr(coca, "\"text_cfg\":\t{");
    if (at) {
      size_t k = (size_t)(at - coca) + strlen("\"text_cfg\":\t{");
      char edited[8192];
      snprintf(edited, sizeof edited, "%.*s\"norm_kwargs\": {\"eps\": 1e-6}, %s", (int)k, coca, coca + k);
      vlm_status s = vlm_coca_config_parse(&cc, edited, "coca.json");
      CHECK(s != VLM_OK && strstr(vlm_last_error(), "text_cfg.norm_kwargs.eps: 1e-06 is not supported in a CoCa"),
            "CoCa eps: %s", vlm_last_error());
    }
    CHECK(at != NULL, "coca json has text_cfg: %s", coca);
  }
  free(coca);
}

/* eos pooling: the HF layout keeps it, the open_clip one refuses it unless the eos is the
 * largest id (argmax finds it), and writes nothing. */
static void eos_pooling(void) {
  vlm_clip_config c = g_base;
  vlm_clip_params p;
  if (vlm_clip_params_init(&p, &c) != VLM_OK) { CHECK(0, "%s", vlm_last_error()); return; }
  c.text.eot_id = c.text.vocab_size - 1;
  CHECK(vlm_clip_config_openclip_ok(&c, "m") == VLM_OK, "eos = the largest id: open_clip can");
  c.text.eot_id = 5;
  vlm_status s = vlm_clip_config_openclip_ok(&c, "m");
  CHECK(s == VLM_ERR_UNSUPPORTED && strstr(vlm_last_error(), "m: the text tower pools at the first eos id 5"),
        "eos 5: %s", vlm_last_error());
  const char *d = subdir("eos-oc");
  s = vlm_clip_save_dir(&p, &c, d, VLM_CKPT_OPENCLIP);
  char f[4400];
  snprintf(f, sizeof f, "%s/open_clip_model.safetensors", d);
  CHECK(s != VLM_OK && access(f, F_OK) != 0, "open_clip save of eos pooling refused, nothing written");
  d = subdir("eos-hf");
  s = vlm_clip_save_dir(&p, &c, d, VLM_CKPT_HF);
  snprintf(f, sizeof f, "%s/config.json", d);
  vlm_clip_config r;
  CHECK(s == VLM_OK && vlm_clip_config_load(&r, f, NULL) == VLM_OK && r.text.eot_id == 5, "HF keeps eos 5: %s",
        vlm_last_error());
  vlm_clip_params_free(&p);
  /* training writes open_clip checkpoints: refused before any step */
  vlm_train_config t;
  vlm_train_config_default(&t);
  t.batch_size = 2;
  t.total_steps = 1;
  vlm_trainer tr;
  s = vlm_trainer_init(&tr, &c, &t);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "training: the text tower pools at the first eos id 5"),
        "training an eos-pooling model: %s", s == VLM_OK ? "accepted" : vlm_last_error());
  if (s == VLM_OK) vlm_trainer_free(&tr);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no ../shared folder (the tiny-clip fixture)");
  snprintf(g_fx, sizeof g_fx, "%s/fixtures/tiny-clip", shared);
  char cfg[4400];
  snprintf(cfg, sizeof cfg, "%s/config.json", g_fx);
  if (vlm_clip_config_load(&g_base, cfg, NULL) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return vt_finish();
  }
  if (!vt_make_tmp_dir(g_tmp, sizeof g_tmp, "vlm-ckpt-interop")) return vt_finish();
  sharded();
  pickles();
  custom_text();
  eps_round_trip();
  hf_config_dicts();
  openclip_kwargs();
  eos_pooling();
  vt_rm_tree(g_tmp);
  return vt_finish();
}
