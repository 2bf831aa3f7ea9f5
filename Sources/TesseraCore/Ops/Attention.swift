/// Multi-head scaled dot-product attention, computed per (sample, head) straight from token-major
/// layouts (no permute copies): head h of a [B, L, ·] operand is columns `offset + h·hd ..< +hd`.
/// Callers that ask for the softmax probabilities get them kept for backward, as PyTorch's eager
/// attention does, and so do short sequences whose probabilities take no more memory than q, k and v.
/// Otherwise only each row's softmax max and normaliser are kept, and backward recomputes the
/// probabilities from Q and K, as PyTorch's fused attention does: an [L, L] block per head instead
/// of [B, heads, L, L] per layer (318 MiB in ViT-B/16 MAE's decoder at batch 16), for one more QKᵀ
/// product per head. The recomputed probabilities are bit-for-bit those of the
/// forward pass (same products, same row kernels), so the gradients are exactly as if kept.

/// A token-major operand: rows of `stride` floats, the heads starting at column `offset`.
struct AttentionOperand {
    let tensor: Tensor
    let stride: Int
    let offset: Int
}

/// Self-attention on a fused projection qkv [B, L, 3D] laid out as [q | k | v] (timm/BEiT order).
/// mask: optional additive logits mask, [B, L, L] (also [B, 1, L, L]) or [L, L], broadcast over heads.
/// A row whose logits are all −∞ gives zero weights and a zero output row, never NaN.
public func selfAttention(qkv: Tensor, heads: Int, mask: Tensor? = nil) -> Tensor {
    selfAttentionCore(qkv: qkv, heads: heads, mask: mask, keepProbabilities: false).output
}

/// `selfAttention` that also returns the softmax probabilities [B, heads, L, L] (no gradient; the
/// caller must not modify them).
public func selfAttentionWithProbabilities(qkv: Tensor, heads: Int, mask: Tensor? = nil) -> (output: Tensor, probabilities: Tensor) {
    let r = selfAttentionCore(qkv: qkv, heads: heads, mask: mask, keepProbabilities: true)
    return (r.output, r.probabilities!)
}

func selfAttentionCore(qkv: Tensor, heads: Int, mask: Tensor?, keepProbabilities: Bool) -> (output: Tensor, probabilities: Tensor?) {
    precondition(qkv.rank == 3 && qkv.shape[2] % 3 == 0, "tessera: selfAttention needs qkv [B, L, 3D], got \(qkv.shape)")
    let d = qkv.shape[2] / 3
    return attentionCore(q: .init(tensor: qkv, stride: 3 * d, offset: 0),
                         k: .init(tensor: qkv, stride: 3 * d, offset: d),
                         v: .init(tensor: qkv, stride: 3 * d, offset: 2 * d),
                         batch: qkv.shape[0], lq: qkv.shape[1], lk: qkv.shape[1], width: d, heads: heads, mask: mask,
                         keepProbabilities: keepProbabilities)
}

/// Attention with separate projections: q [B, Lq, D], k and v [B, Lk, D] (cross-attention when
/// Lq ≠ Lk or the key/value tensors come from another stream). Output [B, Lq, D].
public func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, mask: Tensor? = nil) -> Tensor {
    attentionCore(q: q, k: k, v: v, heads: heads, mask: mask, keepProbabilities: false).output
}

/// `attention` that also returns the softmax probabilities [B, heads, Lq, Lk] (no gradient; the
/// caller must not modify them).
public func attentionWithProbabilities(q: Tensor, k: Tensor, v: Tensor, heads: Int, mask: Tensor? = nil) -> (output: Tensor, probabilities: Tensor) {
    let r = attentionCore(q: q, k: k, v: v, heads: heads, mask: mask, keepProbabilities: true)
    return (r.output, r.probabilities!)
}

func attentionCore(q: Tensor, k: Tensor, v: Tensor, heads: Int, mask: Tensor?, keepProbabilities: Bool) -> (output: Tensor, probabilities: Tensor?) {
    precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "tessera: attention needs rank-3 q, k, v, got \(q.shape), \(k.shape), \(v.shape)")
    precondition(k.shape == v.shape && q.shape[0] == k.shape[0] && q.shape[2] == k.shape[2],
                 "tessera: attention: q \(q.shape), k \(k.shape), v \(v.shape) do not fit")
    let d = q.shape[2]
    return attentionCore(q: .init(tensor: q, stride: d, offset: 0), k: .init(tensor: k, stride: d, offset: 0),
                         v: .init(tensor: v, stride: d, offset: 0),
                         batch: q.shape[0], lq: q.shape[1], lk: k.shape[1], width: d, heads: heads, mask: mask,
                         keepProbabilities: keepProbabilities)
}

