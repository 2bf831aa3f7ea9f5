import Foundation

/// Resampling filters with PIL's definitions.
public enum Interpolation: String, Sendable, CaseIterable {
    case nearest, bilinear, bicubic, lanczos

    /// Half-width of the filter at scale 1.
    var support: Double {
        switch self {
        case .nearest: return 0.5
        case .bilinear: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    @inline(__always) func weight(_ x0: Double) -> Double {
        let x = abs(x0)
        switch self {
        case .nearest:
            return x <= 0.5 ? 1 : 0  // not used for resizing (nearest has its own path)
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            // Keys cubic with a = −0.5.
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            if x >= 3 { return 0 }
            return sinc(x) * sinc(x / 3)
        }
    }

    @inline(__always) private func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let px = Double.pi * x
        return sin(px) / px
    }
}

/// A rectangle of an image in pixels: rows `top ..< top + height`, columns `left ..< left + width`.
public struct CropBox: Sendable, Equatable, CustomStringConvertible {
    public var top: Int
    public var left: Int
    public var height: Int
    public var width: Int
    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top; self.left = left; self.height = height; self.width = width
    }
    public var description: String { "(top \(top), left \(left), h \(height), w \(width))" }
}

/// Fixed-point precision of the 8-bit resampling weights (PIL uses 32 − 8 − 2 bits).
let precisionBits = 22

/// Per-output-pixel taps along one axis, already in 8-bit fixed point.
struct AxisWeights {
    /// First input index of each output pixel (absolute, including the crop offset).
    var start: [Int32]
    /// Number of taps of each output pixel.
    var taps: [Int32]
    /// `count × stride` fixed-point weights; row `i` holds output pixel `i`'s taps.
    var weights: [Int32]
    var stride: Int

    /// Output pixels `window` of a resampling of input `offset ..< offset + inSize` to `outSize`
    /// pixels. Pixels outside the input range are never read (the crop-then-resize semantics of
    /// torchvision's `resized_crop`); centres follow PIL: `(i + 0.5) · inSize / outSize`.
    init(inSize: Int, outSize: Int, offset: Int, window: Range<Int>, filter: Interpolation) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        stride = Int(support.rounded(.up)) * 2 + 1
        let n = window.count
        start = [Int32](repeating: 0, count: n)
        taps = [Int32](repeating: 0, count: n)
        weights = [Int32](repeating: 0, count: n * stride)
        var k = [Double](repeating: 0, count: stride)
        let inv = 1 / filterScale
        for (j, i) in window.enumerated() {
            let center = (Double(i) + 0.5) * scale
            // C-style truncation toward zero, then clamped to the input.
            var lo = Int(center - support + 0.5)
            if lo < 0 { lo = 0 }
            var hi = Int(center + support + 0.5)
            if hi > inSize { hi = inSize }
            let m = max(hi - lo, 0)
            var total = 0.0
            for t in 0..<m {
                let w = filter.weight((Double(t + lo) - center + 0.5) * inv)
                k[t] = w
                total += w
            }
            for t in 0..<m {
                let w = total != 0 ? k[t] / total : k[t]
                let fixed = w * Double(1 << precisionBits)
                weights[j * stride + t] = Int32(w < 0 ? (fixed - 0.5) : (fixed + 0.5))
            }
            start[j] = Int32(lo + offset)
            taps[j] = Int32(m)
        }
    }
}

@inline(__always) func clip8(_ v: Int32) -> UInt8 {
    let s = v >> Int32(precisionBits)
    return s < 0 ? 0 : (s > 255 ? 255 : UInt8(truncatingIfNeeded: s))
}

