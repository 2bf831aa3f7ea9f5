import Foundation
import TesseraCore

/// timm's `RandomErasing` in mode `'pixel'` with one box (`max_count` 1), applied to a normalized
/// CHW float image: with probability `probability`, up to `maxAttempts` (10) tries draw an area
/// fraction `U(minArea, maxArea)` and a log-uniform aspect ratio in `(minAspect, maxAspect)`;
/// `h = round(√(area·aspect))`, `w = round(√(area/aspect))` (Python's round: half to even); the first
/// box with `w < W` and `h < H` is placed at `top ∈ U{0…H−h}`, `left ∈ U{0…W−w}` and filled, in every
/// channel, with independent N(0, 1) values.
public struct RandomErasing: Sendable {
    public var probability: Double
    public var minArea: Double
    public var maxArea: Double
    public var minAspect: Double
    public var maxAspect: Double
    public var maxAttempts: Int

    /// `maxAspect` defaults to `1 / minAspect`, as in timm.
    public init(probability: Double = 0.25, minArea: Double = 0.02, maxArea: Double = 1.0 / 3.0,
                minAspect: Double = 0.3, maxAspect: Double? = nil, maxAttempts: Int = 10) {
        precondition(minArea > 0 && minArea <= maxArea, "tessera: RandomErasing needs 0 < minArea <= maxArea")
        precondition(minAspect > 0, "tessera: RandomErasing needs minAspect > 0")
        self.probability = probability
        self.minArea = minArea
        self.maxArea = maxArea
        self.minAspect = minAspect
        self.maxAspect = maxAspect ?? 1 / minAspect
        self.maxAttempts = maxAttempts
    }

    /// An erased rectangle: rows `top ..< top+height`, columns `left ..< left+width`.
    public struct Box: Equatable, Sendable {
        public var top: Int, left: Int, height: Int, width: Int
        public init(top: Int, left: Int, height: Int, width: Int) {
            self.top = top; self.left = left; self.height = height; self.width = width
        }
    }

    /// The probability draw and the box search; `nil` when the image is left alone (the draw missed
    /// or no attempt fitted).
    public func sampleBox(height: Int, width: Int, rng: inout RandomGenerator) -> Box? {
        if rng.uniformDouble() > probability { return nil }
        let area = Double(height * width)
        let logLo = Foundation.log(minAspect), logHi = Foundation.log(maxAspect)
        for _ in 0..<maxAttempts {
            let target = (minArea + (maxArea - minArea) * rng.uniformDouble()) * area
            let aspect = Foundation.exp(logLo + (logHi - logLo) * rng.uniformDouble())
            let h = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let w = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w < width && h < height {
                let top = rng.int(height - h + 1)
                let left = rng.int(width - w + 1)
                return Box(top: top, left: left, height: h, width: w)
            }
        }
        return nil
    }

    /// Erases (maybe) one box of a CHW image in place; returns the box it filled.
    @discardableResult
    public func apply(_ chw: UnsafeMutablePointer<Float>, channels: Int, height: Int, width: Int,
                      rng: inout RandomGenerator) -> Box? {
        guard let box = sampleBox(height: height, width: width, rng: &rng) else { return nil }
        // Box–Muller pairs: both outputs are used, so one log/sqrt/sincos per two values.
        var spare: Float = 0, haveSpare = false
        for c in 0..<channels {
            let plane = chw + c * height * width
            for y in box.top..<(box.top + box.height) {
                let row = plane + y * width
                for x in box.left..<(box.left + box.width) {
                    if haveSpare {
                        row[x] = spare
                        haveSpare = false
                    } else {
                        let (z0, z1) = RandomErasing.normalPair(&rng)
                        row[x] = z0
                        spare = z1
                        haveSpare = true
                    }
                }
            }
        }
        return box
    }

    @inline(__always)
    static func normalPair(_ rng: inout RandomGenerator) -> (Float, Float) {
        let u1 = max(rng.uniformDouble(), 1e-300), u2 = rng.uniformDouble()
        let r = (-2 * Foundation.log(u1)).squareRoot(), t = 2 * Double.pi * u2
        return (Float(r * Foundation.cos(t)), Float(r * Foundation.sin(t)))
    }

    /// Applies `apply` to a `[C, H, W]` tensor, or to every sample of a `[B, C, H, W]` tensor
    /// independently (timm's batch mode); returns the boxes (nil where nothing was erased).
    @discardableResult
    public func apply(_ tensor: Tensor, rng: inout RandomGenerator) -> [Box?] {
        let s = tensor.shape
        precondition(s.count == 3 || s.count == 4, "tessera: RandomErasing needs a [C,H,W] or [B,C,H,W] tensor, got \(s)")
        let batch = s.count == 4 ? s[0] : 1
        let c = s[s.count - 3], h = s[s.count - 2], w = s[s.count - 1]
        var boxes: [Box?] = []
        boxes.reserveCapacity(batch)
        for b in 0..<batch {
            boxes.append(apply(tensor.data + b * c * h * w, channels: c, height: h, width: w, rng: &rng))
        }
        return boxes
    }
}
