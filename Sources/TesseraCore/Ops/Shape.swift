/// Reshape, permute, concatenation, slicing, token gather/scatter, and reductions.

extension Tensor {
    /// Same storage, new shape (one dimension may be -1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "tessera: reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "tessera: reshape: \(shape) has \(count) elements, \(newShape) needs \(s.reduce(1, *))")
        let y = Tensor(shape: s, storage: storage, offset: offset)
        let ss = slot, srcShape = shape
        Autograd.record(y, [self]) { g in
            ss?.accumulate(g.view(srcShape), owned: true)
        }
        return y
    }

    /// Axes reordered: output axis i is input axis `perm[i]` (a copy).
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.sorted() == Array(0..<rank), "tessera: permute \(perm) for shape \(shape)")
        let outShape = perm.map { shape[$0] }
        let y = Tensor(shape: outShape)
        permuteCopy(src: data, srcShape: shape, perm: perm, dst: y.data)
        let inv = (0..<rank).map { perm.firstIndex(of: $0)! }
        let ss = slot, srcShape = shape
        Autograd.record(y, [self]) { g in
            guard let s = ss else { return }
            let t = Tensor(shape: srcShape)
            permuteCopy(src: g.data, srcShape: outShape, perm: inv, dst: t.data)
            s.accumulate(t, owned: true)
        }
        return y
    }

    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var p = Array(0..<rank)
        p.swapAt(a < 0 ? rank + a : a, b < 0 ? rank + b : b)
        return permuted(p)
    }
}

/// dst = src permuted. The innermost output axis is copied as a strided run.
func permuteCopy(src: UnsafePointer<Float>, srcShape: [Int], perm: [Int], dst: UnsafeMutablePointer<Float>) {
    let r = srcShape.count
    var srcStrides = [Int](repeating: 1, count: r)
    for i in stride(from: r - 2, through: 0, by: -1) { srcStrides[i] = srcStrides[i + 1] * srcShape[i + 1] }
    let outShape = perm.map { srcShape[$0] }
    let st = perm.map { srcStrides[$0] }
    let n = outShape.reduce(1, *)
    if n == 0 { return }
    let inner = outShape[r - 1], innerStride = st[r - 1]
    let outer = n / inner
    Parallel.forRange(outer, costPerItem: inner, minCost: 1 << 16) { range in
        for o in range {
            var rem = o, off = 0
            for d in stride(from: r - 2, through: 0, by: -1) {
                let q = rem / outShape[d]
                off += (rem - q * outShape[d]) * st[d]
                rem = q
            }
            let dp = dst + o * inner
            let sp = src + off
            if innerStride == 1 { dp.update(from: sp, count: inner) } else {
                for j in 0..<inner { dp[j] = sp[j * innerStride] }
            }
        }
    }
}

/// Views x as [outer, size(axis), inner].
@inline(__always)
func axisSplit(_ shape: [Int], _ axis: Int) -> (outer: Int, n: Int, inner: Int) {
    (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
}

/// Concatenation along `axis`.
public func concat(_ xs: [Tensor], axis a: Int) -> Tensor {
    precondition(!xs.isEmpty, "tessera: concat of no tensors")
    let axis = a < 0 ? xs[0].rank + a : a
    for x in xs {
        precondition(x.rank == xs[0].rank && (0..<x.rank).allSatisfy { $0 == axis || x.shape[$0] == xs[0].shape[$0] },
                     "tessera: concat along \(axis): shapes \(xs.map(\.shape)) differ off that axis")
    }
    var outShape = xs[0].shape
    outShape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
    let (outer, total, inner) = axisSplit(outShape, axis)
    let y = Tensor(shape: outShape)
    var start = 0
    var starts: [Int] = []
    for x in xs {
        starts.append(start)
        let w = x.shape[axis] * inner
        for o in 0..<outer { (y.data + o * total * inner + start * inner).update(from: x.data + o * w, count: w) }
        start += x.shape[axis]
    }
    let parts = xs.map { ($0.slot, $0.shape) }
    Autograd.record(y, xs) { g in
        for ((slot, shape), s0) in zip(parts, starts) {
            guard let s = slot else { continue }
            let w = shape[axis] * inner
            let t = Tensor(shape: shape)
            for o in 0..<outer { (t.data + o * w).update(from: g.data + o * total * inner + s0 * inner, count: w) }
            s.accumulate(t, owned: true)
        }
    }
    return y
}

/// Elements `start..<start+length` along `axis` (a copy).
public func slice(_ x: Tensor, axis a: Int, start: Int, length: Int) -> Tensor {
    let axis = a < 0 ? x.rank + a : a
    precondition(start >= 0 && length >= 0 && start + length <= x.shape[axis],
                 "tessera: slice \(start)..<\(start + length) on axis \(axis) of shape \(x.shape)")
    let (outer, n, inner) = axisSplit(x.shape, axis)
    var outShape = x.shape
    outShape[axis] = length
    let y = Tensor(shape: outShape)
    let w = length * inner
    for o in 0..<outer { (y.data + o * w).update(from: x.data + o * n * inner + start * inner, count: w) }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let d = s.buffer()
        for o in 0..<outer {
            let dp = d.data + o * n * inner + start * inner, gp = g.data + o * w
            for j in 0..<w { dp[j] += gp[j] }
        }
    }
    return y
}

