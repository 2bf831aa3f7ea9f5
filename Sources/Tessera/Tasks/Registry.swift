import TesseraConfig
import TesseraCore
import TesseraData

/// Maps config names to builders: methods, optimizers, schedules, data sets and transforms.
/// `tessera list` prints it.
public enum Registry {
    /// A model builder for one `model.method`.
    public struct MethodEntry {
        public let name: String
        public let summary: String
        public let build: (ExperimentSpec, inout RandomGenerator) throws -> PretrainModel
    }

    public static let methods: [MethodEntry] = [
        MethodEntry(name: "mae", summary: "MAE (facebookresearch/mae): random masking, pixel decoder, loss on removed patches",
                    build: { spec, rng in MAE(vitShape(spec), vitStyle(spec), maeOptions(spec, variant: .official), rng: &rng) }),
        MethodEntry(name: "mae_priv", summary: "MAE-priv (BUPT-PRIV): BEiT blocks, optional cls, layer-norm targets, one mask per batch",
                    build: { spec, rng in MAE(vitShape(spec), vitStyle(spec), maeOptions(spec, variant: .priv), rng: &rng) }),
    ]

    public static let optimizers = ["adamw", "sgd", "lars", "lars_timm"]
    public static let schedules = ["mae (per-iteration warmup + half-cosine on fractional epochs)",
                                   "beit (precomputed per-iteration array, linspace warmup)"]
    public static let datasets = ["fashion-mnist", "imagefolder", "idx"]
    public static let maskGenerators = ["random (MAE noise argsort)", "shared (MAE-priv batched_shuffle)"]

    public struct UnsupportedError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func method(_ name: String) throws -> MethodEntry {
        guard let m = methods.first(where: { $0.name == name }) else {
            throw UnsupportedError(description: "tessera: model.method '\(name)' is not implemented yet; available: \(methods.map(\.name).joined(separator: ", "))")
        }
        return m
    }

    /// What `tessera list` prints.
    public static func listing() -> String {
        var s = "methods:\n"
        for m in methods { s += "  \(m.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(m.summary)\n" }
        s += "block layouts:\n  fused (attn.qkv with bias), split (attn.q/k/v), beit (attn.qkv + q_bias/v_bias)\n"
        s += "position tables:\n  mae ([sin col, cos col, sin row, cos row]), moco ([sin row, cos row, sin col, cos col])\n"
        s += "mask generators:\n" + maskGenerators.map { "  \($0)\n" }.joined()
        s += "optimizers:\n  " + optimizers.joined(separator: ", ") + "\n"
        s += "schedules:\n" + schedules.map { "  \($0)\n" }.joined()
        s += "datasets:\n  " + datasets.joined(separator: ", ") + "\n"
        s += "tasks:\n  pretrain, linprobe, finetune, knn, step (one forward/backward on a given batch)\n"
        return s
    }

    // MARK: spec → model pieces

    public static func vitShape(_ spec: ExperimentSpec) -> ViTShape {
        let m = spec.model
        return ViTShape(imgSize: m.imgSize, patchSize: m.patchSize, inChans: m.inChans, width: m.width, depth: m.depth,
                        heads: m.heads, mlpRatio: Float(m.mlpRatio))
    }

    public static func vitStyle(_ spec: ExperimentSpec) -> ViTStyle {
        let m = spec.model
        let layout: AttentionLayout = m.block == .fused ? .fused : (m.block == .split ? .split : .beit)
        return ViTStyle(layout: layout, posLayout: m.posEmbed == .mae ? .mae : .moco, clsToken: m.clsToken,
                        layerScale: Float(m.layerScale), dropPath: Float(m.dropPath))
    }

    static func maeOptions(_ spec: ExperimentSpec, variant: MAE.Options.Variant) -> MAE.Options {
        let m = spec.model
        var o = MAE.Options()
        o.variant = variant
        o.maskRatio = m.maskRatio
        o.decoderWidth = m.decoder.width
        o.decoderDepth = m.decoder.depth
        o.decoderHeads = m.decoder.heads
        o.targetNorm = m.normPixLoss ? (m.targetNorm == .unbiased ? .unbiased : .layernorm) : .none
        o.patchOrder = m.patchOrder == .hwc ? .hwc : .chw
        o.sharedMask = m.sharedMask
        return o
    }

