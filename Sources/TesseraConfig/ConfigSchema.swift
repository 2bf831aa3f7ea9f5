import Foundation

/// The single table of every config key. Order matters: sections print in this order, and derived
/// defaults are filled in this order, so a derived key comes after the keys it reads.
public enum ConfigSchema {
    public static let sections: [ConfigSection] = [
        ConfigSection(path: "", doc: "Run identity, task and batch", aliases: []),
        ConfigSection(path: "model", doc: "Encoder, decoder and method-specific pre-training settings",
                      aliases: ["network", "arch_cfg"]),
        ConfigSection(path: "model.decoder",
                      doc: "Decoder size: MAE / MAE-priv pixel decoder, CAE decoder (unused by SAIM/SemAIM)",
                      aliases: ["dec"]),
        ConfigSection(path: "data", doc: "Dataset location and loading", aliases: ["dataset_cfg"]),
        ConfigSection(path: "augment", doc: "Train and eval transforms",
                      aliases: ["augmentation", "aug", "transforms"]),
        ConfigSection(path: "optim", doc: "Optimizer", aliases: ["optimizer", "opt", "optimiser"]),
        ConfigSection(path: "schedule", doc: "Per-iteration learning-rate schedule",
                      aliases: ["scheduler", "lr_schedule", "sched"]),
        ConfigSection(path: "eval", doc: "Evaluation during and after training", aliases: ["evaluation"]),
        ConfigSection(path: "checkpoint", doc: "Checkpoint writing", aliases: ["ckpt", "checkpoints"]),
        ConfigSection(path: "log", doc: "Logging", aliases: ["logging"]),
    ]

    /// Every key, each declared once.
    public static let keys: [ConfigKey] = top + model + decoder + data + augment + optim + schedule + evaluation
        + checkpoint + log

    static let top: [ConfigKey] = [
        .make("name", \.name, .derived("config file stem") { _, context in context.fileStem },
              "run name, used for the run directory", aka: ["exp_name", "run_name"]),
        .make("task", \.task, .required, "what to run"),
        .make("seed", \.seed, .value(0), "random seed for weights, masks, augmentation and data order"),
        .make("output_dir", \.outputDir, .value("runs"), "directory under which the run directory is created",
              aka: ["save_path", "out_dir", "output"]),
        .make("batch_size", \.batchSize, .required, .greaterThan(0), "samples per step (micro-batch)",
              aka: ["batch", "bs", "batch_size_per_gpu"]),
        .make("accum_iter", \.accumIter, .value(1), .atLeast(1),
              "gradient accumulation steps per optimizer update", aka: ["update_freq", "accumulate"]),
        .make("epochs", \.epochs, .value(0), .atLeast(0),
              "training epochs; required (≥ 1) for every task except knn", aka: ["num_epochs", "epoch"]),
        .make("resume", \.resume, .value(.auto),
              "auto = continue from checkpoint-last.h5 in the run directory if present (the stored config must match, "
              + "see README \"Run directories\"); none = start fresh, refused when the run directory already holds a run; "
              + "restart = move an existing run directory aside to <name>.restart-<n> and start fresh; or a checkpoint path"),
        .make("init", \.initCheckpoint, .value(nil),
              "pretrained checkpoint loaded before a downstream task; null = none",
              aka: ["finetune", "pretrained", "checkpoint_path", "weights"]),
        .make("threads", \.threads, .value(0), .atLeast(0), "worker threads for compute; 0 = all cores",
              aka: ["num_threads"]),
        .make("data_parallel", \.dataParallel, .value(true),
              "pre-training and fine-tuning: cut each batch into one part per thread, each with its own forward and backward pass "
              + "(gradients summed; equal to the whole-batch pass up to float rounding); false = one pass with threaded kernels"),
        .make("sync_bn", \.syncBN, .value(false),
              "linear and attentive probes under mpirun: BatchNorm statistics over the global batch of all processes "
              + "(PyTorch SyncBatchNorm); false = each process normalises with its own batch, as under PyTorch DDP",
              aka: ["syncbn", "sync_batchnorm"]),
    ]

