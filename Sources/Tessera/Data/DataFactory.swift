import TesseraConfig
import TesseraCore
import TesseraData

/// The data sets and sample transforms named by a config's `data:` and `augment:` sections.
extension Registry {
    /// The training or evaluation data set named by `data:` (with `limit` applied).
    public static func dataset(_ spec: ExperimentSpec, train: Bool) throws -> ImageDataset {
        let d = spec.data
        let split = train ? d.trainSplit : d.valSplit
        let base: ImageDataset
        switch d.dataset {
        case .fashionMNIST, .idx:
            base = try FashionMNIST(root: d.path, split: split)
        case .imagefolder:
            base = try ImageFolder(root: d.path, split: split, decoder: JPEGDecoder(maxPixels: d.maxImagePixels))
        case .images:
            base = try ImageFiles(root: d.path, split: split, decoder: JPEGDecoder(maxPixels: d.maxImagePixels))
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
                                 interpolation: interp(a.interpolation), hflip: a.hflip, flipBeforeCrop: a.flipBeforeCrop, mean: mean, std: std,
                                 channels: spec.model.inChans, smallImage: small, autoAugment: autoAugment, erasing: erasing,
                                 secondView: a.tokenizerSize > 0 ? SecondView(size: a.tokenizerSize) : nil)
    }
}

/// The first `count` samples of another data set (`data.limit`).
public struct Subset: ImageDataset {
    public let base: ImageDataset
    public let count: Int
    public var classes: [String] { base.classes }
    public func sample(_ i: Int) throws -> (image: Image, label: Int) { try base.sample(i) }
}

/// Every `stride`-th sample of `base` from `offset`: one rank's share of an evaluation set, each
/// sample on exactly one rank and none repeated (unlike the padded training shards).
public struct Strided: ImageDataset {
    public let base: ImageDataset
    public let offset: Int
    public let stride: Int
    public var count: Int { base.count > offset ? (base.count - offset + stride - 1) / stride : 0 }
    public var classes: [String] { base.classes }
    public func sample(_ i: Int) throws -> (image: Image, label: Int) { try base.sample(offset + i * stride) }
    /// The index in `base` of local sample `i`.
    public func global(_ i: Int) -> Int { offset + i * stride }

    /// This process's share of `base` (all of it in a single-process run).
    public static func share(of base: ImageDataset) -> Strided {
        Strided(base: base, offset: Distributed.rank, stride: Distributed.size)
    }
}