/// Resamples the `box` region of `image` (the whole image by default) to `width × height`, as
/// `PIL.Image.crop(box).resize((width, height), filter)` does, and returns only the output
/// pixels inside `window` (the whole output by default; a window gives resize-then-crop without
/// computing the discarded pixels).
///
/// Separable: a horizontal pass into 8-bit rows, then a vertical pass, each with PIL's
/// antialiasing (support scaled by the downscale factor), centre convention and 22-bit
/// fixed-point rounding, so results agree with PIL to the last level in almost all pixels.
public func resample(_ image: Image, width: Int, height: Int, interpolation: Interpolation,
                     box: CropBox? = nil, window: CropBox? = nil) -> Image {
    let b = box ?? CropBox(top: 0, left: 0, height: image.height, width: image.width)
    let win = window ?? CropBox(top: 0, left: 0, height: height, width: width)
    precondition(b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0 &&
                 b.top + b.height <= image.height && b.left + b.width <= image.width,
                 "tessera: crop box \(b) outside a \(image.width)x\(image.height) image")
    precondition(win.top >= 0 && win.left >= 0 && win.top + win.height <= height && win.left + win.width <= width,
                 "tessera: output window \(win) outside \(width)x\(height)")
    let c = image.channels
    if interpolation == .nearest { return nearest(image, width: width, height: height, box: b, window: win) }

    let needH = width != b.width
    let needV = height != b.height
    let hw = needH ? AxisWeights(inSize: b.width, outSize: width, offset: b.left,
                                 window: win.left ..< win.left + win.width, filter: interpolation) : nil
    let vw = needV ? AxisWeights(inSize: b.height, outSize: height, offset: b.top,
                                 window: win.top ..< win.top + win.height, filter: interpolation) : nil
    // Input rows and columns that contribute to the window.
    let rowFirst = vw.map { Int($0.start.first!) } ?? (b.top + win.top)
    let rowEnd = vw.map { Int($0.start.last! + $0.taps.last!) } ?? (b.top + win.top + win.height)
    let colFirst = hw.map { Int($0.start.first!) } ?? (b.left + win.left)
    let colEnd = hw.map { Int($0.start.last! + $0.taps.last!) } ?? (b.left + win.left + win.width)
    var out = [UInt8](repeating: 0, count: win.width * win.height * c)
    image.pixels.withUnsafeBufferPointer { srcBuf in
        out.withUnsafeMutableBufferPointer { dstBuf in
            let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
            let inStride = image.width * c
            switch (hw, vw) {
            case let (h?, v?):
                // PIL 13 runs the vertical pass first when the width grows and the height shrinks.
                if width > b.width && height < b.height {
                    let midW = colEnd - colFirst
                    var mid = [UInt8](repeating: 0, count: win.height * midW * c)
                    mid.withUnsafeMutableBufferPointer { m in
                        verticalPass(src + colFirst * c, srcStride: inStride, rowBase: 0, rowLen: midW * c,
                                     weights: v, dst: m.baseAddress!, dstStride: midW * c)
                        horizontalPass(UnsafePointer(m.baseAddress!), srcStride: midW * c, rows: win.height, colBase: colFirst,
                                       channels: c, weights: h, dst: dst, dstStride: win.width * c)
                    }
                } else {
                    let nRows = rowEnd - rowFirst
                    var mid = [UInt8](repeating: 0, count: nRows * win.width * c)
                    mid.withUnsafeMutableBufferPointer { m in
                        horizontalPass(src + rowFirst * inStride, srcStride: inStride, rows: nRows, colBase: 0,
                                       channels: c, weights: h, dst: m.baseAddress!, dstStride: win.width * c)
                        verticalPass(UnsafePointer(m.baseAddress!), srcStride: win.width * c, rowBase: rowFirst,
                                     rowLen: win.width * c, weights: v, dst: dst, dstStride: win.width * c)
                    }
                }
            case let (h?, nil):
                horizontalPass(src + rowFirst * inStride, srcStride: inStride, rows: win.height, colBase: 0,
                               channels: c, weights: h, dst: dst, dstStride: win.width * c)
            case let (nil, v?):
                verticalPass(src + colFirst * c, srcStride: inStride, rowBase: 0, rowLen: win.width * c,
                             weights: v, dst: dst, dstStride: win.width * c)
            case (nil, nil):
                for r in 0..<win.height {
                    (dst + r * win.width * c).update(from: src + (rowFirst + r) * inStride + colFirst * c, count: win.width * c)
                }
            }
        }
    }
    return Image(width: win.width, height: win.height, channels: c, pixels: out)
}

