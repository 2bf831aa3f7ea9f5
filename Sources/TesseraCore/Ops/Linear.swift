/// y = x · Wᵀ + b (+ residual), with x [..., in], W [out, in] (PyTorch layout), b [out]; y [..., out].
///
/// `residual` (y's shape) is a block's skip connection, added in the same pass that first writes y
/// (the product then accumulates onto it): one pass over y instead of a bias copy and a separate
/// addition, and in backward the residual adopts the output gradient instead of a copy of it.
public func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil, residual: Tensor? = nil) -> Tensor {
    precondition(w.rank == 2, "tessera: linear weight must be [out, in], got \(w.shape)")
    let inF = w.shape[1], outF = w.shape[0]
    precondition(x.rank >= 1 && x.shape.last == inF, "tessera: linear: input \(x.shape) does not end in \(inF) (weight \(w.shape))")
    if let b { precondition(b.shape == [outF], "tessera: linear bias \(b.shape) for weight \(w.shape)") }
    let n = x.count / inF
    let y = Tensor(shape: Array(x.shape.dropLast()) + [outF])
    if let residual { checkShapes(residual.shape, y.shape, "linear residual") }
    switch (b, residual) {
    case let (b?, r?):
        let yp = y.data, bp = b.data, rp = r.data
        Parallel.forRange(n, costPerItem: outF, minCost: 1 << 17) { rows in
            for i in rows {
                let yr = yp + i * outF, rr = rp + i * outF
                for j in 0..<outF { yr[j] = rr[j] + bp[j] }
            }
        }
    case let (b?, nil):
        let yp = y.data, bp = b.data
        Parallel.forRange(n, costPerItem: outF, minCost: 1 << 17) { r in
            for i in r { (yp + i * outF).update(from: bp, count: outF) }
        }
    case let (nil, r?):
        let yp = y.data, rp = r.data
        Parallel.forRange(n, costPerItem: outF, minCost: 1 << 17) { rows in
            (yp + rows.lowerBound * outF).update(from: rp + rows.lowerBound * outF, count: rows.count * outF)
        }
    case (nil, nil):
        break
    }
    BLAS.gemm(transB: true, m: n, n: outF, k: inF, a: x.data, lda: inF, b: w.data, ldb: inF,
              beta: b == nil && residual == nil ? 0 : 1, c: y.data, ldc: outF)
    let sr = residual?.slot  // the residual's values are not needed for backward
    Autograd.record(y, [x, w, b, residual]) { g in
        // g [n, out]
        if let s = x.slot {
            let (dx, beta) = s.target()  // dx[n, in] (+)= g[n, out] · W[out, in]
            BLAS.gemm(m: n, n: inF, k: outF, a: g.data, lda: outF, b: w.data, ldb: inF, beta: beta, c: dx.data, ldc: inF)
        }
        if let s = w.slot {
            let (dw, beta) = s.target()  // dW[out, in] (+)= gᵀ[out, n] · x[n, in]
            BLAS.gemm(transA: true, m: outF, n: inF, k: n, a: g.data, lda: outF, b: x.data, ldb: inF, beta: beta, c: dw.data, ldc: inF)
        }
        if let b, let s = b.slot {
            let (db, beta) = s.target()
            Kernels.sumRows(g.data, rows: n, cols: outF, into: db.data, accumulate: beta != 0)
        }
        // Last: the output gradient belongs to this step, so the residual takes it as it is.
        sr?.accumulate(g, owned: true)
    }
    return y
}

/// Matrix product over the last two axes. a [..., M, K]; b [K, N] (shared) or [..., K, N] (batched,
/// same leading shape). Either operand may be transposed over its last two axes.
public func matmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "tessera: matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
    let m = transA ? a.dim(-1) : a.dim(-2), ka = transA ? a.dim(-2) : a.dim(-1)
    let kb = transB ? b.dim(-1) : b.dim(-2), n = transB ? b.dim(-2) : b.dim(-1)
    precondition(ka == kb, "tessera: matmul: inner sizes differ, \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")")
    let batchShape = Array(a.shape.dropLast(2))
    let batch = batchShape.reduce(1, *)
    let shared = b.rank == 2
    if !shared { precondition(Array(b.shape.dropLast(2)) == batchShape, "tessera: matmul batch shapes differ: \(a.shape) and \(b.shape)") }
    let k = ka
    let lda = a.dim(-1), ldb = b.dim(-1)
    let sa = a.dim(-1) * a.dim(-2), sb = shared ? 0 : b.dim(-1) * b.dim(-2)
    let y = Tensor(shape: batchShape + [m, n])
    if shared && !transA {
        // One GEMM over all rows.
        BLAS.gemm(transB: transB, m: batch * m, n: n, k: k, a: a.data, lda: lda, b: b.data, ldb: ldb, c: y.data, ldc: n)
    } else {
        Parallel.forRange(batch, costPerItem: 2 * m * n * k, minCost: 1 << 20) { r in
            for i in r {
                BLAS.gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.data + i * sa, lda: lda,
                          b: b.data + i * sb, ldb: ldb, c: y.data + i * m * n, ldc: n, parallel: false)
            }
        }
    }
    Autograd.record(y, [a, b]) { g in
        // dA = g · op(B)ᵀ (as op(A)), dB = op(A)ᵀ · g (as op(B))
        if let s = a.slot {
            let (da, beta) = s.target()
            for i in 0..<batch {
                let gi = g.data + i * m * n, bi = b.data + i * sb, dai = da.data + i * sa
                if !transA {  // dA[m,k] = g[m,n] · op(B)ᵀ
                    BLAS.gemm(transB: !transB, m: m, n: k, k: n, a: gi, lda: n, b: bi, ldb: ldb, beta: beta, c: dai, ldc: lda)
                } else {      // dA[k,m] = op(B) · gᵀ
                    BLAS.gemm(transA: transB, transB: true, m: k, n: m, k: n, a: bi, lda: ldb, b: gi, ldb: n, beta: beta, c: dai, ldc: lda)
                }
            }
        }
        if let s = b.slot {
            let (db, beta0) = s.target()
            for i in 0..<batch {
                let beta: Float = shared && i > 0 ? 1 : beta0
                let gi = g.data + i * m * n, ai = a.data + i * sa, dbi = db.data + i * sb
                if !transB {  // dB[k,n] = op(A)ᵀ · g
                    BLAS.gemm(transA: !transA, m: k, n: n, k: m, a: ai, lda: lda, b: gi, ldb: n, beta: beta, c: dbi, ldc: ldb)
                } else {      // dB[n,k] = gᵀ · op(A)
                    BLAS.gemm(transA: true, transB: transA, m: n, n: k, k: m, a: gi, lda: n, b: ai, ldb: lda, beta: beta, c: dbi, ldc: ldb)
                }
            }
        }
    }
    return y
}
