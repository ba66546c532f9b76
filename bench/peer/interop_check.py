#!/usr/bin/env python3
"""bench/peer/interop_check.py: vlm's checkpoints against transformers and open_clip, run by hand.

Builds small models with random weights in transformers (CLIPModel) and open_clip (CLIP, CoCa),
saves them as those libraries save them (safetensors and PyTorch checkpoints, TorchScript too), runs `vlm info`, `vlm forward` and `vlm convert` on them,
loads vlm's output back into the libraries, and compares the features (and CoCa's caption logits)
computed on the same inputs. Nothing is downloaded.

  bench/peer/interop_check.py [--vlm build/vlm] [--work DIR] [--keep] [-k SUBSTRING]

Needs torch, numpy, safetensors, transformers (checked with 4.30.2) and open_clip_torch (checked
with 2.24.0): `INTEROP=1 bench/peer/setup.sh` makes such a venv (build-peer/venv), then
  build-peer/venv/bin/python bench/peer/interop_check.py
Prints one line per check and 'N passed, N failed'; exits 1 when a check failed. Not in ctest (CI
has no transformers); tests/unit/test_checkpoint_interop.c covers the vlm side of the same cases.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import torch

torch.set_num_threads(2)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ------------------------------------------------------------------ helpers
RESULTS = []
ARGS = None


def report(name, ok, detail):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def vlm(*args, expect_ok=True):
    p = subprocess.run([ARGS.vlm, *args], capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        raise RuntimeError(f"vlm {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return p


def save_st(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def load_st(path):
    from safetensors.torch import load_file
    return load_file(path)


def vlm_forward(model, images, text, name):
    inp = os.path.join(ARGS.work, f"{name}-inputs.safetensors")
    out = os.path.join(ARGS.work, f"{name}-outputs.safetensors")
    save_st(inp, {"images": images, "text": text})
    vlm("forward", "--model", model, "--inputs", inp, "--out", out)
    return load_st(out)


def diff(a, b):
    """(max abs diff, smallest row cosine, max abs of the reference)."""
    a = a.detach().double().reshape(a.shape[0], -1)
    b = b.detach().double().reshape(b.shape[0], -1)
    if a.shape != b.shape:
        return float("inf"), -1.0, 0.0
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).min().item()
    return (a - b).abs().max().item(), cos, b.abs().max().item()


def close(a, b, tol=2e-5):
    d, cos, scale = diff(a, b)
    return d <= tol * max(1.0, scale) and cos >= 1 - 1e-6, f"max|d| {d:.2e} (ref max {scale:.2f}), min cos {cos:.7f}"


def compare(name, got, want, tol=2e-5):
    """got/want: dicts of tensors under the same keys; one report line."""
    ok, parts = True, []
    for k in want:
        o, s = close(got[k], want[k], tol)
        ok &= o
        parts.append(f"{k} {s}")
    report(name, ok, "; ".join(parts))
    return ok


def perturb(model, seed):
    """Random values in every parameter (LayerNorm weights and biases too), so a
    misnamed or transposed tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("logit_scale"):
                p.fill_(2.3)
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def inputs(image_size, ctx, vocab, batch=4, seed=0, eos=None, sot=None, high_after_eos=False):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, image_size, image_size, generator=g)
    eos = vocab - 1 if eos is None else eos
    sot = vocab - 2 if sot is None else sot
    text = torch.zeros(batch, ctx, dtype=torch.int64)
    for b in range(batch):
        n = 2 + (b * 3) % (ctx - 2)
        text[b, 0] = sot
        text[b, 1:n] = torch.randint(1, min(eos, sot), (n - 1,), generator=g)
        text[b, n] = eos
        if high_after_eos and n + 1 < ctx:   # a token above the eos id after it
            text[b, n + 1] = vocab - 1
    return images, text


def expect_error(name, args, needles):
    p = vlm(*args, expect_ok=False)
    msg = (p.stderr + p.stdout).strip().replace("\n", " | ")
    ok = p.returncode != 0 and all(n.lower() in msg.lower() for n in needles)
    report(name, ok, f"exit {p.returncode}: {msg[:400]}")


def info_has(name, model, needles):
    p = vlm("info", "--model", model, expect_ok=False)
    out = (p.stdout + p.stderr)
    ok = p.returncode == 0 and all(n in out for n in needles)
    report(name, ok, out.strip().replace("\n", " | ")[:400] if not ok else "reports " + ", ".join(needles))


# ------------------------------------------------------------------ transformers
def hf_config(act="quick_gelu", eos=None, ln_eps=1e-5, vocab=1000, ctx=16):
    from transformers import CLIPConfig
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=ctx, hidden_act=act, layer_norm_eps=ln_eps, bos_token_id=vocab - 2,
                pad_token_id=0, eos_token_id=2 if eos is None else eos)
    vision = dict(hidden_size=48, intermediate_size=112, num_hidden_layers=2, num_attention_heads=3, image_size=32,
                  patch_size=8, hidden_act=act, layer_norm_eps=ln_eps)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)


