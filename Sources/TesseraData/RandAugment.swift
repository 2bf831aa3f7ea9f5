import Foundation
import TesseraCore

/// timm's RandAugment (`rand_augment_transform`) on 8-bit images, with PIL's arithmetic for every op.
///
/// Per image: `numLayers` ops are drawn uniformly **with replacement** from `ops`; each fires with
/// probability `probability` (0.5); its magnitude is `N(magnitude, magnitudeStd)` (uniform on
/// `[0, magnitude]` when the std is infinite, i.e. `mstd` > 100), clipped to `[0, magnitudeMax]`;
/// the signed level functions negate their value with probability 1/2.
///
/// Interpolation: timm's `AugmentOp` picks `random.choice([BILINEAR, BICUBIC])` per call **unless**
/// the `interpolation` hparam is set. `create_transform` sets it whenever the train interpolation is
/// not `'random'`, and MAE/SAIM/SemAIM/CAE all pass `'bicubic'`, so the fine-tuning recipes rotate,
/// shear and translate with BICUBIC. That is the default here; `interpolation: nil` restores timm's
/// per-call random choice.
public struct RandAugment: Sendable {
    /// The resampling filter of the geometric ops (PIL's `Image.transform` filters).
    public enum Resample: String, Sendable, CaseIterable {
        case bilinear, bicubic
    }

    /// timm `_RAND_TRANSFORMS` (used without `inc1`).
    public static let standardOps = [
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
        "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
    ]
    /// timm `_RAND_INCREASING_TRANSFORMS` (`inc1`).
    public static let increasingOps = [
        "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
        "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
        "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
    ]
    /// Every op name `op(_:image:magnitude:sign:)` accepts.
    public static let allOps: [String] = standardOps + [
        "PosterizeIncreasing", "PosterizeOriginal", "SolarizeIncreasing", "ColorIncreasing",
        "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "TranslateX", "TranslateY",
    ]

    public var ops: [String]
    public var numLayers: Int
    public var magnitude: Double
    /// Standard deviation of the magnitude noise; `.infinity` means uniform on `[0, magnitude]`.
    public var magnitudeStd: Double
    public var magnitudeMax: Double
    /// Probability that each drawn op is applied (timm: 0.5).
    public var probability: Double
    public var fill: (UInt8, UInt8, UInt8)
    /// `nil`: a random choice between bilinear and bicubic on every geometric op (timm's default when
    /// no interpolation is configured).
    public var interpolation: Resample?
    /// `translate_pct` for TranslateXRel/YRel (timm default 0.45).
    public var translatePct: Double
    /// `translate_const` in pixels for the absolute TranslateX/Y ops (timm: `int(img_size_min * 0.45)`).
    public var translateConst: Double

    /// Parses a timm config such as `rand-m9-mstd0.5-inc1`: sections `m` (magnitude, default 10),
    /// `n` (ops per image, default 2), `mstd` (magnitude std, > 100 means uniform), `mmax` (upper
    /// clip, default 10) and `inc` (the "increasing" op set). A malformed config stops the program;
    /// use `validate(config:)` first where the string comes from a user.
    public init(config: String, fill: (UInt8, UInt8, UInt8) = (124, 116, 104),
                interpolation: Resample? = .bicubic, translateConst: Double = 100) {
        let parsed: Parsed
        do { parsed = try RandAugment.parse(config) } catch {
            preconditionFailure("tessera: \(error)")
        }
        self.ops = parsed.increasing ? RandAugment.increasingOps : RandAugment.standardOps
        self.numLayers = parsed.numLayers
        self.magnitude = parsed.magnitude
        self.magnitudeStd = parsed.magnitudeStd
        self.magnitudeMax = parsed.magnitudeMax
        self.probability = 0.5
        self.fill = fill
        self.interpolation = interpolation
        self.translatePct = 0.45
        self.translateConst = translateConst
    }

    public struct ConfigError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Throws a `ConfigError` describing what is wrong with a RandAugment config string.
    public static func validate(config: String) throws { _ = try parse(config) }

    struct Parsed {
        var magnitude = 10.0, magnitudeStd = 0.0, magnitudeMax = 10.0
        var numLayers = 2
        var increasing = false
    }

