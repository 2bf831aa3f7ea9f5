"""Bytes PyTorch (eager, CPU) keeps alive for backward in one timm-style ViT block (fused qkv),
output included: the sum of the distinct storages of the saved tensors plus the output.
Usage: python3 tools/torch_block_memory.py BATCH TOKENS WIDTH HEADS"""
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q @ k.transpose(-2, -1)) * (d // self.h) ** -0.5
        a = a.softmax(dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def main():
    b, n, d, h = map(int, sys.argv[1:5])
    blk = Block(d, h)
    x = torch.randn(b, n, d, requires_grad=True)
    seen = {}

    def pack(t):
        if t.requires_grad and t is x:
            return t
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = blk(x)
    seen.pop(x.untyped_storage().data_ptr(), None)  # the block input exists before the forward
    for p in blk.parameters():  # weights are not activations
        seen.pop(p.untyped_storage().data_ptr(), None)
    seen.pop(y.untyped_storage().data_ptr(), None)
    print(sum(seen.values()) + y.untyped_storage().nbytes())


if __name__ == "__main__":
    main()