    static let model: [ConfigKey] = [
        .make("model.method", \.model.method, .value(.mae),
              "pre-training method, or vit for a plain ViT (downstream tasks name the method that produced `init`)",
              aka: ["type", "name", "model"]),
        .make("model.arch", \.model.arch, .value(.base),
              "size preset: tiny 192/12/3, small 384/12/6, base 768/12/12, large 1024/24/16, huge 1280/32/16 p14, giant 1664/48/16 p14 (width/depth/heads)",
              aka: ["size", "variant"]),
        .make("model.width", \.model.width, .derived("from arch") { spec, _ in
                  guard let p = spec.model.arch.preset else { throw ValueIssue("required when model.arch is custom") }
                  return p.width
              }, .greaterThan(0), "encoder embedding dimension D", aka: ["embed_dim", "dim", "hidden_size"]),
        .make("model.depth", \.model.depth, .derived("from arch") { spec, _ in
                  guard let p = spec.model.arch.preset else { throw ValueIssue("required when model.arch is custom") }
                  return p.depth
              }, .greaterThan(0), "encoder blocks", aka: ["layers", "num_layers"]),
        .make("model.heads", \.model.heads, .derived("from arch") { spec, _ in
                  guard let p = spec.model.arch.preset else { throw ValueIssue("required when model.arch is custom") }
                  return p.heads
              }, .greaterThan(0), "encoder attention heads", aka: ["num_heads"]),
        .make("model.mlp_ratio", \.model.mlpRatio, .value(4.0), .greaterThan(0), "MLP hidden width / D"),
        .make("model.patch_size", \.model.patchSize, .derived("from arch: 14 for huge/giant, else 16") { spec, _ in
                  spec.model.arch.preset?.patch ?? 16
              }, .greaterThan(0), "patch side p in pixels", aka: ["patch"]),
        .make("model.img_size", \.model.imgSize, .value(224), .greaterThan(0), "input image side in pixels",
              aka: ["image_size", "resolution"]),
        .make("model.in_chans", \.model.inChans, .value(3), .greaterThan(0), "input channels",
              aka: ["channels", "in_channels"]),
        .make("model.block", \.model.block, .derived("by method: mae/semaim/vit fused, saim split, mae_priv/cae beit") { spec, _ in
                  switch spec.model.method {
                  case .mae, .semaim, .vit: return .fused
                  case .saim: return .split
                  case .maePriv, .cae: return .beit
                  }
              }, "attention parameter layout of encoder blocks", aka: ["block_type", "attn_layout"]),
        .make("model.pos_embed", \.model.posEmbed, .derived("by method: mae_priv/cae moco, others mae") { spec, _ in
                  switch spec.model.method {
                  case .maePriv, .cae: return .moco
                  default: return .mae
                  }
              }, "channel layout of the fixed 2-D sin-cos position table", aka: ["pos_emb", "sincos"]),
        .make("model.cls_token", \.model.clsToken, .value(true), "prepend a cls token", aka: ["use_cls_token", "use_cls"]),
        .make("model.layer_scale", \.model.layerScale, .value(0.0), .atLeast(0),
              "initial value of the layer-scale vectors γ1, γ2; 0 = no layer scale",
              aka: ["layer_scale_init_value", "init_values"]),
        .make("model.drop_path", \.model.dropPath, .value(0.0), .range(0, 1, openHigh: true),
              "stochastic depth rate of the last block (linear from 0 over blocks)", aka: ["drop_path_rate"]),
        .make("model.global_pool", \.model.globalPool,
              .derived("true for finetune or without cls token, else false") { spec, _ in
                  spec.task == .finetune || !spec.model.clsToken
              }, "downstream feature = LN(mean of patch tokens) instead of the cls token", aka: ["gap", "mean_pool"]),
        .make("model.num_classes", \.model.numClasses, .value(0), .atLeast(0),
              "classifier outputs for downstream tasks; 0 = number of classes in the dataset",
              aka: ["nb_classes", "classes"]),
        .make("model.mask_ratio", \.model.maskRatio, .value(0.75), .range(0, 1, openHigh: true),
              "MAE/MAE-priv: fraction of patches removed; visible = L − int(L·ratio); pre-training needs at least one masked and one visible patch", aka: ["mask"]),
        .make("model.norm_pix_loss", \.model.normPixLoss, .value(true),
              "normalise each target patch by its own mean and variance", aka: ["normlize_target", "normalize_target"]),
        .make("model.target_norm", \.model.targetNorm,
              .derived("by method: mae_priv layernorm, others unbiased") { spec, _ in
                  spec.model.method == .maePriv ? .layernorm : .unbiased
              }, "variance used by norm_pix_loss: unbiased (N−1) or layernorm (N)"),
        .make("model.patch_order", \.model.patchOrder, .derived("by method: mae_priv chw, others hwc") { spec, _ in
                  spec.model.method == .maePriv ? .chw : .hwc
              }, "element order of a patchified target vector"),
        .make("model.shared_mask", \.model.sharedMask, .value(false),
              "MAE: use one random mask for every sample of a batch", aka: ["batched_shuffle"]),
        .make("model.query_depth", \.model.queryDepth,
              .derived("12 if depth is a multiple of 12, else depth") { spec, _ in
                  spec.model.depth % 12 == 0 ? 12 : spec.model.depth
              }, .greaterThan(0), "SAIM/SemAIM: query-stream blocks; one runs after every depth/query_depth encoder blocks"),
        .make("model.share_weight", \.model.shareWeight, .value(false),
              "SAIM: the query stream runs the content stream's blocks (query_blocks = blocks, saved under both names)"),
        .make("model.prediction_head", \.model.predictionHead, .value(.mlp),
              "SAIM/SemAIM: pixel prediction head", aka: ["prediction_head_type", "head_type"]),
        .make("model.gaussian_kernel_size", \.model.gaussianKernelSize, .value(0), .atLeast(0),
              "SAIM/SemAIM: side of the Gaussian blur applied to the target; 0 = no blur"),
        .make("model.gaussian_sigma", \.model.gaussianSigma, .value(1.0), .greaterThan(0),
              "SAIM/SemAIM: σ of the target blur"),
        .make("model.loss_type", \.model.lossType, .value(.l2), "SAIM/SemAIM: pixel loss", aka: ["loss"]),
        .make("model.permutation", \.model.permutation,
              .derived("by method: semaim attention_center, others stochastic") { spec, _ in
                  spec.model.method == .semaim ? .attentionCenter : .stochastic
              }, "SAIM/SemAIM: prediction order", aka: ["permutation_type", "order"]),
        .make("model.attention_type", \.model.attentionType, .value(.cls),
              "SemAIM: how attention-based orders score patches"),
        .make("model.predict_feature", \.model.predictFeature, .value(.none),
              "SemAIM: regression target: none = pixels; clip/dino = a frozen teacher's tokens (model.teacher); inference = the model's own eval-mode tokens; ema = the EMA model's tokens"),
        .make("model.teacher", \.model.teacher, .value(nil),
              "SemAIM*: HDF5 file of the frozen clip/dino teacher (tools/teacher_to_h5.py); null = none",
              aka: ["teacher_path"]),
        .make("model.use_ema", \.model.useEma, .value(false),
              "SemAIM: keep an EMA model (decay 0.999 → 0.9999 over the first 100 epochs); it picks the order",
              aka: ["use_ema_model"]),
        .make("model.cae_target", \.model.caeTarget, .value(.dvae),
              "CAE: dvae = DALL-E token ids of the masked patches (the original; needs model.tokenizer); pixels = their norm-pix pixels (Tessera's extension)"),
        .make("model.tokenizer", \.model.tokenizer, .value(nil),
              "CAE: HDF5 file of the DALL-E dVAE encoder (tools/dalle_to_h5.py encoder.pkl); null = none",
              aka: ["discrete_vae_weight_path", "tokenizer_path"]),
        .make("model.regressor_depth", \.model.regressorDepth, .value(4), .atLeast(0),
              "CAE: latent contextual regressor blocks"),
        .make("model.num_mask_patches", \.model.numMaskPatches,
              .derived("half the patches: (img_size/patch_size)² / 2") { spec, _ in
                  let side = spec.model.patchSize > 0 ? spec.model.imgSize / spec.model.patchSize : 0
                  return side * side / 2
              }, .atLeast(0), "CAE: masked patches per image (at least 1 in CAE pre-training)"),
        .make("model.align_loss_weight", \.model.alignLossWeight, .value(2.0), .atLeast(0),
              "CAE: weight of the latent alignment MSE"),
        .make("model.mask_generator", \.model.maskGenerator, .value(.block), "CAE: mask shape"),
        .make("model.decoder_layer_scale", \.model.decoderLayerScale,
              .derived("model.layer_scale") { spec, _ in spec.model.layerScale }, .atLeast(0),
              "CAE: layer-scale init of regressor and decoder blocks; 0 = none",
              aka: ["decoder_layer_scale_init_value"]),
        .make("model.block_min_patches", \.model.blockMinPatches, .value(16), .greaterThan(0),
              "CAE block masking: minimum patches per block", aka: ["min_mask_patches_per_block"]),
        .make("model.block_min_aspect", \.model.blockMinAspect, .value(0.3), .openLow(0, 1),
              "CAE block masking: block aspect ratio is drawn log-uniformly from [a, 1/a]"),
    ]

