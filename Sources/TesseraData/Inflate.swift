/// DEFLATE (RFC 1951) and gzip (RFC 1952) decompression in pure Swift, so the IDX files of
/// Fashion-MNIST can be read without linking zlib.
///
/// Huffman codes are decoded with one flat lookup table per code (index = the next `maxLength`
/// input bits, LSB first; entry = symbol << 4 | code length), which is fast enough to inflate the
/// 26 MB Fashion-MNIST training images in well under a second in release builds.

public struct InflateError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Decompresses a gzip file (possibly several concatenated members); checks CRC-32 and length.
public func gunzip(_ data: [UInt8]) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(data.count * 4)
    var pos = 0
    var members = 0
    while pos < data.count {
        // Trailing zero padding after the last member is tolerated (as gzip does).
        if members > 0 && data[pos...].allSatisfy({ $0 == 0 }) { break }
        guard data.count - pos >= 18, data[pos] == 0x1F, data[pos + 1] == 0x8B else {
            throw InflateError("not a gzip stream (bad magic bytes at offset \(pos))")
        }
        guard data[pos + 2] == 8 else { throw InflateError("gzip compression method \(data[pos + 2]) is not DEFLATE") }
        let flags = data[pos + 3]
        var p = pos + 10
        if flags & 0x04 != 0 {  // FEXTRA
            guard p + 2 <= data.count else { throw InflateError("truncated gzip header") }
            p += 2 + Int(data[p]) + Int(data[p + 1]) << 8
        }
        if flags & 0x08 != 0 { while p < data.count && data[p] != 0 { p += 1 }; p += 1 }  // FNAME
        if flags & 0x10 != 0 { while p < data.count && data[p] != 0 { p += 1 }; p += 1 }  // FCOMMENT
        if flags & 0x02 != 0 { p += 2 }  // FHCRC
        guard p < data.count else { throw InflateError("truncated gzip header") }
        let start = out.count
        let consumed = try inflate(data, from: p, into: &out)
        p += consumed
        guard p + 8 <= data.count else { throw InflateError("truncated gzip trailer") }
        let crcStored = UInt32(data[p]) | UInt32(data[p + 1]) << 8 | UInt32(data[p + 2]) << 16 | UInt32(data[p + 3]) << 24
        let sizeStored = UInt32(data[p + 4]) | UInt32(data[p + 5]) << 8 | UInt32(data[p + 6]) << 16 | UInt32(data[p + 7]) << 24
        let crc = out.withUnsafeBufferPointer { crc32(UnsafeBufferPointer(rebasing: $0[start...])) }
        guard crc == crcStored else { throw InflateError("gzip CRC-32 mismatch (file is corrupt)") }
        guard UInt32(truncatingIfNeeded: out.count - start) == sizeStored else {
            throw InflateError("gzip length mismatch (file is corrupt or truncated)")
        }
        pos = p + 8
        members += 1
    }
    return out
}

/// CRC-32 (IEEE 802.3, reflected, as in gzip and PNG).
public func crc32(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    crcTable.withUnsafeBufferPointer { t in
        for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}

private let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
    return c
}

/// Inflates one raw DEFLATE stream starting at `from`, appending to `out`.
/// Returns how many input bytes the stream occupied (rounded up to a whole byte).
@discardableResult
public func inflate(_ input: [UInt8], from: Int = 0, into out: inout [UInt8]) throws -> Int {
    try input.withUnsafeBufferPointer { buf in
        var reader = BitReader(buf, from)
        var decoder = Inflater()
        try decoder.run(&reader, &out)
        return reader.bytePosition - from
    }
}

/// LSB-first bit reader with a 64-bit buffer; reading past the end yields zero bits and is
/// reported by `overrun`.
struct BitReader {
    let base: UnsafePointer<UInt8>
    let end: Int
    var next: Int
    var bits: UInt64 = 0
    var count: Int = 0
    var overrun = 0

    init(_ buf: UnsafeBufferPointer<UInt8>, _ start: Int) {
        base = buf.baseAddress ?? UnsafePointer(bitPattern: 1)!
        end = buf.count
        next = start
    }

