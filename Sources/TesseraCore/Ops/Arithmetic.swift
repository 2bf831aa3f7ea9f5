/// Element-wise binary ops with NumPy/PyTorch broadcasting, and scalar ops.

/// The broadcast result shape of `a` and `b`, or a failure naming both shapes.
func broadcastShape(_ a: [Int], _ b: [Int], _ op: StaticString) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "tessera: \(op): shapes \(a) and \(b) do not broadcast")
        out[i] = max(da, db)
    }
    return out
}

/// Element strides of `shape` read as `outShape` (0 along broadcast axes).
func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int] {
    let r = outShape.count
    var strides = [Int](repeating: 0, count: r)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let oi = i + r - shape.count
        strides[oi] = shape[i] == 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// How an operand of shape `s` maps onto the output `out`.
enum BroadcastKind {
    case same
    case suffix(Int)     // operand repeats with period n (it is a trailing block of the output)
    case general([Int])  // strides
}

func broadcastKind(_ s: [Int], _ out: [Int]) -> BroadcastKind {
    if s == out { return .same }
    var trimmed = s[...]
    while trimmed.first == 1 { trimmed = trimmed.dropFirst() }
    if trimmed.count <= out.count && Array(out.suffix(trimmed.count)) == Array(trimmed) {
        return .suffix(max(1, trimmed.reduce(1, *)))
    }
    return .general(broadcastStrides(s, to: out))
}

/// Offset into an operand for output linear index `i`.
@inline(__always)
func generalOffset(_ i: Int, _ out: [Int], _ strides: [Int]) -> Int {
    var rem = i, off = 0
    for d in stride(from: out.count - 1, through: 0, by: -1) {
        let q = rem / out[d]
        off += (rem - q * out[d]) * strides[d]
        rem = q
    }
    return off
}

/// Sums `g` (output shape) down to an operand's shape, accumulating into its slot.
func reduceBroadcast(_ g: Tensor, to slot: GradSlot, kind: BroadcastKind, out: [Int], scale: Float = 1, owned: Bool = false) {
    switch kind {
    case .same:
        if scale == 1 { slot.accumulate(g, owned: owned) } else {
            let (d, beta) = slot.target()
            let gp = g.data, dp = d.data
            Parallel.forRange(g.count, minCost: 1 << 17) { r in
                if beta == 0 { for i in r { dp[i] = scale * gp[i] } } else { for i in r { dp[i] += scale * gp[i] } }
            }
        }
    case .suffix(let n):
        let (d, beta) = slot.target()
        let tmp = Tensor(shape: [n])
        Kernels.sumRows(g.data, rows: g.count / n, cols: n, into: tmp.data, accumulate: false)
        for j in 0..<n { d.data[j] = (beta == 0 ? 0 : d.data[j]) + scale * tmp.data[j] }
    case .general(let strides):
        let d = slot.buffer()
        for i in 0..<g.count { d.data[generalOffset(i, out, strides)] += scale * g.data[i] }
    }
}

enum BinaryOp { case add, sub, mul }

func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp, _ name: StaticString) -> Tensor {
    let outShape = broadcastShape(a.shape, b.shape, name)
    let y = Tensor(shape: outShape)
    let ka = broadcastKind(a.shape, outShape), kb = broadcastKind(b.shape, outShape)
    let ap = a.data, bp = b.data, yp = y.data, n = y.count
    @inline(__always) func apply(_ x: Float, _ z: Float) -> Float {
        switch op { case .add: return x + z; case .sub: return x - z; case .mul: return x * z }
    }
    switch (ka, kb) {
    case (.same, .same):
        Parallel.forRange(n, minCost: 1 << 17) { r in
            switch op {
            case .add: for i in r { yp[i] = ap[i] + bp[i] }
            case .sub: for i in r { yp[i] = ap[i] - bp[i] }
            case .mul: for i in r { yp[i] = ap[i] * bp[i] }
            }
        }
    case (.same, .suffix(let m)):
        let rows = n / m
        Parallel.forRange(rows, costPerItem: m, minCost: 1 << 17) { r in
            for row in r {
                let ar = ap + row * m, yr = yp + row * m
                switch op {
                case .add: for j in 0..<m { yr[j] = ar[j] + bp[j] }
                case .sub: for j in 0..<m { yr[j] = ar[j] - bp[j] }
                case .mul: for j in 0..<m { yr[j] = ar[j] * bp[j] }
                }
            }
        }
    default:
        for i in 0..<n {
            let ia: Int, ib: Int
            switch ka { case .same: ia = i; case .suffix(let m): ia = i % m; case .general(let s): ia = generalOffset(i, outShape, s) }
            switch kb { case .same: ib = i; case .suffix(let m): ib = i % m; case .general(let s): ib = generalOffset(i, outShape, s) }
            yp[i] = apply(ap[ia], bp[ib])
        }
    }
    if op != .mul {
        // Addition keeps only the gradient slots alive, not the operands' values.
        let sa = a.slot, sb = b.slot
        Autograd.record(y, [a, b]) { g in
            // The output gradient belongs to this step: the second operand gets a copy (or a reduction),
            // then the first adopts it without copying.
            if let sb { reduceBroadcast(g, to: sb, kind: kb, out: outShape, scale: op == .sub ? -1 : 1) }
            if let sa { reduceBroadcast(g, to: sa, kind: ka, out: outShape, owned: true) }
        }
        return y
    }
    // d a = g ⊙ b and d b = g ⊙ a: each operand's values are kept only if the other needs a gradient.
    let sa = a.slot, sb = b.slot
    let keptA = sb != nil ? a : nil, keptB = sa != nil ? b : nil
    Autograd.record(y, [a, b]) { g in
        if let sa, let keptB {
            let t = Tensor(shape: outShape)
            fillProduct(t, g, keptB, kb, outShape)
            reduceBroadcast(t, to: sa, kind: ka, out: outShape)
        }
        if let sb, let keptA {
            let t = Tensor(shape: outShape)
            fillProduct(t, g, keptA, ka, outShape)
            reduceBroadcast(t, to: sb, kind: kb, out: outShape)
        }
    }
    return y
}

