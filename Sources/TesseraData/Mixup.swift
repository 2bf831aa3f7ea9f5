import Foundation
import TesseraCore

/// timm's `Mixup` in mode `'batch'`: one λ for the whole batch, every sample mixed with the batch
/// flipped along dim 0 (sample i with sample B−1−i), targets mixed the same way from label-smoothed
/// one-hots.
///
/// Per batch: with probability `prob` the batch is mixed, otherwise λ = 1 (images untouched, targets
/// still smoothed). When both alphas are positive CutMix is chosen with probability `switchProb`;
/// with one alpha at 0 only the other is used. λ ~ Beta(α, α). Mixup: `x ← λ·x + (1−λ)·flip(x)`.
/// CutMix: a box with sides `int(H·√(1−λ))`, `int(W·√(1−λ))` around a uniform centre, clipped to
/// the image, is copied from the flipped batch and λ becomes `1 − box_area/(H·W)`.
/// Targets: `λ·onehot_s(y) + (1−λ)·onehot_s(flip(y))`, off value `smoothing/N`, on value
/// `1 − smoothing + smoothing/N`.
public struct Mixup: Sendable {
    public var mixupAlpha: Double
    public var cutmixAlpha: Double
    public var prob: Double
    public var switchProb: Double
    public var labelSmoothing: Double
    public var numClasses: Int
    /// timm `correct_lam` (true): λ follows the clipped CutMix box.
    public var correctLambda: Bool

    public init(mixupAlpha: Double = 0.8, cutmixAlpha: Double = 1.0, prob: Double = 1.0, switchProb: Double = 0.5,
                labelSmoothing: Double = 0.1, numClasses: Int, correctLambda: Bool = true) {
        precondition(numClasses > 0, "tessera: Mixup needs numClasses > 0")
        precondition(mixupAlpha >= 0 && cutmixAlpha >= 0, "tessera: Mixup alphas must be >= 0")
        self.mixupAlpha = mixupAlpha
        self.cutmixAlpha = cutmixAlpha
        self.prob = prob
        self.switchProb = switchProb
        self.labelSmoothing = labelSmoothing
        self.numClasses = numClasses
        self.correctLambda = correctLambda
    }

    /// A CutMix region: rows `yLow ..< yHigh`, columns `xLow ..< xHigh`.
    public struct Box: Equatable, Sendable {
        public var yLow: Int, yHigh: Int, xLow: Int, xHigh: Int
        public init(yLow: Int, yHigh: Int, xLow: Int, xHigh: Int) {
            self.yLow = yLow; self.yHigh = yHigh; self.xLow = xLow; self.xHigh = xHigh
        }
        public var area: Int { max(0, yHigh - yLow) * max(0, xHigh - xLow) }
    }

    public enum MixupError: Error, CustomStringConvertible, Equatable {
        case oddBatch(Int)
        case badShape([Int])
        case labelCount(labels: Int, batch: Int)
        case labelOutOfRange(label: Int, numClasses: Int)
        case badBox(Box, height: Int, width: Int)
        case missingBox

        public var description: String {
            switch self {
            case .oddBatch(let b):
                return "Mixup/CutMix needs an even batch size (each sample is mixed with the flipped batch), got \(b)"
            case .badShape(let s): return "Mixup needs images of shape [B, C, H, W], got \(s)"
            case .labelCount(let l, let b): return "Mixup got \(l) labels for a batch of \(b)"
            case .labelOutOfRange(let l, let n): return "Mixup label \(l) is outside 0..<\(n)"
            case .badBox(let box, let h, let w): return "CutMix box \(box) does not fit a \(h)x\(w) image"
            case .missingBox: return "CutMix needs a box"
            }
        }
    }

    /// What one call did.
    public struct Outcome {
        /// Soft targets `[B, numClasses]`.
        public var targets: Tensor
        /// The λ the targets use (after the CutMix correction).
        public var lambda: Double
        public var usedCutmix: Bool
        public var box: Box?
    }

