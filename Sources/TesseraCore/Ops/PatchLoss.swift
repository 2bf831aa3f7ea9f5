/// The reconstruction loss of MAE: per-patch mean squared error, averaged over the patches whose
/// mask is 1 (removed patches): Σ_bl m_bl · mean_p (pred − target)² / Σ_bl m_bl.
/// pred, target [B, L, P]; mask [B·L] of 0/1 weights. The target gets no gradient.
public func maskedPatchMSE(_ pred: Tensor, _ target: Tensor, mask: [Float]) -> Tensor {
    checkShapes(pred.shape, target.shape, "maskedPatchMSE")
    let p = pred.shape.last!, patches = pred.count / p
    precondition(mask.count == patches, "tessera: maskedPatchMSE: \(mask.count) mask entries for \(patches) patches")
    let weightSum = mask.reduce(0, +)
    precondition(weightSum > 0, "tessera: maskedPatchMSE: the mask selects no patch")
    var acc: Double = 0
    for i in 0..<patches where mask[i] != 0 {
        let a = pred.data + i * p, b = target.data + i * p
        var s: Float = 0
        for j in 0..<p { let d = a[j] - b[j]; s += d * d }
        acc += Double(mask[i]) * Double(s)
    }
    let y = Tensor.scalar(Float(acc / Double(p) / Double(weightSum)))
    let sp = pred.slot
    Autograd.record(y, [pred]) { g in
        guard let sp else { return }
        let (d, beta) = sp.target()
        let scale = 2 * g.data[0] / Float(p) / weightSum
        Parallel.forRange(patches, costPerItem: p, minCost: 1 << 15) { r in
            for i in r {
                let a = pred.data + i * p, b = target.data + i * p, o = d.data + i * p
                let w = scale * mask[i]
                if beta == 0 { for j in 0..<p { o[j] = w * (a[j] - b[j]) } } else { for j in 0..<p { o[j] += w * (a[j] - b[j]) } }
            }
        }
    }
    return y
}
