import Foundation
import TesseraCore

/// A source of the two kinds of draws the geometric transforms make. `RandomGenerator` is one;
/// tests feed recorded values to compare with torchvision.
public protocol UniformSource {
    /// Uniform on [0, 1).
    mutating func uniform() -> Float
    /// Uniform integer in `0 ..< n`.
    mutating func int(_ n: Int) -> Int
}

extension RandomGenerator: UniformSource {}

/// torchvision's `RandomResizedCrop` on 8-bit images.
public struct RandomResizedCrop: Sendable {
    public var height: Int
    public var width: Int
    public var scale: (Double, Double)
    public var ratio: (Double, Double)
    public var interpolation: Interpolation
    /// MAE's loop-free `util/crop.py` variant: one draw, w and h clamped to the image.
    public var clampInsteadOfRetry: Bool

    public init(size: Int, scale: (Double, Double) = (0.08, 1.0), ratio: (Double, Double) = (3.0 / 4.0, 4.0 / 3.0),
                interpolation: Interpolation = .bilinear, clampInsteadOfRetry: Bool = false) {
        self.height = size; self.width = size
        self.scale = scale; self.ratio = ratio
        self.interpolation = interpolation
        self.clampInsteadOfRetry = clampInsteadOfRetry
    }

    /// `torch.empty(1).uniform_(lo, hi)`: the value is rounded to float32.
    @inline(__always) static func uniform<R: UniformSource>(_ lo: Double, _ hi: Double, _ rng: inout R) -> Double {
        Double(Float(lo + (hi - lo) * Double(rng.uniform())))
    }

    /// float32 log of the ratio bounds, as `torch.log(torch.tensor(ratio))`.
    @inline(__always) static func logRatio(_ r: (Double, Double)) -> (Double, Double) {
        (Double(Float(log(Double(Float(r.0))))), Double(Float(log(Double(Float(r.1))))))
    }

    /// torchvision's `RandomResizedCrop.get_params`: up to 10 attempts of (area fraction uniform
    /// in `scale`, log-uniform aspect ratio, `w = round(sqrt(area·ratio))`, `h = round(sqrt(area/ratio))`,
    /// accepted when `0 < w ≤ width` and `0 < h ≤ height`, then top and left uniform integers),
    /// otherwise a centre crop with the aspect ratio clamped to `ratio`. Python's round (half to even).
    public static func sampleBox<R: UniformSource>(width: Int, height: Int, scale: (Double, Double),
                                                   ratio: (Double, Double), rng: inout R)
        -> (top: Int, left: Int, h: Int, w: Int) {
        let area = Double(width * height)
        let lr = logRatio(ratio)
        for _ in 0..<10 {
            let targetArea = area * uniform(scale.0, scale.1, &rng)
            let aspect = Double(Float(exp(Double(Float(uniform(lr.0, lr.1, &rng))))))
            let w = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = rng.int(height - h + 1)
                let left = rng.int(width - w + 1)
                return (top, left, h, w)
            }
        }
        let inRatio = Double(width) / Double(height)
        let lo = min(ratio.0, ratio.1), hi = max(ratio.0, ratio.1)
        var w = width, h = height
        if inRatio < lo {
            h = Int((Double(w) / lo).rounded(.toNearestOrEven))
        } else if inRatio > hi {
            w = Int((Double(h) * hi).rounded(.toNearestOrEven))
        }
        return ((height - h) / 2, (width - w) / 2, h, w)
    }

    /// MAE `util/crop.py`: a single draw of area and ratio, w and h clamped to the image, then
    /// uniform top and left.
    public static func sampleBoxClamped<R: UniformSource>(width: Int, height: Int, scale: (Double, Double),
                                                          ratio: (Double, Double), rng: inout R)
        -> (top: Int, left: Int, h: Int, w: Int) {
        let area = Double(width * height)
        let targetArea = area * uniform(scale.0, scale.1, &rng)
        let lr = logRatio(ratio)
        let aspect = Double(Float(exp(Double(Float(uniform(lr.0, lr.1, &rng))))))
        let w = max(1, min(Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven)), width))
        let h = max(1, min(Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven)), height))
        let top = rng.int(height - h + 1)
        let left = rng.int(width - w + 1)
        return (top, left, h, w)
    }

    /// Draws a box for an image of this size (retrying or clamped variant).
    public func box<R: UniformSource>(width imageWidth: Int, height imageHeight: Int, rng: inout R) -> CropBox {
        let b = clampInsteadOfRetry
            ? RandomResizedCrop.sampleBoxClamped(width: imageWidth, height: imageHeight, scale: scale, ratio: ratio, rng: &rng)
            : RandomResizedCrop.sampleBox(width: imageWidth, height: imageHeight, scale: scale, ratio: ratio, rng: &rng)
        return CropBox(top: b.top, left: b.left, height: b.h, width: b.w)
    }

    public func apply<R: UniformSource>(_ image: Image, rng: inout R) -> Image {
        let b = box(width: image.width, height: image.height, rng: &rng)
        return resample(image, width: width, height: height, interpolation: interpolation, box: b)
    }
}