    static let decoder: [ConfigKey] = [
        .make("model.decoder.width", \.model.decoder.width,
              .derived("mae 512; mae_priv 192 (tiny/small), 384 (base), 512 (larger); others model.width") { spec, _ in
                  switch spec.model.method {
                  case .mae: return 512
                  case .maePriv:
                      switch spec.model.arch {
                      case .tiny, .small: return 192
                      case .base: return 384
                      default: return 512
                      }
                  default: return spec.model.width
                  }
              }, .greaterThan(0), "decoder embedding dimension", aka: ["decoder_dim", "decoder_embed_dim", "dim"]),
        .make("model.decoder.depth", \.model.decoder.depth,
              .derived("mae 8; mae_priv 4 (tiny/small/base), 8 (larger); cae 4; others query_depth") { spec, _ in
                  switch spec.model.method {
                  case .mae: return 8
                  case .maePriv: return [.tiny, .small, .base].contains(spec.model.arch) ? 4 : 8
                  case .cae: return 4
                  default: return spec.model.queryDepth
                  }
              }, .atLeast(0), "decoder blocks", aka: ["decoder_depth", "layers"]),
        .make("model.decoder.heads", \.model.decoder.heads,
              .derived("mae 16; mae_priv width/64; others model.heads") { spec, _ in
                  switch spec.model.method {
                  case .mae: return 16
                  case .maePriv: return max(1, spec.model.decoder.width / 64)
                  default: return spec.model.heads
                  }
              }, .greaterThan(0), "decoder attention heads", aka: ["decoder_num_heads", "num_heads"]),
    ]

