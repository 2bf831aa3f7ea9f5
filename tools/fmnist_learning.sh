#!/usr/bin/env bash
# The README's learning table on Fashion-MNIST.
#   Every method's encoder is also probed with CAE's attentive probe (cfgs/attentive/FMNIST_ViT-T.yaml).
#   MAE: pre-training (about 20 minutes), then k-NN, linear probing and fine-tuning of the pre-trained
#   encoder beside the same protocols on a randomly initialised encoder (k-NN, linear probe) or the same
#   model trained from scratch (fine-tuning).
#   SAIM: pre-training of the same encoder shape (about 50 minutes), then k-NN and linear probing beside
#   a random encoder of SAIM's layout (split q/k/v blocks).
#   SemAIM: the same budget as SAIM (2 epochs, same shape and optimizer) in the semantic order
#   (attention_center / cls), then k-NN and linear probing beside a random encoder of its layout
#   (fused qkv).
#   CAE: pixel targets (no tokenizer weights here), the same 2-epoch budget, then k-NN, linear and
#   attentive probing beside a random encoder of CAE's layout (BEiT blocks with layer scale 0.1).
# Pass a method name (mae, saim, semaim, cae) to run only that part.
# Runs go under runs/fmnist_learning; finished runs are kept and skipped on a second call.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/fmnist_learning

# run_protocols METHOD CHECKPOINT PROTOCOL... : each protocol on the checkpoint and on a random encoder.
# EXTRA (environment) holds further --set arguments for every run (CAE: its layer scale).
run_protocols() {
  local method=$1 ck=$2; shift 2
  local tag=""; [ "$method" = mae ] || tag="_$method"
  for protocol in "$@"; do
    for init in random pretrained; do
      name=${protocol}${tag}_${init}
      [ -f "$OUT/$name/summary.json" ] && continue
      if [ "$init" = pretrained ]; then value="$ck"; else value=null; fi
      ./run.sh "cfgs/$protocol/FMNIST_ViT-T.yaml" --set output_dir=$OUT --set name=$name --set init=$value \
        --set model.method=$method ${EXTRA:-}
    done
  done
}

ONLY=${1:-all}

if [ "$ONLY" = all ] || [ "$ONLY" = mae ]; then
  MAE_CK=runs/FMNIST_ViT-T_MAE/checkpoint-5.h5
  [ -f "$MAE_CK" ] || ./run.sh cfgs/pretrain/FMNIST_ViT-T_MAE.yaml
  run_protocols mae "$MAE_CK" knn lincls finetune attentive
fi

if [ "$ONLY" = all ] || [ "$ONLY" = saim ]; then
  SAIM_CK=runs/FMNIST_ViT-T_SAIM/checkpoint-2.h5
  [ -f "$SAIM_CK" ] || ./run.sh cfgs/pretrain/FMNIST_ViT-T_SAIM.yaml
  run_protocols saim "$SAIM_CK" knn lincls attentive
fi

if [ "$ONLY" = all ] || [ "$ONLY" = semaim ]; then
  SEMAIM_CK=runs/FMNIST_ViT-T_SemAIM/checkpoint-2.h5
  [ -f "$SEMAIM_CK" ] || ./run.sh cfgs/pretrain/FMNIST_ViT-T_SemAIM.yaml
  run_protocols semaim "$SEMAIM_CK" knn lincls attentive
fi

if [ "$ONLY" = all ] || [ "$ONLY" = cae ]; then
  CAE_CK=runs/FMNIST_ViT-T_CAE/checkpoint-2.h5
  [ -f "$CAE_CK" ] || ./run.sh cfgs/pretrain/FMNIST_ViT-T_CAE.yaml
  EXTRA="--set model.layer_scale=0.1" run_protocols cae "$CAE_CK" knn lincls attentive
fi

./run.sh table $OUT
