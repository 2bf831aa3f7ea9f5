import Foundation
import TesseraCore
import TesseraData
import XCTest

/// Fixture access: files written by tools/make_data_fixtures.py.
enum Fixtures {
    static func url(_ file: String) -> URL {
        let ns = file as NSString
        guard let u = Bundle.module.url(forResource: ns.deletingPathExtension, withExtension: ns.pathExtension,
                                        subdirectory: "Fixtures") else {
            fatalError("missing fixture \(file); run tools/make_data_fixtures.py")
        }
        return u
    }

    static func bytes(_ file: String) -> [UInt8] { [UInt8](try! Data(contentsOf: url(file))) }

    static let manifest: [[String: Any]] = {
        let d = try! Data(contentsOf: url("manifest.json"))
        let j = try! JSONSerialization.jsonObject(with: d) as! [String: Any]
        return j["references"] as! [[String: Any]]
    }()

    static func entry(_ name: String) -> [String: Any] {
        manifest.first { ($0["name"] as! String) == name }!
    }

    /// A reference uint8 HWC array as an Image.
    static func image(_ name: String) -> Image {
        let e = entry(name)
        let shape = e["shape"] as! [Int]
        let raw = try! gunzip(bytes(e["file"] as! String))
        return Image(width: shape[1], height: shape[0], channels: shape[2], pixels: raw)
    }

    static func floats(_ name: String) -> [Float] {
        let e = entry(name)
        let raw = try! gunzip(bytes(e["file"] as! String))
        return raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func decoded(_ jpeg: String) -> Image {
        try! JPEGDecoder().decode(bytes(jpeg), name: jpeg)
    }
}

/// Mean and max absolute difference in levels.
func compare(_ a: Image, _ b: Image, file: StaticString = #filePath, line: UInt = #line) -> (mean: Double, max: Int) {
    XCTAssertEqual(a.width, b.width, file: file, line: line)
    XCTAssertEqual(a.height, b.height, file: file, line: line)
    XCTAssertEqual(a.channels, b.channels, file: file, line: line)
    guard a.pixels.count == b.pixels.count else { return (.infinity, 255) }
    var sum = 0, mx = 0
    for i in 0..<a.pixels.count {
        let d = abs(Int(a.pixels[i]) - Int(b.pixels[i]))
        sum += d
        mx = max(mx, d)
    }
    return (Double(sum) / Double(a.pixels.count), mx)
}

/// A scripted source of draws (recorded 24-bit uniforms), like the fixture script's monkeypatch.
struct Scripted: UniformSource {
    var values: [Float]
    var used = 0
    mutating func uniform() -> Float { used += 1; return values[used - 1] }
    mutating func int(_ n: Int) -> Int { Int(Double(uniform()) * Double(n)) }
}

final class DecodeTests: XCTestCase {
    func testDecodeMatchesPIL() throws {
        for (file, channels) in [("astronaut.jpg", 3), ("chelsea.jpg", 3), ("coffee.jpg", 3),
                                 ("chelsea_progressive.jpg", 3), ("coffee_gray.jpg", 1), ("astronaut_cmyk.jpg", 3)] {
            let mine = Fixtures.decoded(file)
            let ref = Fixtures.image("decode_" + file.replacingOccurrences(of: ".jpg", with: ""))
            XCTAssertEqual(mine.channels, channels, file)
            let (mean, mx) = compare(mine, ref)
            print("decode \(file): mean abs diff \(mean), max \(mx)")
            XCTAssertLessThan(mean, 1.0, file)
        }
    }

    func testEncodeRoundTripAndErrors() throws {
        let img = Fixtures.decoded("chelsea.jpg")
        let jpg = encodeJPEG(img, quality: 95)
        let back = try JPEGDecoder().decode(jpg)
        let (mean, _) = compare(back, img)
        XCTAssertLessThan(mean, 2.0)
        let gray = Fixtures.decoded("coffee_gray.jpg")
        XCTAssertEqual(try JPEGDecoder().decode(encodeJPEG(gray, quality: 95)).channels, 1)
        // Truncated file: error names the file.
        XCTAssertThrowsError(try JPEGDecoder().decode(Array(jpg[0..<(jpg.count / 2)]), name: "half.jpg")) { e in
            XCTAssertTrue("\(e)".contains("half.jpg"), "\(e)")
        }
        XCTAssertThrowsError(try JPEGDecoder().decode([1, 2, 3, 4], name: "junk.jpg")) { e in
            XCTAssertTrue("\(e)".contains("junk.jpg"))
        }
    }

