/// y = GELU(h) · Wᵀ + b: an MLP's activation and second projection in one op.
///
/// The forward pass computes GELU(h) and GELU'(h) in one sweep (one exponential and one erf per
/// element) and keeps those two for backward instead of h, so backward evaluates no transcendental
/// at all. That is the memory PyTorch keeps here too (h for GELU's backward, GELU(h) for fc2's
/// weight gradient); h itself is freed after the forward pass when nothing else holds it.
/// h [..., hidden], W [out, hidden], b [out] → y [..., out].
public func geluLinear(_ h: Tensor, _ w: Tensor, _ b: Tensor? = nil) -> Tensor {
    let hidden = w.shape[1], outF = w.shape[0]
    precondition(h.shape.last == hidden, "tessera: geluLinear: input \(h.shape) does not end in \(hidden) (weight \(w.shape))")
    let n = h.count / hidden
    let a = Tensor(shape: h.shape)
    let needsDerivative = Autograd.needsGrad(h)
    let d: Tensor? = needsDerivative ? Tensor(shape: h.shape) : nil
    let hp = h.data, ap = a.data
    if let dp = d?.data {
        Parallel.forRange(n * hidden, costPerItem: 20, minCost: 1 << 16) { r in
            for i in r {
                let (v, dv) = Kernels.geluWithDerivative(hp[i])
                ap[i] = v
                dp[i] = dv
            }
        }
    } else {
        Parallel.forRange(n * hidden, costPerItem: 16, minCost: 1 << 16) { r in
            for i in r { ap[i] = Kernels.gelu(hp[i]) }
        }
    }
    let y = Autograd.noGrad { linear(a, w, b) }
    let hSlot = h.slot
    Autograd.record(y, [h, w, b]) { g in
        if let s = w.slot {
            // dW[out, hidden] (+)= gᵀ · GELU(h)
            let (dw, beta) = s.target()
            BLAS.gemm(transA: true, m: outF, n: hidden, k: n, a: g.data, lda: outF, b: a.data, ldb: hidden, beta: beta, c: dw.data, ldc: hidden)
        }
        if let b, let s = b.slot {
            let (db, beta) = s.target()
            Kernels.sumRows(g.data, rows: n, cols: outF, into: db.data, accumulate: beta != 0)
        }
        if let s = hSlot, let d {
            // dh = (g · W) ⊙ GELU'(h)
            let (dh, beta) = s.target()
            let da = beta == 0 ? dh : Tensor(shape: d.shape)
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
