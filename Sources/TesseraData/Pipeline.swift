import TesseraCore

/// The geometric part of a pipeline.
public enum CropKind: String, Sendable, CaseIterable {
    /// torchvision RandomResizedCrop (10 attempts + centre fallback).
    case randomResizedCrop
    /// MAE util/crop.py: one draw, clamped to the image.
    case randomResizedCropClamped
    /// Resize(shorter side = resize) + CenterCrop(size): the eval transform.
    case resizeCenterCrop
    /// Resize(shorter side = resize) + RandomCrop(size): SemAIM's linear probe.
    case resizeRandomCrop
    /// Resize to exactly size × size (small images).
    case resize
    /// No geometry when the image is already size × size (e.g. after `smallImage` padding); any other
    /// size falls back to Resize + CenterCrop.
    case none
}

/// What to do first with images smaller than the model input (Fashion-MNIST 28 → 32).
public enum SmallImagePolicy: Sendable, Equatable {
    /// Centre zero-padding to side × side (torchvision Pad with (side − w)/2 each side).
    case pad(to: Int)
    /// Plain resize to side × side with the pipeline's interpolation.
    case resize(to: Int)
}

/// Hook after the flip, on 8-bit RGB images (RandAugment).
public typealias ImageAugment = @Sendable (Image, inout RandomGenerator) -> Image
/// Hook after normalization, on a CHW float buffer (RandomErasing): (pointer, C, H, W, rng).
public typealias TensorAugment = @Sendable (UnsafeMutablePointer<Float>, Int, Int, Int, inout RandomGenerator) -> Void

/// A second output of the same crop (CAE's tokenizer view).
public struct SecondView: Sendable {
    public var size: Int
    public var interpolation: Interpolation
    public var normalizer: Normalizer
    public init(size: Int = 112, interpolation: Interpolation = .lanczos,
                normalizer: Normalizer = Normalizer(affineScale: 0.8, shift: 0.1)) {
        self.size = size; self.interpolation = interpolation; self.normalizer = normalizer
    }
}

/// A full sample transform: geometry, flip, optional augment hooks, ToTensor + Normalize.
///
/// Order (training): smallImage → [flip if flipBeforeCrop] → crop/resize → [flip] → autoAugment
/// → to float CHW + normalize → erasing. In `eval` mode: smallImage → Resize(resize) +
/// CenterCrop(size) (or the non-random kinds as given) with no flip and no hooks.
/// Random draws: crop first, then the flip draw (torchvision order), or flip first with
/// `flipBeforeCrop` (CAE).
public struct TransformPipeline: Sendable {
    public var crop: CropKind
    public var size: Int
    /// Shorter side for the resize kinds; default `Int(size / 0.875)` (256 for 224).
    public var resize: Int
    public var scale: (Double, Double)
    public var ratio: (Double, Double)
    public var interpolation: Interpolation
    /// Horizontal flip probability (0 = off).
    public var hflip: Double
    public var flipBeforeCrop: Bool
    public var normalizer: Normalizer
    /// Output channels: 3 (grayscale repeated) or 1 (grayscale data sets kept gray).
    public var channels: Int
    public var smallImage: SmallImagePolicy?
    public var eval: Bool
    public var autoAugment: ImageAugment?
    public var erasing: TensorAugment?
    public var secondView: SecondView?