    static func parse(_ config: String) throws -> Parsed {
        let sections = config.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard let head = sections.first, head == "rand" else {
            throw ConfigError(description: "RandAugment config '\(config)' must start with 'rand'")
        }
        var p = Parsed()
        for section in sections.dropFirst() {
            // timm splits each section at its first digit: key = the letters before it, value = the rest.
            guard let digit = section.firstIndex(where: { $0.isASCII && $0.isNumber }) else { continue }
            let key = String(section[..<digit]), text = String(section[digit...])
            guard let value = Double(text) else {
                throw ConfigError(description: "RandAugment config '\(config)': '\(text)' in section '\(section)' is not a number")
            }
            switch key {
            case "m": p.magnitude = value
            case "n":
                guard value >= 0, value == value.rounded() else {
                    throw ConfigError(description: "RandAugment config '\(config)': n must be a non-negative integer")
                }
                p.numLayers = Int(value)
            case "mstd": p.magnitudeStd = value > 100 ? .infinity : value
            case "mmax": p.magnitudeMax = value
            case "inc": p.increasing = value != 0
            case "w":
                throw ConfigError(description: "RandAugment config '\(config)': weighted op choice ('w') is not supported")
            default:
                throw ConfigError(description: "RandAugment config '\(config)': unknown section '\(section)'")
            }
        }
        return p
    }

    /// Applies the policy to one image.
    public func apply(_ image: Image, rng: inout RandomGenerator) -> Image {
        var img = image
        if ops.isEmpty { return img }
        for _ in 0..<numLayers {
            let name = ops[rng.int(ops.count)]
            if probability < 1, rng.uniformDouble() > probability { continue }
            var m = magnitude
            if magnitudeStd == .infinity {
                m = rng.uniformDouble() * magnitude
            } else if magnitudeStd > 0 {
                m = magnitude + magnitudeStd * RandAugment.gaussian(&rng)
            }
            m = max(0, min(m, magnitudeMax))
            let sign = rng.uniformDouble() > 0.5 ? -1 : 1
            let resample = interpolation ?? (rng.int(2) == 0 ? .bilinear : .bicubic)
            img = RandAugment.op(name, image: img, magnitude: m, sign: sign, fill: fill,
                                 interpolation: resample, translatePct: translatePct,
                                 translateConst: translateConst)
        }
        return img
    }