    func testDecodeTimeDownscale() throws {
        let img = Fixtures.decoded("astronaut.jpg")  // 160 x 160
        let small = try JPEGDecoder(minSide: 40).decode(Fixtures.bytes("astronaut.jpg"))
        XCTAssertEqual(small.width, 40)  // 1/4 keeps 40 ≥ 40; 1/8 would give 20
        XCTAssertEqual(small.height, 40)
        let none = try JPEGDecoder(minSide: 200).decode(Fixtures.bytes("astronaut.jpg"))
        XCTAssertEqual(none.width, img.width)
        XCTAssertEqual(JPEGDecoder.scaledSize(width: 500, height: 375, minSide: 100).width, 188)  // 3/8: 188x141
    }
}

final class ResampleTests: XCTestCase {
    func check(_ name: String, _ mine: Image, maxMean: Double = 0.5, maxDiff: Int = 2) {
        let ref = Fixtures.image(name)
        let (mean, mx) = compare(mine, ref)
        print("resample \(name): mean abs diff \(mean), max \(mx)")
        XCTAssertLessThan(mean, maxMean, name)
        XCTAssertLessThanOrEqual(mx, maxDiff, name)
    }

    func testResizeMatchesPIL() {
        let astro = Fixtures.image("decode_astronaut")
        let chelsea = Fixtures.image("decode_chelsea")
        for interp in [Interpolation.bilinear, .bicubic, .lanczos] {
            check("down_\(interp)", resample(astro, width: 97, height: 71, interpolation: interp))
            check("cropup_\(interp)", resample(chelsea, width: 90, height: 80, interpolation: interp,
                                               box: CropBox(top: 20, left: 30, height: 50, width: 60)))
            check("cropmix_\(interp)", resample(astro, width: 130, height: 64, interpolation: interp,
                                                box: CropBox(top: 13, left: 7, height: 120, width: 97)))
        }
        check("gray_bicubic", resample(Fixtures.image("decode_coffee_gray"), width: 61, height: 47, interpolation: .bicubic))
    }

    /// Many crop geometries (both-down, both-up, mixed): PIL 13 picks the pass order itself, so a
    /// few boxes may differ by a few levels; the statistics must stay within the target.
    func testManyCropBoxesMatchTorchvision() {
        let e = Fixtures.entry("rrc_many")
        let boxes = e["boxes"] as! [[Int]]
        let all = Fixtures.image("rrc_many")  // boxes stacked vertically, 48 rows each
        let astro = Fixtures.image("decode_astronaut")
        var sum = 0.0, mx = 0, exact = 0
        for (i, b) in boxes.enumerated() {
            let mine = resample(astro, width: 48, height: 48, interpolation: .bicubic,
                                box: CropBox(top: b[0], left: b[1], height: b[2], width: b[3]))
            let ref = all.cropped(CropBox(top: 48 * i, left: 0, height: 48, width: 48))
            let (m, x) = compare(mine, ref)
            sum += m; mx = max(mx, x); if x == 0 { exact += 1 }
        }
        print("resample rrc_many: mean abs diff \(sum / Double(boxes.count)), max \(mx), exact \(exact)/\(boxes.count)")
        XCTAssertLessThan(sum / Double(boxes.count), 0.5)
        XCTAssertLessThanOrEqual(mx, 8)
    }

    func testResizeCenterCropMatchesTorchvision() {
        let coffee = Fixtures.image("decode_coffee")
        for (size, crop) in [(100, 88), (93, 80), (120, 111)] {
            check("resize_center_\(size)_\(crop)", resizeCenterCrop(coffee, resize: size, crop: crop, interpolation: .bicubic))
        }
        // torchvision rounding: top = int(round((h - th) / 2.0)), half to even.
        XCTAssertEqual(Geometry.centerCrop(width: 300, height: 293, cropWidth: 224, cropHeight: 224).top, 34)
        XCTAssertEqual(Geometry.centerCrop(width: 300, height: 295, cropWidth: 224, cropHeight: 224).top, 36)
        XCTAssertEqual(Geometry.shorterSide(width: 500, height: 375, to: 256).width, 341)
        XCTAssertEqual(Geometry.shorterSide(width: 375, height: 500, to: 256).height, 341)
    }

