import CTurboJPEG
import Foundation

/// JPEG decoding through libturbojpeg (TurboJPEG 2.x API: tjDecompressHeader3 / tjDecompress2).
///
/// Baseline and progressive files decode with the accurate integer DCT and fancy upsampling, the
/// libjpeg defaults PIL uses, so results match `PIL.Image.open(f).convert("RGB")`. Grayscale files
/// stay 1-channel; CMYK/YCCK files are converted to RGB with PIL's formula
/// (Adobe-inverted storage, `rgb = (255 − c)(255 − k) / 255` on the stored inverted values).
public struct JPEGDecoder: Sendable {
    /// When set, decode with the strongest libjpeg scaling factor (1/8 … 1) that keeps both
    /// sides ≥ `minSide`. Off (nil) by default: exact full-size decoding.
    public var minSide: Int?
    /// Largest width × height decoded; a bigger header is refused before anything is allocated (a
    /// small file can claim an enormous size). PIL's decompression-bomb error is at the same size.
    public var maxPixels: Int

    public static let defaultMaxPixels = 178_956_970

    public init(minSide: Int? = nil, maxPixels: Int = JPEGDecoder.defaultMaxPixels) {
        self.minSide = minSide
        self.maxPixels = maxPixels
    }

    /// Decodes `bytes`; `name` appears in error messages (usually the file path).
    public func decode(_ bytes: [UInt8], name: String = "<memory>") throws -> Image {
        guard bytes.count > 2, bytes[0] == 0xFF, bytes[1] == 0xD8 else {
            throw DataError("not a JPEG file (missing FF D8 start marker)", path: name)
        }
        guard let handle = tjInitDecompress() else { throw DataError("tjInitDecompress failed", path: name) }
        defer { tjDestroy(handle) }
        return try bytes.withUnsafeBufferPointer { buf -> Image in
            var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
            if tjDecompressHeader3(handle, buf.baseAddress, UInt(buf.count), &w, &h, &subsamp, &colorspace) != 0 {
                throw DataError("corrupt JPEG header: \(String(cString: tjGetErrorStr2(handle)))", path: name)
            }
            guard Int(w) * Int(h) <= maxPixels else {
                throw DataError("image of \(w)×\(h) pixels is larger than data.max_image_pixels (\(maxPixels))", path: name)
            }
            var outW = Int(w), outH = Int(h)
            if let m = minSide { (outW, outH) = JPEGDecoder.scaledSize(width: outW, height: outH, minSide: m) }
            let isGray = colorspace == Int32(TJCS_GRAY.rawValue)
            let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
            let format: TJPF = isGray ? TJPF_GRAY : (isCMYK ? TJPF_CMYK : TJPF_RGB)
            let bpp = isGray ? 1 : (isCMYK ? 4 : 3)
            var raw = [UInt8](repeating: 0, count: outW * outH * bpp)
            let rc = raw.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, buf.baseAddress, UInt(buf.count), dst.baseAddress, Int32(outW), 0, Int32(outH),
                              Int32(format.rawValue), 0)
            }
            if rc != 0 {
                let msg = String(cString: tjGetErrorStr2(handle))
                // Recoverable warnings (e.g. extraneous bytes) are accepted as PIL does; a truncated file is not.
                if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) || msg.contains("Premature end") {
                    throw DataError("corrupt JPEG: \(msg)", path: name)
                }
            }
            if isGray { return Image(width: outW, height: outH, channels: 1, pixels: raw) }
            if !isCMYK { return Image(width: outW, height: outH, channels: 3, pixels: raw) }
            var rgb = [UInt8](repeating: 0, count: outW * outH * 3)
            raw.withUnsafeBufferPointer { s in
                rgb.withUnsafeMutableBufferPointer { d in
                    for i in 0..<(outW * outH) {
                        let k = Int(s[4 * i + 3])
                        for c in 0..<3 {
                            let t = Int(s[4 * i + c]) * k + 128
                            d[3 * i + c] = UInt8((t + (t >> 8)) >> 8)
                        }
                    }
                }
            }
            return Image(width: outW, height: outH, channels: 3, pixels: rgb)
        }
    }

    /// Reads and decodes a file.
    public func decode(file path: String) throws -> Image {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw DataError("cannot read image file", path: path)
        }
        return try decode([UInt8](d), name: path)
    }

    /// The decoded size libjpeg produces with the strongest scaling factor ≤ 1 that keeps both
    /// sides ≥ `minSide` (the full size when no reduction qualifies).
    public static func scaledSize(width: Int, height: Int, minSide: Int) -> (width: Int, height: Int) {
        var n: Int32 = 0
        guard let factors = tjGetScalingFactors(&n) else { return (width, height) }
        var best = (width, height)
        var bestScale = 1.0
        for i in 0..<Int(n) {
            let num = Int(factors[i].num), den = Int(factors[i].denom)
            let scale = Double(num) / Double(den)
            guard scale <= 1 else { continue }
            let sw = (width * num + den - 1) / den, sh = (height * num + den - 1) / den  // TJSCALED
            if sw >= minSide && sh >= minSide && scale < bestScale { best = (sw, sh); bestScale = scale }
        }
        return best
    }
}

/// Encodes an 8-bit image as baseline JPEG (4:2:0 for RGB, as PIL's default; grayscale stays gray).
public func encodeJPEG(_ image: Image, quality: Int) -> [UInt8] {
    guard let handle = tjInitCompress() else { fatalError("tessera: tjInitCompress failed") }
    defer { tjDestroy(handle) }
    var out: UnsafeMutablePointer<UInt8>? = nil
    var size: UInt = 0
    let gray = image.channels == 1
    let rc = image.pixels.withUnsafeBufferPointer { p in
        tjCompress2(handle, p.baseAddress, Int32(image.width), 0, Int32(image.height),
                    Int32((gray ? TJPF_GRAY : TJPF_RGB).rawValue), &out, &size,
                    Int32((gray ? TJSAMP_GRAY : TJSAMP_420).rawValue), Int32(quality), 0)
    }
    precondition(rc == 0, "tessera: JPEG encoding failed: \(String(cString: tjGetErrorStr2(handle)))")
    defer { tjFree(out) }
    return [UInt8](UnsafeBufferPointer(start: out, count: Int(size)))
}
