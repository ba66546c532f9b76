"""Small PyTorch files for tests/unit/test_torch_file.c (vlm's reader of torch.save / torch.jit.save
archives). Made with torch 1.13.0a0 (Python 3.11, the venv of build-peer); run again with

    /work/main/build-peer/venv/bin/python tests/data/torch/make.py

Every value follows a formula the C test recomputes (no dumps):
  dtypes.pt      torch.save(OrderedDict) with every storage type vlm maps, a 0-dim, an empty, a
                 transposed, an expanded (stride 0) tensor, views sharing one storage (with
                 offsets), a Parameter and one tensor saved under two names.
  checkpoint.pt  an open_clip training checkpoint: {"epoch", "name", "state_dict" ("module."
                 names), "optimizer" (AdamW state after one step: int keys, step tensors)}.
  script.pt      torch.jit.save(torch.jit.script(Net())): nested submodules, a ModuleList,
                 parameters and buffers; tensor NAME holds i * 0.125 + len(NAME) (ints: i + len).
  proto4.pt      torch.save(..., pickle_protocol=4): nested dict / list / tuple, an int key.
  complex.pt     a complex64 tensor (vlm refuses it).
  legacy.pt      torch.save(..., _use_new_zipfile_serialization=False) (vlm refuses it).
"""
import collections
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


def dtypes():
    sd = collections.OrderedDict()
    sd["f32"] = (torch.arange(24, dtype=torch.float32) * 0.5 - 3).reshape(2, 3, 4)
    sd["f16"] = (torch.arange(12, dtype=torch.float32) / 8 - 0.5).half().reshape(3, 4)
    sd["bf16"] = (torch.arange(10, dtype=torch.float32) * 0.25 - 1).bfloat16()
    sd["f64"] = (torch.arange(6, dtype=torch.float64) / 3).reshape(2, 3)
    sd["i64"] = torch.arange(5, dtype=torch.int64) * -1000000000007
    sd["i32"] = (torch.arange(6, dtype=torch.int32) * -7 + 100).reshape(2, 3)
    sd["i16"] = torch.arange(4, dtype=torch.int16) * -300
    sd["i8"] = torch.arange(-4, 4, dtype=torch.int8)
    sd["u8"] = torch.arange(6, dtype=torch.uint8) * 50
    sd["bool"] = torch.arange(5) % 2 == 0
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 3)
    sd["transposed"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # [4,3]: r + 4c
    base = torch.arange(20, dtype=torch.float32)
    sd["shared.base"] = base
    sd["shared.slice"] = base[5:9]                     # offset 5, contiguous
    sd["shared.block"] = base.view(4, 5)[1:3, 2:4]     # offset 7, strides (5, 1): 7 + 5r + c
    sd["expanded"] = torch.arange(3, dtype=torch.float32).expand(2, 3)  # strides (0, 1)
    sd["param"] = torch.nn.Parameter(torch.arange(4, dtype=torch.float32) + 1)
    sd["tied"] = sd["f32"]
    torch.save(sd, out("dtypes.pt"))


def checkpoint():
    w = torch.nn.Parameter((torch.arange(48, dtype=torch.float32) / 48 - 0.5).reshape(4, 3, 2, 2))
    ls = torch.nn.Parameter(torch.tensor(2.5))
    opt = torch.optim.AdamW([w, ls], lr=0.1)
    w.grad = (torch.arange(48, dtype=torch.float32) / 100).reshape(4, 3, 2, 2)
    ls.grad = torch.tensor(1.0)
    opt.step()
    with torch.no_grad():   # the weights as saved: the formula again, not the stepped values
        w.copy_((torch.arange(48, dtype=torch.float32) / 48 - 0.5).reshape(4, 3, 2, 2))
        ls.fill_(2.5)
    sd = collections.OrderedDict()
    sd["module.visual.conv1.weight"] = w.detach()
    sd["module.logit_scale"] = ls.detach()
    torch.save({"epoch": 32, "name": "run", "state_dict": sd, "optimizer": opt.state_dict()},
               out("checkpoint.pt"))


class Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = torch.nn.Linear(d, d)
        self.register_buffer("scale", torch.ones(d))

    def forward(self, x):
        return self.fc(x) * self.scale


class Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 2, 2, bias=False)
        self.blocks = torch.nn.ModuleList([Block(2), Block(2)])
        self.proj = torch.nn.Parameter(torch.zeros(2, 3))

    def forward(self, x):
        x = self.conv1(x).mean(dim=(2, 3))
        for b in self.blocks:
            x = b(x)
        return x @ self.proj


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Tower()
        self.logit_scale = torch.nn.Parameter(torch.tensor(0.0))
        self.register_buffer("ids", torch.zeros(4, dtype=torch.int64))

    def forward(self, x):
        return self.visual(x) * self.logit_scale.exp() + self.ids[0]


def script():
    net = Net()
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            i = torch.arange(t.numel(), dtype=torch.float64).reshape(t.shape)
            t.copy_(i + len(name) if not t.dtype.is_floating_point else i * 0.125 + len(name))
    torch.jit.save(torch.jit.script(net), out("script.pt"))


def proto4():
    obj = {"a": {"b": [torch.arange(3, dtype=torch.float32),
                       (torch.arange(4, dtype=torch.int32).reshape(2, 2), 5)]},
           7: torch.tensor([1.5, -2.5]),
           "bf": torch.arange(4).bfloat16()}
    torch.save(obj, out("proto4.pt"), pickle_protocol=4)


def others():
    torch.save({"z": torch.ones(2, dtype=torch.complex64)}, out("complex.pt"))
    torch.save({"x": torch.arange(3, dtype=torch.float32)}, out("legacy.pt"),
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    dtypes()
    checkpoint()
    script()
    proto4()
    others()