    /// Fashion-MNIST as installed by Debian's `dataset-fashion-mnist`.
    public static let fashionMNISTPath = "/usr/share/datasets/fashion-mnist"

    static let data: [ConfigKey] = [
        .make("data.dataset", \.data.dataset, .value(.fashionMNIST),
              "format: fashion-mnist (gzip IDX files), imagefolder (split/class/*.jpg), idx (IDX files), "
              + "images (every .jpg at any depth under path/split, unlabeled: pre-training only)",
              aka: ["name", "type", "data_set"]),
        .make("data.path", \.data.path, .derived("fashion-mnist: \(fashionMNISTPath); others required") { spec, _ in
                  guard spec.data.dataset == .fashionMNIST else {
                      throw ValueIssue("required for dataset \(spec.data.dataset.rawValue)")
                  }
                  return fashionMNISTPath
              }, "dataset root directory (must exist)", aka: ["data_path", "root", "dir"]),
        .make("data.train_split", \.data.trainSplit, .value("train"),
              "training split: subdirectory (imagefolder) or file prefix (idx)"),
        .make("data.val_split", \.data.valSplit, .derived("imagefolder val, others t10k") { spec, _ in
                  spec.data.dataset == .imagefolder ? "val" : "t10k"
              }, "evaluation split: subdirectory (imagefolder) or file prefix (idx)", aka: ["test_split"]),
        .make("data.input_size", \.data.inputSize, .derived("model.img_size") { spec, _ in spec.model.imgSize },
              .greaterThan(0), "side of the network input after transforms; must equal model.img_size",
              aka: ["image_size", "img_size", "size"]),
        .make("data.num_workers", \.data.numWorkers, .value(2), .atLeast(0), "loader threads decoding and augmenting",
              aka: ["workers"]),
        .make("data.mean", \.data.mean, .value([0.485, 0.456, 0.406]), .nonEmpty(),
              "per-channel normalisation mean (one value per model.in_chans)"),
        .make("data.std", \.data.std, .value([0.229, 0.224, 0.225]), .nonEmpty(.greaterThan(0)),
              "per-channel normalisation std (one value per model.in_chans)"),
        .make("data.max_image_pixels", \.data.maxImagePixels, .value(178_956_970), .greaterThan(0),
              "largest decoded image (width × height); a larger JPEG is skipped and counted like a corrupt one "
              + "(the default is PIL's decompression-bomb limit)", aka: ["max_pixels"]),
        .make("data.limit", \.data.limit, .value(0), .atLeast(0),
              "use only the first N training samples; 0 = all", aka: ["max_samples", "subset"]),
        .make("data.val_limit", \.data.valLimit, .value(0), .atLeast(0),
              "use only the first N evaluation samples; 0 = all"),
        .make("data.pad_to", \.data.padTo, .value(nil), .greaterThan(0),
              "zero-pad small images symmetrically to this side before transforms; null = no padding",
              aka: ["pad"]),
        .make("data.resize_to", \.data.resizeTo, .value(nil), .greaterThan(0),
              "resize images to this side before transforms; null = keep", aka: ["resize"]),
    ]