/// Geometry helpers with torchvision's rounding.
public enum Geometry {
    /// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer one
    /// `int(size · long / short)` (truncated). Returns (width, height).
    public static func shorterSide(width: Int, height: Int, to size: Int) -> (width: Int, height: Int) {
        if width <= height {
            return (size, Int(Double(size) * Double(height) / Double(width)))
        }
        return (Int(Double(size) * Double(width) / Double(height)), size)
    }

    /// torchvision `CenterCrop`: top = int(round((h − th) / 2)), left likewise (round half to even).
    public static func centerCrop(width: Int, height: Int, cropWidth: Int, cropHeight: Int) -> CropBox {
        let top = Int((Double(height - cropHeight) / 2.0).rounded(.toNearestOrEven))
        let left = Int((Double(width - cropWidth) / 2.0).rounded(.toNearestOrEven))
        return CropBox(top: top, left: left, height: cropHeight, width: cropWidth)
    }
}

/// `Resize(resize, interpolation)` then `CenterCrop(crop)` computed in one pass (only the kept
/// pixels are resampled). A crop larger than the resized image is zero-padded as torchvision does.
public func resizeCenterCrop(_ image: Image, resize: Int, crop: Int, interpolation: Interpolation) -> Image {
    let (rw, rh) = Geometry.shorterSide(width: image.width, height: image.height, to: resize)
    if crop > rw || crop > rh {
        let r = resample(image, width: rw, height: rh, interpolation: interpolation)
        return centerPad(r, width: max(crop, rw), height: max(crop, rh))
            .cropped(Geometry.centerCrop(width: max(crop, rw), height: max(crop, rh), cropWidth: crop, cropHeight: crop))
    }
    let win = Geometry.centerCrop(width: rw, height: rh, cropWidth: crop, cropHeight: crop)
    return resample(image, width: rw, height: rh, interpolation: interpolation, window: win)
}

/// `Resize(resize)` then torchvision `RandomCrop(crop)` (top, left uniform integers; no draw when
/// the sizes already match), computed in one pass.
public func resizeRandomCrop<R: UniformSource>(_ image: Image, resize: Int, crop: Int, interpolation: Interpolation,
                                               rng: inout R) -> Image {
    let (rw, rh) = Geometry.shorterSide(width: image.width, height: image.height, to: resize)
    precondition(crop <= rw && crop <= rh, "tessera: RandomCrop \(crop) larger than the resized image \(rw)x\(rh)")
    var top = 0, left = 0
    if !(rw == crop && rh == crop) {
        top = rng.int(rh - crop + 1)
        left = rng.int(rw - crop + 1)
    }
    return resample(image, width: rw, height: rh, interpolation: interpolation,
                    window: CropBox(top: top, left: left, height: crop, width: crop))
}

/// Zero padding that centres the image in `width × height` (extra pixel at the right/bottom).
public func centerPad(_ image: Image, width: Int, height: Int, fill: UInt8 = 0) -> Image {
    if width == image.width && height == image.height { return image }
    precondition(width >= image.width && height >= image.height, "tessera: cannot pad to a smaller size")
    let c = image.channels
    var out = Image(width: width, height: height, channels: c, fill: fill)
    let top = (height - image.height) / 2, left = (width - image.width) / 2
    out.pixels.withUnsafeMutableBufferPointer { d in
        image.pixels.withUnsafeBufferPointer { s in
            for y in 0..<image.height {
                (d.baseAddress! + ((y + top) * width + left) * c)
                    .update(from: s.baseAddress! + y * image.width * c, count: image.width * c)
            }
        }
    }
    return out
}

extension Image {
    /// The pixels inside `box` (copied).
    public func cropped(_ box: CropBox) -> Image {
        precondition(box.top >= 0 && box.left >= 0 && box.top + box.height <= height && box.left + box.width <= width,
                     "tessera: crop \(box) outside a \(width)x\(height) image")
        var out = Image(width: box.width, height: box.height, channels: channels)
        out.pixels.withUnsafeMutableBufferPointer { d in
            pixels.withUnsafeBufferPointer { s in
                for y in 0..<box.height {
                    (d.baseAddress! + y * box.width * channels)
                        .update(from: s.baseAddress! + ((y + box.top) * width + box.left) * channels, count: box.width * channels)
                }
            }
        }
        return out
    }

