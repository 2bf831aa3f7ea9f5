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

    func check(_ variant: MAE.Options.Variant) {
        let m = smallMAE(variant, seed: 7)
        var rng = RandomGenerator(seed: 11)
        let images = Tensor.randn([5, 3, 16, 16], rng: &rng)
        let params = m.namedParameters()
        func step(_ replicas: Int, scale: Float) -> (Float, [[Float]]) {
            m.zeroGrad()
            let loss = PretrainStep.run(m, images: images, ctx: Context(training: true, rng: RandomGenerator(seed: 99)),
                                        scale: scale, replicas: replicas)
            return (loss, params.map { $0.tensor.grad!.array })
        }
        let (wholeLoss, wholeGrads) = step(1, scale: 0.5)
        // The same pass through forward() with the noise drawn as the step draws it.
        m.zeroGrad()
        let ctx = Context(training: true, rng: RandomGenerator(seed: 99))
        let direct = m.forward(images: images, noise: nil, ctx: ctx).loss
        XCTAssertEqual(direct.item, wholeLoss)
        for replicas in [2, 3] {
            let (loss, grads) = step(replicas, scale: 0.5)
            XCTAssertEqual(Double(loss), Double(wholeLoss), accuracy: 1e-6 * Double(abs(wholeLoss)), "\(variant), \(replicas) replicas")
            for (i, p) in params.enumerated() {
                XCTAssertLessThan(relativeError(grads[i], wholeGrads[i]), 1e-5, "\(variant) \(p.name), \(replicas) replicas")
            }
        }
        // The scale reaches the gradients: scale 1 doubles them.
        let (_, unscaled) = step(2, scale: 1)
        XCTAssertLessThan(relativeError(unscaled[0], wholeGrads[0].map { $0 * 2 }), 1e-5)
    }

    func testOfficialMAESplitMatchesWholeBatch() { check(.official) }
    func testMAEPrivSharedMaskSplitMatchesWholeBatch() { check(.priv) }
}
