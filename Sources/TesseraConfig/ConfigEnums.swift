/// The enumerated values a config accepts. Raw values are the YAML spellings.

/// What a run does.
public enum TaskKind: String, CaseIterable, Sendable {
    case pretrain, finetune, linprobe, knn, attentive

    /// True for tasks with an optimizer and epochs (everything except k-NN).
    public var trains: Bool { self != .knn }
}

/// Pre-training method (or `vit` for a plain ViT built for downstream tasks).
public enum Method: String, CaseIterable, Sendable {
    case mae, maePriv = "mae_priv", saim, semaim, cae, vit
}

/// Named ViT size; `custom` requires width, depth and heads.
public enum Arch: String, CaseIterable, Sendable {
    case tiny, small, base, large, huge, giant, custom

    /// (width, depth, heads, patch) per spec table 1.1; nil for custom.
    public var preset: (width: Int, depth: Int, heads: Int, patch: Int)? {
        switch self {
        case .tiny: return (192, 12, 3, 16)
        case .small: return (384, 12, 6, 16)
        case .base: return (768, 12, 12, 16)
        case .large: return (1024, 24, 16, 16)
        case .huge: return (1280, 32, 16, 14)
        case .giant: return (1664, 48, 16, 14)
        case .custom: return nil
        }
    }
}

/// Attention parameter layout of a transformer block.
/// fused: `attn.qkv` with bias; split: `attn.q/k/v` with bias; beit: bias-free `attn.qkv` plus `q_bias`, `v_bias`.
public enum BlockLayout: String, CaseIterable, Sendable {
    case fused, split, beit
}

/// Channel layout of the fixed 2-D sin-cos table.
/// mae: [sin(col), cos(col), sin(row), cos(row)]; moco: [sin(row), cos(row), sin(col), cos(col)].
public enum PosEmbedLayout: String, CaseIterable, Sendable {
    case mae, moco
}

/// Per-patch target normalisation: unbiased: (t − mean)/sqrt(var_{N−1} + 1e-6);
/// layernorm: (t − mean)/sqrt(var_N + 1e-6).
public enum TargetNorm: String, CaseIterable, Sendable {
    case unbiased, layernorm
}

/// Order inside a patch vector: hwc = (p, p, C) channel fastest; chw = (C, p, p).
public enum PatchOrder: String, CaseIterable, Sendable {
    case hwc, chw
}

/// SAIM/SemAIM prediction head: mlp = Linear(D→4D), GELU, Linear(4D→p²C); linear = Linear(D→p²C).
public enum PredictionHead: String, CaseIterable, Sendable {
    case mlp, linear
}

/// Pixel regression loss: l2 = squared error, l1 = absolute error.
public enum LossType: String, CaseIterable, Sendable {
    case l2, l1
}

/// Autoregressive prediction order for SAIM/SemAIM (names as in SemAIM; `zigzag` is raster order,
/// `raster` is snake order).
public enum Permutation: String, CaseIterable, Sendable {
    case stochastic, raster, zigzag, center2out
    case stochasticCenter = "stochastic_center"
    case attention
    case attentionCenter = "attention_center"
    case attentionGuided = "attention_guided"
}

/// How SemAIM turns encoder output into per-patch attention: cos(cls, patch), cos(mean, patch),
/// or last-block cls→patch attention.
public enum AttentionType: String, CaseIterable, Sendable {
    case cls, gap
    case selfAttention = "self"
}

/// SemAIM's regression target: pixels, or the tokens of a frozen teacher (clip, dino), of the online
/// model's own eval-mode encoder (inference) or of the EMA model (ema).
public enum PredictFeature: String, CaseIterable, Sendable {
    case none, clip, dino, inference, ema
}

/// CAE's reconstruction target: DALL-E dVAE token ids (the original), or norm-pix pixels of the
/// masked patches (Tessera's extension, for runs without tokenizer weights).
public enum CAETarget: String, CaseIterable, Sendable {
    case dvae, pixels
}

/// CAE mask generator: BEiT-style blocks or a uniformly random subset.
public enum MaskGenerator: String, CaseIterable, Sendable {
    case block, random
}

/// Dataset format.
public enum DatasetKind: String, CaseIterable, Sendable {
    case fashionMNIST = "fashion-mnist"
    case imagefolder, idx
    /// Every JPEG at any depth under `<path>/<split>`, unlabeled (pre-training only).
    case images
}

/// Training crop: rrc = RandomResizedCrop(scale, ratio); resize_center = Resize + CenterCrop;
/// resize_random = Resize + RandomCrop; none = use the image as is.
public enum CropMode: String, CaseIterable, Sendable {
    case rrc
    case resizeCenter = "resize_center"
    case resizeRandom = "resize_random"
    case none
}

/// Resampling filter.
public enum Interpolation: String, CaseIterable, Sendable {
    case bicubic, bilinear, lanczos
}

/// Optimizer: adamw; sgd (momentum, optional Nesterov); lars (MoCo-v3/MAE LARS); lars_timm (timm LARS).
public enum OptimizerKind: String, CaseIterable, Sendable {
    case adamw, sgd, lars
    case larsTimm = "lars_timm"
}

/// Per-iteration learning-rate schedule: mae = fractional-epoch warmup + half cosine;
/// beit = precomputed linspace warmup + cosine array.
public enum ScheduleStyle: String, CaseIterable, Sendable {
    case mae, beit
}

/// Feature used for k-NN: raw cls, raw mean of all tokens, norm(x)[:,0], or LN(mean of patch tokens).
public enum KnnFeature: String, CaseIterable, Sendable {
    case cls, mean
    case normCls = "norm_cls"
    case fcNormMean = "fc_norm_mean"
}

/// How a run resumes: `auto` picks up `checkpoint-last.h5` in the run directory if present,
/// `none` starts fresh (in an empty run directory only), `restart` moves an existing run directory
/// aside and starts fresh, or an explicit checkpoint path.
public enum ResumeMode: Equatable, Sendable, CustomStringConvertible {
    case auto
    case none
    case restart
    case path(String)

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .none: return "none"
        case .restart: return "restart"
        case .path(let p): return p
        }
    }
}