    func testWindowEqualsResizeThenCrop() {
        let astro = Fixtures.image("decode_astronaut")
        let full = resample(astro, width: 120, height: 100, interpolation: .bicubic)
        let win = CropBox(top: 7, left: 11, height: 50, width: 60)
        XCTAssertEqual(resample(astro, width: 120, height: 100, interpolation: .bicubic, window: win), full.cropped(win))
    }

    func testNormalizeMatchesTorchvision() {
        let e = Fixtures.entry("normalize")
        let box = e["box"] as! [Int]
        let img = Fixtures.image("decode_astronaut").cropped(CropBox(top: box[0], left: box[1], height: box[2], width: box[3]))
        let mine = Normalizer.imagenet(img)
        let ref = Fixtures.floats("normalize")
        XCTAssertEqual(mine, ref)  // bit-exact
    }
}

final class CropSamplingTests: XCTestCase {
    func testRandomResizedCropBoxesMatchTorchvision() throws {
        let d = try Data(contentsOf: Fixtures.url("rrc_boxes.json"))
        let cases = (try JSONSerialization.jsonObject(with: d) as! [String: Any])["cases"] as! [[String: Any]]
        var fallbacks = 0
        for c in cases {
            let u = (c["u24"] as! [Int]).map { Float($0) / 16_777_216 }
            var src = Scripted(values: u)
            let s = c["scale"] as! [Double], r = c["ratio"] as! [Double]
            let b = RandomResizedCrop.sampleBox(width: c["width"] as! Int, height: c["height"] as! Int,
                                                scale: (s[0], s[1]), ratio: (r[0], r[1]), rng: &src)
            XCTAssertEqual([b.top, b.left, b.h, b.w], c["box"] as! [Int], "\(c["width"]!)x\(c["height"]!) \(s) \(r)")
            XCTAssertEqual(src.used, u.count, "same number of draws")
            if u.count == 20 { fallbacks += 1 }
        }
        XCTAssertGreaterThan(fallbacks, 10, "the fallback path is covered")
    }

    func testClampedVariantIsOneDrawAndInside() {
        var rng = RandomGenerator(seed: 3)
        for _ in 0..<500 {
            let w = 1 + rng.int(300), h = 1 + rng.int(300)
            var copy = rng
            let b = RandomResizedCrop.sampleBoxClamped(width: w, height: h, scale: (0.08, 1), ratio: (0.75, 4.0 / 3), rng: &rng)
            XCTAssertEqual(rng.counter - copy.counter, 4)  // two uniforms, two integers
            XCTAssertTrue(b.w >= 1 && b.h >= 1 && b.left + b.w <= w && b.top + b.h <= h)
            // Restated formula with the same draws.
            let area = Double(w * h) * Double(Float(0.08 + 0.92 * Double(copy.uniform())))
            _ = area
        }
    }

    func testCAEViewsShareOneBox() {
        let img = Fixtures.image("decode_chelsea")
        var r1 = RandomGenerator(seed: 9)
        let (a, b) = caeTwoViews(img, size: 64, secondSize: 32, rng: &r1)
        XCTAssertEqual(a.width, 64)
        XCTAssertEqual(b.width, 32)
        // Same draws by hand: flip, then the box on the (possibly flipped) image.
        var r2 = RandomGenerator(seed: 9)
        let flip = r2.uniform() < 0.5
        let src = flip ? img.flippedHorizontally() : img
        let box = RandomResizedCrop(size: 64).box(width: src.width, height: src.height, rng: &r2)
        XCTAssertEqual(resample(src, width: 32, height: 32, interpolation: .lanczos, box: box), b)
        XCTAssertEqual(resample(src, width: 64, height: 64, interpolation: .bicubic, box: box), a)
    }
}