    static func gaussian(_ rng: inout RandomGenerator) -> Double {
        let u1 = max(rng.uniformDouble(), 1e-300), u2 = rng.uniformDouble()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// The argument timm's level function gives op `name` at `magnitude` (0...10 scale), negated
    /// when `sign < 0` for the signed ops; `nil` for the ops that take none.
    /// Rotate: degrees; enhance ops: blend factor; shear: factor; TranslateXRel/YRel: fraction of the
    /// size; TranslateX/Y: pixels; posterize: bits kept; solarize: threshold; SolarizeAdd: addend.
    public static func levelArgument(_ name: String, magnitude: Double, sign: Int = 1,
                                     translatePct: Double = 0.45, translateConst: Double = 100) -> Double? {
        let level = magnitude / 10.0
        let s: Double = sign < 0 ? -1 : 1
        switch name {
        case "AutoContrast", "Equalize", "Invert": return nil
        case "Rotate": return s * (level * 30.0)
        case "Posterize": return Double(Int(level * 4))
        case "PosterizeIncreasing": return Double(4 - Int(level * 4))
        case "PosterizeOriginal": return Double(Int(level * 4) + 4)
        case "Solarize": return Double(Int(level * 256))
        case "SolarizeIncreasing": return Double(256 - Int(level * 256))
        case "SolarizeAdd": return Double(Int(level * 110))
        case "Color", "Contrast", "Brightness", "Sharpness": return level * 1.8 + 0.1
        case "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing":
            return max(0.1, 1.0 + s * (level * 0.9))
        case "ShearX", "ShearY": return s * (level * 0.3)
        case "TranslateXRel", "TranslateYRel": return s * (level * translatePct)
        case "TranslateX", "TranslateY": return s * (level * translateConst)
        default: preconditionFailure("tessera: unknown RandAugment op '\(name)'")
        }
    }

    /// One op at a fixed magnitude and sign, exactly as timm's `AugmentOp` would run it after drawing
    /// them (no probability check, no magnitude noise).
    public static func op(_ name: String, image: Image, magnitude: Double, sign: Int = 1,
                          fill: (UInt8, UInt8, UInt8) = (124, 116, 104), interpolation: Resample = .bicubic,
                          translatePct: Double = 0.45, translateConst: Double = 100) -> Image {
        let arg = levelArgument(name, magnitude: magnitude, sign: sign,
                                translatePct: translatePct, translateConst: translateConst) ?? 0
        switch name {
        case "AutoContrast": return PIL.autocontrast(image)
        case "Equalize": return PIL.equalize(image)
        case "Invert": return PIL.invert(image)
        case "Rotate": return PIL.rotate(image, degrees: arg, resample: interpolation, fill: fill)
        case "Posterize", "PosterizeIncreasing", "PosterizeOriginal":
            return PIL.posterize(image, bits: Int(arg))
        case "Solarize", "SolarizeIncreasing": return PIL.solarize(image, threshold: Int(arg))
        case "SolarizeAdd": return PIL.solarizeAdd(image, add: Int(arg), threshold: 128)
        case "Color", "ColorIncreasing": return PIL.color(image, factor: arg)
        case "Contrast", "ContrastIncreasing": return PIL.contrast(image, factor: arg)
        case "Brightness", "BrightnessIncreasing": return PIL.brightness(image, factor: arg)
        case "Sharpness", "SharpnessIncreasing": return PIL.sharpness(image, factor: arg)
        case "ShearX": return PIL.affine(image, [1, arg, 0, 0, 1, 0], resample: interpolation, fill: fill)
        case "ShearY": return PIL.affine(image, [1, 0, 0, arg, 1, 0], resample: interpolation, fill: fill)
        case "TranslateXRel":
            return PIL.affine(image, [1, 0, arg * Double(image.width), 0, 1, 0], resample: interpolation, fill: fill)
        case "TranslateYRel":
            return PIL.affine(image, [1, 0, 0, 0, 1, arg * Double(image.height)], resample: interpolation, fill: fill)
        case "TranslateX": return PIL.affine(image, [1, 0, arg, 0, 1, 0], resample: interpolation, fill: fill)
        case "TranslateY": return PIL.affine(image, [1, 0, 0, 0, 1, arg], resample: interpolation, fill: fill)
        default: preconditionFailure("tessera: unknown RandAugment op '\(name)'")
        }
    }
}

// MARK: - PIL primitives

extension RandAugment {
    /// Pillow's image operations with its integer and float arithmetic (ImageOps, ImageEnhance,
    /// `Image.transform(AFFINE)`, `Image.rotate`, `ImageFilter.SMOOTH`, `Image.blend`).
    /// Channels are processed independently; `fill` uses its first component on 1-channel images.
    public enum PIL {
        // MARK: lookup tables

        /// Maps every byte of channel `c` through `table[c * 256 + value]` (`table` has 256 or
        /// 256·channels entries).
        public static func lookup(_ image: Image, _ table: [UInt8]) -> Image {
            let ch = image.channels, n = image.width * image.height
            precondition(table.count == 256 || table.count == 256 * ch, "tessera: lookup table needs 256 or 256·channels entries")
            let perChannel = table.count != 256
            var out = [UInt8](repeating: 0, count: image.pixels.count)
            image.pixels.withUnsafeBufferPointer { src in
                table.withUnsafeBufferPointer { lut in
                    out.withUnsafeMutableBufferPointer { dst in
                        let s = src.baseAddress!, t = lut.baseAddress!, d = dst.baseAddress!
                        if !perChannel || ch == 1 {
                            for i in 0..<(n * ch) { d[i] = t[Int(s[i])] }
                        } else {
                            for p in 0..<n {
                                for c in 0..<ch { d[p * ch + c] = t[c &* 256 &+ Int(s[p * ch + c])] }
                            }
                        }
                    }
                }
            }
            return Image(width: image.width, height: image.height, channels: ch, pixels: out)
        }

        /// Per-channel histograms, 256 bins each, channel-major.
        public static func histogram(_ image: Image) -> [Int] {
            let ch = image.channels, n = image.width * image.height
            var h = [Int](repeating: 0, count: 256 * ch)
            image.pixels.withUnsafeBufferPointer { src in
                h.withUnsafeMutableBufferPointer { hist in
                    let s = src.baseAddress!, hp = hist.baseAddress!
                    for p in 0..<n {
                        for c in 0..<ch { hp[c &* 256 &+ Int(s[p * ch + c])] += 1 }
                    }
                }
            }
            return h
        }

