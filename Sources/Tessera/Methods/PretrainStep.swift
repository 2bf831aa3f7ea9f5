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
            return loss.backwardIfFinite(scale: scale)
        }
        let per = images.count / b
        let rest = Array(images.shape.dropFirst())
        let rows = (0..<n).map { r in (b * r / n)..<(b * (r + 1) / n) }
        let weights = rows.map { Float($0.count) / Float(b) }
        let seeds = (0..<n).map { ctx.rng.derived(0x5245_504C, UInt64($0)) }
        var losses = [Float](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { out in
            let out = out
            Replicas.run(n, leaves: model.namedParameters().map(\.tensor)) { r in
                let part = images.view([rows[r].count] + rest, start: rows[r].lowerBound * per)
                let partCtx = Context(training: ctx.training, rng: seeds[r])
                let loss = model.forward(images: part, noise: noiseFor(rows[r]), ctx: partCtx).loss
                out[r] = loss.backwardIfFinite(scale: scale * weights[r])
            }
        }
        return zip(losses, weights).reduce(0) { $0 + $1.0 * $1.1 }
    }
}
