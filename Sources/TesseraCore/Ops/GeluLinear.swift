/// y = GELU(h) · Wᵀ + b: an MLP's activation and second projection in one op.
///
/// Only h is kept for backward; GELU(h) is recomputed there. PyTorch keeps both h (for GELU's
/// backward) and GELU(h) (for fc2's weight gradient), so this saves rows × hidden floats per block.
/// h [..., hidden], W [out, hidden], b [out] → y [..., out].
public func geluLinear(_ h: Tensor, _ w: Tensor, _ b: Tensor? = nil) -> Tensor {
    let hidden = w.shape[1], outF = w.shape[0]
    precondition(h.shape.last == hidden, "tessera: geluLinear: input \(h.shape) does not end in \(hidden) (weight \(w.shape))")
    let y = Autograd.noGrad { linear(gelu(h), w, b) }
    let n = h.count / hidden
    Autograd.record(y, [h, w, b]) { g in
        let hp = h.data
        if let s = w.slot {
            // dW[out, hidden] (+)= gᵀ · GELU(h)
            let a = Tensor(shape: [n, hidden])
            let ap = a.data
            Parallel.forRange(n * hidden, costPerItem: 16, minCost: 1 << 16) { r in
                for i in r { ap[i] = Kernels.gelu(hp[i]) }
            }
            let (dw, beta) = s.target()
            BLAS.gemm(transA: true, m: outF, n: hidden, k: n, a: g.data, lda: outF, b: ap, ldb: hidden, beta: beta, c: dw.data, ldc: hidden)
        }
        if let b, let s = b.slot {
            let (db, beta) = s.target()
            Kernels.sumRows(g.data, rows: n, cols: outF, into: db.data, accumulate: beta != 0)
        }
        if let s = h.slot {
            // dh = (g · W) ⊙ GELU'(h)
            let (dh, beta) = s.target()
            let da = beta == 0 ? dh : Tensor(shape: h.shape)
            BLAS.gemm(m: n, n: hidden, k: outF, a: g.data, lda: outF, b: w.data, ldb: hidden, c: da.data, ldc: hidden)
            let dp = dh.data, tp = da.data
            // In place through one pointer when da is dh: two pointers to one buffer fail LLVM's
            // run-time overlap check and send the loop down its scalar path.
            Parallel.forRange(n * hidden, costPerItem: 24, minCost: 1 << 16) { r in
                if beta == 0 { for i in r { dp[i] *= Kernels.geluDerivative(hp[i]) } }
                else { for i in r { dp[i] += tp[i] * Kernels.geluDerivative(hp[i]) } }
            }
        }
    }
    return y
}
