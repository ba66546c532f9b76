/* vlm caption --model PATH IMAGE... : CoCa captions, batched over images. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "apps/tools.h"
#include "datasets/datasets.h"
#include "model/encode.h"
#include "model/model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm caption --model PATH [options] IMAGE|FOLDER...\n"
          "       vlm caption --model PATH [options] --inputs FILE\n"
          "\n"
          "Captions images with a CoCa model (open_clip checkpoint: a directory or its\n"
          "config file, see 'vlm info'). A FOLDER is searched recursively (links to folders\n"
          "inside it are not followed) for JPEG, PNG and WebP files (in sorted order: those\n"
          "named .jpg, .jpeg, .png or .webp, readable or not, and those that start like an\n"
          "image); a folder that cannot be opened, or one more than 64 folders deep, is\n"
          "named in a warning. A file named twice (a folder and a file in it) is captioned\n"
          "once. Images are decoded and preprocessed as open_clip's eval transform (resize\n"
          "the shorter side, center crop, OpenAI mean/std) and captioned in batches; the\n"
          "decoder keeps a KV cache, so each new token costs one position.\n"
          "\n"
          "Decoding (greedy by default):\n"
          "  --beams N              beam search with N beams\n"
          "  --top-k K              sample from the K most likely tokens\n"
          "  --top-p P              sample from the nucleus of probability P\n"
          "  --temperature T        sampling temperature (default 1)\n"
          "  --repetition-penalty R penalise tokens already generated (default 1: off)\n"
          "  --length-penalty A     beam search: score / length^A (default 1)\n"
          "  --min-len N            EOT is forbidden before N tokens (default 5; at most --max-len)\n"
          "  --max-len N            at most N tokens, sot and eot included (default 30, or the\n"
          "                         model's context length when shorter)\n"
          "  --seed S               sampling seed (default 0)\n"
          "                         (--temperature and --seed need --top-k or --top-p,\n"
          "                         --length-penalty needs --beams: an error otherwise)\n"
          "  --no-cache             re-run the whole prefix every step (as open_clip; slow)\n"
          "Other options:\n"
          "  --tokenizer PATH       vocab.json + merges.txt folder, vocab.json, tokenizer.json,\n"
          "                         or OpenAI's bpe_simple_vocab_16e6.txt.gz (default: the one\n"
          "                         beside the model: MODEL/tokenizer/, MODEL/vocab.json, a vlm\n"
          "                         train run's RUN/tokenizer/, MODEL/tokenizer.json,\n"
          "                         MODEL/bpe_simple_vocab_16e6.txt.gz);\n"
          "                         without one the ids are printed\n"
          "  --batch-size N         images per batch (default 8; --batch N is the same)\n"
          "  --max-image-pixels N   skip images with more pixels (default %lld, PIL's limit),\n"
          "                         checked from the header before decoding\n"
          "  --inputs FILE          caption the `images` tensor [N,3,H,W] of a safetensors file\n"
          "                         (already normalized, as 'vlm forward --inputs') instead of files\n"
          "  --json                 one JSON object per image: image, caption, ids (an unreadable\n"
          "                         image: caption and ids null, error: the message)\n"
          "  --                     the arguments after it are images or folders (names that start with '-')\n"
          "  --device cpu|cuda      where the model runs (default cpu; cuda: the weights and\n"
          "                         each batch on the GPU, the logits back to the host)\n"
          "  --precision f32|bf16   bf16: weight matrices converted to bf16 once, bf16 matmul\n"
          "                         inputs with f32 accumulation (faster; captions may differ)\n"
          "\n"
          "Exit status: 0 when every image was captioned; 1 when one could not be read, or a\n"
          "folder could not be searched (the others are still captioned, the unreadable ones\n"
          "named on stderr), or on errors.\n"
          "\n"
          "Examples:\n"
          "  vlm caption --model runs/coca-shapes/checkpoints/latest img1.jpg img2.png\n"
          "  vlm caption --model coca-dir --beams 3 --max-len 20 --json *.jpg\n"
          "  vlm caption --model coca-dir --top-p 0.9 --temperature 0.7 --seed 1 photo.webp\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

static int parse_float(const char *flag, const char *s, double lo, double hi, float *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || !end || *end || end == s || !(v >= lo && v <= hi)) {
    fprintf(stderr, "vlm caption: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
    return 0;
  }
  *out = (float)v;
  return 1;
}

int vlm_cmd_caption(int argc, char **argv) {
  const char *model = NULL, *tok_path = NULL, *precision = "f32", *inputs = NULL, *device = "cpu";
  vlm_gen_options o;
  vlm_gen_options_default(&o);
  int json = 0, sampling_set = 0, max_set = 0, min_set = 0, temp_set = 0, seed_set = 0, lpen_set = 0;
  long long batch = 8, v, max_pixels = 0;   /* 0: --max-image-pixels not given */
  const char **images = calloc((size_t)argc, sizeof *images);
  int n_images = 0;
  if (!images) return 1;