def hf_model(seed=1, **kw):
    from transformers import CLIPModel
    torch.manual_seed(seed)
    m = CLIPModel(hf_config(**kw)).eval()
    perturb(m, seed)
    return m


def hf_features(m, images, text):
    with torch.no_grad():
        return {"image_features_unnorm": m.get_image_features(pixel_values=images),
                "text_features_unnorm": m.get_text_features(input_ids=text)}


def hf_load(path, **kw):
    from transformers import CLIPModel
    m, info = CLIPModel.from_pretrained(path, output_loading_info=True, **kw)
    bad = {k: v for k, v in info.items() if v and k != "missing_keys" or
           k == "missing_keys" and [x for x in v if not x.endswith("position_ids")]}
    return m.eval(), bad


def check_hf_to_vlm():
    images, text = inputs(32, 16, 1000)
    for act in ("quick_gelu", "gelu"):
        m = hf_model(act=act)
        d = os.path.join(ARGS.work, f"hf-{act}")
        m.save_pretrained(d, safe_serialization=True)
        info_has(f"hf {act}: vlm info", d, ["huggingface checkpoint", f"activation: {act}", "embed_dim: 24",
                                              "width 48", "width 32", "mlp 112", "mlp 80"])
        compare(f"hf {act} -> vlm forward", vlm_forward(d, images, text, f"hf-{act}"), hf_features(m, images, text))

    # an older CLIPConfig: text_config_dict / vision_config_dict, which transformers reads over
    # text_config / vision_config (here a conflicting text_config.hidden_size)
    src = os.path.join(ARGS.work, "hf-gelu")
    d = os.path.join(ARGS.work, "hf-legacy-dict")
    shutil.copytree(src, d, dirs_exist_ok=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["text_config_dict"], cfg["vision_config_dict"] = cfg.pop("text_config"), cfg.pop("vision_config")
    cfg["text_config"] = {"hidden_size": 64, "hidden_act": "quick_gelu"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    ref, _ = hf_load(d)
    compare("hf *_config_dict (older configs) -> vlm forward", vlm_forward(d, images, text, "hf-legacy"),
            hf_features(ref, images, text))

    m = hf_model(act="gelu")
    for dt in ("float16", "bfloat16"):
        d = os.path.join(ARGS.work, f"hf-{dt}")
        m.to(getattr(torch, dt)).save_pretrained(d, safe_serialization=True)
        m.float()
        ref, _ = hf_load(d, torch_dtype=torch.float32)   # transformers' own upcast of the saved weights
        compare(f"hf {dt} weights -> vlm forward", vlm_forward(d, images, text, f"hf-{dt}"),
                hf_features(ref, images, text))

    d = os.path.join(ARGS.work, "hf-sharded")
    m.save_pretrained(d, safe_serialization=True, max_shard_size="100KB")
    shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    has_index = os.path.exists(os.path.join(d, "model.safetensors.index.json"))
    report("hf sharded save layout", has_index and len(shards) > 1, f"index {has_index}, {len(shards)} shards")
    p = vlm("info", "--model", d, expect_ok=False)
    if p.returncode != 0:
        report("hf sharded -> vlm", False, p.stderr.strip().replace("\n", " | ")[:400])
    else:
        compare("hf sharded -> vlm forward", vlm_forward(d, images, text, "hf-sharded"), hf_features(m, images, text))
        c = os.path.join(ARGS.work, "hf-sharded-to-hf")
        vlm("convert", "--model", d, "--to", "hf", "--out", c)
        back, bad = hf_load(c)
        report("hf sharded -> vlm convert --to hf -> transformers loads it", not bad, f"loading info {bad}")
        compare("hf sharded -> vlm convert --to hf -> transformers", hf_features(back, images, text),
                hf_features(m, images, text))

    d = os.path.join(ARGS.work, "hf-bin")
    m.save_pretrained(d, safe_serialization=False)
    compare("hf pytorch_model.bin (safe_serialization=False) -> vlm forward", vlm_forward(d, images, text, "hf-bin"),
            hf_features(m, images, text))
    d = os.path.join(ARGS.work, "hf-bin-sharded")
    m.save_pretrained(d, safe_serialization=False, max_shard_size="100KB")
    report("hf sharded pickle layout", os.path.exists(os.path.join(d, "pytorch_model.bin.index.json")), "")
    compare("hf sharded pytorch_model.bin -> vlm forward", vlm_forward(d, images, text, "hf-bin-sharded"),
            hf_features(m, images, text))
    # the same shards as a DDP-wrapped model's: "module." before every name, in the shards and the index
    ddp = os.path.join(ARGS.work, "hf-bin-sharded-ddp")
    shutil.rmtree(ddp, ignore_errors=True)
    shutil.copytree(d, ddp)
    idx = json.load(open(os.path.join(ddp, "pytorch_model.bin.index.json")))
    for f in set(idx["weight_map"].values()):
        sd = torch.load(os.path.join(ddp, f), map_location="cpu")
        torch.save({"module." + k: v for k, v in sd.items()}, os.path.join(ddp, f))
    idx["weight_map"] = {"module." + k: v for k, v in idx["weight_map"].items()}
    json.dump(idx, open(os.path.join(ddp, "pytorch_model.bin.index.json"), "w"))
    compare("hf sharded pytorch_model.bin with DDP's module. prefix -> vlm forward",
            vlm_forward(ddp, images, text, "hf-bin-sharded-ddp"), hf_features(m, images, text))
    h = os.path.join(ARGS.work, "hf-bin-vlm-hf-torch")
    vlm("convert", "--model", d, "--to", "hf", "--format", "torch", "--out", h)
    back, bad = hf_load(h)
    report("vlm convert --to hf --format torch: transformers loads pytorch_model.bin", not bad, f"loading info {bad}")
    compare("vlm convert --to hf --format torch -> transformers", hf_features(back, images, text),
            hf_features(m, images, text))

    # eos_token_id that is not the largest id: transformers 4.30 pools at argmax(ids) whatever the
    # config says; transformers >= 4.31 pools at the first eos_token_id unless it is 2 (legacy).
    eos = 500
    m = hf_model(act="gelu", eos=eos)
    d = os.path.join(ARGS.work, "hf-eos")
    m.save_pretrained(d, safe_serialization=True)
    images, text = inputs(32, 16, 1000, eos=eos, sot=499, high_after_eos=True)
    got = vlm_forward(d, images, text, "hf-eos")["text_features_unnorm"]
    with torch.no_grad():
        h = m.text_model(input_ids=text).last_hidden_state
        first = (text == eos).int().argmax(dim=-1)
        new_rule = m.text_projection(h[torch.arange(text.shape[0]), first])
        old_rule = m.get_text_features(input_ids=text)   # this transformers' rule (argmax)
    ok_new, s_new = close(got, new_rule)
    ok_old, s_old = close(got, old_rule)
    import transformers
    report("hf eos_token_id 500 (not the max id): vlm pools at the first eos (transformers >= 4.31)", ok_new,
           f"vs first-eos rule: {s_new}; vs transformers {transformers.__version__} argmax rule: "
           f"{'same' if ok_old else 'differs'} ({s_old})")
    info_has("hf eos: vlm info names the eos pooling", d, ["first eos id"])


def check_vlm_to_hf():
    # a fresh vlm model (its LayerNorms are 1/0: names of those are checked below with perturbed weights)
    d = os.path.join(ARGS.work, "vlm-init-hf")
    vlm("convert", "--init", "tiny", "--seed", "3", "--to", "hf", "--out", d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    ctx, vocab = cfg["text_config"]["max_position_embeddings"], cfg["text_config"]["vocab_size"]
    size = cfg["vision_config"]["image_size"]
    images, text = inputs(size, ctx, vocab)
    m, bad = hf_load(d)
    report("vlm convert --init tiny --to hf: transformers loads it", not bad, f"loading info {bad}")
    compare("vlm --init tiny (hf) -> transformers", hf_features(m, images, text),
            {k: v for k, v in vlm_forward(d, images, text, "vlm-init-hf").items()
             if k in ("image_features_unnorm", "text_features_unnorm")})
    # its preprocessor_config.json: transformers' CLIPImageProcessor loads it, and on a photo it gives
    # the pixels vlm's own preprocessing gives (open_clip's transform: resize the shorter side, crop)
    from transformers import CLIPImageProcessor
    from PIL import Image
    proc = CLIPImageProcessor.from_pretrained(d)
    report("vlm --to hf: CLIPImageProcessor loads preprocessor_config.json",
           proc.crop_size == {"height": size, "width": size} and list(proc.image_mean) == [0.48145466, 0.4578275, 0.40821073],
           f"crop {proc.crop_size}, mean {proc.image_mean}")
    photo = os.path.join(ARGS.shared, "data", "images", "chelsea.png")
    px = proc(images=Image.open(photo).convert("RGB"), return_tensors="pt")["pixel_values"]
    pre = os.path.join(ARGS.work, "pre-hf")
    vlm("preprocess", "--size", str(size), "--out", pre, photo)
    ours = load_st(os.path.join(pre, "chelsea.safetensors"))
    key = [k for k in ours if ours[k].dtype == torch.float32][0]
    d_px = (ours[key].reshape(px.shape) - px).abs().max().item()
    report("vlm --to hf: CLIPImageProcessor's pixels vs vlm preprocess (451x300 photo)", d_px < 1e-6,
           f"max |d| {d_px:.3g}")

    # perturbed HF model -> vlm convert --to hf / --to open_clip -> the libraries
    images, text = inputs(32, 16, 1000)
    for act in ("quick_gelu", "gelu"):
        m = hf_model(act=act, seed=5)
        src = os.path.join(ARGS.work, f"hf-src-{act}")
        m.save_pretrained(src, safe_serialization=True)
        want = hf_features(m, images, text)
        d = os.path.join(ARGS.work, f"hf-{act}-vlm-hf")
        vlm("convert", "--model", src, "--to", "hf", "--out", d)
        back, bad = hf_load(d)
        report(f"hf {act} -> vlm convert --to hf: transformers loads it", not bad, f"loading info {bad}")
        compare(f"hf {act} -> vlm convert --to hf -> transformers", hf_features(back, images, text), want)
        o = os.path.join(ARGS.work, f"hf-{act}-vlm-oc")
        vlm("convert", "--model", src, "--to", "open_clip", "--out", o)
        oc = oc_load_dir(o, f"interop-from-hf-{act}")
        compare(f"hf {act} -> vlm convert --to open_clip -> open_clip", oc_features(oc, images, text), want)

    # a LayerNorm eps other than 1e-5 must survive --to hf and --to open_clip (open_clip's norm_kwargs)
    m = hf_model(act="gelu", ln_eps=1e-6, seed=7)
    src = os.path.join(ARGS.work, "hf-eps")
    m.save_pretrained(src, safe_serialization=True)
    want = hf_features(m, images, text)
    compare("hf layer_norm_eps 1e-6 -> vlm forward", vlm_forward(src, images, text, "hf-eps"), want)
    d = os.path.join(ARGS.work, "hf-eps-vlm-hf")
    vlm("convert", "--model", src, "--to", "hf", "--out", d)
    back, _ = hf_load(d)
    report("hf layer_norm_eps 1e-6 -> vlm convert --to hf keeps it",
           back.config.text_config.layer_norm_eps == 1e-6 and back.config.vision_config.layer_norm_eps == 1e-6,
           f"text {back.config.text_config.layer_norm_eps}, vision {back.config.vision_config.layer_norm_eps}")
    o = os.path.join(ARGS.work, "hf-eps-oc")
    vlm("convert", "--model", src, "--to", "open_clip", "--out", o)
    oc = oc_load_dir(o, "interop-from-hf-eps")
    eps = {n: mod.eps for n, mod in oc.named_modules() if isinstance(mod, torch.nn.LayerNorm)}
    report("hf layer_norm_eps 1e-6 -> vlm convert --to open_clip: norm_kwargs eps in every LayerNorm",
           set(eps.values()) == {1e-6}, f"{len(eps)} LayerNorms, eps {sorted(set(eps.values()))}")
    compare("hf layer_norm_eps 1e-6 -> vlm convert --to open_clip -> open_clip", oc_features(oc, images, text), want)

    # eos pooling: kept by --to hf, refused by --to open_clip (open_clip pools at argmax(ids))
    # unless the eos is the largest id (then argmax finds it too)
    eos = 500
    src = os.path.join(ARGS.work, "hf-eos500")
    hf_model(act="gelu", eos=eos).save_pretrained(src, safe_serialization=True)
    d = os.path.join(ARGS.work, "hf-eos-vlm-hf")
    vlm("convert", "--model", src, "--to", "hf", "--out", d)
    report("hf eos 500 -> vlm convert --to hf keeps eos_token_id",
           json.load(open(os.path.join(d, "config.json")))["text_config"]["eos_token_id"] == eos, "")
    expect_error("hf eos 500 -> vlm convert --to open_clip refused",
                 ["convert", "--model", src, "--to", "open_clip", "--out", os.path.join(ARGS.work, "hf-eos-oc")],
                 ["eos"])
    m = hf_model(act="gelu", eos=999, seed=8)
    src = os.path.join(ARGS.work, "hf-eos999")
    m.save_pretrained(src, safe_serialization=True)
    o = os.path.join(ARGS.work, "hf-eos999-oc")
    vlm("convert", "--model", src, "--to", "open_clip", "--out", o)
    compare("hf eos 999 (the largest id) -> vlm convert --to open_clip -> open_clip",
            oc_features(oc_load_dir(o, "interop-from-hf-eos999"), images, text), hf_features(m, images, text))


# ------------------------------------------------------------------ open_clip
def oc_register(name, cfg):
    import open_clip
    d = os.path.join(ARGS.work, "oc-configs")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump(cfg, f)
    open_clip.add_model_config(d)


def oc_load_dir(d, name):
    """open_clip 2.24 has no create_model('local-dir:...') (added in 2025): register the directory's
    model_cfg under a name, build it, and load open_clip_model.safetensors by hand (2.24's
    load_checkpoint reads torch pickles only)."""
    import open_clip
    cfg = json.load(open(os.path.join(d, "open_clip_config.json")))["model_cfg"]
    oc_register(name, cfg)
    m = open_clip.create_model(name)
    m.load_state_dict(load_st(os.path.join(d, "open_clip_model.safetensors")), strict=True)
    return m.eval()


def oc_features(m, images, text):
    with torch.no_grad():
        return {"image_features_unnorm": m.encode_image(images, normalize=False),
                "text_features_unnorm": m.encode_text(text, normalize=False)}


def oc_save_dir(m, cfg, d, bin_only=False):
    """What open_clip's save_for_hf (push_to_hf_hub) writes, less the HF tokenizer."""
    from open_clip.push_to_hf_hub import save_config_for_hf
    os.makedirs(d, exist_ok=True)
    sd = m.state_dict()
    if bin_only:
        torch.save(sd, os.path.join(d, "open_clip_pytorch_model.bin"))
    else:
        save_st(os.path.join(d, "open_clip_model.safetensors"), sd)
    save_config_for_hf(m, pathlib.Path(d) / "open_clip_config.json", model_config=cfg)


OC_CLIP = {"embed_dim": 24,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "mlp_ratio": 2.5,
                          "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 4, "layers": 2,
                        "mlp_ratio": 3.0}}


def check_open_clip():
    import open_clip
    images, text = inputs(32, 16, 1000)
    for quick in (False, True):
        cfg = json.loads(json.dumps(OC_CLIP))
        if quick:
            cfg["quick_gelu"] = True
        tag = "quickgelu" if quick else "gelu"
        name = f"interop-oc-{tag}"
        oc_register(name, cfg)
        torch.manual_seed(2)
        m = open_clip.create_model(name).eval()
        perturb(m, 2)
        want = oc_features(m, images, text)
        d = os.path.join(ARGS.work, name)
        oc_save_dir(m, cfg, d)
        info_has(f"open_clip {tag}: vlm info", d, ["open_clip checkpoint",
                                                   f"activation: {'quick_gelu' if quick else 'gelu'}",
                                                   "mlp 120", "mlp 96"])
        compare(f"open_clip {tag} -> vlm forward", vlm_forward(d, images, text, name), want)
        o = d + "-vlm-oc"
        vlm("convert", "--model", d, "--to", "open_clip", "--out", o)
        compare(f"open_clip {tag} -> vlm convert --to open_clip -> open_clip", oc_features(oc_load_dir(o, name + "-rt"),
                                                                                        images, text), want)
        h = d + "-vlm-hf"
        vlm("convert", "--model", d, "--to", "hf", "--out", h)
        back, bad = hf_load(h)
        report(f"open_clip {tag} -> vlm convert --to hf: transformers loads it", not bad, f"loading info {bad}")
        compare(f"open_clip {tag} -> vlm convert --to hf -> transformers", hf_features(back, images, text), want)

    # CustomTextCLIP ("custom_text": true) with open_clip's own text tower: its names under "text."
    cfg = dict(json.loads(json.dumps(OC_CLIP)), custom_text=True)
    oc_register("interop-oc-custom-text", cfg)
    torch.manual_seed(6)
    m = open_clip.create_model("interop-oc-custom-text").eval()
    perturb(m, 6)
    d = os.path.join(ARGS.work, "interop-oc-custom-text")
    oc_save_dir(m, cfg, d)
    want = oc_features(m, images, text)
    compare("open_clip custom_text CLIP -> vlm forward", vlm_forward(d, images, text, "oc-ct"), want)
    o = d + "-vlm-oc"
    vlm("convert", "--model", d, "--to", "open_clip", "--out", o)
    compare("open_clip custom_text CLIP -> vlm convert --to open_clip (plain CLIP) -> open_clip",
            oc_features(oc_load_dir(o, "interop-oc-ct-rt"), images, text), want)

    cfg = json.loads(json.dumps(OC_CLIP))
    cfg["vision_cfg"]["norm_kwargs"] = {"eps": 1e-6}
    cfg["text_cfg"]["norm_kwargs"] = {"eps": 1e-3}
    oc_register("interop-oc-eps", cfg)
    torch.manual_seed(3)
    m = open_clip.create_model("interop-oc-eps").eval()
    perturb(m, 3)
    d = os.path.join(ARGS.work, "interop-oc-eps")
    oc_save_dir(m, cfg, d)
    compare("open_clip norm_kwargs eps 1e-6 / 1e-3 -> vlm forward", vlm_forward(d, images, text, "oc-eps"),
            oc_features(m, images, text))
    h = d + "-vlm-hf"
    vlm("convert", "--model", d, "--to", "hf", "--out", h)
    back, bad = hf_load(h)
    compare("open_clip norm_kwargs eps -> vlm convert --to hf -> transformers", hf_features(back, images, text),
            oc_features(m, images, text))
    cfg = json.loads(json.dumps(OC_CLIP))
    cfg["text_cfg"]["act_kwargs"] = {"approximate": "tanh"}
    d = os.path.join(ARGS.work, "interop-oc-act")
    oc_save_dir(m, cfg, d)
    expect_error("open_clip act_kwargs (tanh GELU): clear error", ["info", "--model", d], ["act_kwargs"])

    d = os.path.join(ARGS.work, "oc-bin")
    oc_save_dir(m, OC_CLIP, d, bin_only=True)
    oc_register("interop-oc-bin", OC_CLIP)
    m = open_clip.create_model("interop-oc-bin").eval()
    m.load_state_dict(torch.load(os.path.join(d, "open_clip_pytorch_model.bin")))
    compare("open_clip_pytorch_model.bin only -> vlm forward", vlm_forward(d, images, text, "oc-bin"),
            oc_features(m, images, text))


def siglip_loss_of(m, images, text):
    """open_clip's own: CLIP.forward (normalized features, exp(logit_scale), logit_bias) into SigLipLoss."""
    import open_clip
    with torch.no_grad():
        img, txt, scale, bias = m(images, text)
        return open_clip.loss.SigLipLoss()(img, txt, scale, bias), bias


def check_siglip():
    """SigLIP models (a model_cfg with init_logit_bias: a logit_bias parameter), both ways."""
    import open_clip
    images, text = inputs(32, 16, 1000)
    cfg = dict(json.loads(json.dumps(OC_CLIP)), init_logit_bias=-10.0)
    oc_register("interop-oc-siglip", cfg)
    torch.manual_seed(9)
    m = open_clip.create_model("interop-oc-siglip").eval()
    perturb(m, 9)
    want_loss, want_bias = siglip_loss_of(m, images, text)
    d = os.path.join(ARGS.work, "interop-oc-siglip")
    oc_save_dir(m, cfg, d)
    got = vlm_forward(d, images, text, "oc-siglip")
    compare("open_clip SigLIP -> vlm forward: features", got, oc_features(m, images, text))
    ok, detail = close(got["loss"].reshape(1, 1), want_loss.reshape(1, 1))
    ok2, detail2 = close(got["logit_bias"].reshape(1, 1), want_bias.reshape(1, 1))
    report("open_clip SigLIP -> vlm forward: loss = open_clip's SigLipLoss, logit_bias", ok and ok2,
           f"loss {got['loss'].item():.6f} vs {want_loss.item():.6f} ({detail}); bias {detail2}")
    o = d + "-vlm-oc"
    vlm("convert", "--model", d, "--to", "open_clip", "--out", o)
    back = oc_load_dir(o, "interop-oc-siglip-rt")
    loss_b, bias_b = siglip_loss_of(back, images, text)
    ok, detail = close(loss_b.reshape(1, 1), want_loss.reshape(1, 1))
    report("open_clip SigLIP -> vlm convert --to open_clip -> open_clip: its SigLipLoss", ok, detail)
    expect_error("open_clip SigLIP -> vlm convert --to hf: refused", ["convert", "--model", d, "--to", "hf",
                                                                      "--out", d + "-hf"], ["logit_bias"])

    # trained by vlm (vlm train --siglip), loaded by open_clip: strict names, the same loss
    logs = os.path.join(ARGS.work, "siglip-runs")
    vlm("train", "--train-data", "shapes:64", "--model", "tiny", "--tokenizer", "train:600", "--siglip",
        "--batch-size", "8", "--steps", "3", "--warmup", "1", "--val-frequency", "0", "--zeroshot-frequency", "0",
        "--logs", logs, "--name", "s")
    ck = os.path.join(logs, "s", "checkpoints", "latest")
    mc = json.load(open(os.path.join(ck, "open_clip_config.json")))["model_cfg"]
    report("vlm train --siglip: model_cfg has init_logit_bias", "init_logit_bias" in mc, str(mc.get("init_logit_bias")))
    m2 = oc_load_dir(ck, "interop-vlm-siglip")
    vc, tc = mc["vision_cfg"], mc["text_cfg"]
    im2, tx2 = inputs(vc["image_size"], tc["context_length"], tc["vocab_size"], seed=4)
    want_loss, want_bias = siglip_loss_of(m2, im2, tx2)
    got = vlm_forward(ck, im2, tx2, "vlm-siglip")
    ok, detail = close(got["loss"].reshape(1, 1), want_loss.reshape(1, 1))
    report("vlm train --siglip -> open_clip (strict load): its SigLipLoss = vlm forward's loss", ok,
           f"loss {got['loss'].item():.6f} vs {want_loss.item():.6f}, bias {want_bias.item():.4f} ({detail})")


OC_COCA = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "patch_size": 8, "head_width": 16,
                          "attentional_pool": True, "attn_pooler_heads": 4, "attn_pooler_queries": 9,
                          "output_tokens": True},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 4, "layers": 2,
                        "embed_cls": True, "output_tokens": True},
           "multimodal_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 4, "layers": 2,
                              "attn_pooler_heads": 4},
           "custom_text": True}