    /// Mirror left–right.
    public func flippedHorizontally() -> Image {
        var out = self
        let c = channels, w = width
        out.pixels.withUnsafeMutableBufferPointer { d in
            pixels.withUnsafeBufferPointer { s in
                for y in 0..<height {
                    let sr = s.baseAddress! + y * w * c, dr = d.baseAddress! + y * w * c
                    for x in 0..<w {
                        for ch in 0..<c { dr[x * c + ch] = sr[(w - 1 - x) * c + ch] }
                    }
                }
            }
        }
        return out
    }
}

/// ToTensor (x / 255) and Normalize ((x − mean) / std) in float32, HWC bytes → CHW floats.
/// Float-exact with torchvision (a 256-entry table per channel computed with the same float ops).
/// A 1-channel image written into `outChannels = 3` is repeated (grayscale → RGB).
public struct Normalizer: Sendable {
    public let mean: [Float]
    public let std: [Float]
    /// `table[c · 256 + v]`.
    let table: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count && !mean.isEmpty, "tessera: mean and std need the same length")
        self.mean = mean
        self.std = std
        var t = [Float](repeating: 0, count: 256 * mean.count)
        for c in 0..<mean.count {
            for v in 0..<256 { t[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] }
        }
        table = t
    }

    /// A table mapping byte v to `scale · v / 255 + shift` (CAE's `map_pixels`: 0.8, 0.1).
    public init(affineScale: Float, shift: Float, channels: Int = 3) {
        mean = [Float](repeating: 0, count: channels)
        std = [Float](repeating: 1, count: channels)
        var t = [Float](repeating: 0, count: 256 * channels)
        for c in 0..<channels {
            for v in 0..<256 { t[c * 256 + v] = affineScale * (Float(v) / 255) + shift }
        }
        table = t
    }

    public static let imagenet = Normalizer(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    public var channels: Int { mean.count }

    /// Writes `channels × H × W` floats to `out`.
    public func write(_ image: Image, to out: UnsafeMutablePointer<Float>) {
        let n = image.width * image.height
        let oc = channels
        precondition(image.channels == oc || image.channels == 1,
                     "tessera: cannot normalize a \(image.channels)-channel image with \(oc) channel statistics")
        table.withUnsafeBufferPointer { tb in
            image.pixels.withUnsafeBufferPointer { px in
                let t = tb.baseAddress!, p = px.baseAddress!
                if image.channels == 1 {
                    for c in 0..<oc {
                        let tc = t + c * 256, o = out + c * n
                        for i in 0..<n { o[i] = tc[Int(p[i])] }
                    }
                } else if oc == 3 {
                    let o0 = out, o1 = out + n, o2 = out + 2 * n
                    let t0 = t, t1 = t + 256, t2 = t + 512
                    for i in 0..<n {
                        o0[i] = t0[Int(p[3 * i])]
                        o1[i] = t1[Int(p[3 * i + 1])]
                        o2[i] = t2[Int(p[3 * i + 2])]
                    }
                } else {
                    for c in 0..<oc {
                        let tc = t + c * 256, o = out + c * n
                        for i in 0..<n { o[i] = tc[Int(p[i * oc + c])] }
                    }
                }
            }
        }
    }

    public func callAsFunction(_ image: Image) -> [Float] {
        var out = [Float](repeating: 0, count: channels * image.width * image.height)
        out.withUnsafeMutableBufferPointer { write(image, to: $0.baseAddress!) }
        return out
    }
}

/// CAE's two views of one crop: flip (p = 0.5) first, one RandomResizedCrop box, then the crop
/// resized to `size` (bicubic, ImageNet-normalized by the caller's pipeline) and to `secondSize`
/// (Lanczos, for the tokenizer, mapped with `0.8 · x / 255 + 0.1`).
public func caeTwoViews<R: UniformSource>(_ image: Image, size: Int = 224, secondSize: Int = 112,
                                          scale: (Double, Double) = (0.08, 1.0),
                                          ratio: (Double, Double) = (3.0 / 4.0, 4.0 / 3.0),
                                          flipProbability: Double = 0.5, rng: inout R) -> (main: Image, second: Image) {
    var img = image
    if Double(rng.uniform()) < flipProbability { img = img.flippedHorizontally() }
    let b = RandomResizedCrop(size: size, scale: scale, ratio: ratio).box(width: img.width, height: img.height, rng: &rng)
    let main = resample(img, width: size, height: size, interpolation: .bicubic, box: b)
    let second = resample(img, width: secondSize, height: secondSize, interpolation: .lanczos, box: b)
    return (main, second)
}