        public static func invert(_ image: Image) -> Image {
            lookup(image, (0..<256).map { UInt8(255 - $0) })
        }

        /// `ImageOps.posterize`: keeps the `bits` most significant bits. `bits <= 0` gives black
        /// (what Pillow < 10 did for `posterize(img, 0)`, reached by PosterizeIncreasing at magnitude
        /// 10; newer Pillow raises instead), `bits >= 8` is the identity (timm's shortcut).
        public static func posterize(_ image: Image, bits: Int) -> Image {
            if bits >= 8 { return image }
            let mask: Int = bits <= 0 ? 0 : (~((1 << (8 - bits)) - 1)) & 0xFF
            return lookup(image, (0..<256).map { UInt8($0 & mask) })
        }

        /// `ImageOps.solarize`: values `>= threshold` are inverted.
        public static func solarize(_ image: Image, threshold: Int) -> Image {
            lookup(image, (0..<256).map { UInt8($0 < threshold ? $0 : 255 - $0) })
        }

        /// timm `solarize_add`: values `< threshold` get `add` added, saturating at 255.
        public static func solarizeAdd(_ image: Image, add: Int, threshold: Int = 128) -> Image {
            lookup(image, (0..<256).map { UInt8($0 < threshold ? max(0, min(255, $0 + add)) : $0) })
        }

        /// `ImageOps.autocontrast(image)` (cutoff 0): each channel's [lo, hi] stretched to [0, 255].
        public static func autocontrast(_ image: Image) -> Image {
            let ch = image.channels
            let hist = histogram(image)
            var table = [UInt8](repeating: 0, count: 256 * ch)
            for c in 0..<ch {
                let base = c * 256
                var lo = 0, hi = 255
                while lo < 256, hist[base + lo] == 0 { lo += 1 }
                while hi >= 0, hist[base + hi] == 0 { hi -= 1 }
                if hi <= lo {
                    for i in 0..<256 { table[base + i] = UInt8(i) }
                } else {
                    let scale = 255.0 / Double(hi - lo)
                    let offset = Double(-lo) * scale
                    for i in 0..<256 {
                        let v = Int(Double(i) * scale + offset)  // Python int(): toward zero
                        table[base + i] = UInt8(max(0, min(255, v)))
                    }
                }
            }
            return lookup(image, table)
        }

        /// `ImageOps.equalize(image)`: per-channel histogram equalization with Pillow's integer steps
        /// (`step = (N − count of the last used level) // 255`); table entries above 255 saturate, as
        /// `Image.point` does.
        public static func equalize(_ image: Image) -> Image {
            let ch = image.channels
            let hist = histogram(image)
            var table = [UInt8](repeating: 0, count: 256 * ch)
            for c in 0..<ch {
                let base = c * 256
                var used = 0, total = 0, last = 0
                for i in 0..<256 where hist[base + i] != 0 {
                    used += 1; total += hist[base + i]; last = hist[base + i]
                }
                let step = used <= 1 ? 0 : (total - last) / 255
                if step == 0 {
                    for i in 0..<256 { table[base + i] = UInt8(i) }
                } else {
                    var n = step / 2
                    for i in 0..<256 {
                        table[base + i] = UInt8(min(255, n / step))
                        n += hist[base + i]
                    }
                }
            }
            return lookup(image, table)
        }

        // MARK: ImageEnhance

        /// `Image.blend(a, b, alpha)`: `a + alpha·(b − a)` in single precision, truncated; clipped to
        /// [0, 255] when extrapolating (alpha outside [0, 1]).
        public static func blend(_ a: Image, _ b: Image, alpha: Double) -> Image {
            precondition(a.width == b.width && a.height == b.height && a.channels == b.channels,
                         "tessera: blend needs images of one shape")
            let al = Float(alpha)
            if al == 0 { return a }
            if al == 1 { return b }
            var out = [UInt8](repeating: 0, count: a.pixels.count)
            let count = out.count
            a.pixels.withUnsafeBufferPointer { pa in
                b.pixels.withUnsafeBufferPointer { pb in
                    out.withUnsafeMutableBufferPointer { po in
                        let s1 = pa.baseAddress!, s2 = pb.baseAddress!, d = po.baseAddress!
                        for i in 0..<count {
                            let x1 = Int(s1[i])
                            let t = Float(x1) + al * Float(Int(s2[i]) - x1)
                            d[i] = t <= 0 ? 0 : (t >= 255 ? 255 : UInt8(t))
                        }
                    }
                }
            }
            return Image(width: a.width, height: a.height, channels: a.channels, pixels: out)
        }