def coca_valid(text, pad=0):
    """Positions i <= the first pad of each row. open_clip 2.24's CoCa text tower applies its pad
    mask to the cls query only; later versions (the fixtures', which vlm follows) to every query
    (key j >= 1 masked when text[j-1] is pad), so the token states and caption logits after the
    first pad differ between versions. Their labels are pad, which the caption loss ignores."""
    L = text.shape[1]
    first = torch.where((text == pad).any(1), (text == pad).int().argmax(1), torch.full_like(text[:, 0], L - 1))
    return torch.arange(L)[None, :] <= first[:, None]


def coca_outputs(m, images, text):
    with torch.no_grad():
        out = m(images, text)
        return {"image_features_unnorm": m.encode_image(images, normalize=False),
                "text_features_unnorm": m.encode_text(text, normalize=False),
                "caption_logits": out["logits"]}


def check_coca():
    import open_clip
    images, text = inputs(32, 16, 1000)
    name = "interop-coca"
    oc_register(name, OC_COCA)
    torch.manual_seed(4)
    m = open_clip.create_model(name).eval()
    with torch.no_grad():   # torch.empty in open_clip
        m.text_decoder.text_projection.normal_(std=32 ** -0.5)
    perturb(m, 4)
    want = coca_outputs(m, images, text)
    d = os.path.join(ARGS.work, name)
    oc_save_dir(m, OC_COCA, d)
    info_has("open_clip CoCa: vlm info", d, ["CoCa"])
    got = vlm_forward(d, images, text, name)
    valid = coca_valid(text)
    got_v = dict(got, caption_logits=got["caption_logits"][valid])
    want_v = dict(want, caption_logits=want["caption_logits"][valid])
    compare("open_clip CoCa -> vlm forward (caption logits up to the first pad)", got_v, want_v, tol=5e-5)
    _, cos, _ = diff(got["caption_logits"][~valid], want["caption_logits"][~valid])
    print(f"  note: caption logits after the first pad, vlm vs open_clip 2.24 (versions differ there): min cos {cos:.3f}")
    with torch.no_grad():
        logits = want["caption_logits"]
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), text[:, 1:].reshape(-1),
                                               ignore_index=0)
    o, st = close(got["caption_loss_unweighted"].reshape(1, 1), ce.reshape(1, 1))
    report("open_clip CoCa -> vlm forward: caption loss (pad labels ignored)", o, st)
    o = d + "-vlm-oc"
    vlm("convert", "--model", d, "--to", "open_clip", "--out", o)
    compare("open_clip CoCa -> vlm convert --to open_clip -> open_clip",
            coca_outputs(oc_load_dir(o, name + "-rt"), images, text), want, tol=5e-5)
    expect_error("open_clip CoCa -> vlm convert --to hf refused", ["convert", "--model", d, "--to", "hf", "--out",
                                                                    os.path.join(ARGS.work, "coca-hf")], ["CoCa"])