func attentionCore(q: AttentionOperand, k: AttentionOperand, v: AttentionOperand, batch b: Int, lq: Int, lk: Int,
                   width d: Int, heads h: Int, mask: Tensor?, keepProbabilities: Bool) -> (output: Tensor, probabilities: Tensor?) {
    precondition(h > 0 && d % h == 0, "tessera: attention width \(d) is not divisible by \(h) heads")
    let hd = d / h
    let scale = 1 / Float(hd).squareRoot()
    var maskPerSample = false
    if let mask {
        if mask.count == b * lq * lk && b > 1 { maskPerSample = true } else {
            precondition(mask.count == lq * lk || mask.count == b * lq * lk,
                         "tessera: attention mask \(mask.shape) fits neither [B=\(b), \(lq), \(lk)] nor [\(lq), \(lk)]")
        }
    }
    let recording = Autograd.isEnabled && (q.tensor.requiresGrad || k.tensor.requiresGrad || v.tensor.requiresGrad)
    let probs = keepProbabilities ? Tensor(shape: [b, h, lq, lk]) : nil
    // The register-tiled products (`SmallGemm`, `bench gemm`) when the head width fits: P·V and the
    // gradient products up to 128 tokens (past that oneDNN's P·V and Pᵀ·dO are level or ahead), and on
    // AVX-512 hosts Q·Kᵀ and dO·Vᵀ at any length, with the logits rows padded to a multiple of 16
    // columns (`ls`), the padding left out of the softmax. On AVX2 hosts (8-float tiles) the library
    // keeps Q·Kᵀ and dO·Vᵀ: their tiled form, with K transposed and padded, ran at 0.65–0.9× oneDNN.
    let fitsTiles = SmallGemm.attention && SmallGemm.fits(headWidth: hd)
    let tiled = fitsTiles && SmallGemm.wideVectors
    let tiledPV = fitsTiles && max(lq, lk) <= 128
    let ls = tiled ? SmallGemm.padded(lk) : lk
    // Short sequences keep their probabilities for backward when they take no more memory than the
    // layer's q, k and v (heads · Lk ≤ 3 · width floats per query token: MAE's encoders and tiny32's
    // decoder), which saves backward the recomputed Q·Kᵀ. Longer ones keep only each row's softmax
    // max and normaliser, [b·h·lq, 2], and recompute.
    let keptForBackward = !keepProbabilities && recording && h * ls <= 3 * d ? Tensor(shape: [b * h * lq * ls]) : nil
    let stats = !keepProbabilities && keptForBackward == nil && recording ? Tensor(shape: [b * h * lq, 2]) : nil
    let y = Tensor(shape: [b, lq, d])
    let qp = q.tensor.data, kp = k.tensor.data, vp = v.tensor.data
    let yp = y.data, mp = mask?.data, stp = stats?.data, keptp = keptForBackward?.data
    let cost = 4 * lq * lk * hd

    /// C[lq, ls] = α · A · B_hᵀ with A [lq, hd] and B_h [lk, hd] (rows at strides lda, ldb): Q·Kᵀ and
    /// dO·Vᵀ. With `t` ([hd, ls] scratch) the tiled product on B_h transposed into t, else the library's.
    func productTransposed(a: UnsafePointer<Float>, lda: Int, b bh: UnsafePointer<Float>, ldb: Int, alpha: Float,
                           c: UnsafeMutablePointer<Float>, scratch t: UnsafeMutablePointer<Float>?) {
        if let t {
            SmallGemm.transposePadded(bh, ld: ldb, rows: lk, width: hd, into: t)
            SmallGemm.multiply(transA: false, m: lq, n: ls, k: hd, alpha: alpha, a: a, lda: lda, b: t, ldb: ls,
                               accumulate: false, c: c, ldc: ls)
        } else {
            BLAS.gemm(transB: true, m: lq, n: lk, k: hd, alpha: alpha, a: a, lda: lda, b: bh, ldb: ldb,
                      c: c, ldc: ls, parallel: false)
        }
    }

    /// S = scale · Q_h · K_hᵀ (+ mask) for one (sample, head) into s [lq, ls]; `t` is [hd, ls] scratch.
    func logits(_ task: Int, into s: UnsafeMutablePointer<Float>, scratch t: UnsafeMutablePointer<Float>?) {
        let bi = task / h, hi = task % h
        productTransposed(a: qp + bi * lq * q.stride + q.offset + hi * hd, lda: q.stride,
                          b: kp + bi * lk * k.stride + k.offset + hi * hd, ldb: k.stride, alpha: scale, c: s, scratch: t)
        if let mp {
            let m = maskPerSample ? mp + bi * lq * lk : mp
            for i in 0..<lq { for j in 0..<lk { s[i * ls + j] += m[i * lk + j] } }
        }
    }

    /// C[m, hd] (+)= op(A) · B_h: P·V, dS·K (A [m, k]) or Pᵀ·dO, dSᵀ·Q (transA: A stored [k, m]).
    func product(transA: Bool, m: Int, k kk: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if tiledPV {
            SmallGemm.multiply(transA: transA, m: m, n: hd, k: kk, alpha: 1, a: a, lda: lda, b: b, ldb: ldb,
                               accumulate: accumulate, c: c, ldc: ldc)
        } else {
            BLAS.gemm(transA: transA, m: m, n: hd, k: kk, a: a, lda: lda, b: b, ldb: ldb, beta: accumulate ? 1 : 0,
                      c: c, ldc: ldc, parallel: false)
        }
    }

    Parallel.forRange(b * h, costPerItem: cost, minCost: 1 << 18) { r in
        let scratch = keptp == nil ? Tensor(shape: [lq, ls]) : nil
        let transposed = tiled ? Tensor(shape: [hd, ls]) : nil
        for task in r {
            let bi = task / h, hi = task % h
            let s = keptp.map { $0 + task * lq * ls } ?? scratch!.data
            logits(task, into: s, scratch: transposed?.data)
            if let stp {
                for i in 0..<lq {
                    let (m, inv) = Kernels.softmaxRowKeepingStats(s + i * ls, lk)
                    stp[2 * (task * lq + i)] = m
                    stp[2 * (task * lq + i) + 1] = inv
                }
            } else {
                for i in 0..<lq { Kernels.softmaxRow(s + i * ls, lk) }
            }
            if let probs {
                let out = probs.data + task * lq * lk
                for i in 0..<lq { (out + i * lk).update(from: s + i * ls, count: lk) }
            }
            // O_h[lq, hd] = P · V_h
            product(transA: false, m: lq, k: lk, a: s, lda: ls, b: vp + bi * lk * v.stride + v.offset + hi * hd, ldb: v.stride,
                    accumulate: false, c: yp + bi * lq * d + hi * hd, ldc: d)
        }
    }
    let inputs: [Tensor?] = [q.tensor, k.tensor, v.tensor]
    Autograd.record(y, inputs) { g in
        // Pointers are taken from the captured tensors here, so their storage is kept alive (the
        // mask's too: `logits` reads it through a pointer).
        withExtendedLifetime(mask) {
            let qp = q.tensor.data, kp = k.tensor.data, vp = v.tensor.data
            let pp = probs?.data, stp = stats?.data, keptp = keptForBackward?.data
            let gp = g.data
            let dq = q.tensor.slot?.buffer(), dk = k.tensor.slot?.buffer(), dv = v.tensor.slot?.buffer()
            let recomputing = pp == nil && keptp == nil
            Parallel.forRange(b * h, costPerItem: (recomputing ? 5 : 4) * cost / 2, minCost: 1 << 18) { r in
                let dS = Tensor(shape: [lq, ls])
                let recomputed = recomputing ? Tensor(shape: [lq, ls]) : nil
                let transposed = tiled ? Tensor(shape: [hd, ls]) : nil
                let ds = dS.data, t = transposed?.data
                for task in r {
                    let bi = task / h, hi = task % h
                    let p: UnsafeMutablePointer<Float>, lp: Int
                    if let pp { p = pp + task * lq * lk; lp = lk } else if let keptp { p = keptp + task * lq * ls; lp = ls } else {
                        p = recomputed!.data; lp = ls
                        logits(task, into: p, scratch: t)
                        for i in 0..<lq {
                            Kernels.softmaxRowReplaying(p + i * ls, lk, max: stp![2 * (task * lq + i)], inverseSum: stp![2 * (task * lq + i) + 1])
                        }
                    }
                    let qOff = bi * lq * q.stride + q.offset + hi * hd
                    let kOff = bi * lk * k.stride + k.offset + hi * hd
                    let vOff = bi * lk * v.stride + v.offset + hi * hd
                    let go = gp + bi * lq * d + hi * hd
                    // dP = dO · V_hᵀ
                    productTransposed(a: go, lda: d, b: vp + vOff, ldb: v.stride, alpha: 1, c: ds, scratch: t)
                    // dV_h += Pᵀ · dO
                    if let dv {
                        product(transA: true, m: lk, k: lq, a: p, lda: lp, b: go, ldb: d, accumulate: true, c: dv.data + vOff, ldc: v.stride)
                    }
                    // dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
                    for i in 0..<lq { Kernels.softmaxBackwardRowInPlace(p + i * lp, ds + i * ls, lk, scale: scale) }
                    if let dq {  // dQ_h += dS · K_h
                        product(transA: false, m: lq, k: lk, a: ds, lda: ls, b: kp + kOff, ldb: k.stride, accumulate: true,
                                c: dq.data + qOff, ldc: q.stride)
                    }
                    if let dk {  // dK_h += dSᵀ · Q_h
                        product(transA: true, m: lk, k: lq, a: ds, lda: ls, b: qp + qOff, ldb: q.stride, accumulate: true,
                                c: dk.data + kOff, ldc: k.stride)
                    }
                }
            }
        }
    }
    return (y, probs)
}
