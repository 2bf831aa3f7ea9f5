#!/usr/bin/env bash
# The README's learning table on Fashion-MNIST: MAE pre-training (about 30 minutes), then k-NN, linear
# probing and fine-tuning of the pre-trained encoder beside the same protocols on a randomly
# initialised encoder (k-NN, linear probe) or the same model trained from scratch (fine-tuning).
# Runs go under runs/fmnist_learning; finished runs are kept and skipped on a second call.
set -euo pipefail
cd "$(dirname "$0")/.."
CK=runs/FMNIST_ViT-T_MAE/checkpoint-5.h5
OUT=runs/fmnist_learning
[ -f "$CK" ] || ./run.sh cfgs/pretrain/FMNIST_ViT-T_MAE.yaml
for protocol in knn lincls finetune; do
  for init in random pretrained; do
    name=${protocol}_${init}
    [ -f "$OUT/$name/summary.json" ] && continue
    if [ "$init" = pretrained ]; then value="$CK"; else value=null; fi
    ./run.sh "cfgs/$protocol/FMNIST_ViT-T.yaml" --set output_dir=$OUT --set name=$name --set init=$value "$@"
  done
done
./run.sh table $OUT