    static let augment: [ConfigKey] = [
        .make("augment.crop", \.augment.crop, .value(.rrc), "training crop"),
        .make("augment.scale", \.augment.scale, .value([0.2, 1.0]), .count(2, .openLow(0, 1)),
              "rrc: [min, max] fraction of the image area", aka: ["crop_scale"]),
        .make("augment.ratio", \.augment.ratio, .value([0.75, 4.0 / 3.0]), .count(2, .greaterThan(0)),
              "rrc: [min, max] aspect ratio (sampled log-uniformly)", aka: ["crop_ratio"]),
        .make("augment.interpolation", \.augment.interpolation, .value(.bicubic), "training resampling filter",
              aka: ["train_interpolation", "interp"]),
        .make("augment.hflip", \.augment.hflip, .value(0.5), .range(0, 1), "horizontal flip probability",
              aka: ["flip"]),
        .make("augment.tokenizer_size", \.augment.tokenizerSize,
              .derived("cae with cae_target dvae in pre-training: 8 × the patch grid (112 for 224 px / 16); else 0") { spec, _ in
                  let m = spec.model
                  guard spec.task == .pretrain, m.method == .cae, m.caeTarget == .dvae, m.patchSize > 0 else { return 0 }
                  return 8 * (m.imgSize / m.patchSize)
              }, .atLeast(0),
              "side of the tokenizer's second view of the same crop (Lanczos, then 0.8·x + 0.1 on [0, 1] pixels, DALL-E's map_pixels); 0 = none",
              aka: ["second_input_size"]),
        .make("augment.flip_before_crop", \.augment.flipBeforeCrop,
              .derived("cae pre-training: true; else false") { spec, _ in spec.task == .pretrain && spec.model.method == .cae },
              "draw the horizontal flip before the crop (CAE's transform order) instead of after it"),
        .make("augment.auto_augment", \.augment.autoAugment, .value(""),
              "timm RandAugment string (e.g. rand-m9-mstd0.5-inc1); empty = off", aka: ["aa", "autoaugment"]),
        .make("augment.reprob", \.augment.reprob, .value(0.0), .range(0, 1), "random erasing probability",
              aka: ["random_erasing"]),
        .make("augment.mixup", \.augment.mixup, .value(0.0), .atLeast(0), "mixup Beta(α, α) parameter; 0 = off"),
        .make("augment.cutmix", \.augment.cutmix, .value(0.0), .atLeast(0), "CutMix Beta(α, α) parameter; 0 = off"),
        .make("augment.mixup_prob", \.augment.mixupProb, .value(1.0), .range(0, 1),
              "probability of mixing a batch when mixup or cutmix is on"),
        .make("augment.switch_prob", \.augment.switchProb, .value(0.5), .range(0, 1),
              "probability of CutMix instead of mixup when both are on"),
        .make("augment.smoothing", \.augment.smoothing, .value(0.0), .range(0, 1, openHigh: true),
              "label smoothing", aka: ["label_smoothing"]),
        .make("augment.color_jitter", \.augment.colorJitter, .value(0.0), .atLeast(0),
              "brightness/contrast/saturation jitter strength; ignored when auto_augment is set",
              aka: ["jitter"]),
        .make("augment.eval_resize", \.augment.evalResize, .value(nil), .greaterThan(0),
              "eval: resize shorter side to this before the center crop; null = input_size / 0.875"),
        .make("augment.eval_interpolation", \.augment.evalInterpolation, .value(.bicubic),
              "eval resampling filter"),
    ]

