import TesseraCore

/// One pre-training forward and backward pass, on the whole batch or split over replicas.
public enum PretrainStep {
    /// Runs the forward pass on `images` and back-propagates `scale` × loss (scale is 1 / accum_iter),
    /// unless the loss is not finite. Returns the loss.
    ///
    /// With `replicas` > 1, and a method whose loss splits by images (`splitNoise`), the batch is cut
    /// into `replicas` contiguous parts that run side by side (`Replicas.run`); the loss is the
    /// image-weighted mean of the parts' losses and the gradients are summed. The noise is drawn for
    /// the whole batch first, so masks are those of the unsplit pass; stochastic depth draws from
    /// per-part generators. Results equal the unsplit pass up to float summation order.
    public static func run(_ model: PretrainModel, images: Tensor, ctx: Context, scale: Float, replicas: Int) -> Float {
        let b = images.shape[0]
        let n = min(replicas, b)
        guard n > 1, let noiseFor = model.splitNoise(batch: b, ctx: ctx) else {
            let loss = model.forward(images: images, noise: nil, ctx: ctx).loss
            return backwardIfFinite(loss, scale: scale)
        }
        let per = images.count / b
        let rest = Array(images.shape.dropFirst())
        var losses = [Float](repeating: 0, count: n)
        let seeds = (0..<n).map { ctx.rng.derived(0x5245_504C, UInt64($0)) }
        losses.withUnsafeMutableBufferPointer { out in
            let out = out
            Replicas.run(n, leaves: model.namedParameters().map(\.tensor)) { r in
                let rows = (b * r / n)..<(b * (r + 1) / n)
                let part = images.view([rows.count] + rest, start: rows.lowerBound * per)
                let partCtx = Context(training: ctx.training, rng: seeds[r])
                let loss = model.forward(images: part, noise: noiseFor(rows), ctx: partCtx).loss
                out[r] = backwardIfFinite(loss, scale: scale * Float(rows.count) / Float(b))
            }
        }
        var total: Float = 0
        for r in 0..<n { total += losses[r] * Float((b * (r + 1) / n) - (b * r / n)) / Float(b) }
        return total
    }

    /// Back-propagates `scale` × `loss` when the loss is finite (else drops the recorded pass) and
    /// returns the loss.
    public static func backwardIfFinite(_ loss: Tensor, scale: Float) -> Float {
        let v = loss.item
        guard v.isFinite else { Autograd.reset(); return v }
        loss.backward(scale == 1 ? nil : Tensor.full(loss.shape, scale))
        return v
    }
}
