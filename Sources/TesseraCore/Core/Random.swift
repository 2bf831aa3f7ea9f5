/// A counter-based generator: value `i` of a draw depends only on (seed, stream position, i), so
/// results never depend on how many threads fill a tensor. The state is two integers, which makes it
/// trivial to checkpoint.
public struct RandomGenerator: Sendable, Equatable {
    public var seed: UInt64
    /// How many 64-bit words have been consumed so far.
    public var counter: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        self.counter = 0
    }

    @inline(__always)
    static func mix(_ x0: UInt64) -> UInt64 {
        var z = x0 &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    static func word(_ key: UInt64, _ i: UInt64) -> UInt64 {
        mix(mix(key) ^ (i &* 0xD1B5_4A32_D192_ED03))
    }

    @inline(__always)
    static func unit(_ w: UInt64) -> Float {
        // 24 random bits: uniform on [0, 1) with float32 resolution, as torch.rand.
        Float(w >> 40) * (1.0 / 16_777_216.0)
    }

    /// A child generator for an independent purpose (e.g. one per data-loader sample).
    public func derived(_ a: UInt64, _ b: UInt64 = 0) -> RandomGenerator {
        RandomGenerator(seed: RandomGenerator.mix(seed ^ RandomGenerator.mix(a &+ 0x632B_E59B_D9B4_E019) ^ RandomGenerator.mix(b &* 0x8CB9_2BA7_2F3D_8DD7)))
    }

    public mutating func nextWord() -> UInt64 {
        let w = RandomGenerator.word(seed, counter)
        counter &+= 1
        return w
    }

    /// Uniform on [0, 1).
    public mutating func uniform() -> Float { RandomGenerator.unit(nextWord()) }

    /// Uniform double on [0, 1) with 53 bits.
    public mutating func uniformDouble() -> Double { Double(nextWord() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform integer in `0..<n`.
    public mutating func int(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(nextWord() % UInt64(n))
    }

    /// Standard normal (Box-Muller on two words).
    public mutating func normal() -> Float {
        let u1 = max(uniformDouble(), 1e-300), u2 = uniformDouble()
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// Fills `n` floats uniform on [lo, hi), in parallel; advances the stream by `n` words.
    public mutating func fillUniform(_ p: UnsafeMutablePointer<Float>, _ n: Int, lo: Float = 0, hi: Float = 1) {
        let key = seed, base = counter
        counter &+= UInt64(n)
        let span = hi - lo
        Parallel.forRange(n, costPerItem: 8) { r in
            for i in r { p[i] = lo + span * RandomGenerator.unit(RandomGenerator.word(key, base &+ UInt64(i))) }
        }
    }

    /// Fills `n` floats with N(mean, std²); advances the stream by `2n` words.
    public mutating func fillNormal(_ p: UnsafeMutablePointer<Float>, _ n: Int, mean: Float = 0, std: Float = 1) {
        let key = seed, base = counter
        counter &+= UInt64(2 * n)
        Parallel.forRange(n, costPerItem: 40) { r in
            for i in r {
                let w1 = RandomGenerator.word(key, base &+ UInt64(2 * i))
                let w2 = RandomGenerator.word(key, base &+ UInt64(2 * i + 1))
                let u1 = max(Double(w1 >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
                let u2 = Double(w2 >> 11) * (1.0 / 9_007_199_254_740_992.0)
                p[i] = mean + std * Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
            }
        }
    }

    /// Normal values redrawn until they fall inside [a, b] (absolute bounds), as timm's trunc_normal_.
    public mutating func fillTruncatedNormal(_ p: UnsafeMutablePointer<Float>, _ n: Int, std: Float, a: Float, b: Float) {
        for i in 0..<n {
            var v: Float
            repeat { v = std * normal() } while v < a || v > b
            p[i] = v
        }
    }

    /// A random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        if n < 2 { return a }
        for i in stride(from: n - 1, to: 0, by: -1) { a.swapAt(i, int(i + 1)) }
        return a
    }
}

import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }

extension Tensor {
    public static func uniform(_ shape: [Int], lo: Float = 0, hi: Float = 1, rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(shape: shape)
        rng.fillUniform(t.data, t.count, lo: lo, hi: hi)
        return t
    }

    public static func randn(_ shape: [Int], std: Float = 1, rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(shape: shape)
        rng.fillNormal(t.data, t.count, std: std)
        return t
    }
}