    @inline(__always) mutating func refill() {
        while count <= 56 {
            if next < end { bits |= UInt64(base[next]) << UInt64(count) } else { overrun += 1 }
            next += 1
            count += 8
        }
    }

    @inline(__always) mutating func peek(_ n: Int) -> Int {
        if count < n { refill() }
        return Int(truncatingIfNeeded: bits & ((1 << UInt64(n)) - 1))
    }

    @inline(__always) mutating func drop(_ n: Int) {
        bits >>= UInt64(n)
        count -= n
    }

    @inline(__always) mutating func read(_ n: Int) -> Int {
        if n == 0 { return 0 }
        let v = peek(n)
        drop(n)
        return v
    }

    mutating func alignToByte() { drop(count & 7) }

    /// Position of the first input byte not yet consumed.
    var bytePosition: Int { next - count / 8 }
}

/// A canonical Huffman code as a flat table indexed by the next `maxLength` bits.
struct HuffmanTable {
    var table: [UInt16] = []
    var maxLength = 0

    init() {}

    /// `lengths[s]` is the code length of symbol `s` (0 = unused).
    init(lengths: [Int]) throws {
        var countPerLength = [Int](repeating: 0, count: 16)
        for l in lengths { countPerLength[l] += 1 }
        countPerLength[0] = 0
        maxLength = countPerLength.lastIndex(where: { $0 > 0 }) ?? 0
        if maxLength == 0 {
            // An empty code (allowed for the distance code when only literals occur).
            maxLength = 1
            table = [0, 0]
            return
        }
        // Over-subscribed codes are invalid; incomplete ones are allowed (single-code case).
        var left = 1
        for l in 1...15 {
            left <<= 1
            left -= countPerLength[l]
            if left < 0 { throw InflateError("invalid DEFLATE stream: over-subscribed Huffman code") }
        }
        // Canonical codes: consecutive within a length, the shortest length starting at 0.
        var nextCode = [Int](repeating: 0, count: 16)
        var code = 0
        for l in 1...15 {
            nextCode[l] = code
            code = (code + countPerLength[l]) << 1
        }
        let size = 1 << maxLength
        table = [UInt16](repeating: 0, count: size)  // length 0 marks an invalid code
        for (symbol, l) in lengths.enumerated() where l > 0 {
            let c = nextCode[l]
            nextCode[l] += 1
            var reversed = 0
            for b in 0..<l where c & (1 << b) != 0 { reversed |= 1 << (l - 1 - b) }
            let entry = UInt16(symbol << 4 | l)
            var i = reversed
            while i < size { table[i] = entry; i += 1 << l }
        }
    }

    @inline(__always) func decode(_ r: inout BitReader) throws -> Int {
        let entry = table.withUnsafeBufferPointer { $0[r.peek(maxLength)] }
        let l = Int(entry & 15)
        if l == 0 { throw InflateError("invalid DEFLATE stream: bad Huffman code") }
        r.drop(l)
        return Int(entry >> 4)
    }
}

private let lengthBase: [Int] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
                                 67, 83, 99, 115, 131, 163, 195, 227, 258]
private let lengthExtra: [Int] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
private let distBase: [Int] = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
                               1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
private let distExtra: [Int] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11,
                                12, 12, 13, 13]
/// Order in which code-length code lengths are transmitted.
private let codeLengthOrder: [Int] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

struct Inflater {
    static let fixedLiteral: HuffmanTable = {
        var l = [Int](repeating: 8, count: 288)
        for i in 144..<256 { l[i] = 9 }
        for i in 256..<280 { l[i] = 7 }
        return try! HuffmanTable(lengths: l)
    }()
    static let fixedDistance: HuffmanTable = try! HuffmanTable(lengths: [Int](repeating: 5, count: 30))