        /// Pillow's RGB → L conversion: `(19595·R + 38470·G + 7471·B + 0x8000) >> 16`.
        public static func luminance(_ image: Image) -> [UInt8] {
            let n = image.width * image.height
            if image.channels == 1 { return image.pixels }
            precondition(image.channels == 3, "tessera: luminance needs a 1- or 3-channel image")
            var out = [UInt8](repeating: 0, count: n)
            image.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    let s = src.baseAddress!, d = dst.baseAddress!
                    for p in 0..<n {
                        let r = Int(s[3 * p]), g = Int(s[3 * p + 1]), b = Int(s[3 * p + 2])
                        d[p] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
                    }
                }
            }
            return out
        }

        /// `ImageEnhance.Color`: blend with the grayscale image (identity on 1-channel images).
        public static func color(_ image: Image, factor: Double) -> Image {
            if image.channels == 1 { return image }
            let gray = luminance(image)
            var deg = [UInt8](repeating: 0, count: image.pixels.count)
            let ch = image.channels
            for p in 0..<gray.count { for c in 0..<ch { deg[p * ch + c] = gray[p] } }
            return blend(Image(width: image.width, height: image.height, channels: ch, pixels: deg), image, alpha: factor)
        }

        /// `ImageEnhance.Contrast`: blend with the constant `int(mean(L) + 0.5)`.
        public static func contrast(_ image: Image, factor: Double) -> Image {
            let gray = luminance(image)
            var hist = [Int](repeating: 0, count: 256)
            for v in gray { hist[Int(v)] += 1 }
            var sum = 0.0
            for i in 0..<256 { sum += Double(i * hist[i]) }
            let mean = gray.isEmpty ? 0 : Int(sum / Double(gray.count) + 0.5)
            let deg = Image(width: image.width, height: image.height, channels: image.channels, fill: UInt8(mean))
            return blend(deg, image, alpha: factor)
        }

        /// `ImageEnhance.Brightness`: blend with black.
        public static func brightness(_ image: Image, factor: Double) -> Image {
            blend(Image(width: image.width, height: image.height, channels: image.channels, fill: 0), image, alpha: factor)
        }

        /// `ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image.
        public static func sharpness(_ image: Image, factor: Double) -> Image {
            blend(smooth(image), image, alpha: factor)
        }