    static let optim: [ConfigKey] = [
        .make("optim.name", \.optim.name, .value(.adamw),
              "optimizer; sgd uses momentum (and Nesterov if set)", aka: ["opt", "optimizer", "type"]),
        .make("optim.lr", \.optim.lr, .value(nil), .atLeast(0),
              "absolute peak learning rate; null = blr × effective batch / 256", aka: ["learning_rate"]),
        .make("optim.blr", \.optim.blr, .value(1e-3), .atLeast(0),
              "base learning rate per 256 samples, used when lr is null", aka: ["base_lr", "base_learning_rate"]),
        .make("optim.weight_decay", \.optim.weightDecay, .value(0.05), .atLeast(0),
              "decoupled weight decay (AdamW) or L2 term (SGD/LARS); 1-D params and biases are exempt",
              aka: ["wd"]),
        .make("optim.betas", \.optim.betas, .value([0.9, 0.95]), .count(2, .range(0, 1, openHigh: true)),
              "AdamW [β1, β2]", aka: ["opt_betas"]),
        .make("optim.eps", \.optim.eps, .value(1e-8), .greaterThan(0), "AdamW ε", aka: ["opt_eps", "epsilon"]),
        .make("optim.momentum", \.optim.momentum, .value(0.9), .range(0, 1, openHigh: true), "SGD/LARS momentum"),
        .make("optim.nesterov", \.optim.nesterov, .value(false), "SGD: Nesterov momentum"),
        .make("optim.layer_decay", \.optim.layerDecay, .value(1.0), .openLow(0, 1),
              "layer-wise lr decay: layer id i (embeddings 0, block k → k+1, rest depth+1) gets lr × layer_decay^(depth+1−i); 1 = off",
              aka: ["layer_decay_rate", "lr_decay"]),
        .make("optim.clip_grad", \.optim.clipGrad, .value(nil), .greaterThan(0),
              "clip the global gradient L2 norm to this; null = no clipping", aka: ["grad_clip", "clip"]),
        .make("optim.trust_coefficient", \.optim.trustCoefficient, .value(0.001), .greaterThan(0),
              "LARS trust coefficient", aka: ["trust"]),
    ]

