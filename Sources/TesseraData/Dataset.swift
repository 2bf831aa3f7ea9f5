import Foundation

/// A labelled image collection addressed by index.
public protocol ImageDataset: Sendable {
    var count: Int { get }
    var classes: [String] { get }
    /// The decoded image (1 or 3 channels) and its class index. Throws `DataError` naming the file
    /// when the sample cannot be read.
    func sample(_ i: Int) throws -> (image: Image, label: Int)
}

/// A data error with a one-line message that names the file or folder concerned.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var path: String
    public init(_ message: String, path: String) { self.message = message; self.path = path }
    public var description: String { "tessera: \(path): \(message)" }
}

/// Reads a whole file; a `.gz` file (or any file starting with the gzip magic) is inflated.
public func readMaybeGzip(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else {
        throw DataError("cannot read file (missing or unreadable)", path: path)
    }
    let bytes = [UInt8](d)
    if bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
        do { return try gunzip(bytes) } catch let e as InflateError {
            throw DataError("gzip: \(e.message)", path: path)
        }
    }
    return bytes
}

/// An IDX image/label pair (the MNIST format): images `00 00 08 03`, count, rows, cols, u8 pixels;
/// labels `00 00 08 01`, count, u8 labels. Files may be gzip-compressed.
public struct IDXDataset: ImageDataset {
    public let count: Int
    public let classes: [String]
    public let width: Int
    public let height: Int
    /// All pixels, `count · height · width` bytes.
    public let pixels: [UInt8]
    public let labels: [Int]

    public init(images: String, labels labelPath: String, classes: [String]? = nil) throws {
        let img = try readMaybeGzip(images)
        let lab = try readMaybeGzip(labelPath)
        func u32(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        guard img.count >= 16, img[0] == 0, img[1] == 0, img[2] == 8, img[3] == 3 else {
            throw DataError("not an IDX image file (expected magic 00 00 08 03)", path: images)
        }
        guard lab.count >= 8, lab[0] == 0, lab[1] == 0, lab[2] == 8, lab[3] == 1 else {
            throw DataError("not an IDX label file (expected magic 00 00 08 01)", path: labelPath)
        }
        let n = u32(img, 4), h = u32(img, 8), w = u32(img, 12)
        guard n > 0, h > 0, w > 0, img.count == 16 + n * h * w else {
            throw DataError("IDX header says \(n)x\(h)x\(w) but the file holds \(img.count - 16) pixel bytes", path: images)
        }
        let nl = u32(lab, 4)
        guard lab.count == 8 + nl else {
            throw DataError("IDX header says \(nl) labels but the file holds \(lab.count - 8)", path: labelPath)
        }
        guard nl == n else { throw DataError("\(nl) labels for \(n) images in \(images)", path: labelPath) }
        let labs = lab[8...].map { Int($0) }
        let maxLabel = labs.max() ?? 0
        let names = classes ?? (0...maxLabel).map { String($0) }
        guard maxLabel < names.count else {
            throw DataError("label \(maxLabel) out of range for \(names.count) classes", path: labelPath)
        }
        self.count = n
        self.height = h
        self.width = w
        self.pixels = Array(img[16...])
        self.labels = labs
        self.classes = names
    }

    public func sample(_ i: Int) throws -> (image: Image, label: Int) {
        let n = width * height
        let px = Array(pixels[(i * n)..<((i + 1) * n)])
        return (Image(width: width, height: height, channels: 1, pixels: px), labels[i])
    }
}

/// Fashion-MNIST from its IDX files: `try FashionMNIST(root: "/usr/share/datasets/fashion-mnist", split: "train")`.
public struct FashionMNIST: ImageDataset {
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public static let defaultRoot = "/usr/share/datasets/fashion-mnist"
    public let idx: IDXDataset

    /// `split` is "train" (60 000 images) or "t10k" (10 000; "test" and "val" are accepted too).
    public init(root: String = FashionMNIST.defaultRoot, split: String) throws {
        let prefix: String
        switch split {
        case "train": prefix = "train"
        case "t10k", "test", "val": prefix = "t10k"
        default: throw DataError("unknown Fashion-MNIST split '\(split)' (use train or t10k)", path: root)
        }
        func find(_ stem: String) throws -> String {
            for name in [stem + ".gz", stem] {
                let p = (root as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: p) { return p }
            }
            throw DataError("missing IDX file; install with `apt-get install dataset-fashion-mnist` or point root at the IDX files",
                            path: (root as NSString).appendingPathComponent(stem + ".gz"))
        }
        idx = try IDXDataset(images: find("\(prefix)-images-idx3-ubyte"), labels: find("\(prefix)-labels-idx1-ubyte"),
                             classes: FashionMNIST.classNames)
    }

    public var count: Int { idx.count }
    public var classes: [String] { idx.classes }
    public func sample(_ i: Int) throws -> (image: Image, label: Int) { try idx.sample(i) }
}