#define NEED_ARG()                                                                      \
  do {                                                                                  \
    if (i + 1 >= argc) {                                                                \
      fprintf(stderr, "vlm caption: %s needs a value\n", argv[i]);                      \
      free(images);                                                                     \
      return 2;                                                                         \
    }                                                                                   \
  } while (0)
  int paths_only = 0;   /* after "--": file names that start with '-' */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (paths_only) { images[n_images++] = a; continue; }
    if (!strcmp(a, "--")) { paths_only = 1; continue; }
    if (vlm_app_is_help(a)) { usage(stdout); free(images); return 0; }
    int ok = 1;
    if (!strcmp(a, "--model")) { NEED_ARG(); model = argv[++i]; }
    else if (!strcmp(a, "--tokenizer")) { NEED_ARG(); tok_path = argv[++i]; }
    else if (!strcmp(a, "--precision")) { NEED_ARG(); precision = argv[++i]; }
    else if (!strcmp(a, "--device")) { NEED_ARG(); device = argv[++i]; }
    else if (!strcmp(a, "--inputs")) { NEED_ARG(); inputs = argv[++i]; }
    else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--no-cache")) o.use_cache = 0;
    else if (!strcmp(a, "--beams")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 1, 64, &v); o.beams = (int)v; }
    else if (!strcmp(a, "--top-k")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 1, 1 << 30, &v); o.top_k = (int)v; sampling_set = 1; }
    else if (!strcmp(a, "--top-p")) { NEED_ARG(); ok = parse_float(a, argv[++i], 1e-6, 1.0, &o.top_p); sampling_set = 1; }
    else if (!strcmp(a, "--temperature")) { NEED_ARG(); ok = parse_float(a, argv[++i], 1e-4, 1e4, &o.temperature); temp_set = 1; }
    else if (!strcmp(a, "--repetition-penalty")) { NEED_ARG(); ok = parse_float(a, argv[++i], 1e-4, 1e4, &o.repetition_penalty); }
    else if (!strcmp(a, "--length-penalty")) { NEED_ARG(); ok = parse_float(a, argv[++i], -100, 100, &o.length_penalty); lpen_set = 1; }
    else if (!strcmp(a, "--min-len")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 0, 1 << 20, &v); o.min_len = (int)v; min_set = 1; }
    else if (!strcmp(a, "--max-len")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 2, 1 << 20, &v); o.max_len = (int)v; max_set = 1; }
    else if (!strcmp(a, "--seed")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 0, (1LL << 62), &v); o.seed = (uint64_t)v; seed_set = 1; }
    else if (!strcmp(a, "--batch") || !strcmp(a, "--batch-size")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 1, 4096, &batch); }
    else if (!strcmp(a, "--max-image-pixels")) { NEED_ARG(); ok = vlm_app_parse_int("vlm caption", a, argv[++i], 1, 1LL << 40, &max_pixels); }
    else if (a[0] == '-' && a[1]) {
      free(images);
      return vlm_app_bad_arg("vlm caption", a);
    } else images[n_images++] = a;
    if (!ok) { free(images); return 2; }
  }