# ------------------------------------------------------------------ PyTorch checkpoints
class Wrapper(torch.nn.Module):
    """What DistributedDataParallel pickles around a model: the model as .module."""
    def __init__(self, inner):
        super().__init__()
        self.module = inner


def check_torch():
    """PyTorch's own files: OpenAI-style TorchScript, open_clip's training checkpoint, and vlm's
    --format torch read by torch.load and open_clip's pretrained=."""
    import open_clip
    from open_clip.model import CLIP
    # TorchScript of a QuickGELU model with heads of 64 (OpenAI's rule): its config is read off it
    cfg = {"embed_dim": 32, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64, "head_width": 64,
                          "mlp_ratio": 2.0},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 128, "heads": 2, "layers": 2}}
    images, text = inputs(32, 16, 1000)
    torch.manual_seed(9)
    m = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True).eval()
    perturb(m, 9)
    want = oc_features(m, images, text)
    jit = os.path.join(ARGS.work, "openai-like.pt")
    torch.jit.script(m).save(jit)
    info_has("TorchScript archive: vlm info reads the config off its shapes", jit,
             ["activation: quick_gelu", "width 64", "heads 1", "width 128", "heads 2", "mlp 128", "read off"])
    compare("TorchScript archive -> vlm forward", vlm_forward(jit, images, text, "jit"), want)
    # open_clip's training checkpoint (DDP prefix, optimizer state) with its config named
    oc_register("interop-torch-epoch", cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(images, text)[0].sum().backward()
    opt.step()
    want = oc_features(m, images, text)
    ep = os.path.join(ARGS.work, "epoch_1.pt")
    torch.save({"epoch": 1, "name": "run", "state_dict": {"module." + k: v for k, v in m.state_dict().items()},
                "optimizer": opt.state_dict()}, ep)
    expect_error("open_clip training checkpoint without a config: names --config", ["info", "--model", ep],
                 ["epoch_1.pt", "--config"])
    cfile = os.path.join(ARGS.work, "epoch-cfg.json")
    json.dump(cfg, open(cfile, "w"))
    o = os.path.join(ARGS.work, "from-epoch")
    vlm("convert", "--model", ep, "--config", cfile, "--to", "open_clip", "--out", o)
    compare("open_clip epoch_N.pt -> vlm convert --config -> vlm forward", vlm_forward(o, images, text, "epoch"), want)
    # torch.save(model): the whole module pickled, not its state_dict; and a half-precision state dict
    full = os.path.join(ARGS.work, "full_model.pt")
    torch.save(m, full)
    o2 = os.path.join(ARGS.work, "from-full")
    vlm("convert", "--model", full, "--config", cfile, "--to", "open_clip", "--out", o2)
    compare("torch.save(model) -> vlm convert --config -> vlm forward", vlm_forward(o2, images, text, "full"), want)
    half = os.path.join(ARGS.work, "half.pt")
    mh = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True).eval()
    mh.load_state_dict(m.state_dict())
    torch.save(mh.half().state_dict(), half)
    mh.float()   # the fp16-rounded weights in fp32: what vlm computes with
    o3 = os.path.join(ARGS.work, "from-half")
    vlm("convert", "--model", half, "--config", cfile, "--to", "open_clip", "--out", o3)
    compare("fp16 state dict -> vlm convert --config -> vlm forward", vlm_forward(o3, images, text, "half"),
            oc_features(mh, images, text))
    # torch.save of a DistributedDataParallel-style wrapper (the model under .module), a bf16 state
    # dict, and torch.jit.trace_module (config read off the shapes, as for a scripted archive)
    wrapped = os.path.join(ARGS.work, "full_ddp_model.pt")
    torch.save(Wrapper(m), wrapped)
    o4 = os.path.join(ARGS.work, "from-full-ddp")
    vlm("convert", "--model", wrapped, "--config", cfile, "--to", "open_clip", "--out", o4)
    compare("torch.save(DDP-style wrapper) -> vlm convert --config -> vlm forward",
            vlm_forward(o4, images, text, "full-ddp"), want)
    bf = os.path.join(ARGS.work, "bf16.pt")
    torch.save({k: v.bfloat16() for k, v in m.state_dict().items()}, bf)
    mb = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True).eval()
    mb.load_state_dict({k: v.bfloat16().float() for k, v in m.state_dict().items()})
    o5 = os.path.join(ARGS.work, "from-bf16")
    vlm("convert", "--model", bf, "--config", cfile, "--to", "open_clip", "--out", o5)
    compare("bf16 state dict -> vlm convert --config -> vlm forward", vlm_forward(o5, images, text, "bf16"),
            oc_features(mb, images, text))
    traced = os.path.join(ARGS.work, "openai-like-traced.pt")
    torch.jit.trace_module(m, {"encode_image": (images,), "encode_text": (text,)}).save(traced)
    compare("torch.jit.trace archive -> vlm forward (config read off its shapes)",
            vlm_forward(traced, images, text, "traced"), want)
    # LAION's hub layout: both layouts in one directory; each weights file named as the model takes
    # its own config (pytorch_model.bin: config.json)
    both = os.path.join(ARGS.work, "both-layouts")
    hm = hf_model(seed=5)
    hm.save_pretrained(both, safe_serialization=False)
    torch.save(m.state_dict(), os.path.join(both, "open_clip_pytorch_model.bin"))
    json.dump({"model_cfg": cfg}, open(os.path.join(both, "open_clip_config.json"), "w"))
    compare("both layouts in one dir: pytorch_model.bin as the model -> vlm forward",
            vlm_forward(os.path.join(both, "pytorch_model.bin"), images, text, "both-hf"), hf_features(hm, images, text))
    compare("both layouts in one dir: open_clip_pytorch_model.bin as the model -> vlm forward",
            vlm_forward(os.path.join(both, "open_clip_pytorch_model.bin"), images, text, "both-oc"), want)
    # vlm --format torch back into open_clip's pretrained= and torch.load
    t = os.path.join(ARGS.work, "vlm-torch-out")
    vlm("convert", "--model", o, "--to", "open_clip", "--format", "torch", "--out", t)
    b = os.path.join(t, "open_clip_pytorch_model.bin")
    sd = torch.load(b)
    report("vlm --format torch: torch.load gives the state dict", sorted(sd) == sorted(m.state_dict()),
           f"{len(sd)} tensors")
    back = open_clip.create_model("interop-torch-epoch", pretrained=b).eval()
    compare("vlm --format torch -> open_clip create_model(pretrained=BIN)", oc_features(back, images, text), want)
    # CoCa as its hub repositories ship it (open_clip_pytorch_model.bin only)
    name = "interop-torch-coca"
    oc_register(name, OC_COCA)
    torch.manual_seed(4)
    cm = open_clip.create_model(name).eval()
    with torch.no_grad():
        cm.text_decoder.text_projection.normal_(std=32 ** -0.5)
    perturb(cm, 4)
    d = os.path.join(ARGS.work, name)
    oc_save_dir(cm, OC_COCA, d, bin_only=True)
    got = vlm_forward(d, images, text, name)
    want = coca_outputs(cm, images, text)
    valid = coca_valid(text)
    compare("open_clip CoCa open_clip_pytorch_model.bin -> vlm forward (caption logits up to the first pad)",
            dict(got, caption_logits=got["caption_logits"][valid]),
            dict(want, caption_logits=want["caption_logits"][valid]), tol=5e-5)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default=os.path.join(ROOT, "build", "vlm"))
    ap.add_argument("--work", default=None, help="where the models go (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"),
                    help="the ../shared folder (its data/images)")
    ap.add_argument("-k", default="", help="run only the groups whose name holds this")
    ARGS = ap.parse_args()
    tmp = None
    if ARGS.work is None:
        ARGS.work = tmp = tempfile.mkdtemp(prefix="vlm-interop-")
    os.makedirs(ARGS.work, exist_ok=True)
    import transformers
    import open_clip  # noqa: F401
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, vlm {ARGS.vlm}, work {ARGS.work}")
    groups = [("hf_to_vlm", check_hf_to_vlm), ("vlm_to_hf", check_vlm_to_hf), ("open_clip", check_open_clip),
              ("siglip", check_siglip), ("coca", check_coca), ("torch", check_torch)]
    for gname, fn in groups:
        if ARGS.k not in gname:
            continue
        try:
            fn()
        except Exception as e:   # one broken group does not hide the others
            import traceback
            traceback.print_exc()
            report(f"{gname} (aborted)", False, f"{type(e).__name__}: {str(e)[:600]}")
    if tmp and not ARGS.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    n_ok = sum(RESULTS)
    print(f"{n_ok} passed, {len(RESULTS) - n_ok} failed")
    return 0 if n_ok == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
