"""PyTorch side of the fine-tuning rows of `tessera bench train`: timm's own VisionTransformer
trained end to end as MAE's main_finetune.py does (mean-pooled patch tokens with fc_norm, drop path
0.1, timm's Mixup with mixup 0.8 / cutmix 1.0 / label smoothing 0.1, SoftTargetCrossEntropy, AdamW
with layer decay 0.75 from timm's own optimizer factory), on fixed synthetic images, eager or
torch.compile. Prints one JSON line as the pre-training scripts do
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}

Usage: python3 tools/bench_torch_finetune.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --classes 10 --batch 128 --steps 10 --warmup 3 --threads 2 --mode eager
The timed region is one training iteration: mixup of the batch (in place, as timm does), forward,
loss, backward, optimizer step and zeroing the gradients.
"""
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.models.vision_transformer import VisionTransformer
from timm.optim import create_optimizer_v2

from bench_torch_common import parse_run_args, report, rss_bytes, timed


def main():
    a = parse_run_args([("classes", 10)])
    base = rss_bytes()
    model = VisionTransformer(img_size=a.img, patch_size=a.patch, embed_dim=a.width, depth=a.depth, num_heads=a.heads,
                              num_classes=a.classes, global_pool="avg", drop_path_rate=0.1)
    model.train()
    opt = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05, layer_decay=0.75, betas=(0.9, 0.999))
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=a.classes)
    criterion = SoftTargetCrossEntropy()
    fwd = torch.compile(model) if a.mode == "compile" else model
    imgs = torch.randn(a.batch, 3, a.img, a.img)
    labels = torch.arange(a.batch) % a.classes

    def step(_):
        x, soft = mixup(imgs, labels)
        loss = criterion(fwd(x), soft)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    times, loss = timed(a, step)
    report(a, times, base, loss=float(loss.detach()))


if __name__ == "__main__":
    main()