/// t = g ⊙ broadcast(x)
private func fillProduct(_ t: Tensor, _ g: Tensor, _ x: Tensor, _ kx: BroadcastKind, _ out: [Int]) {
    let tp = t.data, gp = g.data, xp = x.data, n = t.count
    switch kx {
    case .same:
        Parallel.forRange(n, minCost: 1 << 17) { r in for i in r { tp[i] = gp[i] * xp[i] } }
    case .suffix(let m):
        Parallel.forRange(n / m, costPerItem: m, minCost: 1 << 17) { r in
            for row in r { for j in 0..<m { tp[row * m + j] = gp[row * m + j] * xp[j] } }
        }
    case .general(let s):
        for i in 0..<n { tp[i] = gp[i] * xp[generalOffset(i, out, s)] }
    }
}

public func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add, "add") }
public func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub, "sub") }
public func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul, "mul") }

/// y = alpha · x + beta
public func affine(_ x: Tensor, scale alpha: Float, shift beta: Float = 0) -> Tensor {
    let y = Tensor(shape: x.shape)
    let xp = x.data, yp = y.data
    Parallel.forRange(x.count, minCost: 1 << 17) { r in for i in r { yp[i] = alpha * xp[i] + beta } }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        guard let s = sx else { return }
        let (d, b) = s.target()
        let gp = g.data, dp = d.data
        Parallel.forRange(g.count, minCost: 1 << 17) { r in
            if b == 0 { for i in r { dp[i] = alpha * gp[i] } } else { for i in r { dp[i] += alpha * gp[i] } }
        }
    }
    return y
}

public func * (x: Tensor, s: Float) -> Tensor { affine(x, scale: s) }
public func * (s: Float, x: Tensor) -> Tensor { affine(x, scale: s) }
public func + (x: Tensor, s: Float) -> Tensor { affine(x, scale: 1, shift: s) }
public func - (x: Tensor, s: Float) -> Tensor { affine(x, scale: 1, shift: -s) }
public prefix func - (x: Tensor) -> Tensor { affine(x, scale: -1) }

/// Broadcasts x to `shape` (a copy), e.g. a [1, 1, D] token to [B, 1, D].
public func expand(_ x: Tensor, to shape: [Int]) -> Tensor {
    let out = broadcastShape(x.shape, shape, "expand")
    precondition(out == shape, "tessera: expand: \(x.shape) cannot expand to \(shape)")
    let k = broadcastKind(x.shape, shape)
    let y = Tensor(shape: shape)
    switch k {
    case .same: y.data.update(from: x.data, count: x.count)
    case .suffix(let m): for r in 0..<(y.count / m) { (y.data + r * m).update(from: x.data, count: m) }
    case .general(let s): for i in 0..<y.count { y.data[i] = x.data[generalOffset(i, shape, s)] }
    }
    let sx = x.slot
    Autograd.record(y, [x]) { g in
        if let s = sx { reduceBroadcast(g, to: s, kind: k, out: shape) }
    }
    return y
}
