import Foundation
import TesseraData

/// A PNG writer (8-bit RGB, zlib deflate at level 6, every row with PNG's "up" filter): pictures in
/// run directories.
public enum PNG {
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }

    /// Encodes HWC RGB bytes.
    public static func encode(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
        precondition(rgb.count == width * height * 3, "tessera: PNG needs \(width * height * 3) bytes, got \(rgb.count)")
        var raw: [UInt8] = []
        raw.reserveCapacity((width * 3 + 1) * height)
        // Filter type 2 ("up"): each byte minus the byte above it, which deflates the flat regions of
        // reconstructions and plots far better than unfiltered rows.
        let stride = width * 3
        for y in 0..<height {
            raw.append(2)
            for x in 0..<stride {
                let above = y > 0 ? rgb[(y - 1) * stride + x] : 0
                raw.append(rgb[y * stride + x] &- above)
            }
        }
        let z = zlibCompress(raw)
        let ihdr = be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0]
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", z) + chunk("IEND", [])
    }

    public static func write(_ path: String, width: Int, height: Int, rgb: [UInt8]) throws {
        try Data(encode(width: width, height: height, rgb: rgb)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// An RGB canvas for composing pictures.
public struct Canvas {
    public let width: Int, height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: UInt8 = 255) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: background, count: width * height * 3)
    }

    public mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0 && y >= 0 && x < width && y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    public mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
        let n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in 0...n {
            set(x0 + (x1 - x0) * s / n, y0 + (y1 - y0) * s / n, c)
        }
    }

    public func write(_ path: String) throws { try PNG.write(path, width: width, height: height, rgb: pixels) }
}
