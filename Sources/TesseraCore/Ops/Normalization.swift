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
/// r ← (1 − m)·r + m·batch). In eval, uses the running statistics. Columns are independent, so each
/// thread takes a block of them (rows stay the inner sweep's outer loop for contiguous reads).
///
/// `overRanks` (with several processes, in training): the statistics are those of the rows of every
/// process together, and the backward pass sums its two column reductions over the processes too,
/// as PyTorch's SyncBatchNorm does; each process still normalises only its own rows.
public func batchNorm1d(_ x: Tensor, runningMean: Tensor, runningVar: Tensor, training: Bool,
                        momentum: Float = 0.1, eps: Float = 1e-5, overRanks: Bool = false) -> Tensor {
    precondition(x.rank == 2, "tessera: batchNorm1d needs [N, D], got \(x.shape)")
    if overRanks && training && Distributed.isDistributed {
        return syncBatchNorm1d(x, runningMean: runningMean, runningVar: runningVar, momentum: momentum, eps: eps)
    }
    let (n, d) = (x.shape[0], x.shape[1])
    checkShapes(runningMean.shape, [d], "batchNorm1d running mean")
    checkShapes(runningVar.shape, [d], "batchNorm1d running variance")
    if training { precondition(n > 1, "tessera: batchNorm1d in training needs more than one sample per batch") }
    let y = Tensor(shape: x.shape)
    let mean = Tensor.zeros([d]), rstd = Tensor(shape: [d])
    let xp = x.data, yp = y.data, mp = mean.data, rp = rstd.data
    Parallel.forRange(d, costPerItem: 3 * n, minCost: 1 << 16) { cols in
        let lo = cols.lowerBound, w = cols.count
        if training {
            var mu = [Double](repeating: 0, count: w), sq = [Double](repeating: 0, count: w)
            for i in 0..<n { let row = xp + i * d + lo; for j in 0..<w { mu[j] += Double(row[j]) } }
            for j in 0..<w { mu[j] /= Double(n) }
            for i in 0..<n { let row = xp + i * d + lo; for j in 0..<w { let c = Double(row[j]) - mu[j]; sq[j] += c * c } }
            for j in 0..<w {
                let c = lo + j, v = sq[j] / Double(n)
                mp[c] = Float(mu[j])
                rp[c] = Float(1 / (v + Double(eps)).squareRoot())
                runningMean.data[c] = (1 - momentum) * runningMean.data[c] + momentum * Float(mu[j])
                runningVar.data[c] = (1 - momentum) * runningVar.data[c] + momentum * Float(sq[j] / Double(n - 1))
            }
        } else {
            for c in cols {
                mp[c] = runningMean.data[c]
                rp[c] = 1 / (runningVar.data[c] + eps).squareRoot()
            }
        }
        for i in 0..<n { for c in cols { yp[i * d + c] = (xp[i * d + c] - mp[c]) * rp[c] } }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        // Pointers are taken from the captured tensors here, so their storage is kept alive.
        let xp = x.data, mp = mean.data, rp = rstd.data, gp = g.data, dp = dx.data
        Parallel.forRange(d, costPerItem: 3 * n, minCost: 1 << 16) { cols in
            let lo = cols.lowerBound, w = cols.count
            var s1 = [Float](repeating: 0, count: w), s2 = [Float](repeating: 0, count: w)
            if training {
                for i in 0..<n { for j in 0..<w {
                    let c = lo + j, gv = gp[i * d + c]
                    s1[j] += gv
                    s2[j] += gv * (xp[i * d + c] - mp[c]) * rp[c]
                } }
            }
            let inv = 1 / Float(n)
            for i in 0..<n { for j in 0..<w {
                let c = lo + j, idx = i * d + c
                let v: Float
                if training {
                    let xh = (xp[idx] - mp[c]) * rp[c]
                    v = rp[c] * (gp[idx] - s1[j] * inv - xh * s2[j] * inv)
                } else {
                    v = gp[idx] * rp[c]
                }
                dp[idx] = beta == 0 ? v : dp[idx] + v
            } }
        }
    }
    return y
}

