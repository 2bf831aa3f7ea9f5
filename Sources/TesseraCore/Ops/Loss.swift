/// Losses, each reduced to a scalar mean as in PyTorch's defaults.
import Foundation

/// mean((pred − target)²); target gets no gradient.
public func mseLoss(_ pred: Tensor, _ target: Tensor) -> Tensor {
    checkShapes(pred.shape, target.shape, "mseLoss")
    let diff = pred - target.detach()
    return mean(diff * diff)
}

/// mean(|pred − target|).
public func l1Loss(_ pred: Tensor, _ target: Tensor) -> Tensor {
    checkShapes(pred.shape, target.shape, "l1Loss")
    let n = pred.count
    var acc: Double = 0
    for i in 0..<n { acc += Double(abs(pred.data[i] - target.data[i])) }
    let y = Tensor.scalar(Float(acc / Double(n)))
    Autograd.record(y, [pred]) { g in
        guard let s = pred.slot else { return }
        let t = Tensor(shape: pred.shape)
        let v = g.data[0] / Float(n)
        for i in 0..<n {
            let d = pred.data[i] - target.data[i]
            t.data[i] = d > 0 ? v : (d < 0 ? -v : 0)
        }
        s.accumulate(t, owned: true)
    }
    return y
}

/// Row-wise log-softmax of logits [N, C] into out (Double accumulation for the normaliser).
func logSoftmaxRows(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    for i in 0..<rows {
        let r = x + i * cols, o = out + i * cols
        let m = Kernels.maximum(r, cols)
        var s: Double = 0
        for j in 0..<cols { s += Double(Kernels.exp(r[j] - m)) }
        let lse = m + Float(Foundation.log(s))
        for j in 0..<cols { o[j] = r[j] - lse }
    }
}

/// Cross-entropy of logits [N, C] against a target distribution q [N, C] (soft targets, as timm's
/// SoftTargetCrossEntropy): mean over rows of −Σ q·log softmax(x).
public func crossEntropy(_ logits: Tensor, softTargets q: Tensor) -> Tensor {
    precondition(logits.rank == 2, "tessera: crossEntropy needs logits [N, C], got \(logits.shape)")
    checkShapes(q.shape, logits.shape, "crossEntropy soft targets")
    let (n, c) = (logits.shape[0], logits.shape[1])
    let logp = Tensor(shape: logits.shape)
    logSoftmaxRows(logits.data, logp.data, rows: n, cols: c)
    var acc: Double = 0
    for i in 0..<(n * c) { acc -= Double(q.data[i] * logp.data[i]) }
    let y = Tensor.scalar(Float(acc / Double(n)))
    Autograd.record(y, [logits]) { g in
        guard let s = logits.slot else { return }
        // d/dx = (softmax(x)·Σq − q) / N per row
        let t = Tensor(shape: logits.shape)
        let scale = g.data[0] / Float(n)
        for i in 0..<n {
            var qs: Float = 0
            for j in 0..<c { qs += q.data[i * c + j] }
            for j in 0..<c {
                let idx = i * c + j
                t.data[idx] = scale * (Kernels.exp(logp.data[idx]) * qs - q.data[idx])
            }
        }
        s.accumulate(t, owned: true)
    }
    return y
}

/// Cross-entropy with hard labels and optional label smoothing ε:
/// mean over rows of (1 − ε)·(−log p_y) + ε·mean_c(−log p_c) (PyTorch's label_smoothing and timm's
/// LabelSmoothingCrossEntropy agree on this). No dense [N, C] target is built (CAE has 8192 classes
/// over B·98 rows); rows run in parallel. Gradient: (softmax − ε/C − (1 − ε)·onehot(y)) / N.
public func crossEntropy(_ logits: Tensor, labels: [Int], smoothing: Float = 0) -> Tensor {
    precondition(logits.rank == 2, "tessera: crossEntropy needs logits [N, C], got \(logits.shape)")
    let (n, c) = (logits.shape[0], logits.shape[1])
    precondition(labels.count == n, "tessera: crossEntropy: \(labels.count) labels for \(n) rows")
    for y in labels { precondition(y >= 0 && y < c, "tessera: crossEntropy: label \(y) outside 0..<\(c)") }
    let logp = Tensor(shape: logits.shape)
    var rowLoss = [Double](repeating: 0, count: n)
    let eps = smoothing
    rowLoss.withUnsafeMutableBufferPointer { out in
        let out = out
        Parallel.forRange(n, costPerItem: 4 * c, minCost: 1 << 16) { r in
            logSoftmaxRows(logits.data + r.lowerBound * c, logp.data + r.lowerBound * c, rows: r.count, cols: c)
            for i in r {
                let lp = logp.data + i * c
                var all: Double = 0
                if eps != 0 { for j in 0..<c { all += Double(lp[j]) } }
                out[i] = -Double(1 - eps) * Double(lp[labels[i]]) - Double(eps) * all / Double(c)
            }
        }
    }
    let y = Tensor.scalar(Float(rowLoss.reduce(0, +) / Double(n)))
    Autograd.record(y, [logits]) { g in
        guard let s = logits.slot else { return }
        let (dx, beta) = s.target()
        let scale = g.data[0] / Float(n), floor = eps / Float(c)
        Parallel.forRange(n, costPerItem: 4 * c, minCost: 1 << 16) { r in
            for i in r {
                let lp = logp.data + i * c, d = dx.data + i * c
                for j in 0..<c {
                    let v = scale * (Kernels.exp(lp[j]) - floor)
                    d[j] = beta == 0 ? v : d[j] + v
                }
                d[labels[i]] -= scale * (1 - eps)
            }
        }
    }
    return y
}