/// Splits along `axis` into pieces of the given sizes.
public func split(_ x: Tensor, axis a: Int, sizes: [Int]) -> [Tensor] {
    let axis = a < 0 ? x.rank + a : a
    precondition(sizes.reduce(0, +) == x.shape[axis], "tessera: split sizes \(sizes) do not add up to \(x.shape[axis]) (shape \(x.shape))")
    var start = 0
    return sizes.map { n in defer { start += n }; return slice(x, axis: axis, start: start, length: n) }
}

/// out[b, k, :] = x[b, index[b·K + k], :] for x [B, L, D] and `index` of B·K token indices.
public func gatherTokens(_ x: Tensor, _ index: [Int], count k: Int) -> Tensor {
    precondition(x.rank == 3, "tessera: gatherTokens needs [B, L, D], got \(x.shape)")
    let (b, l, d) = (x.shape[0], x.shape[1], x.shape[2])
    precondition(index.count == b * k, "tessera: gatherTokens: \(index.count) indices for batch \(b) × \(k)")
    let y = Tensor(shape: [b, k, d])
    for i in 0..<b {
        for j in 0..<k {
            let src = index[i * k + j]
            precondition(src >= 0 && src < l, "tessera: gatherTokens: index \(src) outside 0..<\(l)")
            (y.data + (i * k + j) * d).update(from: x.data + (i * l + src) * d, count: d)
        }
    }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let dx = s.buffer()
        for i in 0..<b {
            for j in 0..<k {
                let dp = dx.data + (i * l + index[i * k + j]) * d, gp = g.data + (i * k + j) * d
                for c in 0..<d { dp[c] += gp[c] }
            }
        }
    }
    return y
}

/// The inverse placement: out [B, L, D] starts as `base` (or zeros) and gets out[b, index[b·K+k]] = src[b, k].
public func scatterTokens(_ src: Tensor, _ index: [Int], length l: Int, base: Tensor? = nil) -> Tensor {
    precondition(src.rank == 3, "tessera: scatterTokens needs [B, K, D], got \(src.shape)")
    let (b, k, d) = (src.shape[0], src.shape[1], src.shape[2])
    precondition(index.count == b * k, "tessera: scatterTokens: \(index.count) indices for batch \(b) × \(k)")
    if let base { checkShapes(base.shape, [b, l, d], "scatterTokens base") }
    let y = base?.clone() ?? Tensor.zeros([b, l, d])
    var written = [Bool](repeating: false, count: b * l)
    for i in 0..<b {
        for j in 0..<k {
            let dst = index[i * k + j]
            precondition(dst >= 0 && dst < l, "tessera: scatterTokens: index \(dst) outside 0..<\(l)")
            written[i * l + dst] = true
            (y.data + (i * l + dst) * d).update(from: src.data + (i * k + j) * d, count: d)
        }
    }
    let ss = src.slot, srcShape = src.shape, sb = base?.slot
    Autograd.record(y, [src, base]) { g in
        if let s = ss {
            let t = Tensor(shape: srcShape)
            for i in 0..<b { for j in 0..<k {
                (t.data + (i * k + j) * d).update(from: g.data + (i * l + index[i * k + j]) * d, count: d)
            } }
            s.accumulate(t, owned: true)
        }
        if let s = sb {
            let t = g.clone()
            for r in 0..<(b * l) where written[r] { (t.data + r * d).initialize(repeating: 0, count: d) }
            s.accumulate(t, owned: true)
        }
    }
    return y
}

// MARK: reductions

/// Σ of all elements (a scalar of shape []).
public func sum(_ x: Tensor) -> Tensor {
    var acc: Double = 0
    for i in 0..<x.count { acc += Double(x.data[i]) }
    let y = Tensor.scalar(Float(acc))
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let (d, beta) = s.target()
        let v = g.data[0]
        if beta == 0 { d.data.initialize(repeating: v, count: d.count) } else { for i in 0..<d.count { d.data[i] += v } }
    }
    return y
}

/// Mean of all elements.
public func mean(_ x: Tensor) -> Tensor { sum(x) * (1 / Float(max(x.count, 1))) }

/// Σ along `axis` (removed unless keepDim).
public func sum(_ x: Tensor, axis a: Int, keepDim: Bool = false) -> Tensor {
    let axis = a < 0 ? x.rank + a : a
    let (outer, n, inner) = axisSplit(x.shape, axis)
    var outShape = x.shape
    if keepDim { outShape[axis] = 1 } else { outShape.remove(at: axis) }
    let y = Tensor.zeros(outShape)
    for o in 0..<outer {
        let yp = y.data + o * inner
        for j in 0..<n {
            let xp = x.data + (o * n + j) * inner
            for c in 0..<inner { yp[c] += xp[c] }
        }
    }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let d = s.buffer()
        for o in 0..<outer {
            let gp = g.data + o * inner
            for j in 0..<n {
                let dp = d.data + (o * n + j) * inner
                for c in 0..<inner { dp[c] += gp[c] }
            }
        }
    }
    return y
}

/// Mean along `axis`.
public func mean(_ x: Tensor, axis a: Int, keepDim: Bool = false) -> Tensor {
    let axis = a < 0 ? x.rank + a : a
    return sum(x, axis: axis, keepDim: keepDim) * (1 / Float(x.shape[axis]))
}
