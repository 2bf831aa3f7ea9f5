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
        // dh = (g · W) ⊙ GELU'(h): the product first, so that the sweep computing GELU(h) (for fc2's
        // weight gradient) and GELU'(h) (one exponential and one erf for both) applies the
        // derivative on the spot instead of storing it.
        var dhTarget: (dh: Tensor, product: Tensor, accumulate: Bool)? = nil
        if let s = h.slot {
            let (dh, beta) = s.target()
            let product = beta == 0 ? dh : Tensor(shape: h.shape)
            BLAS.gemm(m: n, n: hidden, k: outF, a: g.data, lda: outF, b: w.data, ldb: hidden, c: product.data, ldc: hidden)
            dhTarget = (dh, product, beta != 0)
        }
        let a = w.slot != nil ? Tensor(shape: [n, hidden]) : nil
        switch (a?.data, dhTarget) {
        case let (ap?, t?):
            let dp = t.dh.data, tp = t.product.data
            // In place through one pointer when the product is dh: two pointers to one buffer fail
            // LLVM's run-time overlap check and send the loop down its scalar path.
            Parallel.forRange(n * hidden, costPerItem: 22, minCost: 1 << 16) { r in
                if t.accumulate {
                    for i in r {
                        let (v, dv) = Kernels.geluWithDerivative(hp[i])
                        ap[i] = v
                        dp[i] += tp[i] * dv
                    }
                } else {
                    for i in r {
                        let (v, dv) = Kernels.geluWithDerivative(hp[i])
                        ap[i] = v
                        dp[i] *= dv
                    }
                }
            }
        case let (ap?, nil):
            Parallel.forRange(n * hidden, costPerItem: 16, minCost: 1 << 16) { r in for i in r { ap[i] = Kernels.gelu(hp[i]) } }
        case let (nil, t?):
            let dp = t.dh.data, tp = t.product.data
            Parallel.forRange(n * hidden, costPerItem: 18, minCost: 1 << 16) { r in
                if t.accumulate { for i in r { dp[i] += tp[i] * Kernels.geluDerivative(hp[i]) } }
                else { for i in r { dp[i] *= Kernels.geluDerivative(hp[i]) } }
            }
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
    }
    return y
}