    // MARK: data

    /// The training or evaluation data set named by `data:` (with `limit` applied).
    public static func dataset(_ spec: ExperimentSpec, train: Bool) throws -> ImageDataset {
        let d = spec.data
        let split = train ? d.trainSplit : d.valSplit
        let base: ImageDataset
        switch d.dataset {
        case .fashionMNIST, .idx:
            base = try FashionMNIST(root: d.path, split: split)
        case .imagefolder:
            base = try ImageFolder(root: d.path, split: split)
        }
        let limit = train ? d.limit : d.valLimit
        return limit > 0 && limit < base.count ? Subset(base: base, count: limit) : base
    }

    /// The sample transform for training (`augment:`) or evaluation.
    public static func pipeline(_ spec: ExperimentSpec, train: Bool) -> TransformPipeline {
        let a = spec.augment, d = spec.data
        let mean = d.mean.map(Float.init), std = d.std.map(Float.init)
        let small: SmallImagePolicy? = d.padTo.map { .pad(to: $0) } ?? d.resizeTo.map { .resize(to: $0) }
        func interp(_ i: TesseraConfig.Interpolation) -> TesseraData.Interpolation {
            switch i { case .bicubic: return .bicubic; case .bilinear: return .bilinear; case .lanczos: return .lanczos }
        }
        if !train {
            let crop: CropKind = small != nil && (d.padTo ?? d.resizeTo) == d.inputSize ? .none : .resizeCenterCrop
            return TransformPipeline(crop: crop, size: d.inputSize, resize: a.evalResize, interpolation: interp(a.evalInterpolation),
                                     hflip: 0, mean: mean, std: std, channels: spec.model.inChans, smallImage: small, eval: true)
        }
        let crop: CropKind
        switch a.crop {
        case .rrc: crop = .randomResizedCrop
        case .resizeCenter: crop = .resizeCenterCrop
        case .resizeRandom: crop = .resizeRandomCrop
        case .none: crop = .none
        }
        // Fine-tuning hooks (spec §7.1): RandAugment on the 8-bit crop, RandomErasing after normalization.
        var autoAugment: ImageAugment? = nil
        if !a.autoAugment.isEmpty {
            // timm fills with the data mean × 255 and resamples with the training interpolation.
            let f = (0..<3).map { c -> UInt8 in
                let v = d.mean.isEmpty ? 0.5 : d.mean[min(c, d.mean.count - 1)]
                return UInt8(max(0, min(255, (255 * v).rounded())))
            }
            let resample: RandAugment.Resample = a.interpolation == .bilinear ? .bilinear : .bicubic
            let ra = RandAugment(config: a.autoAugment, fill: (f[0], f[1], f[2]), interpolation: resample)
            autoAugment = { img, rng in ra.apply(img, rng: &rng) }
        }
        var erasing: TensorAugment? = nil
        if a.reprob > 0 {
            let re = RandomErasing(probability: a.reprob)
            erasing = { p, c, h, w, rng in _ = re.apply(p, channels: c, height: h, width: w, rng: &rng) }
        }
        return TransformPipeline(crop: crop, size: d.inputSize, scale: (a.scale[0], a.scale[1]), ratio: (a.ratio[0], a.ratio[1]),
                                 interpolation: interp(a.interpolation), hflip: a.hflip, mean: mean, std: std,
                                 channels: spec.model.inChans, smallImage: small, autoAugment: autoAugment, erasing: erasing)
    }
}

/// The first `count` samples of another data set (`data.limit`).
public struct Subset: ImageDataset {
    public let base: ImageDataset
    public let count: Int
    public var classes: [String] { base.classes }
    public func sample(_ i: Int) throws -> (image: Image, label: Int) { try base.sample(i) }
}