#undef NEED_ARG
  if (!model || (n_images == 0) == !inputs) {
    fprintf(stderr, "vlm caption: %s (see 'vlm caption --help')\n",
            !model  ? "--model is required"
            : inputs ? "IMAGE files and --inputs FILE are exclusive: --inputs holds the images to caption"
                     : "IMAGE files or --inputs FILE are required");
    free(images);
    return 2;
  }
  int bf16 = !strcmp(precision, "bf16");
  if (!bf16 && strcmp(precision, "f32") && strcmp(precision, "fp32")) {
    fprintf(stderr, "vlm caption: --precision must be f32 or bf16, got '%s'\n", precision);
    free(images);
    return 2;
  }
  if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
    fprintf(stderr, "vlm caption: --device must be cpu or cuda, got '%s'\n", device);
    free(images);
    return 2;
  }
  const vlm_device dev = !strcmp(device, "cuda") ? VLM_CUDA : VLM_CPU;
  if (dev == VLM_CUDA && !vlm_cuda_available()) {
    fprintf(stderr, "vlm caption: --device cuda: %s\n", vlm_cuda_describe());
    free(images);
    return 1;
  }
  if (min_set && max_set && o.min_len > o.max_len) {
    fprintf(stderr, "vlm caption: --min-len %d is longer than --max-len %d\n", o.min_len, o.max_len);
    free(images);
    return 2;
  }
  if (o.beams > 1 && sampling_set) {
    fprintf(stderr, "vlm caption: --beams and --top-k/--top-p are exclusive\n");
    free(images);
    return 2;
  }
  if (max_pixels && inputs) {
    fprintf(stderr, "vlm caption: --max-image-pixels applies to image files; --inputs holds decoded images\n");
    free(images);
    return 2;
  }
  const vlm_decode_opts decode = {.max_pixels = max_pixels ? max_pixels : VLM_DEFAULT_MAX_PIXELS};
  /* a decoding option the chosen decoding does not use is an error, not silently nothing */
  const char *unused = !sampling_set && temp_set ? "--temperature"
                     : !sampling_set && seed_set ? "--seed"
                     : o.beams <= 1 && lpen_set  ? "--length-penalty" : NULL;
  if (unused) {
    fprintf(stderr, "vlm caption: %s applies to %s; this decoding is %s\n", unused,
            strcmp(unused, "--length-penalty") ? "sampling (--top-k / --top-p)" : "beam search (--beams N, N > 1)",
            o.beams > 1 ? "beam search" : sampling_set ? "sampling" : "greedy");
    free(images);
    return 2;
  }
  int coca = vlm_model_is_coca(model);
  if (coca != 1) {
    char cfg[4096], weights[4096], quoted[4200];
    if (coca < 0) fprintf(stderr, "vlm caption: %s\n", vlm_last_error());   /* it names the path */
    else if (vlm_model_paths(model, cfg, weights, sizeof cfg) == VLM_OK && !cfg[0])   /* weights alone */
      fprintf(stderr, "vlm caption: %s: no model config beside these weights (open_clip_config.json, or open_clip's "
              "../params.txt). Name the config once, then caption with DIR: vlm convert --model %s --config NAME|FILE "
              "--to open_clip --out DIR (NAME: a built-in such as coca_ViT-B-32; FILE: its open_clip config JSON)\n",
              model, vlm_shell_word(model, quoted, sizeof quoted));
    else fprintf(stderr, "vlm caption: %s: not a CoCa model (its config has no multimodal_cfg)\n", model);
    free(images);
    return 1;
  }
  vlm_coca_config c;
  vlm_coca_params p;
  if (vlm_coca_load(model, &c, &p) != VLM_OK) {
    fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
    free(images);
    return 1;
  }
  vlm_coca_params h, *w = &p;
  vlm_arena dimg;   /* --device cuda: the batch's pixels there */
  memset(&h, 0, sizeof h);
  memset(&dimg, 0, sizeof dimg);
  if (dev != VLM_CPU) {   /* the weights once to the GPU (fp32: bf16 there is the matmul precision) */
    if (vlm_coca_params_init_on(&h, &c, dev) != VLM_OK) {
      fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
      vlm_coca_params_free(&p);
      free(images);
      return 1;
    }
    vlm_coca_params_copy(&h, &p);
    w = &h;
    if (bf16) vlm_set_matmul_precision(VLM_PREC_BF16);
  } else if (bf16) {   /* bf16 weight matrices converted once; bf16 matmul inputs, f32 accumulation */
    vlm_set_matmul_precision(VLM_PREC_BF16);
    if (vlm_coca_params_bf16(&h, &p, &c, 1) != VLM_OK) {
      fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
      vlm_coca_params_free(&p);
      free(images);
      return 1;
    }
    w = &h;
  }
  /* tokenizer: --tokenizer, else the one beside the model (the encoders' search:
   * MODEL/tokenizer/, a `vlm train` run's RUN/tokenizer/, ...) */
  vlm_tokenizer *tok = NULL;
  char tdir[4096];
  int found = tok_path ? 1 : vlm_find_tokenizer(model, tdir, sizeof tdir);
  if (found < 0) {   /* the message names the path */
    fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
    vlm_coca_params_free(&h);
    vlm_coca_params_free(&p);
    free(images);
    return 1;
  }
  if (!tok_path && found) tok_path = tdir;
  if (!tok_path)
    fprintf(stderr, "vlm caption: no tokenizer beside %s: printing token ids (pass --tokenizer PATH)\n", model);
  int rc = 0;
  if (tok_path && vlm_tokenizer_load(&tok, tok_path) != VLM_OK) {
    fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
    vlm_coca_params_free(&h);
    vlm_coca_params_free(&p);
    free(images);
    return 1;
  }
  int64_t V = c.text.vocab_size;
  o.sot_id = tok ? vlm_tokenizer_sot(tok) : V - 2;
  o.eot_id = tok ? vlm_tokenizer_eot(tok) : V - 1;
  o.pad_id = c.text.pad_id;
  /* a tokenizer smaller than the model's vocabulary cannot decode the ids past its own */
  if (tok && vlm_tokenizer_vocab_size(tok) < V) o.n_ids = vlm_tokenizer_vocab_size(tok);
  int64_t ctx = c.text.context_length < c.decoder.context_length ? c.text.context_length : c.decoder.context_length;
  if (!max_set && o.max_len > ctx) o.max_len = (int)ctx;   /* the default fits the model */
  if (min_set && o.min_len > o.max_len) {
    fprintf(stderr, "vlm caption: --min-len %d is longer than the longest caption, %d tokens (%s)\n", o.min_len,
            o.max_len, max_set ? "--max-len" : "the model's context length; see --max-len");
    vlm_tokenizer_free(tok);
    vlm_coca_params_free(&h);
    vlm_coca_params_free(&p);
    free(images);
    return 2;
  }
  if (o.min_len > o.max_len) o.min_len = o.max_len;   /* the default (5) on a short model */
  if (vlm_gen_options_check(&o, &c.text, &c.decoder) != VLM_OK) {
    fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
    vlm_tokenizer_free(tok);
    vlm_coca_params_free(&h);
    vlm_coca_params_free(&p);
    free(images);
    return 2;
  }
  int64_t S = c.vision.image_size;
  float *pre = NULL;   /* --inputs: the whole `images` tensor */
  char **pre_names = NULL;
  vlm_pathlist files = {0};   /* the IMAGE arguments, folders expanded */
  float *pix = NULL;
  int32_t *out = NULL;
  int *lens = NULL;
  const char **names = NULL;
  if (inputs) {
    vlm_safetensors st;
    if (vlm_st_open(&st, inputs) != VLM_OK) {
      fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
      rc = 1;
      goto done;
    }
    const vlm_st_entry *e = vlm_st_find(&st, "images");
    if (!e || e->ndim != 4 || e->shape[0] < 1 || e->shape[0] > (1 << 20) || e->shape[1] != 3 || e->shape[2] != S ||
        e->shape[3] != S) {
      fprintf(stderr, "vlm caption: %s: needs `images` [N, 3, %lld, %lld] (normalized, as vlm forward --inputs)\n",
              inputs, (long long)S, (long long)S);
      vlm_st_close(&st);
      rc = 1;
      goto done;
    }
    n_images = (int)e->shape[0];
    pre = malloc((size_t)(n_images * 3 * S * S) * sizeof *pre);
    pre_names = calloc((size_t)n_images, sizeof *pre_names);
    if (!pre || !pre_names || vlm_st_read_f32(&st, e, pre, n_images * 3 * S * S) != VLM_OK) {
      if (pre) fprintf(stderr, "vlm caption: %s\n", vlm_last_error());   /* it names the file */
      else fprintf(stderr, "vlm caption: %s: out of memory\n", inputs);
      vlm_st_close(&st);
      rc = 1;
      goto done;
    }
    vlm_st_close(&st);
    for (int i = 0; i < n_images; i++) {
      pre_names[i] = malloc(strlen(inputs) + 32);
      if (pre_names[i]) sprintf(pre_names[i], "%s[%d]", inputs, i);
    }
  } else {   /* a folder: its images (as zeroshot and index take them); a file as given */
    for (int i = 0; i < n_images; i++) {
      struct stat sb;
      vlm_status st = stat(images[i], &sb) == 0 && S_ISDIR(sb.st_mode) ? vlm_tools_collect(&files, images[i], "caption")
                                                                          : vlm_pathlist_add(&files, images[i]);
      if (st != VLM_OK) {
        fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
        rc = 1;
        goto done;
      }
    }
    if (files.unsearched) rc = 1;   /* a folder that could not be searched (named): its images are not captioned */
    int64_t twice = vlm_pathlist_drop_duplicates(&files);   /* a folder and a file in it: one caption */
    if (twice < 0) {
      fprintf(stderr, "vlm caption: out of memory\n");
      rc = 1;
      goto done;
    }
    if (twice)
      fprintf(stderr, "vlm caption: %lld image%s named more than once, captioned once\n", (long long)twice,
              twice == 1 ? "" : "s");
    if (files.n == 0) {
      fprintf(stderr, "vlm caption: no JPEG, PNG or WebP images in %s%s\n", images[0], n_images > 1 ? " ..." : "");
      rc = 1;
      goto done;
    }
    if (files.n > (1 << 30)) {
      fprintf(stderr, "vlm caption: too many images (%lld)\n", (long long)files.n);
      rc = 1;
      goto done;
    }
    n_images = (int)files.n;
  }
  int64_t B = batch < n_images ? batch : n_images;
  pix = malloc((size_t)(B * 3 * S * S) * sizeof *pix);
  out = malloc((size_t)(B * o.max_len) * sizeof *out);
  lens = malloc((size_t)B * sizeof *lens);
  names = malloc((size_t)B * sizeof *names);
  if (!pix || !out || !lens || !names) {
    fprintf(stderr, "vlm caption: out of memory\n");
    rc = 1;
    goto done;
  }
  if (dev != VLM_CPU && vlm_arena_init(&dimg, (size_t)(B * 3 * S * S) * sizeof(float) + VLM_ARENA_ALIGN, dev) != VLM_OK) {
    fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
    rc = 1;
    goto done;
  }
  vlm_preprocess_cfg pc;
  vlm_vit_preprocess_cfg(&c.vision, &pc);   /* the model's preprocess_cfg */
  int next = 0;
  double t0 = vlm_now();
  int n_done = 0;
  while (next < n_images) {
    int64_t nb = 0;
    const char *bad = NULL;   /* the unreadable image that ended this batch */
    char bad_msg[VLM_ERR_LEN] = "";
    o.first_row = (uint64_t)next;
    while (nb < B && next < n_images) {
      if (pre) {
        memcpy(pix + nb * 3 * S * S, pre + next * 3 * S * S, (size_t)(3 * S * S) * sizeof *pix);
        names[nb++] = pre_names[next] ? pre_names[next] : inputs;
        next++;
        continue;
      }
      const char *path = files.paths[next++];
      if (vlm_preprocess_file(path, &decode, &pc, NULL, pix + nb * 3 * S * S) != VLM_OK) {
        fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
        snprintf(bad_msg, sizeof bad_msg, "%s", vlm_last_error());
        bad = path;
        rc = 1;
        break;   /* a batch holds consecutive images: row b is image first_row + b */
      }
      names[nb++] = path;
    }
    if (nb == 0) goto bad_line;
    int64_t sh[4] = {nb, 3, S, S};
    vlm_tensor t = vlm_tensor_cpu_f32(pix, 4, sh);
    if (dev != VLM_CPU) {   /* one upload of the batch */
      vlm_tensor d = vlm_tensor_make(dimg.base, VLM_F32, dev, 4, sh);
      vlm_copy(&d, &t);
      t = d;
    }
    if (vlm_coca_generate(&c, w, &t, &o, out, lens) != VLM_OK) {
      fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
      rc = 1;
      goto done;
    }
    for (int64_t b = 0; b < nb; b++) {
      const int32_t *row = out + b * o.max_len;
      char *text = tok ? vlm_tokenizer_decode_text(tok, row, (size_t)lens[b]) : NULL;
      if (json) {
        printf("{\"image\": ");
        vlm_tools_json_str(stdout, names[b]);
        printf(", \"caption\": ");
        if (text) vlm_tools_json_str(stdout, text);
        else printf("null");
        printf(", \"ids\": [");
        for (int i = 0; i < lens[b]; i++) printf("%s%d", i ? ", " : "", row[i]);
        printf("]}\n");
      } else if (text) {
        vlm_tools_text_str(stdout, names[b]);
        putchar('\t');
        vlm_tools_text_str(stdout, text);
        putchar('\n');
      } else {
        vlm_tools_text_str(stdout, names[b]);
        putchar('\t');
        for (int i = 0; i < lens[b]; i++) printf("%s%d", i ? " " : "", row[i]);
        printf("\n");
      }
      free(text);
      n_done++;
    }
  bad_line:   /* --json: the unreadable image in its place, with the reason */
    if (bad && json) {
      printf("{\"image\": ");
      vlm_tools_json_str(stdout, bad);
      printf(", \"caption\": null, \"ids\": null, \"error\": ");
      vlm_tools_json_str(stdout, bad_msg);
      printf("}\n");
    }
  }
  vlm_log(VLM_LOG_DEBUG, "caption: %d images in %.3f s", n_done, vlm_now() - t0);
done:
  free(pix);
  if (pre_names)
    for (int i = 0; i < n_images; i++) free(pre_names[i]);
  free(pre_names);
  vlm_pathlist_free(&files);
  free(pre);
  free(out);
  free(lens);
  free(names);
  vlm_tokenizer_free(tok);
  vlm_arena_free(&dimg);
  vlm_coca_params_free(&h);
  vlm_coca_params_free(&p);
  free(images);
  return rc;
}