    static let schedule: [ConfigKey] = [
        .make("schedule.style", \.schedule.style, .value(.mae), "schedule formula (spec §8.3)",
              aka: ["type", "name"]),
        .make("schedule.warmup_epochs", \.schedule.warmupEpochs, .value(0), .atLeast(0),
              "linear warmup from 0 over this many epochs", aka: ["warmup"]),
        .make("schedule.min_lr", \.schedule.minLR, .value(0.0), .atLeast(0), "learning rate at the end of the cosine",
              aka: ["final_lr", "lr_min"]),
        .make("schedule.warmup_lr", \.schedule.warmupLR, .value(0.0), .atLeast(0),
              "unused: accepted for MAE-priv compatibility; warmup always starts at 0"),
    ]

    static let evaluation: [ConfigKey] = [
        .make("eval.every", \.eval.every, .value(1), .atLeast(0), "evaluate every N epochs; 0 = only after the last",
              aka: ["interval", "freq"]),
        .make("eval.knn_k", \.eval.knnK, .value([10, 20, 100, 200]), .nonEmpty(.greaterThan(0)),
              "k values reported by k-NN", aka: ["nb_knn", "k"]),
        .make("eval.knn_temperature", \.eval.knnTemperature, .value(0.07), .greaterThan(0),
              "k-NN vote weight exp(sim / T)", aka: ["temperature"]),
        .make("eval.knn_feature", \.eval.knnFeature, .value(.cls), "k-NN feature vector before L2 normalisation",
              aka: ["feature"]),
        .make("eval.attentive_batch_stats", \.eval.attentiveBatchStatistics, .value(false),
              "attentive probe: normalise evaluation batches with their own statistics, as CAE's released code does (its LP_BatchNorm keeps is_train on); false = the running statistics, the usual protocol"),
    ]

    static let checkpoint: [ConfigKey] = [
        .make("checkpoint.every", \.checkpoint.every, .value(20), .atLeast(0),
              "write checkpoint-<epoch>.h5 every N epochs (and after the last); 0 = only the last",
              aka: ["interval", "save_freq", "freq"]),
        .make("checkpoint.write_last", \.checkpoint.writeLast, .value(true),
              "also write checkpoint-last.h5 after every epoch (what resume: auto reads)"),
        .make("checkpoint.keep_last", \.checkpoint.keepLast, .value(0), .atLeast(0),
              "keep only the newest N numbered checkpoint-<epoch>.h5 files (older ones are deleted once a newer one is "
              + "written); checkpoint-last.h5 and checkpoint-best.h5 are always kept; 0 = keep every numbered checkpoint",
              aka: ["keep", "max_keep"]),
    ]

    static let log: [ConfigKey] = [
        .make("log.every", \.log.every, .value(10), .greaterThan(0), "log metrics every N optimizer steps",
              aka: ["interval", "freq", "print_freq"]),
        .make("log.pictures", \.log.pictures, .value(true),
              "write pictures (reconstructions, attention maps, loss curves)", aka: ["images", "vis"]),
    ]

    /// The key declared at a dotted path.
    public static func key(_ path: String) -> ConfigKey? { keyIndex[path] }

    static let keyIndex: [String: ConfigKey] = Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0) })
    static let sectionPaths: Set<String> = Set(sections.map(\.path))
}
