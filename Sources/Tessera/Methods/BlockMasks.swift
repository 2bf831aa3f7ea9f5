import Foundation
import TesseraCore

/// CAE's (BEiT's) block-wise mask generator, `furnace/masking_generator.MaskingGenerator` (spec
/// §6.4), and its `random` alternative. Both produce exactly `count` masked patches per image.
///
/// The generator consumes uniforms in [0, 1) from `next` (a sample's own generator in training; a
/// fixture's stream in the tests). Python's `random.uniform(a, b)` is a + (b − a)·u and
/// `random.randint(a, b)` is a + ⌊u·(b − a + 1)⌋; the geometry is computed in Double with Python's
/// round-half-to-even, so the same uniforms give the official mask.
public struct BlockMaskGenerator: Sendable, Equatable {
    public var height: Int, width: Int
    public var count: Int
    public var minPatches: Int
    public var maxPatches: Int
    public var logAspect: (Double, Double)

    public init(height: Int, width: Int, count: Int, minPatches: Int = 16, maxPatches: Int? = nil,
                minAspect: Double = 0.3, maxAspect: Double? = nil) {
        precondition(count >= 0 && count <= height * width, "tessera: \(count) masked patches do not fit \(height)×\(width)")
        self.height = height; self.width = width; self.count = count
        self.minPatches = minPatches
        self.maxPatches = maxPatches ?? count
        logAspect = (Foundation.log(minAspect), Foundation.log(maxAspect ?? 1 / minAspect))
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.height == b.height && a.width == b.width && a.count == b.count && a.minPatches == b.minPatches
            && a.maxPatches == b.maxPatches && a.logAspect == b.logAspect
    }

    /// One mask, row-major, 1 = masked, into `mask` [height·width].
    public func generate(into mask: UnsafeMutablePointer<Float>, next: () -> Float) {
        let n = height * width
        for i in 0..<n { mask[i] = 0 }
        var masked = 0
        // The official loop ends when the count is reached; a box of at least one new patch always
        // exists, so each round adds ≥ 1 patch with positive probability.
        while masked != count {
            let budget = min(count - masked, maxPatches)
            masked += attempt(mask, budget: budget, next: next)
        }
    }

    /// `_mask`: up to 10 boxes tried; the first that adds patches (without exceeding the budget) is kept.
    func attempt(_ mask: UnsafeMutablePointer<Float>, budget: Int, next: () -> Float) -> Int {
        var delta = 0
        for _ in 0..<10 {
            let area = uniform(Double(minPatches), Double(budget), next())
            let aspect = Foundation.exp(uniform(logAspect.0, logAspect.1, next()))
            let h = Int((area * aspect).squareRoot().rounded(.toNearestOrEven))
            let w = Int((area / aspect).squareRoot().rounded(.toNearestOrEven))
            if w < width && h < height {
                let top = randint(0, height - h, next()), left = randint(0, width - w, next())
                var already = 0
                for i in top..<(top + h) { for j in left..<(left + w) where mask[i * width + j] != 0 { already += 1 } }
                if 0 < h * w - already && h * w - already <= budget {
                    for i in top..<(top + h) { for j in left..<(left + w) where mask[i * width + j] == 0 {
                        mask[i * width + j] = 1
                        delta += 1
                    } }
                }
                if delta > 0 { break }
            }
        }
        return delta
    }

    func uniform(_ a: Double, _ b: Double, _ u: Float) -> Double { a + (b - a) * Double(u) }

    func randint(_ a: Int, _ b: Int, _ u: Float) -> Int { a + min(Int((Double(u) * Double(b - a + 1)).rounded(.down)), b - a) }

    /// `RandomMaskingGenerator`: exactly `count` patches, uniformly at random (a Fisher–Yates
    /// shuffle of count ones and n − count zeros).
    public static func random(into mask: UnsafeMutablePointer<Float>, patches n: Int, count: Int, next: () -> Float) {
        for i in 0..<n { mask[i] = i < count ? 1 : 0 }
        var i = n - 1
        while i > 0 {
            let j = min(Int(Double(next()) * Double(i + 1)), i)
            let t = mask[i]; mask[i] = mask[j]; mask[j] = t
            i -= 1
        }
    }
}
