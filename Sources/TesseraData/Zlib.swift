import CZlib
import Foundation

/// A gzip or zlib error with a one-line message.
public struct InflateError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Decompresses a gzip file (every member, as `gzip -d` does) with zlib.
public func gunzip(_ data: [UInt8]) throws -> [UInt8] {
    // 16 + MAX_WBITS: a gzip wrapper with its CRC-32 and length checks.
    try inflateAll(data, windowBits: 16 + MAX_WBITS, format: "gzip")
}

/// Decompresses a zlib-wrapped deflate stream (a PNG's IDAT data).
public func zlibDecompress(_ data: [UInt8]) throws -> [UInt8] {
    try inflateAll(data, windowBits: MAX_WBITS, format: "zlib")
}

private func inflateAll(_ data: [UInt8], windowBits: Int32, format: String) throws -> [UInt8] {
    var stream = z_stream()
    guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw InflateError("zlib inflateInit2 failed")
    }
    defer { inflateEnd(&stream) }
    var out: [UInt8] = []
    out.reserveCapacity(data.count * 4)
    var chunk = [UInt8](repeating: 0, count: 1 << 18)
    try data.withUnsafeBufferPointer { input in
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.avail_in = uInt(input.count)
        while true {
            let status = chunk.withUnsafeMutableBufferPointer { buf -> Int32 in
                stream.next_out = buf.baseAddress
                stream.avail_out = uInt(buf.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            out += chunk[0..<(chunk.count - Int(stream.avail_out))]
            switch status {
            case Z_STREAM_END:
                // Another member may follow (gzip).
                guard stream.avail_in > 0 else { return }
                guard inflateReset(&stream) == Z_OK else { throw InflateError("zlib inflateReset failed") }
            case Z_OK:
                if stream.avail_in == 0 && stream.avail_out > 0 { throw InflateError("truncated \(format) data") }
            case Z_BUF_ERROR:
                throw InflateError("truncated \(format) data")
            default:
                let why = stream.msg.map { String(cString: $0) } ?? "code \(status)"
                throw InflateError("corrupt \(format) data (\(why))")
            }
        }
    }
    return out
}

/// zlib-wrapped deflate of `bytes` at `level` (0–9), as a PNG IDAT stream holds it.
public func zlibCompress(_ bytes: [UInt8], level: Int32 = 6) -> [UInt8] {
    var size = compressBound(uLong(bytes.count))
    var out = [UInt8](repeating: 0, count: Int(size))
    let status = out.withUnsafeMutableBufferPointer { dst in
        bytes.withUnsafeBufferPointer { src in compress2(dst.baseAddress, &size, src.baseAddress, uLong(src.count), level) }
    }
    precondition(status == Z_OK, "tessera: zlib compress2 failed (\(status))")
    return Array(out[0..<Int(size)])
}

/// The CRC-32 of `bytes` (zlib's, the PNG and gzip checksum).
public func crc32(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
}