        /// `ImageFilter.SMOOTH`: 3×3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13 in single precision with a
        /// +0.5 rounding offset, truncated; the outermost rows and columns are copied unchanged.
        public static func smooth(_ image: Image) -> Image {
            let w = image.width, h = image.height, ch = image.channels
            if w < 3 || h < 3 { return image }
            var out = image.pixels
            let k1 = Float(1) / Float(13), k5 = Float(5) / Float(13)
            image.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    let s = src.baseAddress!, d = dst.baseAddress!
                    let stride = w * ch
                    for y in 1..<(h - 1) {
                        let above = s + (y - 1) * stride, row = s + y * stride, below = s + (y + 1) * stride
                        let o = d + y * stride
                        for x in 1..<(w - 1) {
                            for c in 0..<ch {
                                let l = (x - 1) * ch + c, m = x * ch + c, r = (x + 1) * ch + c
                                var ss: Float = 0.5
                                // Pillow's order: the row below, the centre row, the row above.
                                ss += Float(below[l]) * k1 + Float(below[m]) * k1 + Float(below[r]) * k1
                                ss += Float(row[l]) * k1 + Float(row[m]) * k5 + Float(row[r]) * k1
                                ss += Float(above[l]) * k1 + Float(above[m]) * k1 + Float(above[r]) * k1
                                o[m] = ss <= 0 ? 0 : (ss >= 255 ? 255 : UInt8(ss))
                            }
                        }
                    }
                }
            }
            return Image(width: w, height: h, channels: ch, pixels: out)
        }

        // MARK: geometry

        /// `Image.transform(size, AFFINE, m, resample, fillcolor=fill)`: output pixel (x, y) samples the
        /// input at `(m0·(x+½) + m1·(y+½) + m2, m3·(x+½) + m4·(y+½) + m5)`; positions outside the
        /// input keep the fill colour. Filters are Pillow's transform filters (bilinear, and its
        /// a = −1 cubic for bicubic), edge-clamped, truncated to 8 bits.
        public static func affine(_ image: Image, _ m: [Double], resample: Resample,
                                  fill: (UInt8, UInt8, UInt8)) -> Image {
            precondition(m.count >= 6, "tessera: an affine transform needs 6 coefficients")
            let w = image.width, h = image.height, ch = image.channels
            precondition(ch <= 4, "tessera: affine supports up to 4 channels")
            let fills: [UInt8] = ch == 1 ? [fill.0] : [fill.0, fill.1, fill.2, 0]
            var out = [UInt8](repeating: 0, count: image.pixels.count)
            let a0 = m[0], a1 = m[1], a2 = m[2], a3 = m[3], a4 = m[4], a5 = m[5]
            let fw = Double(w), fh = Double(h)
            let bicubic = resample == .bicubic
            image.pixels.withUnsafeBufferPointer { src in
                fills.withUnsafeBufferPointer { fp in
                    out.withUnsafeMutableBufferPointer { dst in
                        let s = src.baseAddress!, d = dst.baseAddress!, f = fp.baseAddress!
                        let stride = w * ch
                        for y in 0..<h {
                            let yc = Double(y) + 0.5
                            for x in 0..<w {
                                let xc = Double(x) + 0.5
                                let sx = a0 * xc + a1 * yc + a2
                                let sy = a3 * xc + a4 * yc + a5
                                let o = d + (y * w + x) * ch
                                if !(sx >= 0 && sx < fw && sy >= 0 && sy < fh) {  // (NaN positions fill too)
                                    for c in 0..<ch { o[c] = f[c] }
                                    continue
                                }
                                let px = sx - 0.5, py = sy - 0.5
                                let ix = Int(px.rounded(.down)), iy = Int(py.rounded(.down))
                                let dx = px - Double(ix), dy = py - Double(iy)
                                if bicubic {
                                    let xb = ix - 1, yb = iy - 1
                                    let c0 = clampIndex(xb, w) * ch, c1 = clampIndex(xb + 1, w) * ch
                                    let c2 = clampIndex(xb + 2, w) * ch, c3 = clampIndex(xb + 3, w) * ch
                                    // Rows below the image repeat the previous row's value (Pillow: v2 = v1,
                                    // v3 = v2, v4 = v3), which is what pointing at the previous row gives.
                                    let r0 = s + clampIndex(yb, h) * stride
                                    let r1 = yb + 1 >= 0 && yb + 1 < h ? s + (yb + 1) * stride : r0
                                    let r2 = yb + 2 >= 0 && yb + 2 < h ? s + (yb + 2) * stride : r1
                                    let r3 = yb + 3 >= 0 && yb + 3 < h ? s + (yb + 3) * stride : r2
                                    for c in 0..<ch {
                                        let k0 = c0 + c, k1 = c1 + c, k2 = c2 + c, k3 = c3 + c
                                        let v1 = cubic(Double(r0[k0]), Double(r0[k1]), Double(r0[k2]), Double(r0[k3]), dx)
                                        let v2 = cubic(Double(r1[k0]), Double(r1[k1]), Double(r1[k2]), Double(r1[k3]), dx)
                                        let v3 = cubic(Double(r2[k0]), Double(r2[k1]), Double(r2[k2]), Double(r2[k3]), dx)
                                        let v4 = cubic(Double(r3[k0]), Double(r3[k1]), Double(r3[k2]), Double(r3[k3]), dx)
                                        let v = cubic(v1, v2, v3, v4, dy)
                                        o[c] = v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(v))
                                    }
                                } else {
                                    let c0 = clampIndex(ix, w) * ch, c1 = clampIndex(ix + 1, w) * ch
                                    let r0 = s + clampIndex(iy, h) * stride
                                    let r1 = iy + 1 >= 0 && iy + 1 < h ? s + (iy + 1) * stride : r0
                                    for c in 0..<ch {
                                        let p0 = Int(r0[c0 + c]), q0 = Int(r1[c0 + c])
                                        var v1 = Double(p0) + Double(Int(r0[c1 + c]) - p0) * dx
                                        let v2 = Double(q0) + Double(Int(r1[c1 + c]) - q0) * dx
                                        v1 = v1 + (v2 - v1) * dy
                                        o[c] = v1 <= 0 ? 0 : (v1 >= 255 ? 255 : UInt8(v1))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return Image(width: w, height: h, channels: ch, pixels: out)
        }

        @inline(__always)
        static func clampIndex(_ i: Int, _ n: Int) -> Int { i < 0 ? 0 : (i < n ? i : n - 1) }

        /// Pillow's transform cubic (Geometry.c `BICUBIC`), evaluated in the same order.
        @inline(__always)
        static func cubic(_ v1: Double, _ v2: Double, _ v3: Double, _ v4: Double, _ d: Double) -> Double {
            let p1 = v2
            let p2 = -v1 + v3
            let p3 = 2 * (v1 - v2) + v3 - v4
            let p4 = -v1 + v2 - v3 + v4
            return p1 + d * (p2 + d * (p3 + d * p4))
        }

        /// `Image.rotate(degrees, resample, fillcolor=fill)` (counter-clockwise about the centre, same
        /// size): the angle is reduced mod 360 as Python does, 0 and 180 (and 90/270 on square images)
        /// take Pillow's exact transpose paths, everything else the affine matrix Pillow builds (its
        /// coefficients rounded to 15 decimals).
        public static func rotate(_ image: Image, degrees: Double, resample: Resample,
                                  fill: (UInt8, UInt8, UInt8)) -> Image {
            var angle = fmod(degrees, 360.0)
            if angle < 0 { angle += 360.0 }
            if angle == 0 { return image }
            if angle == 180 { return transpose(image, quarterTurns: 2) }
            if (angle == 90 || angle == 270) && image.width == image.height {
                return transpose(image, quarterTurns: angle == 90 ? 1 : 3)
            }
            let cx = Double(image.width) / 2, cy = Double(image.height) / 2
            let r = -(angle * (Double.pi / 180.0))
            let a = round15(Foundation.cos(r)), b = round15(Foundation.sin(r))
            let d = round15(-Foundation.sin(r)), e = round15(Foundation.cos(r))
            var c = a * -cx + b * -cy + 0.0
            var f = d * -cx + e * -cy + 0.0
            c += cx
            f += cy
            return affine(image, [a, b, c, d, e, f], resample: resample, fill: fill)
        }

        /// Python's `round(x, 15)`: correctly rounded to 15 decimals (via the C library's exact
        /// decimal formatting) and parsed back.
        static func round15(_ x: Double) -> Double {
            var buffer = [CChar](repeating: 0, count: 64)
            let n = withVaList([x]) { args in
                buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress!, 64, "%.15f", args) }
            }
            guard n > 0, n < 64 else { return x }
            let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            return Double(text) ?? x
        }

        /// Counter-clockwise rotation by `quarterTurns` × 90° (Pillow's ROTATE_90/180/270 transposes).
        public static func transpose(_ image: Image, quarterTurns: Int) -> Image {
            let turns = ((quarterTurns % 4) + 4) % 4
            if turns == 0 { return image }
            let w = image.width, h = image.height, ch = image.channels
            let ow = turns == 2 ? w : h, oh = turns == 2 ? h : w
            var out = [UInt8](repeating: 0, count: image.pixels.count)
            image.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    let s = src.baseAddress!, d = dst.baseAddress!
                    for y in 0..<oh {
                        for x in 0..<ow {
                            // Source pixel of output (x, y).
                            let sx: Int, sy: Int
                            switch turns {
                            case 1: sx = w - 1 - y; sy = x           // ROTATE_90 (counter-clockwise)
                            case 2: sx = w - 1 - x; sy = h - 1 - y
                            default: sx = y; sy = h - 1 - x          // ROTATE_270
                            }
                            for c in 0..<ch { d[(y * ow + x) * ch + c] = s[(sy * w + sx) * ch + c] }
                        }
                    }
                }
            }
            return Image(width: ow, height: oh, channels: ch, pixels: out)
        }
    }
}
