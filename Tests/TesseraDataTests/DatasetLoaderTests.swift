import Foundation
import TesseraCore
import TesseraData
import XCTest

private func tempDir(_ name: String) -> String {
    let d = NSTemporaryDirectory() + "tessera-data-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: d)
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func write(_ bytes: [UInt8], _ path: String) {
    try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
}

final class IDXTests: XCTestCase {
    func testFashionMNISTTrain() throws {
        let root = FashionMNIST.defaultRoot
        try XCTSkipUnless(FileManager.default.fileExists(atPath: root + "/train-images-idx3-ubyte.gz"),
                          "dataset-fashion-mnist not installed")
        let train = try FashionMNIST(root: root, split: "train")
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(train.classes.count, 10)
        XCTAssertEqual(train.classes[0], "T-shirt/top")
        XCTAssertEqual(train.idx.labels[0], 9)  // first training image: Ankle boot
        XCTAssertEqual(train.idx.width, 28)
        let (img, label) = try train.sample(0)
        XCTAssertEqual(label, 9)
        XCTAssertEqual(img.channels, 1)
        // Pixel checksum of the whole training set (sum of all bytes), and class balance.
        let total = train.idx.pixels.reduce(0) { $0 + Int($1) }
        XCTAssertEqual(total, 3_431_114_169)  // numpy on the same file
        XCTAssertEqual(img.pixels.reduce(0) { $0 + Int($1) }, 76_247)
        XCTAssertEqual(Set(train.idx.labels.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }.values), [6000])
        let test = try FashionMNIST(root: root, split: "t10k")
        XCTAssertEqual(test.count, 10000)
    }

    func testIDXErrorsNameTheFile() throws {
        let d = tempDir("idx")
        write([0, 0, 8, 1, 0, 0, 0, 0], d + "/bad-images")
        write([0, 0, 8, 1, 0, 0, 0, 0], d + "/labels")
        XCTAssertThrowsError(try IDXDataset(images: d + "/bad-images", labels: d + "/labels")) { e in
            XCTAssertTrue("\(e)".contains("bad-images"), "\(e)")
        }
        XCTAssertThrowsError(try IDXDataset(images: d + "/missing", labels: d + "/labels")) { e in
            XCTAssertTrue("\(e)".contains("missing"), "\(e)")
        }
        // Size mismatch: header says 2 images of 2x2 but holds 3 bytes.
        write([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3], d + "/short-images")
        XCTAssertThrowsError(try IDXDataset(images: d + "/short-images", labels: d + "/labels")) { e in
            XCTAssertTrue("\(e)".contains("short-images"), "\(e)")
        }
    }

    func testGzipErrors() throws {
        XCTAssertThrowsError(try gunzip([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
        // The real labels file: intact it inflates to its IDX header; cut short it is reported as truncated.
        let path = FashionMNIST.defaultRoot + "/t10k-labels-idx1-ubyte.gz"
        let gz = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let raw = try gunzip(gz)
        XCTAssertEqual(raw.count, 8 + 10_000)
        XCTAssertEqual(Array(raw[0..<4]), [0, 0, 8, 1])
        XCTAssertThrowsError(try gunzip(Array(gz[0..<(gz.count / 2)]))) { e in
            XCTAssertTrue("\(e)".contains("truncated"), "\(e)")
        }
        var flipped = gz
        flipped[gz.count - 6] ^= 0xFF  // inside the CRC-32 of the trailer
        XCTAssertThrowsError(try gunzip(flipped))
        // Two members in one file inflate to both (as gzip -d does).
        XCTAssertEqual(try gunzip(gz + gz).count, 2 * raw.count)
    }

    /// PIL's convert("L") of these pixels (PIL 13) is 76, 150, 29, 130, 255.
    func testGrayIsPILsLuma() {
        let img = Image(width: 5, height: 1, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 200, 77, 255, 255, 255])
        XCTAssertEqual(img.gray().pixels, [76, 150, 29, 130, 255])
    }

    /// A pipeline without geometry (Fashion-MNIST's pad-to-size evaluation) given a larger colour
    /// photo resizes and centre-crops it to the output instead of writing past its end.
    func testNoCropPipelineTakesAnyImage() {
        let pipe = TransformPipeline(crop: .none, size: 32, mean: [0.5], std: [0.5], channels: 1, smallImage: .pad(to: 32), eval: true)
        var rng = RandomGenerator(seed: 0)
        let out = pipe.apply(Fixtures.decoded("chelsea.jpg"), rng: &rng)
        XCTAssertEqual(out.count, 32 * 32)
        XCTAssertTrue(out.allSatisfy(\.isFinite))
    }

    func testCRC32IsTheStandardOne() {
        XCTAssertEqual(crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(crc32([]), 0)
    }
}

final class ImageFolderTests: XCTestCase {
    /// A small tree of Fashion-MNIST-like JPEGs made from a real photo.
    func makeTree(_ name: String, classes: [String: Int]) -> String {
        let root = tempDir(name)
        let photo = Fixtures.decoded("chelsea.jpg")
        for (cls, n) in classes {
            for i in 0..<n {
                let crop = photo.cropped(CropBox(top: i, left: 2 * i, height: 40 + i, width: 50))
                write(encodeJPEG(crop, quality: 90), "\(root)/train/\(cls)/img\(i).jpg")
            }
        }
        return root
    }

    func testLayoutAndSorting() throws {
        let root = makeTree("layout", classes: ["b": 2, "B": 1, "a": 3, "é": 1])
        write([1, 2, 3], root + "/train/a/notes.txt")
        let ds = try ImageFolder(root: root, split: "train")
        XCTAssertEqual(ds.classes, ["B", "a", "b", "é"])  // Unicode order, like Python sorted()
        XCTAssertEqual(ds.count, 7)
        XCTAssertEqual(ds.samples.map { $0.label }, [0, 1, 1, 1, 2, 2, 3])
        XCTAssertEqual(ds.samples[1].path.hasSuffix("a/img0.jpg"), true)
        XCTAssertEqual(ds.skippedFiles.count, 1)
        XCTAssertEqual(try ds.sample(0).image.channels, 3)
    }

    func testErrorsBeforeTraining() throws {
        let root = tempDir("errors")
        XCTAssertThrowsError(try ImageFolder(root: root + "/nope", split: "train")) { e in
            XCTAssertTrue("\(e)".contains("nope/train"), "\(e)")
        }
        try FileManager.default.createDirectory(atPath: root + "/train", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder(root: root, split: "train")) { e in
            XCTAssertTrue("\(e)".contains("no class folders"), "\(e)")
        }
        try FileManager.default.createDirectory(atPath: root + "/train/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder(root: root, split: "train")) { e in
            XCTAssertTrue("\(e)".contains("train/empty"), "\(e)")
            XCTAssertEqual("\(e)".split(separator: "\n").count, 1)
        }
    }

    func testCorruptImageIsSkippedAndCounted() throws {
        let root = makeTree("corrupt", classes: ["a": 4, "b": 4])
        let good = Fixtures.bytes("coffee.jpg")
        write(Array(good[0..<(good.count / 3)]), root + "/train/a/img1.jpg")  // truncated
        let ds = try ImageFolder(root: root, split: "train")
        XCTAssertThrowsError(try ds.sample(1)) { e in XCTAssertTrue("\(e)".contains("img1.jpg"), "\(e)") }
        let loader = DataLoader(dataset: ds, pipeline: TransformPipeline(crop: .randomResizedCrop, size: 16),
                                batchSize: 4, shuffle: false, dropLast: true, seed: 1, workers: 2)
        var batches = 0
        for b in loader.epoch(0) {
            XCTAssertEqual(b.images.shape, [4, 3, 16, 16])
            XCTAssertEqual(b.labels.count, 4)
            if batches == 0 { XCTAssertEqual(b.indices, [0, 2, 2, 3]) }  // 1 replaced by the next readable
            batches += 1
        }
        XCTAssertEqual(batches, 2)
        XCTAssertEqual(loader.skippedCount, 1)
    }

    /// A small JPEG whose frame header claims 60000 × 60000 pixels is refused before any allocation,
    /// and a loader skips and counts it like a corrupt file.
    func testOversizedHeaderIsRefusedAndSkipped() throws {
        let root = makeTree("huge", classes: ["a": 4, "b": 4])
        var bytes = Fixtures.bytes("coffee.jpg")
        // The SOFn marker (FF C0 … FF C2) holds height and width at offsets 5–8 after the marker.
        let sof = try XCTUnwrap((0..<(bytes.count - 9)).first { bytes[$0] == 0xFF && (0xC0...0xC2).contains(bytes[$0 + 1]) })
        for k in [5, 7] { bytes[sof + k] = 0xEA; bytes[sof + k + 1] = 0x60 }  // 60000
        write(bytes, root + "/train/b/img2.jpg")
        XCTAssertThrowsError(try JPEGDecoder().decode(bytes, name: "huge.jpg")) { e in
            XCTAssertTrue("\(e)".contains("60000×60000") && "\(e)".contains("data.max_image_pixels"), "\(e)")
        }
        XCTAssertNoThrow(try JPEGDecoder().decode(Fixtures.bytes("coffee.jpg")))
        XCTAssertThrowsError(try JPEGDecoder(maxPixels: 1000).decode(Fixtures.bytes("coffee.jpg")))
        let ds = try ImageFolder(root: root, split: "train")
        let loader = DataLoader(dataset: ds, pipeline: TransformPipeline(crop: .randomResizedCrop, size: 16),
                                batchSize: 4, shuffle: false, dropLast: true, seed: 1, workers: 2)
        for epoch in 0..<2 { for _ in loader.epoch(epoch) {} }
        XCTAssertEqual(loader.skippedCount, 1, "one bad image")
        XCTAssertEqual(loader.skippedSamples, 2, "replaced once per epoch")
    }

    /// The unlabeled data set: JPEGs at any depth, hidden entries skipped, sorted, label 0.
    func testImageFilesFindsJPEGsAtAnyDepth() throws {
        let root = tempDir("unlabeled")
        let photo = encodeJPEG(Fixtures.decoded("chelsea.jpg").cropped(CropBox(top: 0, left: 0, height: 20, width: 20)), quality: 90)
        for p in ["/train/x.jpg", "/train/deep/er/y.JPEG", "/train/a.jpeg", "/train/.hidden/z.jpg", "/train/.w.jpg"] {
            write(photo, root + p)
        }
        write([1, 2, 3], root + "/train/notes.txt")
        let ds = try ImageFiles(root: root, split: "train")
        XCTAssertEqual(ds.paths.map { String($0.dropFirst(root.count + 7)) }, ["a.jpeg", "deep/er/y.JPEG", "x.jpg"])
        XCTAssertEqual(ds.classes, [])
        XCTAssertEqual(try ds.sample(1).label, 0)
        XCTAssertEqual(try ds.sample(1).image.width, 20)
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFiles(root: root, split: "empty")) { e in XCTAssertTrue("\(e)".contains("no .jpg"), "\(e)") }
    }

    func testPrepareFashionMNISTLayout() throws {
        // Only the naming/sorting contract; the full export is exercised by `tessera prepare`.
        let names = FashionMNIST.classNames.enumerated().map { "\($0)_" + $1.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: " ", with: "_") }
        XCTAssertEqual(names.sorted(), names)
        XCTAssertEqual(names[0], "0_T-shirt_top")
    }
}

final class LoaderTests: XCTestCase {
    struct Synthetic: ImageDataset {
        var count: Int
        var classes: [String] { ["x", "y", "z"] }
        let photo: Image
        func sample(_ i: Int) throws -> (image: Image, label: Int) {
            (photo.cropped(CropBox(top: i % 30, left: (2 * i) % 40, height: 60, width: 70 + i % 20)), i % 3)
        }
    }

    func batches(workers: Int, pipeline: TransformPipeline, epoch: Int = 1) -> [Batch] {
        let ds = Synthetic(count: 37, photo: Fixtures.image("decode_chelsea"))
        let loader = DataLoader(dataset: ds, pipeline: pipeline, batchSize: 5, shuffle: true, dropLast: false,
                                seed: 42, workers: workers, prefetch: 2)
        return Array(loader.epoch(epoch))
    }

    func testWorkerCountIndependence() {
        let pipelines = [TransformPipeline(crop: .randomResizedCrop, size: 24, interpolation: .bicubic),
                         TransformPipeline(crop: .randomResizedCrop, size: 24, flipBeforeCrop: true,
                                           secondView: SecondView(size: 12))]
        for p in pipelines {
            let a = batches(workers: 0, pipeline: p), b = batches(workers: 1, pipeline: p), c = batches(workers: 3, pipeline: p)
            XCTAssertEqual(a.count, 8)  // 37 / 5 rounded up
            for (x, (y, z)) in zip(a, zip(b, c)) {
                XCTAssertEqual(x.indices, y.indices)
                XCTAssertEqual(x.indices, z.indices)
                XCTAssertEqual(x.labels, z.labels)
                let n = x.images.count
                XCTAssertEqual(Array(UnsafeBufferPointer(start: x.images.data, count: n)),
                               Array(UnsafeBufferPointer(start: y.images.data, count: n)))
                XCTAssertEqual(Array(UnsafeBufferPointer(start: x.images.data, count: n)),
                               Array(UnsafeBufferPointer(start: z.images.data, count: n)))
                XCTAssertEqual(x.extra.count, z.extra.count)
                if let e1 = x.extra.first, let e3 = z.extra.first {
                    XCTAssertEqual(e1.shape, [x.labels.count, 3, 12, 12])
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: e1.data, count: e1.count)),
                                   Array(UnsafeBufferPointer(start: e3.data, count: e3.count)))
                }
            }
            XCTAssertEqual(a.last!.labels.count, 2)
        }
        // Different epochs shuffle differently.
        let p = pipelines[0]
        XCTAssertNotEqual(batches(workers: 0, pipeline: p, epoch: 1)[0].indices, batches(workers: 0, pipeline: p, epoch: 2)[0].indices)
    }

    func testShardingCoversEveryIndexOnce() {
        for (n, world) in [(37, 4), (40, 4), (5, 8), (100, 3)] {
            var all: [Int] = []
            var sizes = Set<Int>()
            for r in 0..<world {
                let s = shardIndices(count: n, shuffle: true, seed: 7, epoch: 3, rank: r, worldSize: world)
                sizes.insert(s.count)
                all += s
            }
            XCTAssertEqual(sizes.count, 1, "equal shard sizes")
            XCTAssertEqual(all.count, (n + world - 1) / world * world)
            XCTAssertEqual(Set(all), Set(0..<n), "every index appears")
            // Only the wrapped padding repeats.
            XCTAssertEqual(all.count - Set(all).count, all.count - n)
        }
    }

    func testEarlyStopAndDropLast() {
        let ds = Synthetic(count: 37, photo: Fixtures.image("decode_chelsea"))
        let loader = DataLoader(dataset: ds, pipeline: TransformPipeline(crop: .resize, size: 8), batchSize: 5,
                                dropLast: true, workers: 2, prefetch: 2)
        XCTAssertEqual(loader.batchesPerEpoch, 7)
        do {
            let it = loader.epoch(0)
            _ = it.next()
        }  // deinit stops workers
        XCTAssertEqual(Array(loader.epoch(0)).count, 7)
        XCTAssertGreaterThanOrEqual(loader.waitSeconds, 0)
    }
}

