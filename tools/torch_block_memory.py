"""Bytes PyTorch (eager, CPU) keeps alive for backward in one timm-style ViT block (fused qkv),
output included: the sum of the distinct storages of the saved tensors plus the output.
Usage: python3 tools/torch_block_memory.py BATCH TOKENS WIDTH HEADS"""
import sys
import torch

from bench_torch_mae import Block


def main():
    b, n, d, h = map(int, sys.argv[1:5])
    blk = Block(d, h, sdpa=False)
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