    // MARK: random draws

    /// timm `_params_per_batch`: (λ, use CutMix).
    public func sampleParameters(rng: inout RandomGenerator) -> (lambda: Double, useCutmix: Bool) {
        guard rng.uniformDouble() < prob else { return (1, false) }
        if mixupAlpha > 0 && cutmixAlpha > 0 {
            let cut = rng.uniformDouble() < switchProb
            let a = cut ? cutmixAlpha : mixupAlpha
            return (Mixup.sampleBeta(a, a, rng: &rng), cut)
        } else if mixupAlpha > 0 {
            return (Mixup.sampleBeta(mixupAlpha, mixupAlpha, rng: &rng), false)
        } else if cutmixAlpha > 0 {
            return (Mixup.sampleBeta(cutmixAlpha, cutmixAlpha, rng: &rng), true)
        }
        return (1, false)
    }

    /// timm `rand_bbox` (no margin): the CutMix box for λ, with its centre drawn uniformly.
    public static func cutmixBox(height: Int, width: Int, lambda: Double, rng: inout RandomGenerator) -> Box {
        let ratio = max(0, 1 - lambda).squareRoot()
        let cutH = Int(Double(height) * ratio), cutW = Int(Double(width) * ratio)
        let cy = rng.int(height), cx = rng.int(width)
        func clip(_ v: Int, _ hi: Int) -> Int { min(max(v, 0), hi) }
        return Box(yLow: clip(cy - cutH / 2, height), yHigh: clip(cy + cutH / 2, height),
                   xLow: clip(cx - cutW / 2, width), xHigh: clip(cx + cutW / 2, width))
    }

    /// Gamma(shape, 1) by Marsaglia–Tsang; shapes below 1 use the `G(k+1)·U^(1/k)` boost.
    public static func sampleGamma(shape k: Double, rng: inout RandomGenerator) -> Double {
        precondition(k > 0, "tessera: Gamma shape must be > 0")
        if k < 1 {
            let g = sampleGamma(shape: k + 1, rng: &rng)
            let u = max(rng.uniformDouble(), Double.leastNormalMagnitude)
            return g * Foundation.pow(u, 1 / k)
        }
        let d = k - 1.0 / 3.0
        let c = 1.0 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat {
                x = RandAugment.gaussian(&rng)
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = rng.uniformDouble()
            let x2 = x * x
            if u < 1 - 0.0331 * x2 * x2 { return d * v }
            if Foundation.log(max(u, Double.leastNormalMagnitude)) < 0.5 * x2 + d * (1 - v + Foundation.log(v)) {
                return d * v
            }
        }
    }

    /// Beta(a, b) as `X/(X+Y)` with `X ~ Gamma(a)`, `Y ~ Gamma(b)`.
    public static func sampleBeta(_ a: Double, _ b: Double, rng: inout RandomGenerator) -> Double {
        let x = sampleGamma(shape: a, rng: &rng), y = sampleGamma(shape: b, rng: &rng)
        let s = x + y
        return s > 0 ? x / s : 0.5
    }

    /// `λ·onehot_s(y) + (1−λ)·onehot_s(flip(y))` as `[B, numClasses]` (single precision, as timm).
    public static func smoothTargets(labels: [Int], numClasses: Int, lambda: Double, smoothing: Double) -> Tensor {
        let b = labels.count
        let t = Tensor(shape: [b, numClasses])
        let off = Float(smoothing / Double(numClasses))
        let on = Float(1 - smoothing + smoothing / Double(numClasses))
        let l1 = Float(lambda), l2 = Float(1 - lambda)
        let p = t.data
        let base = off * l1 + off * l2
        for i in 0..<b {
            let row = p + i * numClasses
            for k in 0..<numClasses { row[k] = base }
            let y1 = labels[i], y2 = labels[b - 1 - i]
            row[y1] = on * l1 + (y1 == y2 ? on : off) * l2
            if y2 != y1 { row[y2] = off * l1 + on * l2 }
        }
        return t
    }

