import XCTest
import TesseraCore
import Tessera

/// `PretrainStep` split over replicas gives the loss and gradients of the whole-batch pass (same
/// masks, float rounding apart), for official MAE and for MAE-priv with one mask for the batch.
final class PretrainStepTests: XCTestCase {
    private var savedThreads = 1

    override func setUp() {
        savedThreads = Parallel.threads
        Parallel.setThreads(2)
    }

    override func tearDown() { Parallel.setThreads(savedThreads) }

    /// `PretrainStep` with 2 and 3 replicas against 1, on batch 5 (uneven parts), with the draws of
    /// samples 0..<5 (MAE-priv: `batchDraws` shares sample 0's); the loss, every term and every
    /// gradient agree.
    func checkSplit(_ m: PretrainMethod, _ what: String, imageSide: Int) {
        var rng = RandomGenerator(seed: 11)
        let images = Tensor.randn([5, 3, imageSide, imageSide], rng: &rng)
        let batch = PretrainBatch(views: [images], draws: Draws.make(m, indices: Array(0..<5), epoch: 2, seed: 3))
        let params = m.namedParameters()
        func step(_ replicas: Int, scale: Float) -> (StepResult, [[Float]]) {
            m.zeroGrad()
            let r = PretrainStep.run(m, batch: batch, ctx: Context(training: true, rng: RandomGenerator(seed: 99)),
                                     scale: scale, replicas: replicas)
            return (r, params.map { $0.tensor.grad!.array })
        }
        let (whole, wholeGrads) = step(1, scale: 0.5)
        // The same pass through forward() directly.
        m.zeroGrad()
        let direct = m.forward(batch, ctx: Context(training: true, rng: RandomGenerator(seed: 99))).loss
        XCTAssertEqual(direct.item, whole.loss)
        for replicas in [2, 3] {
            let (r, grads) = step(replicas, scale: 0.5)
            XCTAssertEqual(Double(r.loss), Double(whole.loss), accuracy: 1e-6 * Double(abs(whole.loss)), "\(what), \(replicas) replicas")
            XCTAssertEqual(r.terms.map(\.name), whole.terms.map(\.name))
            for (a, b) in zip(r.terms, whole.terms) {
                XCTAssertEqual(Double(a.value), Double(b.value), accuracy: 1e-6 * max(1, Double(abs(b.value))), "\(what) \(a.name)")
            }
            for (i, p) in params.enumerated() {
                if p.name.hasSuffix("attn.k.bias") {
                    // Exactly zero in exact arithmetic (a shift of every key logit cancels in the softmax): rounding noise.
                    XCTAssertLessThan(grads[i].map(abs).max()!, 1e-6, "\(what) \(p.name)")
                    continue
                }
                XCTAssertLessThan(relativeError(grads[i], wholeGrads[i]), 1e-5, "\(what) \(p.name), \(replicas) replicas")
            }
        }
        // The scale reaches the gradients: scale 1 doubles them.
        let (_, unscaled) = step(2, scale: 1)
        XCTAssertLessThan(relativeError(unscaled[0], wholeGrads[0].map { $0 * 2 }), 1e-5)
    }

    func testOfficialMAESplitMatchesWholeBatch() { checkSplit(smallMAE(.official, seed: 7), "mae", imageSide: 16) }
    func testMAEPrivSharedMaskSplitMatchesWholeBatch() { checkSplit(smallMAE(.priv, seed: 7), "mae_priv", imageSide: 16) }
    /// SemAIM's order pass runs per part on that part's images: the split equals one pass, for the
    /// semantic order, the self-attention order with the EMA model picking it, and inference targets.
    func testSemAIMSplitMatchesWholeBatch() {
        checkSplit(smallSemAIM(), "semaim", imageSide: 16)
        checkSplit(smallSemAIM { $0.attentionType = .selfAttention; $0.useEma = true }, "semaim self + ema", imageSide: 16)
        checkSplit(smallSemAIM { $0.predictFeature = .inference; $0.permutation = .attentionGuided }, "semaim inference", imageSide: 16)
    }

    func testSAIMSplitMatchesWholeBatch() {
        checkSplit(smallSAIM(), "saim", imageSide: 16)
        checkSplit(smallSAIM(share: true), "saim shared", imageSide: 16)
    }

    /// The method's terms are image-weighted over the parts like the loss (a method whose term is a
    /// per-image mean of something the parts see differently).
    func testTermsOfASplitBatchAreTheWholeBatchTerms() {
        checkSplit(TermsProbe(), "terms probe", imageSide: 8)
    }
}

/// A toy method for the step's bookkeeping: the loss is the mean of w·x over the images, and the terms
/// are the images' mean pixel and the mean of their draws.
final class TermsProbe: Module, PretrainMethod {
    let w = Tensor.full([1, 3, 8, 8], 0.5)
    let encoder = ViTEncoder(ViTShape(imgSize: 8, patchSize: 4, inChans: 3, width: 8, depth: 1, heads: 2), ViTStyle())
    override init() {
        super.init()
        parameter("w", w)
    }
    var drawWidth: Int { 2 }
    func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) { rng.fillUniform(row, 2) }
    func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
        let x = batch.images
        let loss = mean(x * expand(w, to: x.shape))
        return PretrainOutput(loss: loss, terms: ["pixel_mean": Float(x.array.reduce(0, +)) / Float(x.count),
                                                 "draw_mean": batch.draws.array.reduce(0, +) / Float(batch.draws.count)])
    }
    func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {}
}
