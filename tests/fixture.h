/* Comparing against the open_clip fixtures (../shared/fixtures, README's
 * tolerances), shared by the parity tests of CLIP, CoCa and the GPU. */
#ifndef VLM_TESTS_FIXTURE_H
#define VLM_TESTS_FIXTURE_H
#include "core/core.h"

/* DIR/inputs.safetensors, outputs.safetensors and grads.safetensors opened: 1, or a failed
 * CHECK naming the file, none left open, 0. vt_fixture_close closes the three. */
int vt_fixture_open(const char *dir, vlm_safetensors *in, vlm_safetensors *out, vlm_safetensors *grads);
void vt_fixture_close(vlm_safetensors *in, vlm_safetensors *out, vlm_safetensors *grads);
/* The entry `name` of st; a failed CHECK and NULL when it is absent. */
const vlm_st_entry *vt_st_need(const vlm_safetensors *st, const char *name);
/* The entry as F32 (vt_alloc'd); its element count in *n_out when not NULL. */
float *vt_st_read_all(const vlm_safetensors *st, const vlm_st_entry *e, int64_t *n_out);
/* One output against the fixture tensor `name` of ref, kind 0: features / tokens (1e-5 abs),
 * 1: logits (1e-5 abs or 1e-4 rel per element), 2: losses and scales (1e-5 rel); the bounds are
 * multiplied by loose (1 = the README's). One CHECK, naming the first bad element. Returns the
 * worst error (absolute, relative for kind 2), INFINITY when the tensor is missing. */
double vt_fixture_compare(const char *what, const char *name, const float *got, int64_t n_got,
                          const vlm_safetensors *ref, int kind, double loose);

/* A parameter visitor (vlm_param_visit_fn) checking each gradient against the fixture's
 * tensor of the same name: max error relative to the tensor's max <= tol (README: 1e-4). */
typedef struct {
  const vlm_safetensors *ref;
  const char *what;
  double tol;
  int checked;
  double worst;
  char worst_name[256];
} vt_grad_ctx;
void vt_fixture_compare_grad(void *ctx, const char *name, vlm_tensor *t);

/* A model's parameters (of any kind) visited: fn(ctx, name, tensor) for each. */
typedef void (*vt_model_visit)(void *model, vlm_param_visit_fn fn, void *ctx);
/* Every gradient that visit(model) names against ref (vt_fixture_compare_grad, tolerance 1e-4),
 * and one CHECK that each of ref's tensors was compared. Returns the context (counts, worst). */
vt_grad_ctx vt_fixture_compare_grads(const vlm_safetensors *ref, const char *what, vt_model_visit visit,
                                     void *model);

/* The images, text and text_i32 of a fixture's inputs: 1, or a failed CHECK and 0. */
int vt_fixture_inputs(const vlm_safetensors *in, vlm_tensor *images, vlm_tensor *text, vlm_tensor *text32);

/* The smallest cosine similarity of the rows of two [R, C] F32 tensors. */
double vt_min_cosine(const vlm_tensor *a, const vlm_tensor *b);

/* Whether a host tensor's memory was given back (vlm_host_release on arena memory): 1 when
 * every byte of the whole pages inside it reads zero, 0 when one does not, -1 when it holds
 * no whole page (nothing to tell). */
int vt_pages_released(const vlm_tensor *t);

/* `--compare DIR OUT [GRADS]` of the parity tests: every tensor of DIR/outputs.safetensors
 * against the same-named one of OUT (written by `vlm forward`: the same names and shapes, kinds by
 * name: logits 1, features and tokens 0, the rest 2); then, when grads_path is given, the model
 * load(dir, grads_path) returns (NULL after a failed CHECK), its gradients named by visit,
 * against DIR/grads.safetensors, and free_model(model). */
typedef void *(*vt_grads_loader)(const char *dir, const char *grads_path);
void vt_compare_files(const char *dir, const char *out_path, const char *grads_path, vt_grads_loader load,
                      vt_model_visit visit, void (*free_model)(void *model));

/* main of a parity test: `--compare DIR OUT [GRADS]` (vt_compare_files), a fixture directory
 * (parity(DIR)), or ../shared holding fixtures/PROBE/config.json (units(shared)); skipped (77)
 * otherwise. Returns the exit code. */
int vt_parity_main(int argc, char **argv, const char *probe, void (*parity)(const char *dir),
                   void (*units)(const char *shared), vt_grads_loader load, vt_model_visit visit,
                   void (*free_model)(void *model));
#endif
