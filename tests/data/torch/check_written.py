"""Checks by hand (not in CI: it needs torch) that PyTorch reads what vlm_st_writer_save_torch writes.

    mkdir -p /tmp/vlm-written
    VLM_TORCH_WRITE_DIR=/tmp/vlm-written build/tests/test_torch_file ../shared
    /work/main/build-peer/venv/bin/python tests/data/torch/check_written.py /tmp/vlm-written [../shared]

DIR/vlm_written.pt holds the unit test's round-trip tensors (see rt_fill in
tests/unit/test_torch_file.c); DIR/tiny-clip.pt (written when the shared dir is given to the test)
holds the tiny-clip fixture's weights; DIR/zip64.pt is a small archive with zip64 records everywhere
(zip64 extra fields in every header, the zip64 end record and locator: what files over 4 GiB need)
holding {"w": a [2, 3] view at offset 2, row stride 4, of a storage 0..15}; the tiny-clip weights, loaded here into an open_clip CLIP model with strict names.
Checked: zip CRCs (zipfile.testzip), the pickle (pickletools), torch.load with weights_only True and
False, an OrderedDict in insertion order, every value, open_clip.factory.load_state_dict and
open_clip.load_checkpoint.
"""
import collections
import io
import json
import os
import pickletools
import struct
import sys
import zipfile

import numpy as np
import torch

DTS = [("F32", torch.float32), ("F16", torch.float16), ("BF16", torch.bfloat16), ("F64", torch.float64),
       ("I64", torch.int64), ("I32", torch.int32), ("I16", torch.int16), ("I8", torch.int8),
       ("U8", torch.uint8), ("BOOL", torch.bool)]


def check_archive(path):
    z = zipfile.ZipFile(path)
    bad = z.testzip()
    assert bad is None, f"{path}: CRC error in {bad}"
    stem = os.path.splitext(os.path.basename(path))[0]
    names = z.namelist()
    assert names[0] == f"{stem}/data.pkl", names
    for info in z.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
    pickletools.dis(z.read(f"{stem}/data.pkl"), out=io.StringIO())
    return z


def check_round_trip(path):
    check_archive(path)
    for weights_only in (True, False):
        sd = torch.load(path, map_location="cpu", weights_only=weights_only)
        assert type(sd) is collections.OrderedDict, type(sd)
        want = [f"t.{n}" for n, _ in DTS] + ["scalar", "empty", "deep", "module.visual.x", "名前"]
        assert list(sd.keys()) == want, list(sd.keys())
        for name, dt in DTS:
            t = sd[f"t.{name}"]
            i = torch.arange(6, dtype=torch.float64).reshape(2, 3)
            ref = (i % 2) if dt == torch.bool else i if dt == torch.uint8 else i - 2
            assert t.dtype == dt and t.shape == (2, 3) and t.is_contiguous(), (name, t.dtype, t.shape)
            assert torch.equal(t, ref.to(dt)), (name, t)
        assert sd["scalar"].shape == () and sd["scalar"].item() == 7.5
        assert sd["empty"].shape == (0, 4)
        assert sd["deep"].shape == (1, 1, 1, 1, 1, 1, 1, 2) and sd["deep"].flatten().tolist() == [0, 1]
        assert sd["module.visual.x"].tolist() == [0, 0.5, 1.0]
        assert sd["名前"].dtype == torch.int64 and sd["名前"].tolist() == [42]
    import open_clip.factory
    sd = open_clip.factory.load_state_dict(path)
    assert "t.F32" in sd
    print(f"{path}: torch.load (weights_only True and False) and open_clip's load_state_dict: OK")


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        s, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").copy()).reshape(v["shape"])
    return out


def check_open_clip(path, shared):
    import open_clip
    check_archive(path)
    fx = os.path.join(shared, "fixtures", "tiny-clip")
    with open(os.path.join(fx, "config.json")) as f:
        cfg = json.load(f)
    model = open_clip.model.CLIP(**cfg)
    incompatible = open_clip.load_checkpoint(model, path, strict=True)
    ref = read_safetensors(os.path.join(fx, "model.safetensors"))
    sd = model.state_dict()
    assert set(ref) <= set(sd), set(ref) - set(sd)
    for k, v in ref.items():
        assert torch.equal(sd[k], v), k
    print(f"{path}: open_clip.load_checkpoint(CLIP(tiny-clip), strict=True): OK "
          f"({len(ref)} tensors equal to the fixture; {incompatible})")


def check_zip64(path):
    z = zipfile.ZipFile(path)
    assert z.testzip() is None
    for weights_only in (True, False):
        sd = torch.load(path, map_location="cpu", weights_only=weights_only)
        want = torch.arange(16, dtype=torch.float32).as_strided((2, 3), (4, 1), 2)
        assert torch.equal(sd["w"], want), sd
    print(f"{path}: zipfile and torch.load read the zip64 records: OK")


if __name__ == "__main__":
    d = sys.argv[1]
    check_round_trip(os.path.join(d, "vlm_written.pt"))
    check_zip64(os.path.join(d, "zip64.pt"))
    if len(sys.argv) > 2:
        check_open_clip(os.path.join(d, "tiny-clip.pt"), sys.argv[2])
