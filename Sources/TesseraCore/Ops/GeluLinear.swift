/// y = GELU(h) · Wᵀ + b: an MLP's activation and second projection in one op.
///
/// Only h is kept for backward; GELU(h) and GELU'(h) are recomputed there in one sweep (one
/// exponential and one erf per element). PyTorch keeps both h (for GELU's backward) and GELU(h)
/// (for fc2's weight gradient), so this saves rows × hidden floats per block.
/// h [..., hidden], W [out, hidden], b [out] → y [..., out].
public func geluLinear(_ h: Tensor, _ w: Tensor, _ b: Tensor? = nil) -> Tensor {
    let hidden = w.shape[1], outF = w.shape[0]
    precondition(h.shape.last == hidden, "tessera: geluLinear: input \(h.shape) does not end in \(hidden) (weight \(w.shape))")
    let y = Autograd.noGrad { linear(gelu(h), w, b) }
    let n = h.count / hidden
    Autograd.record(y, [h, w, b]) { g in
        let hp = h.data
        // GELU(h) for fc2's weight gradient and GELU'(h) for dh, in one sweep.
        let a = w.slot != nil ? Tensor(shape: [n, hidden]) : nil
        let d = h.slot != nil ? Tensor(shape: [n, hidden]) : nil
        switch (a?.data, d?.data) {
        case let (ap?, dp?):
            Parallel.forRange(n * hidden, costPerItem: 20, minCost: 1 << 16) { r in
                for i in r {
                    let (v, dv) = Kernels.geluWithDerivative(hp[i])
                    ap[i] = v
                    dp[i] = dv
                }
            }
        case let (ap?, nil):
            Parallel.forRange(n * hidden, costPerItem: 16, minCost: 1 << 16) { r in for i in r { ap[i] = Kernels.gelu(hp[i]) } }
        case let (nil, dp?):
            Parallel.forRange(n * hidden, costPerItem: 16, minCost: 1 << 16) { r in for i in r { dp[i] = Kernels.geluDerivative(hp[i]) } }
        case (nil, nil):
            break
        }
        if let s = w.slot, let a {
            // dW[out, hidden] (+)= gᵀ · GELU(h)
            let (dw, beta) = s.target()
            BLAS.gemm(transA: true, m: outF, n: hidden, k: n, a: g.data, lda: outF, b: a.data, ldb: hidden, beta: beta, c: dw.data, ldc: hidden)
        }
        if let b, let s = b.slot {
            let (db, beta) = s.target()
            Kernels.sumRows(g.data, rows: n, cols: outF, into: db.data, accumulate: beta != 0)
        }
        if let s = h.slot, let d {
            // dh = (g · W) ⊙ GELU'(h)
            let (dh, beta) = s.target()
            let da = beta == 0 ? dh : Tensor(shape: h.shape)
            BLAS.gemm(m: n, n: hidden, k: outF, a: g.data, lda: outF, b: w.data, ldb: hidden, c: da.data, ldc: hidden)
            let dp = dh.data, tp = da.data, gp = d.data
            // In place through one pointer when da is dh: two pointers to one buffer fail LLVM's
            // run-time overlap check and send the loop down its scalar path.
            Parallel.forRange(n * hidden, costPerItem: 2, minCost: 1 << 16) { r in
                if beta == 0 { for i in r { dp[i] *= gp[i] } }
                else { for i in r { dp[i] += tp[i] * gp[i] } }
            }
        }
    }
    return y
}