    mutating func run(_ r: inout BitReader, _ out: inout [UInt8]) throws {
        var last = false
        while !last {
            last = r.read(1) == 1
            let type = r.read(2)
            switch type {
            case 0: try stored(&r, &out)
            case 1: try codes(&r, &out, Inflater.fixedLiteral, Inflater.fixedDistance)
            case 2:
                let (lit, dist) = try dynamicTables(&r)
                try codes(&r, &out, lit, dist)
            default: throw InflateError("invalid DEFLATE stream: block type 3")
            }
            if r.overrun > 8 { throw InflateError("DEFLATE stream is truncated") }
        }
        r.alignToByte()
    }

    func stored(_ r: inout BitReader, _ out: inout [UInt8]) throws {
        r.alignToByte()
        let len = r.read(16), nlen = r.read(16)
        guard len == (~nlen & 0xFFFF) else { throw InflateError("invalid DEFLATE stream: stored block length check") }
        // Bytes still in the bit buffer come first, then straight from the input.
        var remaining = len
        while remaining > 0 && r.count >= 8 { out.append(UInt8(r.read(8))); remaining -= 1 }
        if remaining > 0 {
            guard r.next + remaining <= r.end else { throw InflateError("DEFLATE stream is truncated") }
            out.append(contentsOf: UnsafeBufferPointer(start: r.base + r.next, count: remaining))
            r.next += remaining
        }
    }

    func dynamicTables(_ r: inout BitReader) throws -> (HuffmanTable, HuffmanTable) {
        let nlen = r.read(5) + 257, ndist = r.read(5) + 1, ncode = r.read(4) + 4
        guard nlen <= 286, ndist <= 30 else { throw InflateError("invalid DEFLATE stream: too many codes") }
        var clLengths = [Int](repeating: 0, count: 19)
        for i in 0..<ncode { clLengths[codeLengthOrder[i]] = r.read(3) }
        let clTable = try HuffmanTable(lengths: clLengths)
        var lengths = [Int]()
        lengths.reserveCapacity(nlen + ndist)
        while lengths.count < nlen + ndist {
            let sym = try clTable.decode(&r)
            switch sym {
            case 0..<16: lengths.append(sym)
            case 16:
                guard let prev = lengths.last else { throw InflateError("invalid DEFLATE stream: repeat with no previous length") }
                lengths.append(contentsOf: repeatElement(prev, count: 3 + r.read(2)))
            case 17: lengths.append(contentsOf: repeatElement(0, count: 3 + r.read(3)))
            default: lengths.append(contentsOf: repeatElement(0, count: 11 + r.read(7)))
            }
        }
        guard lengths.count == nlen + ndist else { throw InflateError("invalid DEFLATE stream: code lengths overflow") }
        guard lengths[256] > 0 else { throw InflateError("invalid DEFLATE stream: no end-of-block code") }
        return (try HuffmanTable(lengths: Array(lengths[0..<nlen])), try HuffmanTable(lengths: Array(lengths[nlen...])))
    }

    func codes(_ r: inout BitReader, _ out: inout [UInt8], _ lit: HuffmanTable, _ dist: HuffmanTable) throws {
        while true {
            let sym = try lit.decode(&r)
            if sym < 256 {
                out.append(UInt8(sym))
            } else if sym == 256 {
                return
            } else {
                let li = sym - 257
                guard li < 29 else { throw InflateError("invalid DEFLATE stream: bad length symbol") }
                let length = lengthBase[li] + r.read(lengthExtra[li])
                let di = try dist.decode(&r)
                guard di < 30 else { throw InflateError("invalid DEFLATE stream: bad distance symbol") }
                let distance = distBase[di] + r.read(distExtra[di])
                guard distance <= out.count else { throw InflateError("invalid DEFLATE stream: distance too far back") }
                // Grow once, then copy forward byte by byte through a raw pointer (the source may
                // overlap the bytes being written). Reading `out` by index while appending to it lets
                // the optimizer turn the loop into append(contentsOf: slice), which copies the whole
                // buffer on every match.
                let start = out.count - distance, end = out.count
                out.append(contentsOf: repeatElement(0, count: length))
                out.withUnsafeMutableBufferPointer { buf in
                    let b = buf.baseAddress!
                    for k in 0..<length { b[end + k] = b[start + k] }
                }
            }
            if r.overrun > 8 { throw InflateError("DEFLATE stream is truncated") }
        }
    }
}
