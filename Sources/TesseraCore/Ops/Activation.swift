/// GELU, softmax, dropout and drop-path.

/// GELU, exact erf form.
public func gelu(_ x: Tensor) -> Tensor {
    let y = Tensor(shape: x.shape)
    let xp = x.data, yp = y.data
    Parallel.forRange(x.count, costPerItem: 16, minCost: 1 << 16) { r in
        for i in r { yp[i] = Kernels.gelu(xp[i]) }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        let gp = g.data, dp = dx.data, xp = x.data  // x is captured: its values stay alive until backward
        Parallel.forRange(x.count, costPerItem: 24, minCost: 1 << 16) { r in
            if beta == 0 { for i in r { dp[i] = gp[i] * Kernels.geluDerivative(xp[i]) } }
            else { for i in r { dp[i] += gp[i] * Kernels.geluDerivative(xp[i]) } }
        }
    }
    return y
}

/// GELU applied to x's own values, with no gradient: for a no-grad forward that owns x.
public func geluInPlace(_ x: Tensor) {
    precondition(!Autograd.isEnabled, "tessera: geluInPlace is for no-grad passes only")
    let xp = x.data
    Parallel.forRange(x.count, costPerItem: 16, minCost: 1 << 16) { r in
        for i in r { xp[i] = Kernels.gelu(xp[i]) }
    }
}

/// ReLU, max(x, 0) (gradient 0 at 0, as torch).
public func relu(_ x: Tensor) -> Tensor {
    let y = Tensor(shape: x.shape)
    let xp = x.data, yp = y.data
    Parallel.forRange(x.count, costPerItem: 2, minCost: 1 << 16) { r in
        for i in r { yp[i] = max(xp[i], 0) }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        let gp = g.data, dp = dx.data, xp = x.data
        Parallel.forRange(x.count, costPerItem: 2, minCost: 1 << 16) { r in
            for i in r {
                let d = xp[i] > 0 ? gp[i] : 0
                dp[i] = beta == 0 ? d : dp[i] + d
            }
        }
    }
    return y
}

/// QuickGELU, x·σ(1.702·x) (OpenAI CLIP's activation).
public func quickGelu(_ x: Tensor) -> Tensor {
    let y = Tensor(shape: x.shape)
    let xp = x.data, yp = y.data
    Parallel.forRange(x.count, costPerItem: 12, minCost: 1 << 16) { r in
        for i in r { yp[i] = xp[i] / (1 + Kernels.exp(-1.702 * xp[i])) }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        let gp = g.data, dp = dx.data, xp = x.data
        Parallel.forRange(x.count, costPerItem: 16, minCost: 1 << 16) { r in
            for i in r {
                // d/dx x·σ(ax) = σ + a·x·σ·(1 − σ)
                let sg = 1 / (1 + Kernels.exp(-1.702 * xp[i]))
                let d = gp[i] * (sg + 1.702 * xp[i] * sg * (1 - sg))
                dp[i] = beta == 0 ? d : dp[i] + d
            }
        }
    }
    return y
}

/// Softmax over the last axis.
public func softmax(_ x: Tensor) -> Tensor {
    let n = x.shape.last!, rows = x.count / n
    let y = x.clone()
    let yp = y.data
    Parallel.forRange(rows, costPerItem: n * 8, minCost: 1 << 16) { r in
        for i in r { Kernels.softmaxRow(yp + i * n, n) }
    }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let t = Tensor(shape: y.shape)
        let yp = y.data
        for i in 0..<rows { Kernels.softmaxBackwardRow(yp + i * n, g.data + i * n, t.data + i * n, n) }
        s.accumulate(t, owned: true)
    }
    return y
}

/// Inverted dropout: zero each element with probability p, scale the rest by 1/(1 − p).
public func dropout(_ x: Tensor, p: Float, training: Bool, rng: inout RandomGenerator) -> Tensor {
    guard training && p > 0 else { return x }
    precondition(p < 1, "tessera: dropout probability \(p) must be below 1")
    let keep = Tensor.uniform(x.shape, rng: &rng)
    let scale = 1 / (1 - p)
    for i in 0..<keep.count { keep.data[i] = keep.data[i] >= p ? scale : 0 }
    return maskedScale(x, keep)
}

/// Per-sample stochastic depth on x [B, ...]: each sample's branch is dropped with probability p and
/// the survivors are scaled by 1/(1 − p).
public func dropPath(_ x: Tensor, p: Float, training: Bool, rng: inout RandomGenerator) -> Tensor {
    guard training && p > 0 else { return x }
    let b = x.shape[0]
    var factors = [Float](repeating: 0, count: b)
    for i in 0..<b { factors[i] = rng.uniform() >= p ? 1 / (1 - p) : 0 }
    return scaleSamples(x, factors)
}

/// y[b, …] = f[b] · x[b, …] for x [B, …] and constant per-sample factors f [B] (drop-path's scale).
/// Rows with f = 0 are written as zeros without reading x.
public func scaleSamples(_ x: Tensor, _ factors: [Float]) -> Tensor {
    let b = x.shape[0]
    precondition(factors.count == b, "tessera: scaleSamples: \(factors.count) factors for \(b) samples")
    let per = x.count / max(b, 1)
    let y = Tensor(shape: x.shape)
    func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
        Parallel.forRange(b, costPerItem: per, minCost: 1 << 16) { r in
            for i in r {
                let f = factors[i], s = src + i * per, d = dst + i * per
                if accumulate {
                    if f != 0 { for j in 0..<per { d[j] += f * s[j] } }
                } else if f == 0 {
                    d.initialize(repeating: 0, count: per)
                } else {
                    for j in 0..<per { d[j] = f * s[j] }
                }
            }
        }
    }
    apply(x.data, y.data, accumulate: false)
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        apply(g.data, dx.data, accumulate: beta != 0)
    }
    return y
}

/// y = x ⊙ m with a constant m of the same shape.
func maskedScale(_ x: Tensor, _ m: Tensor) -> Tensor {
    let y = Tensor(shape: x.shape)
    for i in 0..<x.count { y.data[i] = x.data[i] * m.data[i] }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let t = Tensor(shape: m.shape)
        for i in 0..<m.count { t.data[i] = g.data[i] * m.data[i] }
        s.accumulate(t, owned: true)
    }
    return y
}
