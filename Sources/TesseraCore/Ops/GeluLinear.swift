/// y = GELU(h) · Wᵀ + b: an MLP's activation and second projection in one op.
///
/// Only h is kept for backward; GELU(h) and GELU'(h) are recomputed there in one sweep (one
/// exponential and one erf per element). PyTorch keeps both h (for GELU's backward) and GELU(h)
/// (for fc2's weight gradient), so this saves rows × hidden floats per block.
/// h [..., hidden], W [out, hidden], b [out] → y [..., out].
///
/// `inputBias` (fc1's bias, [hidden]) is added to h here instead of by fc1, so fc1's product runs
/// without first copying its bias into every output row: the forward sweep adds it on its way to
/// GELU (h then holds fc1's full output, in place), and the backward sweep sums its gradient from
/// dh as it writes it, so no separate pass over dh is needed either. h must then be a fresh product
/// read by nothing else (`Mlp` passes `linear(x, fc1.weight)`).
/// `residual` is the block's skip connection, added to y as in `linear(_:_:_:residual:)`.
public func geluLinear(_ h: Tensor, _ w: Tensor, _ b: Tensor? = nil, inputBias b1: Tensor? = nil,
                       residual: Tensor? = nil) -> Tensor {
    let hidden = w.shape[1], outF = w.shape[0]
    precondition(h.shape.last == hidden, "tessera: geluLinear: input \(h.shape) does not end in \(hidden) (weight \(w.shape))")
    if let b1 { precondition(b1.shape == [hidden], "tessera: geluLinear: input bias \(b1.shape) for hidden width \(hidden)") }
    let n = h.count / hidden
    let y: Tensor
    if let b1 {
        let a = Tensor(shape: h.shape)
        let hp = h.data, ap = a.data, bp = b1.data
        Parallel.forRange(n, costPerItem: 17 * hidden, minCost: 1 << 16) { r in
            for i in r {
                let hr = hp + i * hidden, ar = ap + i * hidden
                for j in 0..<hidden {
                    let v = hr[j] + bp[j]
                    hr[j] = v
                    ar[j] = Kernels.gelu(v)
                }
            }
        }
        y = Autograd.noGrad { linear(a, w, b, residual: residual) }
    } else {
        y = Autograd.noGrad { linear(gelu(h), w, b, residual: residual) }
    }
    let sr = residual?.slot
    Autograd.record(y, [h, w, b, b1, residual]) { g in
        let hp = h.data
        // dh = (g · W) ⊙ GELU'(h): the product first, so that the sweep computing GELU(h) (for fc2's
        // weight gradient) and GELU'(h) (one exponential and one erf for both) applies the
        // derivative on the spot instead of storing it.
        let b1Slot = b1?.slot
        var dhTarget: (dh: Tensor, product: Tensor, accumulate: Bool)? = nil
        if h.slot != nil || b1Slot != nil {
            // Without a gradient for h itself (fc1 frozen), dh is still needed for fc1's bias.
            let (dh, beta) = h.slot?.target() ?? (Tensor(shape: h.shape), 0)
            // With an input bias h is this op's own (it holds fc1's output only from here on), so
            // nothing else can have put a gradient into it first.
            precondition(beta == 0 || b1 == nil, "tessera: geluLinear: with an input bias, h must be read by nothing else")
            let product = beta == 0 ? dh : Tensor(shape: h.shape)
            BLAS.gemm(m: n, n: hidden, k: outF, a: g.data, lda: outF, b: w.data, ldb: hidden, c: product.data, ldc: hidden)
            dhTarget = (dh, product, beta != 0)
        }
        let a = w.slot != nil ? Tensor(shape: [n, hidden]) : nil
        // Rows are split into parts; each part sums its own share of fc1's bias gradient.
        let parts = min(Parallel.workers, max(1, n * hidden * 22 / (1 << 16)), max(n, 1))
        let partial = b1Slot != nil ? Tensor.zeros([parts, hidden]) : nil
        Parallel.run(parts) { p in
            let lo = n * p / parts, hi = n * (p + 1) / parts
            guard lo < hi else { return }
            let acc = partial.map { $0.data + p * hidden }
            for i in lo..<hi {
                let hr = hp + i * hidden
                switch (a?.data, dhTarget) {
                case let (ap?, t?):
                    let ar = ap + i * hidden, dr = t.dh.data + i * hidden, tr = t.product.data + i * hidden
                    // In place through one pointer when the product is dh: two pointers to one buffer
                    // fail LLVM's run-time overlap check and send the loop down its scalar path.
                    if t.accumulate {
                        for j in 0..<hidden {
                            let (v, dv) = Kernels.geluWithDerivative(hr[j])
                            ar[j] = v
                            dr[j] += tr[j] * dv
                        }
                    } else if let acc {
                        for j in 0..<hidden {
                            let (v, dv) = Kernels.geluWithDerivative(hr[j])
                            ar[j] = v
                            let d = dr[j] * dv
                            dr[j] = d
                            acc[j] += d
                        }
                    } else {
                        for j in 0..<hidden {
                            let (v, dv) = Kernels.geluWithDerivative(hr[j])
                            ar[j] = v
                            dr[j] *= dv
                        }
                    }
                case let (ap?, nil):
                    let ar = ap + i * hidden
                    for j in 0..<hidden { ar[j] = Kernels.gelu(hr[j]) }
                case let (nil, t?):
                    let dr = t.dh.data + i * hidden, tr = t.product.data + i * hidden
                    if t.accumulate {
                        for j in 0..<hidden { dr[j] += tr[j] * Kernels.geluDerivative(hr[j]) }
                    } else if let acc {
                        for j in 0..<hidden {
                            let d = dr[j] * Kernels.geluDerivative(hr[j])
                            dr[j] = d
                            acc[j] += d
                        }
                    } else {
                        for j in 0..<hidden { dr[j] *= Kernels.geluDerivative(hr[j]) }
                    }
                case (nil, nil):
                    break
                }
            }
        }
        if let s = b1Slot, let partial {
            let (db, beta) = s.target()
            Kernels.sumRows(partial.data, rows: parts, cols: hidden, into: db.data, accumulate: beta != 0)
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
        // Last: the output gradient belongs to this step, so the residual takes it as it is.
        sr?.accumulate(g, owned: true)
    }
    return y
}
