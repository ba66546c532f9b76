/* Models in PyTorch checkpoints (model/ over core/torch_*.c): hub directories holding
 * open_clip_pytorch_model.bin / pytorch_model.bin, open_clip's training checkpoints
 * ("state_dict" + DistributedDataParallel's "module." prefix + optimizer state), bare state dicts
 * with a named config (--config: a file, a built-in, 'openai' read off the shapes), CoCa, and the
 * errors. The files are written by vlm's own torch writer (core/torch_write.c, which
 * tests/data/torch/check_written.py checks against torch.load); the reader's side against files
 * torch itself wrote is tests/unit/test_torch_file.c. argv[1]: the ../shared folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"
#include "model/model.h"

static char g_tmp[256];
static char g_fx[4096];

/* Files go into g_tmp/files/ so that the ../params.txt an open_clip checkpoint's config may come
 * from is g_tmp/params.txt, which only open_clip_params() writes. */
static char g_files[512];
static const char *path_in(const char *name) { return vt_path(g_files, name); }

static const char *subdir(const char *name) { return vt_subdir(g_tmp, name); }

static int exists(const char *dir, const char *name) { return access(vt_path(dir, name), F_OK) == 0; }

static int same_arena(const vlm_arena *a, const vlm_arena *b) {
  return a->used == b->used && !memcmp(a->base, b->base, a->used);
}

/* Every parameter written under prefix + its open_clip name, plus extra tensors that are not
 * parameters (an optimizer's state) when with_extra, as one PyTorch checkpoint. */
typedef struct { vlm_st_writer *w; const char *prefix; vlm_status s; } named_ctx;

static void add_named(void *ctx, const char *name, vlm_tensor *t) {
  named_ctx *n = ctx;
  char full[512];
  snprintf(full, sizeof full, "%s%s", n->prefix, name);
  if (n->s == VLM_OK) n->s = vlm_st_writer_add_tensor(n->w, full, t);
}

static float g_extra[6] = {1, 2, 3, 4, 5, 6};

static vlm_status write_clip_torch(vlm_clip_params *p, const vlm_clip_config *c, const char *prefix, int with_extra,
                                   const char *path) {
  named_ctx n = {vlm_st_writer_new(), prefix, VLM_OK};
  vlm_clip_params_visit(p, c, add_named, &n);
  if (with_extra && n.s == VLM_OK) {
    int64_t shape[2] = {2, 3};
    n.s = vlm_st_writer_add(n.w, "optimizer.state.0.exp_avg", VLM_F32, 2, shape, g_extra);
    if (n.s == VLM_OK) n.s = vlm_st_writer_add(n.w, "optimizer.state.0.step", VLM_F32, 0, NULL, g_extra);
  }
  if (n.s == VLM_OK) n.s = vlm_st_writer_save_torch(n.w, path);
  vlm_st_writer_free(n.w);
  return n.s;
}

static vlm_clip_config g_cfg;
static vlm_clip_params g_p;   /* the tiny-clip fixture's weights */

/* path loads (its config named when config != NULL) in layout want (-1: either) with exactly the
 * fixture's parameters; what names the case in failures. */
