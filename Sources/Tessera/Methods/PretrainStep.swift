import TesseraCore

/// The loss and named terms of one step.
public struct StepResult {
    public var loss: Float
    /// The method's terms (`PretrainOutput.terms`), sorted by name.
    public var terms: [(name: String, value: Float)] = []

    public init(loss: Float, terms: [(name: String, value: Float)] = []) {
        self.loss = loss
        self.terms = terms
    }
}

/// One pre-training forward and backward pass, on the whole batch or split over replicas.
public enum PretrainStep {
    /// Runs the forward pass on `batch` and back-propagates `scale` × loss (scale is 1 / accum_iter),
    /// unless the loss is not finite. Returns the loss and the method's terms.
    ///
    /// With `replicas` > 1 and a method whose loss splits by images (`splitsByImage`), the batch is
    /// cut into `replicas` contiguous parts that run side by side (`Replicas.run`), each with its rows
    /// of every view and of the draws; the loss and every term are the image-weighted means of the
    /// parts', and the gradients are summed. Stochastic depth draws from per-part generators. Results
    /// equal the unsplit pass up to float summation order.
    public static func run(_ method: PretrainMethod, batch: PretrainBatch, ctx: Context, scale: Float, replicas: Int) -> StepResult {
        let b = batch.count
        let n = min(replicas, b)
        guard n > 1, method.splitsByImage else {
            let saved = ctx.lossOnly
            ctx.lossOnly = true
            defer { ctx.lossOnly = saved }
            let out = method.forward(batch, ctx: ctx)
            return StepResult(loss: out.loss.backwardIfFinite(scale: scale), terms: sortedTerms(out.terms))
        }
        let rows = (0..<n).map { r in (b * r / n)..<(b * (r + 1) / n) }
        let weights = rows.map { Float($0.count) / Float(b) }
        let seeds = (0..<n).map { ctx.rng.derived(0x5245_504C, UInt64($0)) }
        var results = [StepResult](repeating: StepResult(loss: 0), count: n)
        results.withUnsafeMutableBufferPointer { out in
            let out = out
            Replicas.run(n, leaves: method.namedParameters().map(\.tensor)) { r in
                let partCtx = Context(training: ctx.training, rng: seeds[r])
                partCtx.lossOnly = true
                let o = method.forward(batch.rows(rows[r]), ctx: partCtx)
                out[r] = StepResult(loss: o.loss.backwardIfFinite(scale: scale * weights[r]), terms: sortedTerms(o.terms))
            }
        }
        var total = StepResult(loss: 0, terms: results[0].terms.map { ($0.name, 0) })
        for (r, w) in zip(results, weights) {
            total.loss += r.loss * w
            for (i, t) in r.terms.enumerated() { total.terms[i].value += t.value * w }
        }
        return total
    }

    static func sortedTerms(_ terms: [String: Float]) -> [(name: String, value: Float)] {
        terms.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
