"""Writes the genuine torch.save fixtures the weight-import tests read without torch:

    python tests/weights/data/make_torch_fixtures.py     # needs torch (any recent version), not affectfer

torch_zip.pth     torch.save's default zip archive of a checkpoint dict {'epoch', 'state_dict'}: every
                  dtype with a typed storage, bfloat16, uint16 (the _rebuild_tensor_v3 path), a
                  Parameter, a 0-d int64, a transposed view, a storage offset, two tensors sharing one
                  storage, an empty tensor, keys under 'module.' as DataParallel saves them
torch_legacy.pth  the same checkpoint in the legacy stream (_use_new_zipfile_serialization=False)
torch_module.pth  the state_dict of a real Conv2d + BatchNorm2d (torch's OrderedDict with _metadata)
expected.npz      every tensor above as NumPy arrays (bfloat16 as float32), keys 'ckpt/<name>' and 'module/<name>'
"""
import os
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def checkpoint():
    base = torch.arange(10, dtype=torch.float32)
    state = OrderedDict()
    state["module.a.weight"] = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    state["module.a.bias"] = torch.arange(3, dtype=torch.float64) * 0.5
    state["module.half"] = torch.tensor([1.5, -2.0, 3.25], dtype=torch.float16)
    state["module.bf16"] = torch.tensor([1.0, -2.5, 3.0, 0.15625], dtype=torch.bfloat16)
    state["module.transposed"] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    state["module.offset"] = base[3:7]
    state["module.shared"] = base[5:]
    state["module.count"] = torch.tensor(7, dtype=torch.int64)
    state["module.i32"] = torch.tensor([-1, 2], dtype=torch.int32)
    state["module.i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    state["module.i8"] = torch.tensor([-5, 5], dtype=torch.int8)
    state["module.u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    state["module.flag"] = torch.tensor([True, False])
    state["module.u16"] = torch.tensor([1, 65535], dtype=torch.uint16)
    state["module.param"] = torch.nn.Parameter(torch.full((2,), 0.25))
    state["module.empty"] = torch.zeros(0, 3)
    return {"epoch": 3, "arch": "test", "state_dict": state}


def main():
    torch.manual_seed(0)
    ckpt = checkpoint()
    torch.save(ckpt, os.path.join(HERE, "torch_zip.pth"))
    torch.save(ckpt, os.path.join(HERE, "torch_legacy.pth"), _use_new_zipfile_serialization=False)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    module.train()
    module(torch.randn(2, 3, 5, 5))  # non-trivial running statistics and num_batches_tracked = 1
    torch.save(module.state_dict(), os.path.join(HERE, "torch_module.pth"))
    expected = {}
    for name, t in ckpt["state_dict"].items():
        t = t.detach()
        expected["ckpt/" + name] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    for name, t in module.state_dict().items():
        expected["module/" + name] = t.numpy()
    np.savez(os.path.join(HERE, "expected.npz"), **expected)


if __name__ == "__main__":
    main()
