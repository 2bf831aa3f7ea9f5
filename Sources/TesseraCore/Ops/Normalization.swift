/// LayerNorm, BatchNorm1d (no affine) and L2 normalisation.

/// LayerNorm over the last axis: y = (x − μ) / √(σ² + eps) · w + b, σ² biased. w, b [D] or nil.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-6) -> Tensor {
    let d = x.shape.last!
    if let weight { precondition(weight.shape == [d], "tessera: layerNorm weight \(weight.shape) for input \(x.shape)") }
    if let bias { precondition(bias.shape == [d], "tessera: layerNorm bias \(bias.shape) for input \(x.shape)") }
    let rows = x.count / d
    let y = Tensor(shape: x.shape)
    let mean = Tensor(shape: [rows]), rstd = Tensor(shape: [rows])
    let xp = x.data, yp = y.data, mp = mean.data, rp = rstd.data
    let wp = weight?.data, bp = bias?.data
    Parallel.forRange(rows, costPerItem: d * 4, minCost: 1 << 16) { r in
        for i in r {
            let xr = xp + i * d, yr = yp + i * d
            let mu = Kernels.sum(xr, d) / Float(d)
            let v = Kernels.sumSquaredDeviations(xr, mu, d)
            let rs = 1 / (v / Float(d) + eps).squareRoot()
            mp[i] = mu; rp[i] = rs
            if let wp, let bp {
                for j in 0..<d { yr[j] = (xr[j] - mu) * rs * wp[j] + bp[j] }
            } else if let wp {
                for j in 0..<d { yr[j] = (xr[j] - mu) * rs * wp[j] }
            } else {
                for j in 0..<d { yr[j] = (xr[j] - mu) * rs }
                if let bp { for j in 0..<d { yr[j] += bp[j] } }
            }
        }
    }
    Autograd.record(y, [x, weight, bias]) { g in
        // Pointers are taken from the captured tensors here, so their storage is kept alive.
        let xp = x.data, mp = mean.data, rp = rstd.data, wp = weight?.data
        let gp = g.data
        let needW = weight?.slot != nil || bias?.slot != nil
        // Per-thread partial sums for dw, db.
        let parts = Parallel.workers
        let partial = needW ? Tensor.zeros([parts, 2, d]) : nil
        let dxT: (Tensor, Float)? = x.slot.map { $0.target() }
        Parallel.run(parts) { p in
            let lo = rows * p / parts, hi = rows * (p + 1) / parts
            guard lo < hi else { return }
            let dw = partial.map { $0.data + p * 2 * d }
            for i in lo..<hi {
                let xr = xp + i * d, gr = gp + i * d
                let mu = mp[i], rs = rp[i]
                if let dw {
                    for j in 0..<d { dw[j] += gr[j] * (xr[j] - mu) * rs; dw[d + j] += gr[j] }
                }
                if let (dx, beta) = dxT {
                    // dx = rs · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), ĝ = g ⊙ w, x̂ = (x − μ)·rs
                    let (sg, sgx) = Kernels.layerNormBackwardSums(gr, wp, xr, mu, d)
                    let m1 = sg / Float(d), m2 = rs * rs * sgx / Float(d)
                    let dr = dx.data + i * d
                    switch (wp, beta == 0) {
                    case let (w?, true): for j in 0..<d { dr[j] = rs * (gr[j] * w[j] - m1 - (xr[j] - mu) * m2) }
                    case let (w?, false): for j in 0..<d { dr[j] += rs * (gr[j] * w[j] - m1 - (xr[j] - mu) * m2) }
                    case (nil, true): for j in 0..<d { dr[j] = rs * (gr[j] - m1 - (xr[j] - mu) * m2) }
                    case (nil, false): for j in 0..<d { dr[j] += rs * (gr[j] - m1 - (xr[j] - mu) * m2) }
                    }
                }
            }
        }
        if let partial {
            for p in 1..<max(parts, 1) {
                let src = partial.data + p * 2 * d
                for j in 0..<(2 * d) { partial.data[j] += src[j] }
            }
            if let s = weight?.slot {
                let (dw, beta) = s.target()
                for j in 0..<d { dw.data[j] = (beta == 0 ? 0 : dw.data[j]) + partial.data[j] }
            }
            if let s = bias?.slot {
                let (db, beta) = s.target()
                for j in 0..<d { db.data[j] = (beta == 0 ? 0 : db.data[j]) + partial.data[d + j] }
            }
        }
    }
    return y
}