/// Vertical pass: output row `y` = Σ_t w[y][t] · source row `start[y] − rowBase + t` (rows of `rowLen` bytes).
private func verticalPass(_ src: UnsafePointer<UInt8>, srcStride: Int, rowBase: Int, rowLen: Int,
                          weights v: AxisWeights, dst: UnsafeMutablePointer<UInt8>, dstStride: Int) {
    let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowLen)
    defer { acc.deallocate() }
    let half = Int32(1 << (precisionBits - 1))
    v.weights.withUnsafeBufferPointer { wp in
        v.start.withUnsafeBufferPointer { st in
            v.taps.withUnsafeBufferPointer { tp in
                for y in 0..<st.count {
                    acc.update(repeating: half, count: rowLen)
                    let first = Int(st[y]) - rowBase
                    for t in 0..<Int(tp[y]) {
                        let k = wp[y * v.stride + t]
                        let row = src + (first + t) * srcStride
                        for i in 0..<rowLen { acc[i] &+= Int32(row[i]) &* k }
                    }
                    let o = dst + y * dstStride
                    for i in 0..<rowLen { o[i] = clip8(acc[i]) }
                }
            }
        }
    }
}

/// Horizontal pass over `rows` rows; tap starts are absolute columns, `colBase` is the source's first column.
private func horizontalPass(_ src: UnsafePointer<UInt8>, srcStride: Int, rows: Int, colBase: Int, channels c: Int,
                            weights h: AxisWeights, dst: UnsafeMutablePointer<UInt8>, dstStride: Int) {
    h.weights.withUnsafeBufferPointer { wp in
        for r in 0..<rows {
            horizontalRow(src + r * srcStride - colBase * c, dst + r * dstStride, channels: c, count: h.start.count,
                          start: h.start, taps: h.taps, weights: wp.baseAddress!, stride: h.stride)
        }
    }
}

@inline(__always)
private func horizontalRow(_ s: UnsafePointer<UInt8>, _ d: UnsafeMutablePointer<UInt8>, channels c: Int, count: Int,
                           start: [Int32], taps: [Int32], weights: UnsafePointer<Int32>, stride: Int) {
    let half = Int32(1 << (precisionBits - 1))
    start.withUnsafeBufferPointer { st in
        taps.withUnsafeBufferPointer { tp in
            switch c {
            case 3:
                for x in 0..<count {
                    var r = half, g = half, bl = half
                    let p = s + Int(st[x]) * 3
                    let w = weights + x * stride
                    for t in 0..<Int(tp[x]) {
                        let k = w[t]
                        r &+= Int32(p[3 * t]) &* k
                        g &+= Int32(p[3 * t + 1]) &* k
                        bl &+= Int32(p[3 * t + 2]) &* k
                    }
                    d[3 * x] = clip8(r); d[3 * x + 1] = clip8(g); d[3 * x + 2] = clip8(bl)
                }
            case 1:
                for x in 0..<count {
                    var v = half
                    let p = s + Int(st[x])
                    let w = weights + x * stride
                    for t in 0..<Int(tp[x]) { v &+= Int32(p[t]) &* w[t] }
                    d[x] = clip8(v)
                }
            default:
                for x in 0..<count {
                    let p = s + Int(st[x]) * c
                    let w = weights + x * stride
                    for ch in 0..<c {
                        var v = half
                        for t in 0..<Int(tp[x]) { v &+= Int32(p[t * c + ch]) &* w[t] }
                        d[x * c + ch] = clip8(v)
                    }
                }
            }
        }
    }
}

/// PIL's NEAREST resize: source pixel `floor((i + 0.5) · in / out)`.
private func nearest(_ image: Image, width: Int, height: Int, box b: CropBox, window win: CropBox) -> Image {
    let c = image.channels
    var out = [UInt8](repeating: 0, count: win.width * win.height * c)
    let sx = Double(b.width) / Double(width), sy = Double(b.height) / Double(height)
    let xs = (0..<win.width).map { min(Int((Double($0 + win.left) + 0.5) * sx), b.width - 1) + b.left }
    image.pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<win.height {
                let yy = min(Int((Double(y + win.top) + 0.5) * sy), b.height - 1) + b.top
                for x in 0..<win.width {
                    for ch in 0..<c { dst[(y * win.width + x) * c + ch] = src[(yy * image.width + xs[x]) * c + ch] }
                }
            }
        }
    }
    return Image(width: win.width, height: win.height, channels: c, pixels: out)
}
