import Foundation

/// torchvision-style `ImageFolder`: `<root>/<split>/<class>/<file>.{jpg,jpeg,JPEG}`.
///
/// Classes are the sub-folder names sorted by Unicode scalar order (Python's `sorted` on str);
/// files are sorted the same way within each class. Non-JPEG files are listed in `skippedFiles`
/// and not used. Structural problems (missing folder, no class folders, a class folder without
/// JPEGs) throw a one-line `DataError` naming the path when the dataset is built, before training.
public struct ImageFolder: ImageDataset {
    public let root: String
    public let classes: [String]
    /// (path, label) of every sample, class by class.
    public let samples: [(path: String, label: Int)]
    /// Files present in class folders but not decodable as JPEG by extension (e.g. PNG).
    public let skippedFiles: [String]
    public var decoder: JPEGDecoder

    public static let extensions: Set<String> = ["jpg", "jpeg"]

    public var count: Int { samples.count }

    /// `split` is appended to `root` (pass "" to use `root` itself).
    public init(root: String, split: String = "", decoder: JPEGDecoder = JPEGDecoder()) throws {
        let dir = split.isEmpty ? root : (root as NSString).appendingPathComponent(split)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw DataError("image folder does not exist (expected <root>/<split>/<class>/*.jpg)", path: dir)
        }
        guard isDir.boolValue else { throw DataError("not a directory", path: dir) }
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: dir) } catch {
            throw DataError("cannot list directory: \(error.localizedDescription)", path: dir)
        }
        let classNames = entries.filter { name in
            var d: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: (dir as NSString).appendingPathComponent(name), isDirectory: &d) && d.boolValue
        }.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        guard !classNames.isEmpty else {
            throw DataError("no class folders (expected <class>/*.jpg sub-folders)", path: dir)
        }
        var samples: [(String, Int)] = []
        var skipped: [String] = []
        for (label, name) in classNames.enumerated() {
            let cdir = (dir as NSString).appendingPathComponent(name)
            let files = ((try? fm.contentsOfDirectory(atPath: cdir)) ?? [])
                .filter { !$0.hasPrefix(".") }
                .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
            var n = 0
            for f in files {
                let p = (cdir as NSString).appendingPathComponent(f)
                if ImageFolder.extensions.contains((f as NSString).pathExtension.lowercased()) {
                    samples.append((p, label))
                    n += 1
                } else {
                    var d: ObjCBool = false
                    if fm.fileExists(atPath: p, isDirectory: &d), !d.boolValue { skipped.append(p) }
                }
            }
            guard n > 0 else { throw DataError("class folder has no .jpg/.jpeg images", path: cdir) }
        }
        self.root = dir
        self.classes = classNames
        self.samples = samples
        self.skippedFiles = skipped
        self.decoder = decoder
    }

    public func sample(_ i: Int) throws -> (image: Image, label: Int) {
        let s = samples[i]
        return (try decoder.decode(file: s.path), s.label)
    }
}

/// Writes Fashion-MNIST as an ImageFolder of grayscale JPEGs (quality 95):
/// `<out>/train/<k>_<name>/<index>.jpg` from the train split and `<out>/val/...` from t10k.
/// Class folders are named like `0_T-shirt_top` so that sorting keeps the label order.
/// Returns the number of images written.
@discardableResult
public func prepareFashionMNIST(root: String = FashionMNIST.defaultRoot, out: String, quality: Int = 95) throws -> Int {
    let fm = FileManager.default
    var written = 0
    for (split, folder) in [("train", "train"), ("t10k", "val")] {
        let ds = try FashionMNIST(root: root, split: split)
        let names = FashionMNIST.classNames.enumerated().map { i, n in
            "\(i)_" + String(n.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        }
        for name in names {
            let d = ((out as NSString).appendingPathComponent(folder) as NSString).appendingPathComponent(name)
            do { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) } catch {
                throw DataError("cannot create directory: \(error.localizedDescription)", path: d)
            }
        }
        let digits = String(ds.count - 1).count
        for i in 0..<ds.count {
            let (img, label) = try ds.sample(i)
            let idx = String(i)
            let file = String(repeating: "0", count: digits - idx.count) + idx + ".jpg"
            let path = (((out as NSString).appendingPathComponent(folder) as NSString)
                .appendingPathComponent(names[label]) as NSString).appendingPathComponent(file)
            guard fm.createFile(atPath: path, contents: Data(encodeJPEG(img, quality: quality))) else {
                throw DataError("cannot write file", path: path)
            }
            written += 1
        }
    }
    return written
}

/// An unlabeled folder of JPEGs for pre-training: every `.jpg`/`.jpeg` at any depth under
/// `<root>/<split>` (hidden files and folders skipped), sorted by path, each with label 0 and no
/// classes. A missing folder or one without JPEGs throws a one-line `DataError` when it is built.
public struct ImageFiles: ImageDataset {
    public let root: String
    public let paths: [String]
    public var decoder: JPEGDecoder
    public var classes: [String] { [] }
    public var count: Int { paths.count }

    public init(root: String, split: String = "", decoder: JPEGDecoder = JPEGDecoder()) throws {
        let dir = split.isEmpty ? root : (root as NSString).appendingPathComponent(split)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw DataError("image folder does not exist", path: dir)
        }
        guard isDir.boolValue else { throw DataError("not a directory", path: dir) }
        guard let walker = FileManager.default.enumerator(atPath: dir) else {
            throw DataError("cannot list directory", path: dir)
        }
        var found: [String] = []
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") {
                walker.skipDescendants()
                continue
            }
            if ImageFolder.extensions.contains((name as NSString).pathExtension.lowercased()) {
                found.append((dir as NSString).appendingPathComponent(rel))
            }
        }
        guard !found.isEmpty else { throw DataError("no .jpg/.jpeg images at any depth", path: dir) }
        self.root = dir
        paths = found.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        self.decoder = decoder
    }

    public func sample(_ i: Int) throws -> (image: Image, label: Int) {
        (try decoder.decode(file: paths[i]), 0)
    }
}