    // MARK: application

    /// Mixes `images` (`[B, C, H, W]`, in place) with random λ / mode / box; returns the soft targets.
    public func apply(images: Tensor, labels: [Int], rng: inout RandomGenerator) throws -> Tensor {
        try mix(images: images, labels: labels, rng: &rng).targets
    }

    /// `apply`, also reporting λ, the mode and the box.
    public func mix(images: Tensor, labels: [Int], rng: inout RandomGenerator) throws -> Outcome {
        let (_, _, h, w) = try validate(images, labels)
        let (lambda, cut) = sampleParameters(rng: &rng)
        let box = (cut && lambda != 1) ? Mixup.cutmixBox(height: h, width: w, lambda: lambda, rng: &rng) : nil
        return try mix(images: images, labels: labels, lambda: lambda, useCutmix: cut, box: box)
    }

    /// The deterministic part: mixes with a given λ (Mixup) or box (CutMix; λ then becomes
    /// `1 − box.area/(H·W)` when `correctLambda`). λ = 1 leaves the images untouched.
    public func apply(images: Tensor, labels: [Int], lambda: Double, useCutmix: Bool, box: Box? = nil) throws -> Tensor {
        try mix(images: images, labels: labels, lambda: lambda, useCutmix: useCutmix, box: box).targets
    }

    public func mix(images: Tensor, labels: [Int], lambda: Double, useCutmix: Bool, box: Box? = nil) throws -> Outcome {
        let (b, c, h, w) = try validate(images, labels)
        var lam = lambda
        var usedBox: Box? = nil
        if lam != 1 {
            let x = images.data
            let sample = c * h * w
            if useCutmix {
                guard let bx = box else { throw MixupError.missingBox }
                guard bx.yLow >= 0, bx.xLow >= 0, bx.yHigh <= h, bx.xHigh <= w else {
                    throw MixupError.badBox(bx, height: h, width: w)
                }
                usedBox = bx
                if correctLambda { lam = 1 - Double(bx.area) / Double(h * w) }
                if bx.area > 0 {
                    // Sample i takes the box from sample B−1−i: swap the boxes of each pair.
                    for i in 0..<(b / 2) {
                        let p = x + i * sample, q = x + (b - 1 - i) * sample
                        for ch in 0..<c {
                            for y in bx.yLow..<bx.yHigh {
                                let off = ch * h * w + y * w
                                for xx in bx.xLow..<bx.xHigh {
                                    let t = p[off + xx]
                                    p[off + xx] = q[off + xx]
                                    q[off + xx] = t
                                }
                            }
                        }
                    }
                }
            } else {
                let l1 = Float(lam), l2 = Float(1 - lam)
                for i in 0..<(b / 2) {
                    let p = x + i * sample, q = x + (b - 1 - i) * sample
                    for k in 0..<sample {
                        let u = p[k], v = q[k]
                        p[k] = u * l1 + v * l2
                        q[k] = v * l1 + u * l2
                    }
                }
            }
        }
        let targets = Mixup.smoothTargets(labels: labels, numClasses: numClasses, lambda: lam, smoothing: labelSmoothing)
        return Outcome(targets: targets, lambda: lam, usedCutmix: useCutmix && lambda != 1, box: usedBox)
    }

    private func validate(_ images: Tensor, _ labels: [Int]) throws -> (Int, Int, Int, Int) {
        let s = images.shape
        guard s.count == 4 else { throw MixupError.badShape(s) }
        guard s[0] % 2 == 0 else { throw MixupError.oddBatch(s[0]) }
        guard labels.count == s[0] else { throw MixupError.labelCount(labels: labels.count, batch: s[0]) }
        for l in labels where l < 0 || l >= numClasses {
            throw MixupError.labelOutOfRange(label: l, numClasses: numClasses)
        }
        return (s[0], s[1], s[2], s[3])
    }
}