    public init(crop: CropKind = .randomResizedCrop, size: Int = 224, resize: Int? = nil,
                scale: (Double, Double) = (0.08, 1.0), ratio: (Double, Double) = (3.0 / 4.0, 4.0 / 3.0),
                interpolation: Interpolation = .bicubic, hflip: Double = 0.5, flipBeforeCrop: Bool = false,
                mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225], channels: Int = 3,
                smallImage: SmallImagePolicy? = nil, eval: Bool = false,
                autoAugment: ImageAugment? = nil, erasing: TensorAugment? = nil, secondView: SecondView? = nil) {
        precondition(channels == 1 || channels == 3, "tessera: pipeline channels must be 1 or 3")
        precondition(mean.count == channels && std.count == channels,
                     "tessera: mean/std need \(channels) values, got \(mean.count)/\(std.count)")
        self.crop = crop
        self.size = size
        self.resize = resize ?? Int(Double(size) / 0.875)
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation
        self.hflip = hflip
        self.flipBeforeCrop = flipBeforeCrop
        self.normalizer = Normalizer(mean: mean, std: std)
        self.channels = channels
        self.smallImage = smallImage
        self.eval = eval
        self.autoAugment = autoAugment
        self.erasing = erasing
        self.secondView = secondView
    }

    /// MAE/SAIM/SemAIM pretraining: RRC(224, scale (0.2, 1), bicubic) + flip + ImageNet normalize.
    public static func maePretrain(size: Int = 224) -> TransformPipeline {
        TransformPipeline(crop: .randomResizedCrop, size: size, scale: (0.2, 1.0), interpolation: .bicubic)
    }

    /// CAE pretraining: flip first, one RRC box (0.08–1), 224 bicubic ImageNet view + 112 Lanczos
    /// `map_pixels` view.
    public static func caePretrain(size: Int = 224, secondSize: Int = 112) -> TransformPipeline {
        TransformPipeline(crop: .randomResizedCrop, size: size, scale: (0.08, 1.0), interpolation: .bicubic,
                          flipBeforeCrop: true, secondView: SecondView(size: secondSize))
    }

    /// Eval: Resize(size / 0.875) + CenterCrop(size), bicubic.
    public static func evaluation(size: Int = 224, interpolation: Interpolation = .bicubic) -> TransformPipeline {
        TransformPipeline(crop: .resizeCenterCrop, size: size, interpolation: interpolation, hflip: 0, eval: true)
    }

    /// Shape of one output sample, [C, H, W].
    public var outputShape: [Int] { [channels, size, size] }
    public var secondShape: [Int]? { secondView.map { [$0.normalizer.channels, $0.size, $0.size] } }

    /// The 8-bit image(s) after geometry, flip and autoAugment (before normalization).
    public func augment(_ input: Image, rng: inout RandomGenerator) -> (main: Image, second: Image?) {
        // A colour image in a 1-channel pipeline is converted to luminance, as PIL's convert("L").
        var img = channels == 1 && input.channels == 3 ? input.gray() : input
        switch smallImage {
        case .pad(let s)? where img.width < s || img.height < s:
            img = centerPad(img, width: max(s, img.width), height: max(s, img.height))
        case .resize(let s)? where img.width != s || img.height != s:
            img = resample(img, width: s, height: s, interpolation: interpolation)
        default: break
        }
        let training = !eval
        if training && flipBeforeCrop && hflip > 0 && Double(rng.uniform()) < hflip {
            img = img.flippedHorizontally()
        }
        var box: CropBox? = nil
        var main: Image
        let kind: CropKind = eval && (crop == .randomResizedCrop || crop == .randomResizedCropClamped || crop == .resizeRandomCrop)
            ? .resizeCenterCrop : crop
        switch kind {
        case .randomResizedCrop, .randomResizedCropClamped:
            let rrc = RandomResizedCrop(size: size, scale: scale, ratio: ratio, interpolation: interpolation,
                                        clampInsteadOfRetry: kind == .randomResizedCropClamped)
            let b = rrc.box(width: img.width, height: img.height, rng: &rng)
            box = b
            main = resample(img, width: size, height: size, interpolation: interpolation, box: b)
        case .resizeCenterCrop:
            main = resizeCenterCrop(img, resize: resize, crop: size, interpolation: interpolation)
        case .resizeRandomCrop:
            main = resizeRandomCrop(img, resize: resize, crop: size, interpolation: interpolation, rng: &rng)
        case .resize:
            main = img.width == size && img.height == size ? img
                : resample(img, width: size, height: size, interpolation: interpolation)
        case .none:
            // An image of another size (a photo given to a Fashion-MNIST pipeline, say) is resized and
            // centre-cropped rather than copied past the end of the output (release builds drop
            // preconditions).
            main = img.width == size && img.height == size ? img
                : resizeCenterCrop(img, resize: resize, crop: size, interpolation: interpolation)
        }
        var second: Image? = nil
        if let sv = secondView {
            let b = box ?? CropBox(top: 0, left: 0, height: img.height, width: img.width)
            second = resample(img, width: sv.size, height: sv.size, interpolation: sv.interpolation, box: b)
        }
        if training && !flipBeforeCrop && hflip > 0 && Double(rng.uniform()) < hflip {
            main = main.flippedHorizontally()
            second = second?.flippedHorizontally()
        }
        if training, let aa = autoAugment {
            main = aa(channels == 3 ? main.rgb() : main, &rng)
        }
        return (main, second)
    }

    /// Transforms one image into `out` (C·size·size floats) and, with a second view, `second`.
    public func apply(_ input: Image, rng: inout RandomGenerator, into out: UnsafeMutablePointer<Float>,
                      second: UnsafeMutablePointer<Float>? = nil) {
        let (main, sec) = augment(input, rng: &rng)
        normalizer.write(main, to: out)
        if let sv = secondView, let sec, let second { sv.normalizer.write(sec, to: second) }
        if !eval, let erase = erasing { erase(out, channels, size, size, &rng) }
    }

    /// Convenience: the normalized CHW floats of the main view.
    public func apply(_ input: Image, rng: inout RandomGenerator) -> [Float] {
        var out = [Float](repeating: 0, count: channels * size * size)
        out.withUnsafeMutableBufferPointer { apply(input, rng: &rng, into: $0.baseAddress!) }
        return out
    }
}