final class PipelineTests: XCTestCase {
    func testEvalPipelineEqualsResizeCenterCropNormalize() {
        let img = Fixtures.image("decode_coffee")
        var rng = RandomGenerator(seed: 1)
        let out = TransformPipeline.evaluation(size: 80).apply(img, rng: &rng)
        let ref = Normalizer.imagenet(resizeCenterCrop(img, resize: 91, crop: 80, interpolation: .bicubic))
        XCTAssertEqual(out, ref)
        XCTAssertEqual(rng.counter, 0, "eval draws nothing")
    }

    func testFashionMNISTStylePadAndGray() {
        let gray = Image(width: 28, height: 28, channels: 1, pixels: (0..<784).map { UInt8($0 % 256) })
        let p = TransformPipeline(crop: .none, size: 32, hflip: 0, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
                                  smallImage: .pad(to: 32))
        var rng = RandomGenerator(seed: 0)
        let out = p.apply(gray, rng: &rng)
        XCTAssertEqual(out.count, 3 * 32 * 32)
        XCTAssertEqual(out[0], -1)  // zero padding
        XCTAssertEqual(out[2 * 32 + 2], (0 / 255 - 0.5) / 0.5)
        XCTAssertEqual(out[2 * 32 + 3], (Float(1) / 255 - 0.5) / 0.5)
        XCTAssertEqual(out[1024 + 2 * 32 + 3], out[2 * 32 + 3])  // channel repeated
    }