static void expect_fixture(const char *path, const char *config, int want, const char *what) {
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load_as(path, config, &c, &p, &fmt);
  CHECK(s == VLM_OK && (want < 0 || (int)fmt == want), "%s: %s", what,
        s == VLM_OK ? "loaded in the other layout" : vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(same_arena(&p.arena, &g_p.arena), "%s: the parameters differ from the fixture's", what);
  vlm_clip_params_free(&p);
}

/* vlm convert --format torch: both layouts written as PyTorch checkpoints and read back. */
static void save_dir_torch(void) {
  for (int hf = 0; hf < 2; hf++) {
    const char *d = subdir(hf ? "hf-torch" : "oc-torch");
    vlm_status s = vlm_clip_save_dir_as(&g_p, &g_cfg, d, hf ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP, 1);
    CHECK(s == VLM_OK, "save_dir_as torch (%s): %s", hf ? "hf" : "open_clip", vlm_last_error());
    CHECK(exists(d, hf ? "pytorch_model.bin" : "open_clip_pytorch_model.bin") &&
              exists(d, hf ? "config.json" : "open_clip_config.json") &&
              !exists(d, hf ? "model.safetensors" : "open_clip_model.safetensors"),
          "the %s torch layout's files", hf ? "hf" : "open_clip");
    expect_fixture(d, NULL, hf ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP, hf ? "the hf torch dir" : "the open_clip torch dir");
    /* the file itself as the model path: the config beside it is used */
    char f[4400];
    snprintf(f, sizeof f, "%s/%s", d, hf ? "pytorch_model.bin" : "open_clip_pytorch_model.bin");
    expect_fixture(f, NULL, hf ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP, f);
  }
}

/* LAION's hub repositories hold both layouts in one directory (open_clip_config.json +
 * open_clip_pytorch_model.bin / open_clip_model.safetensors, config.json + pytorch_model.bin /
 * model.safetensors): a weights file given as the model path takes its own layout's config. */
static void both_layouts_file(void) {
  const char *d = subdir("laion-like");
  for (int hf = 0; hf < 2; hf++)
    for (int torch = 0; torch < 2; torch++)
      CHECK(vlm_clip_save_dir_as(&g_p, &g_cfg, d, hf ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP, torch) == VLM_OK, "%s",
            vlm_last_error());
  static const char *const names[4] = {"open_clip_pytorch_model.bin", "open_clip_model.safetensors",
                                       "pytorch_model.bin", "model.safetensors"};
  for (int i = 0; i < 4; i++) {
    char f[4400];
    snprintf(f, sizeof f, "%s/%s", d, names[i]);
    expect_fixture(f, NULL, i >= 2 ? VLM_CKPT_HF : VLM_CKPT_OPENCLIP, f);   /* its own layout's config */
  }
}

/* open_clip's training checkpoints: the state dict under "state_dict", DDP's "module." prefix,
 * the optimizer's tensors beside it. Without a config the error says how to name one. */
static void training_checkpoint(void) {
  char cfg[4400];
  snprintf(cfg, sizeof cfg, "%s/config.json", g_fx);
  static const char *const prefixes[3] = {"state_dict.module.", "state_dict.", "module."};
  for (int i = 0; i < 3; i++) {
    const char *f = path_in(i == 0 ? "epoch_1.pt" : i == 1 ? "epoch_2.pt" : "ddp.pt");
    vlm_status s = write_clip_torch(&g_p, &g_cfg, prefixes[i], i < 2, f);
    CHECK(s == VLM_OK, "write %s: %s", f, vlm_last_error());
    vlm_clip_config c;
    vlm_clip_params p;
    vlm_ckpt_format fmt;
    s = vlm_clip_load(f, &c, &p, &fmt);
    CHECK(s != VLM_OK && strstr(vlm_last_error(), f) && strstr(vlm_last_error(), "--config"),
          "no config beside %s: %s", f, s == VLM_OK ? "loaded" : vlm_last_error());
    if (s == VLM_OK) vlm_clip_params_free(&p);
    expect_fixture(f, cfg, -1, f);   /* with --config */
  }
  /* the weights of another architecture (vlm train --model small --pretrained FILE): the error
   * names the config they were checked against */
  {
    const char *f1 = path_in("epoch_1.pt");
    vlm_clip_config c;
    vlm_clip_params p;
    vlm_ckpt_format fmt;
    vlm_status s = vlm_clip_load_as(f1, "small", &c, &p, &fmt);
    CHECK(s != VLM_OK && strstr(vlm_last_error(), "does not match") && strstr(vlm_last_error(), "small"),
          "another architecture's config: %s", s == VLM_OK ? "loaded" : vlm_last_error());
    if (s == VLM_OK) vlm_clip_params_free(&p);
  }
  /* a prefix that is not the model's: every tensor is reported unexpected */
  const char *f = path_in("other.pt");
  CHECK(write_clip_torch(&g_p, &g_cfg, "model.", 0, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load_as(f, cfg, &c, &p, &fmt);
  /* (the message lists the missing names first; the unexpected ones may be past its 2 KB cap) */
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "missing:") && !strstr(vlm_last_error(), " 0 missing") &&
            !strstr(vlm_last_error(), " 0 unexpected"),
        "a foreign prefix: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
}

/* torch.save(model): a whole module pickled, its tensors under _modules / _parameters / _buffers
 * ("visual.conv1.weight" is "_modules.visual._modules.conv1._parameters.weight"); the text
 * transformer's attention mask, a non-persistent buffer, is not a parameter. */
typedef struct { vlm_st_writer *w; vlm_status s; char names[128][160]; int n; const char *prefix; } module_ctx;

static void add_module_named(void *ctx, const char *name, vlm_tensor *t) {
  module_ctx *m = ctx;
  if (m->s != VLM_OK || m->n >= 128) { m->s = VLM_ERR_INTERNAL; return; }
  char *out = m->names[m->n++];
  size_t k = (size_t)snprintf(out, 160, "%s", m->prefix ? m->prefix : "");
  for (const char *r = name; *r;) {
    const char *dot = strchr(r, '.');
    int len = dot ? (int)(dot - r) : (int)strlen(r);
    k += (size_t)snprintf(out + k, 160 - k, "%s%s.%.*s", k ? "." : "", dot ? "_modules" : "_parameters", len, r);
    r += len + (dot != NULL);
  }
  m->s = vlm_st_writer_add_tensor(m->w, out, t);
}

/* torch.save(model) of the DistributedDataParallel wrapper: "_modules.module." before it all. */
static void module_pickle(int ddp) {
  static module_ctx m;
  memset(&m, 0, sizeof m);
  m.prefix = ddp ? "_modules.module" : NULL;
  m.w = vlm_st_writer_new();
  vlm_clip_params_visit(&g_p, &g_cfg, add_module_named, &m);
  static float mask[4] = {0, -1e30f, 0, 0};
  int64_t shape[2] = {2, 2};
  if (m.s == VLM_OK) m.s = vlm_st_writer_add(m.w, ddp ? "_modules.module._modules.transformer._buffers.attn_mask" : "_modules.transformer._buffers.attn_mask", VLM_F32, 2, shape, mask);
  int seen = 0;
  for (int i = 0; i < m.n; i++) seen |= !strcmp(m.names[i], ddp ? "_modules.module._modules.visual._modules.conv1._parameters.weight"
                                     : "_modules.visual._modules.conv1._parameters.weight");
  CHECK(m.s == VLM_OK && seen, "the module names are nn.Module's (%s, ...)", m.names[0]);
  const char *f = path_in(ddp ? "full_ddp_model.pt" : "full_model.pt");
  if (m.s == VLM_OK) m.s = vlm_st_writer_save_torch(m.w, f);
  vlm_st_writer_free(m.w);
  CHECK(m.s == VLM_OK, "write %s: %s", f, vlm_last_error());
  char cfg[4400];
  snprintf(cfg, sizeof cfg, "%s/config.json", g_fx);
  expect_fixture(f, cfg, -1, ddp ? "a pickled module (torch.save(model) of a DDP wrapper)"
                                 : "a pickled module (torch.save(model))");
}

/* A sharded PyTorch save of a DDP-wrapped model: every name in the shards and in
 * pytorch_model.bin.index.json starts with "module."; the shards drop it, so must the index. */
typedef struct { vlm_st_writer *w[2]; vlm_status s; } shard_ctx;

static void add_to_shard(void *ctx, const char *name, vlm_tensor *t) {
  shard_ctx *c = ctx;
  char full[512];
  snprintf(full, sizeof full, "module.%s", name);
  if (c->s == VLM_OK) c->s = vlm_st_writer_add_tensor(c->w[strncmp(name, "visual.", 7) != 0], full, t);
}

typedef struct { char *buf; size_t n; int entries; } idx_ctx;

static void add_to_index(void *ctx, const char *name, vlm_tensor *t) {
  (void)t;
  idx_ctx *c = ctx;
  c->n += (size_t)snprintf(c->buf + c->n, 65536 - c->n, "%s\"module.%s\": \"pytorch_model-0000%d-of-00002.bin\"",
                           c->entries++ ? ", " : "", name, strncmp(name, "visual.", 7) ? 2 : 1);
}

static void sharded_module_prefix(void) {
  const char *d = subdir("sharded-ddp");
  shard_ctx sc = {{vlm_st_writer_new(), vlm_st_writer_new()}, VLM_OK};
  vlm_clip_params_visit(&g_p, &g_cfg, add_to_shard, &sc);
  for (int k = 0; k < 2; k++) {
    char f[600];
    snprintf(f, sizeof f, "%s/pytorch_model-0000%d-of-00002.bin", d, k + 1);
    if (sc.s == VLM_OK) sc.s = vlm_st_writer_save_torch(sc.w[k], f);
    vlm_st_writer_free(sc.w[k]);
  }
  static char buf[65536];
  idx_ctx ic = {buf, 0, 0};
  ic.n = (size_t)snprintf(buf, sizeof buf, "{\"metadata\": {}, \"weight_map\": {");
  vlm_clip_params_visit(&g_p, &g_cfg, add_to_index, &ic);
  ic.n += (size_t)snprintf(buf + ic.n, sizeof buf - ic.n, "}}");
  char idx[600];
  snprintf(idx, sizeof idx, "%s/pytorch_model.bin.index.json", d);
  vt_write_file(idx, buf, ic.n);
  CHECK(sc.s == VLM_OK && ic.n < sizeof buf - 1, "write the DDP shards: %s", vlm_last_error());
  char cfg[4400];
  snprintf(cfg, sizeof cfg, "%s/config.json", g_fx);
  expect_fixture(idx, cfg, -1, "sharded pickles and an index whose names carry DDP's module. prefix");
}

/* --config openai: a ViT CLIP config read off the shapes (heads of 64, QuickGELU), any MLP width. */
static void infer_openai(void) {
  const char *json =
      "{\"embed_dim\": 24, \"quick_gelu\": true,"
      " \"vision_cfg\": {\"image_size\": 24, \"patch_size\": 8, \"layers\": 2, \"width\": 64, \"head_width\": 64,"
      " \"mlp_ratio\": 1.5},"
      " \"text_cfg\": {\"context_length\": 7, \"vocab_size\": 50, \"width\": 128, \"heads\": 2, \"layers\": 3,"
      " \"mlp_ratio\": 0.75}}";
  vlm_clip_config want, c;
  vlm_clip_params p0, p;
  vlm_ckpt_format fmt;
  if (vlm_clip_config_parse(&want, json, "want") != VLM_OK || vlm_clip_params_init(&p0, &want) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  vlm_clip_params_init_openclip(&p0, &want, 7);
  const char *f = path_in("openai-like.pt");
  CHECK(write_clip_torch(&p0, &want, "", 0, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  vlm_status s = vlm_clip_load_as(f, "openai", &c, &p, &fmt);
  CHECK(s == VLM_OK, "--config openai: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(c.embed_dim == 24 && c.quick_gelu && c.vision.image_size == 24 && c.vision.patch_size == 8 &&
              c.vision.layers == 2 && c.vision.width == 64 && c.vision.heads == 1 && c.vision.mlp_width == 96 &&
              c.text.context_length == 7 && c.text.vocab_size == 50 && c.text.width == 128 && c.text.heads == 2 &&
              c.text.layers == 3 && c.text.mlp_width == 96 && c.text.eot_id == -1 && c.vision.ln_eps == 1e-5f,
          "inferred config: embed %lld, image %lld/%lld, vision %lld x %lld (heads %lld, mlp %lld), text ctx %lld "
          "vocab %lld %lld x %lld (heads %lld, mlp %lld)",
          (long long)c.embed_dim, (long long)c.vision.image_size, (long long)c.vision.patch_size,
          (long long)c.vision.layers, (long long)c.vision.width, (long long)c.vision.heads,
          (long long)c.vision.mlp_width, (long long)c.text.context_length, (long long)c.text.vocab_size,
          (long long)c.text.layers, (long long)c.text.width, (long long)c.text.heads, (long long)c.text.mlp_width);
    CHECK(same_arena(&p.arena, &p0.arena), "--config openai: the parameters differ");
    vlm_clip_params_free(&p);
  }
  /* a built-in name that does not fit: the mismatch is listed */
  s = vlm_clip_load_as(f, "ViT-B-32", &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "mis-shaped"), "--config ViT-B-32 on other weights: %s",
        s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  s = vlm_clip_load_as(f, "no-such-config", &c, &p, &fmt);
  CHECK(s == VLM_ERR_ARG && strstr(vlm_last_error(), "no-such-config"), "unknown --config: %s", vlm_last_error());
  vlm_clip_params_free(&p0);

  /* the tiny fixture's head width is 12: 'openai' cannot read it, and says why */
  f = path_in("tiny-bare.pt");
  CHECK(write_clip_torch(&g_p, &g_cfg, "", 0, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  s = vlm_clip_load_as(f, "openai", &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), f) && strstr(vlm_last_error(), "multiple of 64"),
        "--config openai on head width 12: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  /* a ResNet tower and missing tensors are named */
  vlm_st_writer *w = vlm_st_writer_new();
  int64_t shape[4] = {4, 3, 1, 1};
  static float zeros[12];
  vlm_st_writer_add(w, "visual.layer1.0.conv1.weight", VLM_F32, 4, shape, zeros);
  f = path_in("rn.pt");
  CHECK(vlm_st_writer_save_torch(w, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  vlm_st_writer_free(w);
  s = vlm_clip_load_as(f, "openai", &c, &p, &fmt);
  CHECK(s == VLM_ERR_UNSUPPORTED && strstr(vlm_last_error(), "ResNet"), "ResNet: %s", vlm_last_error());
  w = vlm_st_writer_new();
  vlm_st_writer_add(w, "token_embedding.weight", VLM_F32, 2, shape + 1, zeros);
  f = path_in("partial.pt");
  CHECK(vlm_st_writer_save_torch(w, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  vlm_st_writer_free(w);
  s = vlm_clip_load_as(f, "openai", &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "visual.conv1.weight"), "missing tensors: %s", vlm_last_error());
}

/* A directory with both formats reads the safetensors; a broken pickle is an error naming it. */
static void preference_and_errors(void) {
  const char *d = subdir("both");
  CHECK(vlm_clip_save_dir_as(&g_p, &g_cfg, d, VLM_CKPT_OPENCLIP, 0) == VLM_OK, "%s", vlm_last_error());
  char f[4400];
  snprintf(f, sizeof f, "%s/open_clip_pytorch_model.bin", d);
  vt_write_file(f, "PK\003\004 not really a zip", 21);
  char cfg[4096], weights[4096];
  CHECK(vlm_model_paths(d, cfg, weights, sizeof cfg) == VLM_OK && strstr(weights, "open_clip_model.safetensors"),
        "safetensors before the pickle: %s", weights);
  /* safetensors under a PyTorch name (a renamed file): read as what it is */
  d = subdir("st-as-bin");
  CHECK(vlm_clip_save_dir_as(&g_p, &g_cfg, d, VLM_CKPT_OPENCLIP, 0) == VLM_OK, "%s", vlm_last_error());
  char st_name[4400];
  snprintf(st_name, sizeof st_name, "%s/open_clip_model.safetensors", d);
  snprintf(f, sizeof f, "%s/open_clip_pytorch_model.bin", d);
  CHECK(rename(st_name, f) == 0, "rename");
  expect_fixture(d, NULL, -1, "safetensors named open_clip_pytorch_model.bin");
  d = subdir("broken");
  vt_copy_file(vt_path(g_fx, "config.json"), vt_path(d, "open_clip_config.json"));
  snprintf(f, sizeof f, "%s/open_clip_pytorch_model.bin", d);
  vt_write_file(f, "PK\003\004 not really a zip", 21);
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load(d, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "open_clip_pytorch_model.bin"), "a broken pickle: %s",
        s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
}

/* open_clip's LOGS/RUN/checkpoints/epoch_N.pt: the config named by RUN/params.txt. */
static void open_clip_params(void) {
  char params[512];
  snprintf(params, sizeof params, "%s/params.txt", g_tmp);
  const char *f = path_in("epoch_7.pt");
  CHECK(write_clip_torch(&g_p, &g_cfg, "state_dict.module.", 1, f) == VLM_OK, "write %s: %s", f, vlm_last_error());
  const char *text = "batch_size: 8\r\nforce_quick_gelu: False\r\nlr: 0.0005\r\nmodel: tiny\r\n";
  vt_write_file(params, text, strlen(text));
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  vlm_status s = vlm_clip_load(f, &c, &p, &fmt);
  CHECK(s == VLM_OK, "epoch_7.pt with ../params.txt naming tiny: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(same_arena(&p.arena, &g_p.arena) && !c.quick_gelu, "params.txt: the parameters or the activation differ");
    vlm_clip_params_free(&p);
  }
  text = "force_quick_gelu: True\nmodel: tiny\n";
  vt_write_file(params, text, strlen(text));
  s = vlm_clip_load(f, &c, &p, &fmt);
  CHECK(s == VLM_OK && c.quick_gelu, "force_quick_gelu: True: %s", s == VLM_OK ? "GELU" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  text = "model: RN50\n";
  vt_write_file(params, text, strlen(text));
  s = vlm_clip_load(f, &c, &p, &fmt);
  CHECK(s == VLM_ERR_UNSUPPORTED && strstr(vlm_last_error(), "RN50") && strstr(vlm_last_error(), "--config"),
        "params.txt naming a model vlm has no config for: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  /* --force-image-size 48 (open_clip writes one size as an int): a position table for a 6x6 grid */
  vlm_clip_config c48 = g_cfg;
  c48.vision.image_size = 48;
  vlm_clip_params p48;
  s = vlm_clip_params_init(&p48, &c48);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  if (s == VLM_OK) {
    vlm_clip_params_init_openclip(&p48, &c48, 3);
    const char *f48 = path_in("epoch_48.pt");
    CHECK(write_clip_torch(&p48, &c48, "state_dict.module.", 1, f48) == VLM_OK, "%s", vlm_last_error());
    text = "force_image_size: 48\nforce_quick_gelu: False\nmodel: tiny\n";
    vt_write_file(params, text, strlen(text));
    s = vlm_clip_load(f48, &c, &p, &fmt);
    CHECK(s == VLM_OK && c.vision.image_size == 48, "force_image_size: 48: %s",
          s == VLM_OK ? "another image size" : vlm_last_error());
    if (s == VLM_OK) {
      CHECK(same_arena(&p.arena, &p48.arena), "force_image_size: the parameters differ");
      vlm_clip_params_free(&p);
    }
    text = "force_image_size: [48, 64]\nmodel: tiny\n";   /* not square: no vlm config */
    vt_write_file(params, text, strlen(text));
    s = vlm_clip_load(f48, &c, &p, &fmt);
    CHECK(s != VLM_OK && strstr(vlm_last_error(), "force_image_size"), "force_image_size: [48, 64]: %s",
          s == VLM_OK ? "loaded" : vlm_last_error());
    if (s == VLM_OK) vlm_clip_params_free(&p);
    text = "force_image_size: None\nmodel: tiny\n";
    vt_write_file(params, text, strlen(text));
    s = vlm_clip_load(f, &c, &p, &fmt);
    CHECK(s == VLM_OK && c.vision.image_size == 32, "force_image_size: None: %s", vlm_last_error());
    if (s == VLM_OK) vlm_clip_params_free(&p);
    vlm_clip_params_free(&p48);
  }
  text = "model: hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K\n";   /* a run fine-tuning a hub model */
  vt_write_file(params, text, strlen(text));
  s = vlm_clip_load(f, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "open_clip_config.json") && !strstr(vlm_last_error(), "model_configs/hf-hub"),
        "params.txt naming an hf-hub: model: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  text = "lr: 0.1\n";
  vt_write_file(params, text, strlen(text));
  s = vlm_clip_load(f, &c, &p, &fmt);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "params.txt") && strstr(vlm_last_error(), "model"),
        "params.txt without a model line: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_clip_params_free(&p);
  remove(params);
}

/* CoCa: a hub directory with the pickle only (open_clip_config.json +
 * open_clip_pytorch_model.bin), and a bare training checkpoint with its config named. */
static void coca(void) {
  vlm_coca_config c, c2;
  vlm_coca_params p, p2;
  if (vlm_coca_config_builtin(&c, "coca-tiny") != VLM_OK || vlm_coca_params_init(&p, &c) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  vlm_coca_params_init_openclip(&p, &c, 3);
  const char *d = subdir("coca-torch");
  vlm_status s = vlm_coca_save_dir_as(&p, &c, d, 1);
  CHECK(s == VLM_OK && exists(d, "open_clip_pytorch_model.bin") && !exists(d, "open_clip_model.safetensors"),
        "CoCa torch dir: %s", vlm_last_error());
  CHECK(vlm_model_is_coca(d) == 1, "the CoCa torch dir is CoCa");
  s = vlm_coca_load(d, &c2, &p2);
  CHECK(s == VLM_OK, "load the CoCa torch dir: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(same_arena(&p2.arena, &p.arena), "CoCa torch dir: the parameters differ");
    vlm_coca_params_free(&p2);
  }
  char f[4400];
  snprintf(f, sizeof f, "%s/open_clip_pytorch_model.bin", d);
  char bare[4400];
  snprintf(bare, sizeof bare, "%s", path_in("coca-epoch.pt"));
  CHECK(rename(f, bare) == 0, "rename");
  CHECK(vlm_coca_config_spec_is_coca("coca-tiny") && !vlm_coca_config_spec_is_coca("ViT-B-32"), "CoCa specs");
  s = vlm_coca_load_as(bare, "coca-tiny", &c2, &p2);
  CHECK(s == VLM_OK, "bare CoCa checkpoint with --config coca-tiny: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(same_arena(&p2.arena, &p.arena), "bare CoCa: the parameters differ");
    vlm_coca_params_free(&p2);
  }
  /* --pretrained of another architecture: the error names the config it was checked against */
  s = vlm_coca_load_as(bare, "coca-small", &c2, &p2);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "does not match") && strstr(vlm_last_error(), "coca-small"),
        "CoCa weights against another config: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_coca_params_free(&p2);
  /* open_clip's training run: ../params.txt names coca-tiny */
  char params[512];
  snprintf(params, sizeof params, "%s/params.txt", g_tmp);
  const char *text = "model: coca-tiny\n";
  vt_write_file(params, text, strlen(text));
  CHECK(vlm_model_is_coca(bare) == 1, "params.txt naming coca-tiny: CoCa");
  s = vlm_coca_load(bare, &c2, &p2);
  CHECK(s == VLM_OK, "bare CoCa checkpoint with ../params.txt: %s", vlm_last_error());
  if (s == VLM_OK) {
    CHECK(same_arena(&p2.arena, &p.arena), "CoCa via params.txt: the parameters differ");
    vlm_coca_params_free(&p2);
  }
  /* params.txt naming another CoCa: the mismatch names the params.txt it came from */
  text = "model: coca-small\n";
  vt_write_file(params, text, strlen(text));
  s = vlm_coca_load(bare, &c2, &p2);
  CHECK(s != VLM_OK && strstr(vlm_last_error(), "does not match") && strstr(vlm_last_error(), "params.txt") &&
            !strstr(vlm_last_error(), "this config"),
        "params.txt naming coca-small: %s", s == VLM_OK ? "loaded" : vlm_last_error());
  if (s == VLM_OK) vlm_coca_params_free(&p2);
  remove(params);
  vlm_coca_params_free(&p);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no ../shared folder (the tiny-clip fixture)");
  snprintf(g_fx, sizeof g_fx, "%s/fixtures/tiny-clip", shared);
  vlm_ckpt_format fmt;
  if (vlm_clip_load(g_fx, &g_cfg, &g_p, &fmt) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return vt_finish();
  }
  if (!vt_make_tmp_dir(g_tmp, sizeof g_tmp, "vlm-torch-ckpt")) return vt_finish();
  snprintf(g_files, sizeof g_files, "%s", vt_subdir(g_tmp, "files"));
  save_dir_torch();
  both_layouts_file();
  training_checkpoint();
  module_pickle(0);
  module_pickle(1);
  sharded_module_prefix();
  infer_openai();
  preference_and_errors();
  open_clip_params();
  coca();
  vlm_clip_params_free(&g_p);
  vt_rm_tree(g_tmp);
  return vt_finish();
}