/// Training-mode BatchNorm1d over the rows of all processes: two allreduces of the column sums
/// (mean, then squared deviations from it) forward, one of Σg and Σg·x̂ backward.
func syncBatchNorm1d(_ x: Tensor, runningMean: Tensor, runningVar: Tensor, momentum: Float, eps: Float) -> Tensor {
    let (n, d) = (x.shape[0], x.shape[1])
    checkShapes(runningMean.shape, [d], "batchNorm1d running mean")
    checkShapes(runningVar.shape, [d], "batchNorm1d running variance")
    let xp = x.data
    // Column sums with the local row count in the last slot.
    var sums = [Double](repeating: 0, count: d + 1)
    sums[d] = Double(n)
    for i in 0..<n { let row = xp + i * d; for c in 0..<d { sums[c] += Double(row[c]) } }
    Distributed.sum(&sums)
    let total = sums[d]
    precondition(total > 1, "tessera: batchNorm1d in training needs more than one sample over all processes")
    let mu = (0..<d).map { sums[$0] / total }
    var sq = [Double](repeating: 0, count: d)
    for i in 0..<n { let row = xp + i * d; for c in 0..<d { let v = Double(row[c]) - mu[c]; sq[c] += v * v } }
    Distributed.sum(&sq)
    let y = Tensor(shape: x.shape)
    let mean = Tensor(shape: [d]), rstd = Tensor(shape: [d])
    let yp = y.data, mp = mean.data, rp = rstd.data
    for c in 0..<d {
        mp[c] = Float(mu[c])
        rp[c] = Float(1 / (sq[c] / total + Double(eps)).squareRoot())
        runningMean.data[c] = (1 - momentum) * runningMean.data[c] + momentum * Float(mu[c])
        runningVar.data[c] = (1 - momentum) * runningVar.data[c] + momentum * Float(sq[c] / (total - 1))
    }
    for i in 0..<n { for c in 0..<d { yp[i * d + c] = (xp[i * d + c] - mp[c]) * rp[c] } }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        let xp = x.data, mp = mean.data, rp = rstd.data, gp = g.data, dp = dx.data
        // Σg and Σg·x̂ per column (first d, then d), over every process's rows.
        var red = [Double](repeating: 0, count: 2 * d)
        for i in 0..<n { for c in 0..<d {
            let gv = Double(gp[i * d + c])
            red[c] += gv
            red[d + c] += gv * Double((xp[i * d + c] - mp[c]) * rp[c])
        } }
        Distributed.sum(&red)
        for i in 0..<n { for c in 0..<d {
            let idx = i * d + c, xh = (xp[idx] - mp[c]) * rp[c]
            let v = rp[c] * (gp[idx] - Float(red[c] / total) - xh * Float(red[d + c] / total))
            dp[idx] = beta == 0 ? v : dp[idx] + v
        } }
    }
    return y
}

/// x / max(‖x‖₂, eps) along the last axis (F.normalize); rows run in parallel.
public func l2Normalize(_ x: Tensor, eps: Float = 1e-12) -> Tensor {
    let d = x.shape.last!, rows = x.count / d
    let y = Tensor(shape: x.shape)
    let norms = Tensor(shape: [rows])
    let xp = x.data, yp = y.data, np = norms.data
    Parallel.forRange(rows, costPerItem: 3 * d, minCost: 1 << 16) { r in
        for i in r {
            let xr = xp + i * d, yr = yp + i * d
            let nrm = max(Kernels.sumSquaredDeviations(xr, 0, d).squareRoot(), eps)
            np[i] = nrm
            let inv = 1 / nrm
            for j in 0..<d { yr[j] = xr[j] * inv }
        }
    }
    Autograd.record(y, [x]) { g in
        guard let s = x.slot else { return }
        let (dx, beta) = s.target()
        // Pointers are taken from the captured tensors here, so their storage is kept alive.
        let yp = y.data, np = norms.data, gp = g.data, dp = dx.data
        Parallel.forRange(rows, costPerItem: 4 * d, minCost: 1 << 16) { r in
            for i in r {
                let yr = yp + i * d, gr = gp + i * d, dr = dp + i * d
                let nrm = np[i]
                // Below eps the norm is the constant eps, so only the direct term remains.
                var dot: Float = 0
                if nrm > eps { for j in 0..<d { dot += yr[j] * gr[j] } }
                for j in 0..<d {
                    let v = (gr[j] - yr[j] * dot) / nrm
                    dr[j] = beta == 0 ? v : dr[j] + v
                }
            }
        }
    }
    return y
}