    func testHooksRun() {
        let img = Fixtures.image("decode_chelsea")
        var p = TransformPipeline(crop: .randomResizedCrop, size: 16)
        p.autoAugment = { im, _ in Image(width: im.width, height: im.height, channels: 3, fill: 255) }
        p.erasing = { ptr, c, h, w, _ in ptr[0] = 42; XCTAssertEqual(c * h * w, 3 * 16 * 16) }
        var rng = RandomGenerator(seed: 0)
        let out = p.apply(img, rng: &rng)
        XCTAssertEqual(out[0], 42)
        XCTAssertEqual(out[1], (1 - 0.485) / 0.229)
    }

    func testTwoViewPipelineMatchesCAEViews() {
        let img = Fixtures.image("decode_chelsea")
        let p = TransformPipeline.caePretrain(size: 48, secondSize: 24)
        var r1 = RandomGenerator(seed: 5), r2 = RandomGenerator(seed: 5)
        var main = [Float](repeating: 0, count: 3 * 48 * 48), second = [Float](repeating: 0, count: 3 * 24 * 24)
        main.withUnsafeMutableBufferPointer { m in
            second.withUnsafeMutableBufferPointer { s in p.apply(img, rng: &r1, into: m.baseAddress!, second: s.baseAddress!) }
        }
        let (a, b) = caeTwoViews(img, size: 48, secondSize: 24, rng: &r2)
        XCTAssertEqual(main, Normalizer.imagenet(a))
        XCTAssertEqual(second, Normalizer(affineScale: 0.8, shift: 0.1)(b))
        XCTAssertEqual(second.min()! >= 0.1 && second.max()! <= 0.9, true)
    }
}