/// BatchNorm1d without affine over x [N, D]. In training, normalises with the batch statistics
/// (biased variance) and updates the running statistics (unbiased variance, momentum as PyTorch:
/// r ← (1 − m)·r + m·batch). In eval, uses the running statistics.
public func batchNorm1d(_ x: Tensor, runningMean: Tensor, runningVar: Tensor, training: Bool,
                        momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
    precondition(x.rank == 2, "tessera: batchNorm1d needs [N, D], got \(x.shape)")
    let (n, d) = (x.shape[0], x.shape[1])
    checkShapes(runningMean.shape, [d], "batchNorm1d running mean")
    checkShapes(runningVar.shape, [d], "batchNorm1d running variance")
    let y = Tensor(shape: x.shape)
    let mean = Tensor.zeros([d]), rstd = Tensor(shape: [d])
    if training {
        precondition(n > 1, "tessera: batchNorm1d in training needs more than one sample per batch")
        var sq = [Double](repeating: 0, count: d), mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(x.data[i * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        for i in 0..<n { for j in 0..<d { let c = Double(x.data[i * d + j]) - mu[j]; sq[j] += c * c } }
        for j in 0..<d {
            let v = sq[j] / Double(n)
            mean.data[j] = Float(mu[j])
            rstd.data[j] = Float(1 / (v + Double(eps)).squareRoot())
            runningMean.data[j] = (1 - momentum) * runningMean.data[j] + momentum * Float(mu[j])
            runningVar.data[j] = (1 - momentum) * runningVar.data[j] + momentum * Float(sq[j] / Double(n - 1))
        }
    } else {
        for j in 0..<d {
            mean.data[j] = runningMean.data[j]
            rstd.data[j] = 1 / (runningVar.data[j] + eps).squareRoot()
        }
    }
    for i in 0..<n { for j in 0..<d { y.data[i * d + j] = (x.data[i * d + j] - mean.data[j]) * rstd.data[j] } }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        if training {
            var s1 = [Float](repeating: 0, count: d), s2 = [Float](repeating: 0, count: d)
            for i in 0..<n { for j in 0..<d {
                let gv = g.data[i * d + j]
                s1[j] += gv
                s2[j] += gv * (x.data[i * d + j] - mean.data[j]) * rstd.data[j]
            } }
            for i in 0..<n { for j in 0..<d {
                let xh = (x.data[i * d + j] - mean.data[j]) * rstd.data[j]
                let v = rstd.data[j] * (g.data[i * d + j] - s1[j] / Float(n) - xh * s2[j] / Float(n))
                dx.data[i * d + j] = beta == 0 ? v : dx.data[i * d + j] + v
            } }
        } else {
            for i in 0..<n { for j in 0..<d {
                let v = g.data[i * d + j] * rstd.data[j]
                dx.data[i * d + j] = beta == 0 ? v : dx.data[i * d + j] + v
            } }
        }
    }
    return y
}

/// x / max(‖x‖₂, eps) along the last axis (F.normalize).
public func l2Normalize(_ x: Tensor, eps: Float = 1e-12) -> Tensor {
    let d = x.shape.last!, rows = x.count / d
    let y = Tensor(shape: x.shape)
    let norms = Tensor(shape: [rows])
    for i in 0..<rows {
        let xr = x.data + i * d
        var s: Float = 0
        for j in 0..<d { s += xr[j] * xr[j] }
        let nrm = max(s.squareRoot(), eps)
        norms.data[i] = nrm
        for j in 0..<d { y.data[i * d + j] = xr[j] / nrm }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        for i in 0..<rows {
            let yr = y.data + i * d, gr = g.data + i * d, dr = dx.data + i * d
            let nrm = norms.data[i]
            // Below eps the norm is the constant eps, so only the direct term remains.
            var dot: Float = 0
            if nrm > eps { for j in 0..<d { dot += yr[j] * gr[j] } }
            for j in 0..<d {
                let v = (gr[j] - yr[j] * dot) / nrm
                dr[j] = beta == 0 ? v : dr[j] + v
            }
        }
    }
    return y
}
