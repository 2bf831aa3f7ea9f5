/// Element-wise and row-wise float kernels. Plain loops over unsafe pointers with no libm calls, so
/// LLVM vectorises them (build with -Ounchecked and -target-cpu native).
public enum Kernels {
    // MARK: scalar math, inlined into loops

    /// e^x for float32: Cody-Waite range reduction and a degree-6 polynomial (Cephes expf), ~1 ulp.
    /// Returns exactly 0 below -87.3 (so additive -inf masks give zero weights); inputs above 88.3
    /// are clamped there (e^88.3 ≈ 2.2e38), which keeps 2^n a single float factor and the loops that
    /// call this vectorisable. Every caller passes arguments ≤ 0.
    @inline(__always)
    public static func exp(_ x0: Float) -> Float {
        let x = min(max(x0, -87.3), 88.3)
        let n = (x * 1.442_695_04 + 0.5).rounded(.down)
        // Fused multiply-adds throughout (one rounding each, half the instructions of mul + add).
        let r = x.addingProduct(-n, 0.693_359_375).addingProduct(n, 2.121_944_4e-4)
        let r2 = r * r
        var p: Float = 1.987_569_15e-4
        p = Float(1.398_199_95e-3).addingProduct(p, r)
        p = Float(8.333_451_9e-3).addingProduct(p, r)
        p = Float(4.166_579_59e-2).addingProduct(p, r)
        p = Float(1.666_666_55e-1).addingProduct(p, r)
        p = Float(5.000_000_12e-1).addingProduct(p, r)
        let y = r.addingProduct(p, r2) + 1
        let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) &+ 127) << 23)
        return x0 < -87.3 ? 0 : y * scale
    }

    /// erf(x), Abramowitz & Stegun 7.1.26 (|error| < 5e-7 in float32).
    @inline(__always)
    public static func erf(_ x: Float) -> Float { erf(x, expNegSquare: exp(-x * x)) }

    /// erf(x) given e = e^(−x²), so callers that also need that exponential compute it once.
    @inline(__always)
    public static func erf(_ x: Float, expNegSquare e: Float) -> Float {
        let ax = abs(x)
        let t = 1 / Float(1).addingProduct(0.327_591_1, ax)
        var p: Float = 1.061_405_429
        p = Float(-1.453_152_027).addingProduct(p, t)
        p = Float(1.421_413_741).addingProduct(p, t)
        p = Float(-0.284_496_736).addingProduct(p, t)
        p = Float(0.254_829_592).addingProduct(p, t)
        let y = Float(1).addingProduct(-(p * t), e)
        return x < 0 ? -y : y
    }

    /// GELU, exact form: x · Φ(x) = ½x(1 + erf(x/√2)).
    @inline(__always)
    public static func gelu(_ x: Float) -> Float { x * Float(0.5).addingProduct(0.5, erf(x * 0.707_106_781_186_547_5)) }

    /// d GELU / dx = Φ(x) + x·φ(x); erf's e^(−x²/2) is φ's exponential too, so it is computed once.
    @inline(__always)
    public static func geluDerivative(_ x: Float) -> Float {
        let z = x * 0.707_106_781_186_547_5
        let e = exp(-z * z)
        let cdf = Float(0.5).addingProduct(0.5, erf(z, expNegSquare: e))
        return cdf.addingProduct(x, 0.398_942_280_401_432_7 * e)
    }

    /// GELU(x) and its derivative together, sharing one exponential and one erf.
    @inline(__always)
    public static func geluWithDerivative(_ x: Float) -> (value: Float, derivative: Float) {
        let z = x * 0.707_106_781_186_547_5
        let e = exp(-z * z)
        let cdf = Float(0.5).addingProduct(0.5, erf(z, expNegSquare: e))
        return (x * cdf, cdf.addingProduct(x, 0.398_942_280_401_432_7 * e))
    }

    // MARK: reductions
    // Swift keeps float additions in source order, so a plain `s += x[j]` loop stays scalar. These
    // keep sixteen partial sums in two SIMD8 registers instead (a different but fixed order).

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>, _ j: Int) -> SIMD8<Float> {
        UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self)
    }

    /// Σ x[j]
    @inline(__always)
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var j = 0
        while j + 16 <= n { a0 += load8(x, j); a1 += load8(x, j + 8); j += 16 }
        if j + 8 <= n { a0 += load8(x, j); j += 8 }
        var s = (a0 + a1).sum()
        while j < n { s += x[j]; j += 1 }
        return s
    }

    /// Σ (x[j] − c)²
    @inline(__always)
    public static func sumSquaredDeviations(_ x: UnsafePointer<Float>, _ c: Float, _ n: Int) -> Float {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        let cv = SIMD8<Float>(repeating: c)
        var j = 0
        while j + 16 <= n {
            let d0 = load8(x, j) - cv, d1 = load8(x, j + 8) - cv
            a0 += d0 * d0; a1 += d1 * d1
            j += 16
        }
        if j + 8 <= n { let d0 = load8(x, j) - cv; a0 += d0 * d0; j += 8 }
        var s = (a0 + a1).sum()
        while j < n { let d = x[j] - c; s += d * d; j += 1 }
        return s
    }

    /// (Σ g[j]·w[j], Σ g[j]·w[j]·(x[j] − c)); w nil means ones.
    @inline(__always)
    public static func layerNormBackwardSums(_ g: UnsafePointer<Float>, _ w: UnsafePointer<Float>?, _ x: UnsafePointer<Float>,
                                             _ c: Float, _ n: Int) -> (Float, Float) {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
        let cv = SIMD8<Float>(repeating: c)
        var j = 0
        if let w {
            while j + 8 <= n {
                let gh = load8(g, j) * load8(w, j)
                s0 += gh; s1 += gh * (load8(x, j) - cv)
                j += 8
            }
        } else {
            while j + 8 <= n {
                let gh = load8(g, j)
                s0 += gh; s1 += gh * (load8(x, j) - cv)
                j += 8
            }
        }
        var a = s0.sum(), b = s1.sum()
        while j < n {
            let gh = g[j] * (w?[j] ?? 1)
            a += gh; b += gh * (x[j] - c)
            j += 1
        }
        return (a, b)
    }

    // MARK: loops

    /// dst[i] += src[i]
    @inline(__always)
    public static func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        Parallel.forRange(n, minCost: 1 << 17) { r in
            for i in r { dst[i] += src[i] }
        }
    }

    /// dst[i] += alpha · src[i]
    public static func axpy(_ dst: UnsafeMutablePointer<Float>, _ alpha: Float, _ src: UnsafePointer<Float>, _ n: Int) {
        Parallel.forRange(n, minCost: 1 << 17) { r in
            for i in r { dst[i] += alpha * src[i] }
        }
    }

    /// Sum over rows: out[j] (+)= Σ_i x[i, j] for x of shape [rows, cols].
    public static func sumRows(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if !accumulate { out.initialize(repeating: 0, count: cols) }
        // Each thread owns a block of columns, so no reduction across threads is needed.
        // Four rows per pass over `out`, so it is loaded and stored a quarter as often.
        Parallel.forRange(cols, costPerItem: rows, minCost: 1 << 16) { cr in
            let o = out + cr.lowerBound, width = cr.count
            var i = 0
            while i + 4 <= rows {
                let r0 = UnsafePointer(x + i * cols + cr.lowerBound), r1 = r0 + cols, r2 = r1 + cols, r3 = r2 + cols
                for j in 0..<width { o[j] += (r0[j] + r1[j]) + (r2[j] + r3[j]) }
                i += 4
            }
            while i < rows {
                let r0 = x + i * cols + cr.lowerBound
                for j in 0..<width { o[j] += r0[j] }
                i += 1
            }
        }
    }

    /// max over x[j] (−∞ for n = 0).
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = SIMD8<Float>(repeating: -.infinity), a1 = a0
        var j = 0
        while j + 16 <= n {
            let v0 = load8(x, j), v1 = load8(x, j + 8)
            a0.replace(with: v0, where: v0 .> a0); a1.replace(with: v1, where: v1 .> a1)
            j += 16
        }
        if j + 8 <= n { let v0 = load8(x, j); a0.replace(with: v0, where: v0 .> a0); j += 8 }
        a0.replace(with: a1, where: a1 .> a0)
        var m = a0.max()
        while j < n { m = max(m, x[j]); j += 1 }
        return m
    }

    /// Σ x[j]·y[j]
    @inline(__always)
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var j = 0
        while j + 16 <= n { a0 += load8(x, j) * load8(y, j); a1 += load8(x, j + 8) * load8(y, j + 8); j += 16 }
        if j + 8 <= n { a0 += load8(x, j) * load8(y, j); j += 8 }
        var s = (a0 + a1).sum()
        while j < n { s += x[j] * y[j]; j += 1 }
        return s
    }

    /// In-place softmax of one row of length `n`. A row whose entries are all −∞ (a fully masked
    /// attention row) becomes zeros, not NaN. The exponentials run in a loop of their own and the
    /// reductions in SIMD partial sums, so every pass vectorises.
    @inline(__always)
    public static func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        _ = softmaxRowKeepingStats(x, n)
    }

    /// `softmaxRow` that returns the max it subtracted and the normaliser it multiplied by, so that
    /// `softmaxRowReplaying` can rebuild the same row, bit for bit, from the same logits.
    @inline(__always)
    public static func softmaxRowKeepingStats(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> (max: Float, inverseSum: Float) {
        var m = maximum(x, n)
        if m == -.infinity { m = 0 }
        for j in 0..<n { x[j] = exp(x[j] - m) }
        let s = sum(x, n)
        let inv = s > 0 ? 1 / s : 0
        for j in 0..<n { x[j] *= inv }
        return (m, inv)
    }

    /// The softmax of logits x given the stats `softmaxRowKeepingStats` returned for them, in place.
    @inline(__always)
    public static func softmaxRowReplaying(_ x: UnsafeMutablePointer<Float>, _ n: Int, max m: Float, inverseSum inv: Float) {
        for j in 0..<n { x[j] = exp(x[j] - m) }
        for j in 0..<n { x[j] *= inv }
    }

    /// Softmax backward for one row in place: d ← scale · p ⊙ (d − Σ d⊙p) (d holds dP on entry).
    @inline(__always)
    public static func softmaxBackwardRowInPlace(_ p: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int, scale: Float = 1) {
        let dot = dot(p, d, n)
        for j in 0..<n { d[j] = scale * p[j] * (d[j] - dot) }
    }

    /// Softmax backward for one row: dx = p ⊙ (dp − Σ dp⊙p). Writes into dx (may alias dp, but then
    /// the in-place form vectorises better).
    @inline(__always)
    public static func softmaxBackwardRow(_ p: UnsafePointer<Float>, _ dp: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int, scale: Float = 1) {
        let dot = dot(p, dp, n)
        for j in 0..<n { dx[j] = scale * p[j] * (dp[j] - dot) }
    }
}
