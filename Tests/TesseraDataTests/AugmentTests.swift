import Foundation
import XCTest
import TesseraCore
import TesseraData

/// RandAugment ops against Pillow/timm outputs (Fixtures/augment, made by
/// tools/make_augment_fixtures.py), RandomErasing geometry, Mixup/CutMix arithmetic, Beta sampling.
final class AugmentTests: XCTestCase {
    // MARK: fixtures

    struct FixtureCase: Decodable {
        var op: String
        var magnitude: Double
        var sign: Int
        var interpolation: String
        var argument: [Double]
        var file: String
    }

    struct FixtureIndex: Decodable {
        var width: Int
        var height: Int
        var channels: Int
        var fill: [Int]
        var input: String
        var cases: [FixtureCase]
    }

    static let geometricOps: Set<String> = ["Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]

    func fixtureDirectory() throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures folder missing from the test bundle")
        return root.appendingPathComponent("augment")
    }

    func loadIndex() throws -> (FixtureIndex, Image, URL) {
        let dir = try fixtureDirectory()
        let index = try JSONDecoder().decode(FixtureIndex.self, from: Data(contentsOf: dir.appendingPathComponent("index.json")))
        let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(index.input)))
        XCTAssertEqual(bytes.count, index.width * index.height * index.channels)
        return (index, Image(width: index.width, height: index.height, channels: index.channels, pixels: bytes), dir)
    }

    func testEveryIncreasingOpHasFixtures() throws {
        let (index, _, _) = try loadIndex()
        let ops = Set(index.cases.map(\.op))
        XCTAssertEqual(ops, Set(RandAugment.increasingOps))
        XCTAssertEqual(RandAugment.increasingOps.count, 15)
    }

    func testOpsMatchPillow() throws {
        let (index, input, dir) = try loadIndex()
        let fill = (UInt8(index.fill[0]), UInt8(index.fill[1]), UInt8(index.fill[2]))
        var report: [String] = []
        for fc in index.cases {
            let expected = [UInt8](try Data(contentsOf: dir.appendingPathComponent(fc.file)))
            XCTAssertEqual(expected.count, input.pixels.count, fc.file)
            // The level mapping reproduces timm's argument.
            let arg = RandAugment.levelArgument(fc.op, magnitude: fc.magnitude, sign: fc.sign)
            if let a = fc.argument.first {
                XCTAssertEqual(try XCTUnwrap(arg, fc.file), a, accuracy: 1e-12, "level argument of \(fc.file)")
            } else {
                XCTAssertNil(arg, fc.file)
            }
            let resample = try XCTUnwrap(RandAugment.Resample(rawValue: fc.interpolation))
            let got = RandAugment.op(fc.op, image: input, magnitude: fc.magnitude, sign: fc.sign,
                                     fill: fill, interpolation: resample)
            XCTAssertEqual(got.width, input.width)
            XCTAssertEqual(got.height, input.height)
            XCTAssertEqual(got.channels, input.channels)
            var maxDiff = 0, over2 = 0, differing = 0
            for i in 0..<expected.count {
                let d = abs(Int(got.pixels[i]) - Int(expected[i]))
                maxDiff = max(maxDiff, d)
                if d > 0 { differing += 1 }
                if d > 2 { over2 += 1 }
            }
            if differing > 0 { report.append("\(fc.file): \(differing) values differ, max \(maxDiff)") }
            if AugmentTests.geometricOps.contains(fc.op) {
                // Resampling: allow libm/rounding-order differences, ≤ 1% of values off by more than 2.
                XCTAssertLessThanOrEqual(Double(over2), 0.01 * Double(expected.count), "\(fc.file): \(over2) values off by > 2")
            } else {
                XCTAssertEqual(maxDiff, 0, "\(fc.file): \(differing) values differ from Pillow, max \(maxDiff)")
            }
        }
        if !report.isEmpty { print("AugmentTests differences:\n" + report.joined(separator: "\n")) }
    }

    // MARK: RandAugment details

    func testLevelArguments() {
        XCTAssertEqual(RandAugment.levelArgument("Rotate", magnitude: 10, sign: -1), -30)
        XCTAssertEqual(RandAugment.levelArgument("PosterizeIncreasing", magnitude: 9), 1)
        XCTAssertEqual(RandAugment.levelArgument("PosterizeIncreasing", magnitude: 10), 0)
        XCTAssertEqual(RandAugment.levelArgument("SolarizeIncreasing", magnitude: 9), 26)
        XCTAssertEqual(RandAugment.levelArgument("SolarizeAdd", magnitude: 9), 99)
        XCTAssertEqual(RandAugment.levelArgument("ColorIncreasing", magnitude: 10, sign: -1)!, 0.1, accuracy: 1e-12)
        XCTAssertEqual(RandAugment.levelArgument("SharpnessIncreasing", magnitude: 9, sign: 1)!, 1.81, accuracy: 1e-12)
        XCTAssertEqual(RandAugment.levelArgument("TranslateXRel", magnitude: 10, sign: 1)!, 0.45, accuracy: 1e-12)
        XCTAssertNil(RandAugment.levelArgument("Equalize", magnitude: 9))
    }

    func testPosterizeToZeroBitsIsBlack() {
        let img = Image(width: 4, height: 3, channels: 3, pixels: (0..<36).map { UInt8($0 * 7) })
        let out = RandAugment.op("PosterizeIncreasing", image: img, magnitude: 10)
        XCTAssertTrue(out.pixels.allSatisfy { $0 == 0 })
        // magnitude 0 keeps 4 bits
        let four = RandAugment.op("PosterizeIncreasing", image: img, magnitude: 0)
        XCTAssertEqual(four.pixels, img.pixels.map { $0 & 0xF0 })
    }

    func testIdentityAffineIsExact() {
        let (_, input, _) = try! loadIndex()
        for r in RandAugment.Resample.allCases {
            let out = RandAugment.PIL.affine(input, [1, 0, 0, 0, 1, 0], resample: r, fill: (1, 2, 3))
            XCTAssertEqual(out.pixels, input.pixels, "\(r)")
        }
        // Magnitude 0 is the identity for the geometric ops.
        for name in ["Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"] {
            XCTAssertEqual(RandAugment.op(name, image: input, magnitude: 0, sign: -1).pixels, input.pixels, name)
        }
    }

    func testGrayscaleImages() {
        let gray = Image(width: 9, height: 7, channels: 1, pixels: (0..<63).map { UInt8(($0 * 37) % 256) })
        for name in RandAugment.increasingOps {
            let out = RandAugment.op(name, image: gray, magnitude: 7, sign: 1)
            XCTAssertEqual(out.channels, 1, name)
            XCTAssertEqual(out.pixels.count, 63, name)
        }
        XCTAssertEqual(RandAugment.op("ColorIncreasing", image: gray, magnitude: 9).pixels, gray.pixels)
    }

    func testConfigParsing() throws {
        let ra = RandAugment(config: "rand-m9-mstd0.5-inc1", fill: (124, 116, 104))
        XCTAssertEqual(ra.magnitude, 9)
        XCTAssertEqual(ra.magnitudeStd, 0.5)
        XCTAssertEqual(ra.magnitudeMax, 10)
        XCTAssertEqual(ra.numLayers, 2)
        XCTAssertEqual(ra.probability, 0.5)
        XCTAssertEqual(ra.ops, RandAugment.increasingOps)
        XCTAssertEqual(ra.interpolation, .bicubic)
        XCTAssertTrue(ra.fill == (124, 116, 104))

        let plain = RandAugment(config: "rand-n3-m7-mstd101-mmax12")
        XCTAssertEqual(plain.numLayers, 3)
        XCTAssertEqual(plain.magnitude, 7)
        XCTAssertEqual(plain.magnitudeStd, .infinity)
        XCTAssertEqual(plain.magnitudeMax, 12)
        XCTAssertEqual(plain.ops, RandAugment.standardOps)

        XCTAssertEqual(RandAugment(config: "rand").magnitude, 10)
        XCTAssertNoThrow(try RandAugment.validate(config: "rand-m9-mstd0.5-inc1"))
        XCTAssertThrowsError(try RandAugment.validate(config: "augmix-m9"))
        XCTAssertThrowsError(try RandAugment.validate(config: "rand-q3"))
        XCTAssertThrowsError(try RandAugment.validate(config: "rand-w0"))
        XCTAssertThrowsError(try RandAugment.validate(config: "rand-m9x"))
    }

    func testApplyIsSeededAndKeepsShape() throws {
        let (_, input, _) = try loadIndex()
        let ra = RandAugment(config: "rand-m9-mstd0.5-inc1")
        var changed = 0
        let trials = 400
        for s in 0..<trials {
            var r1 = RandomGenerator(seed: UInt64(s)), r2 = RandomGenerator(seed: UInt64(s))
            let a = ra.apply(input, rng: &r1), b = ra.apply(input, rng: &r2)
            XCTAssertEqual(a, b)
            XCTAssertEqual(a.width, input.width)
            XCTAssertEqual(a.height, input.height)
            if a.pixels != input.pixels { changed += 1 }
        }
        // Two ops at p = 0.5 leave an image alone with probability 1/4 (a few ops can be no-ops).
        let frac = Double(changed) / Double(trials)
        XCTAssertGreaterThan(frac, 0.65)
        XCTAssertLessThan(frac, 0.85)

        var off = ra
        off.probability = 0
        var rng = RandomGenerator(seed: 5)
        XCTAssertEqual(off.apply(input, rng: &rng), input)

        var random = ra
        random.interpolation = nil  // timm's per-call bilinear/bicubic choice
        var r3 = RandomGenerator(seed: 11)
        XCTAssertEqual(random.apply(input, rng: &r3).pixels.count, input.pixels.count)
    }

    // MARK: RandomErasing

    func testRandomErasingProbabilityZeroLeavesImage() {
        let re = RandomErasing(probability: 0)
        let c = 3, h = 20, w = 30
        var buf = [Float](repeating: 0, count: c * h * w)
        for i in buf.indices { buf[i] = Float(i) * 0.01 }
        let orig = buf
        var rng = RandomGenerator(seed: 1)
        for _ in 0..<200 {
            let box = buf.withUnsafeMutableBufferPointer { re.apply($0.baseAddress!, channels: c, height: h, width: w, rng: &rng) }
            XCTAssertNil(box)
        }
        XCTAssertEqual(buf, orig)
    }

    func testRandomErasingBoxAndOutsideUntouched() {
        let re = RandomErasing(probability: 1.0, minArea: 0.02, maxArea: 1.0 / 3.0, minAspect: 0.3)
        let c = 3, h = 64, w = 48
        var rng = RandomGenerator(seed: 42)
        var areaSum = 0.0, count = 0
        var inside: [Float] = []
        for _ in 0..<300 {
            var buf = [Float](repeating: 7, count: c * h * w)
            let box = buf.withUnsafeMutableBufferPointer { re.apply($0.baseAddress!, channels: c, height: h, width: w, rng: &rng) }
            guard let b = box else { continue }
            count += 1
            XCTAssertGreaterThanOrEqual(b.top, 0)
            XCTAssertGreaterThanOrEqual(b.left, 0)
            XCTAssertLessThan(b.height, h)
            XCTAssertLessThan(b.width, w)
            XCTAssertLessThanOrEqual(b.top + b.height, h)
            XCTAssertLessThanOrEqual(b.left + b.width, w)
            let frac = Double(b.height * b.width) / Double(h * w)
            // rounding of h and w moves the area a little outside [0.02, 1/3]
            XCTAssertGreaterThan(frac, 0.01)
            XCTAssertLessThan(frac, 0.40)
            if b.width > 0 && b.height > 0 {
                let aspect = Double(b.height) / Double(b.width)
                XCTAssertGreaterThan(aspect, 0.3 * 0.5)
                XCTAssertLessThan(aspect, (1 / 0.3) * 2)
            }
            areaSum += frac
            for ch in 0..<c {
                for y in 0..<h {
                    for x in 0..<w {
                        let v = buf[(ch * h + y) * w + x]
                        let inBox = y >= b.top && y < b.top + b.height && x >= b.left && x < b.left + b.width
                        if inBox { inside.append(v) } else if v != 7 {
                            XCTFail("value outside the box changed at c\(ch) y\(y) x\(x)"); return
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(count, 280, "with p = 1 nearly every image gets a box")
        let meanArea = areaSum / Double(count)
        XCTAssertGreaterThan(meanArea, 0.12)
        XCTAssertLessThan(meanArea, 0.20)
        // The fill is N(0, 1) per value.
        let mean = inside.reduce(0, +) / Float(inside.count)
        let variance = inside.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(inside.count)
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.03)
        XCTAssertFalse(inside.contains(7))
    }

    func testRandomErasingRateAndBatch() {
        let re = RandomErasing(probability: 0.25)
        var rng = RandomGenerator(seed: 9)
        var hits = 0
        let n = 4000
        for _ in 0..<n where re.sampleBox(height: 32, width: 32, rng: &rng) != nil { hits += 1 }
        XCTAssertEqual(Double(hits) / Double(n), 0.25, accuracy: 0.03)

        let t = Tensor.full([4, 3, 16, 16], 3)
        var r2 = RandomGenerator(seed: 3)
        let boxes = RandomErasing(probability: 1).apply(t, rng: &r2)
        XCTAssertEqual(boxes.count, 4)
        for (i, b) in boxes.enumerated() {
            let changed = (0..<(3 * 256)).filter { t.data[i * 768 + $0] != 3 }.count
            XCTAssertEqual(changed, b.map { 3 * $0.height * $0.width } ?? 0)
        }
    }

    // MARK: Mixup / CutMix

    func makeBatch(_ b: Int, _ c: Int, _ h: Int, _ w: Int) -> Tensor {
        let t = Tensor(shape: [b, c, h, w])
        for i in 0..<t.count { t.data[i] = Float((i * 7919) % 1000) / 100 - 5 }
        return t
    }

    func assertRowsSumToOne(_ t: Tensor, file: StaticString = #filePath, line: UInt = #line) {
        let n = t.shape[1]
        for i in 0..<t.shape[0] {
            var s: Float = 0
            for k in 0..<n { s += t.data[i * n + k] }
            XCTAssertEqual(s, 1, accuracy: 1e-5, file: file, line: line)
        }
    }

    func testMixupEquationElementwise() throws {
        let mix = Mixup(numClasses: 10)
        let x = makeBatch(4, 3, 5, 6)
        let orig = x.array
        let labels = [1, 2, 3, 3]
        let lam = 0.3
        let targets = try mix.apply(images: x, labels: labels, lambda: lam, useCutmix: false)
        let per = 3 * 5 * 6
        for i in 0..<4 {
            let j = 3 - i
            for k in 0..<per {
                let want = orig[i * per + k] * Float(lam) + orig[j * per + k] * Float(1 - lam)
                XCTAssertEqual(x.data[i * per + k], want, accuracy: 1e-6)
            }
        }
        XCTAssertEqual(targets.shape, [4, 10])
        assertRowsSumToOne(targets)
        let off: Float = 0.01, on: Float = 0.91
        // sample 0: label 1 with weight λ, flipped label 3 with 1 − λ
        XCTAssertEqual(targets.data[0 * 10 + 1], on * 0.3 + off * 0.7, accuracy: 1e-6)
        XCTAssertEqual(targets.data[0 * 10 + 3], off * 0.3 + on * 0.7, accuracy: 1e-6)
        XCTAssertEqual(targets.data[0 * 10 + 5], off, accuracy: 1e-6)
        // sample 2 (label 3) with flipped sample 1 (label 2)
        XCTAssertEqual(targets.data[2 * 10 + 3], on * 0.3 + off * 0.7, accuracy: 1e-6)
        XCTAssertEqual(targets.data[2 * 10 + 2], off * 0.3 + on * 0.7, accuracy: 1e-6)
        // sample 3 (label 3) paired with sample 0 (label 1)
        XCTAssertEqual(targets.data[3 * 10 + 3], on * 0.3 + off * 0.7, accuracy: 1e-6)
    }

    func testCutmixBoxAndLambdaCorrection() throws {
        let mix = Mixup(numClasses: 5)
        let (b, c, h, w) = (2, 2, 8, 10)
        let x = makeBatch(b, c, h, w)
        let orig = x.array
        let box = Mixup.Box(yLow: 2, yHigh: 6, xLow: 3, xHigh: 8)
        let out = try mix.mix(images: x, labels: [0, 4], lambda: 0.5, useCutmix: true, box: box)
        XCTAssertEqual(out.lambda, 1 - 20.0 / 80.0)
        XCTAssertEqual(out.box, box)
        let per = c * h * w
        for i in 0..<b {
            for ch in 0..<c { for y in 0..<h { for xx in 0..<w {
                let k = (ch * h + y) * w + xx
                let inBox = y >= 2 && y < 6 && xx >= 3 && xx < 8
                let want = inBox ? orig[(b - 1 - i) * per + k] : orig[i * per + k]
                XCTAssertEqual(x.data[i * per + k], want)
            } } }
        }
        assertRowsSumToOne(out.targets)
        XCTAssertEqual(out.targets.data[0], Float(0.75) * 0.92 + Float(0.25) * 0.02, accuracy: 1e-6)

        // Random CutMix: λ always equals 1 − box area / image area, box inside the image.
        let cutOnly = Mixup(mixupAlpha: 0, cutmixAlpha: 1, numClasses: 5)
        var rng = RandomGenerator(seed: 77)
        for _ in 0..<200 {
            let y = makeBatch(2, 1, 13, 17)
            let o = try cutOnly.mix(images: y, labels: [1, 2], rng: &rng)
            XCTAssertTrue(o.usedCutmix || o.lambda == 1)
            if let bx = o.box {
                XCTAssertEqual(o.lambda, 1 - Double(bx.area) / Double(13 * 17))
                XCTAssertTrue(bx.yLow >= 0 && bx.yHigh <= 13 && bx.xLow >= 0 && bx.xHigh <= 17)
            }
            assertRowsSumToOne(o.targets)
        }

        // Box sides follow int(H·√(1−λ)) before clipping.
        var r2 = RandomGenerator(seed: 8)
        for _ in 0..<100 {
            let bx = Mixup.cutmixBox(height: 224, width: 224, lambda: 0.36, rng: &r2)
            let side = Int(224 * (0.64).squareRoot()) / 2  // 179 / 2 = 89 each side of the centre
            XCTAssertLessThanOrEqual(bx.yHigh - bx.yLow, 2 * side)
            XCTAssertLessThanOrEqual(bx.xHigh - bx.xLow, 2 * side)
        }
    }

    func testMixupModesAndProbability() throws {
        var rng = RandomGenerator(seed: 4)
        let mixOnly = Mixup(mixupAlpha: 0.8, cutmixAlpha: 0, numClasses: 3)
        let cutOnly = Mixup(mixupAlpha: 0, cutmixAlpha: 1.0, numClasses: 3)
        let both = Mixup(numClasses: 3)
        var cutCount = 0
        for _ in 0..<2000 {
            XCTAssertFalse(mixOnly.sampleParameters(rng: &rng).useCutmix)
            XCTAssertTrue(cutOnly.sampleParameters(rng: &rng).useCutmix)
            if both.sampleParameters(rng: &rng).useCutmix { cutCount += 1 }
        }
        XCTAssertEqual(Double(cutCount) / 2000, 0.5, accuracy: 0.05)

        // prob 0: the batch is left alone, targets are plain smoothed one-hots.
        let never = Mixup(prob: 0, numClasses: 4)
        let x = makeBatch(2, 1, 3, 3)
        let orig = x.array
        let t = try never.apply(images: x, labels: [2, 0], rng: &rng)
        XCTAssertEqual(x.array, orig)
        XCTAssertEqual(t.data[2], 0.925, accuracy: 1e-6)
        XCTAssertEqual(t.data[0], 0.025, accuracy: 1e-6)
        XCTAssertEqual(t.data[4], 0.925, accuracy: 1e-6)
        assertRowsSumToOne(t)

        // Random batches always give targets whose rows sum to 1.
        for _ in 0..<50 {
            let y = makeBatch(6, 2, 7, 9)
            assertRowsSumToOne(try both.apply(images: y, labels: [0, 1, 2, 2, 1, 0], rng: &rng))
        }
    }

    func testMixupErrors() {
        let mix = Mixup(numClasses: 3)
        var rng = RandomGenerator(seed: 1)
        XCTAssertThrowsError(try mix.apply(images: makeBatch(3, 1, 2, 2), labels: [0, 1, 2], rng: &rng)) { error in
            XCTAssertEqual(error as? Mixup.MixupError, .oddBatch(3))
            XCTAssertTrue("\(error)".contains("even"))
        }
        XCTAssertThrowsError(try mix.apply(images: makeBatch(2, 1, 2, 2), labels: [0, 3], rng: &rng))
        XCTAssertThrowsError(try mix.apply(images: makeBatch(2, 1, 2, 2), labels: [0], rng: &rng))
        XCTAssertThrowsError(try mix.apply(images: Tensor(shape: [2, 4]), labels: [0, 1], rng: &rng))
    }

    func testBetaSampler() {
        var rng = RandomGenerator(seed: 2024)
        for (a, b) in [(0.8, 0.8), (1.0, 1.0), (2.0, 5.0), (0.3, 1.7)] {
            let n = 20_000
            var s = 0.0, s2 = 0.0
            for _ in 0..<n {
                let v = Mixup.sampleBeta(a, b, rng: &rng)
                XCTAssertTrue(v >= 0 && v <= 1)
                s += v; s2 += v * v
            }
            let mean = s / Double(n), variance = s2 / Double(n) - mean * mean
            let wantMean = a / (a + b)
            let wantVar = a * b / ((a + b) * (a + b) * (a + b + 1))
            XCTAssertEqual(mean, wantMean, accuracy: 0.01, "Beta(\(a), \(b)) mean")
            XCTAssertEqual(variance, wantVar, accuracy: 0.1 * wantVar, "Beta(\(a), \(b)) variance")
        }
        // Gamma with shape < 1 and > 1
        for k in [0.5, 3.0] {
            var s = 0.0
            for _ in 0..<20_000 { s += Mixup.sampleGamma(shape: k, rng: &rng) }
            XCTAssertEqual(s / 20_000, k, accuracy: 0.05 * k + 0.01)
        }
    }
}
