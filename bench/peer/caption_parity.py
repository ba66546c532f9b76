"""vlm caption against open_clip's CoCa.generate on a CoCa fixture: the same weights,
the same images (the fixture's `images` tensor), greedy decoding (open_clip's
generation_type="top_k", top_k=1) with and without a repetition penalty: the token
ids must be identical.

    caption_parity.py VLM_BINARY FIXTURE_DIR [SEQ_LEN]

Needs torch, open_clip_torch, transformers and safetensors (see run_caption_bench.sh).
Exit 0 when every row matches. The fixture's made-up ids: sot = vocab-2, eot = vocab-1, pad 0.
"""
import json
import subprocess
import sys

import torch
import open_clip
from safetensors.torch import load_file


def main():
    vlm, fx = sys.argv[1], sys.argv[2]
    cfg = json.load(open(fx + "/config.json"))
    seq_len = int(sys.argv[3]) if len(sys.argv) > 3 else cfg["text_cfg"]["context_length"]
    V = cfg["text_cfg"]["vocab_size"]
    open_clip.factory._MODEL_CONFIGS["vlm-fixture"] = cfg
    model = open_clip.create_model("vlm-fixture")
    missing, unexpected = model.load_state_dict(load_file(fx + "/model.safetensors"), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    images = load_file(fx + "/inputs.safetensors")["images"]
    bad = 0
    for rp in (1.0, 1.3):
        with torch.no_grad():
            ref = model.generate(images, generation_type="top_k", top_k=1, seq_len=seq_len, min_seq_len=2,
                                 sot_token_id=V - 2, eos_token_id=V - 1, pad_token_id=0,
                                 repetition_penalty=rp).tolist()
        out = subprocess.run([vlm, "caption", "--model", fx, "--inputs", fx + "/inputs.safetensors", "--json",
                              "--max-len", str(seq_len), "--min-len", "2", "--repetition-penalty", str(rp)],
                             check=True, capture_output=True, text=True).stdout
        got = [json.loads(line)["ids"] for line in out.splitlines()]
        for i, (r, g) in enumerate(zip(ref, got)):
            r = [t for t in r]
            while len(r) > len(g) and r[-1] == 0:   # open_clip pads finished rows to the batch's length
                r.pop()
            if r != g:
                bad += 1
                print(f"repetition penalty {rp}, image {i}: open_clip {r}\n  vlm {g}")
        print(f"repetition penalty {rp}: {len(got) - sum(1 for r, g in zip(ref, got) if r[:len(g)] != g)}"
              f"/{len(ref)} rows identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
