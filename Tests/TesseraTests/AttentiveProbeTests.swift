import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// The attentive probe (CAE's tools/run_attentive.py, spec §7.4) against the official model: one
/// training step's logits, loss, every trainable gradient and the BatchNorm running statistics, and
/// the evaluation logits with running and with batch statistics (fixture from
/// tools/make_attentive_fixture.py).
final class AttentiveProbeTests: ScratchTestCase {
    func probe(batchStatistics: Bool = false) throws -> ViTClassifier {
        let model = "method: cae\narch: custom\nimg_size: 32\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nlayer_scale: 0.1\nnum_classes: 10"
        var s = try loadSpec(model: model, task: "attentive", name: "att", batch: 4, scratch: scratch)
        s.eval.attentiveBatchStatistics = batchStatistics
        return DownstreamRunner.buildModel(s, numClasses: 10)
    }

    /// The fixture's state dict without what the Tessera probe does not have: the zero, frozen
    /// relative-position tables (their logits equal a model without them) and BatchNorm's step count.
    func weights() throws -> [String: Tensor] {
        try Checkpoint.read(fixtureURL("attentive.h5").path).params.filter {
            !$0.key.contains("relative_position") && !$0.key.hasSuffix("num_batches_tracked")
        }
    }

    /// Exactly zero in exact arithmetic: a shift of every key (norm_k.bias) cancels in the softmax;
    /// the value and projection biases are constant over the batch, removed by the BatchNorm's mean.
    static func zeroGradient(_ name: String) -> Bool {
        ["norm_k.bias", "norm_v.bias", "cross_attn.v_bias", "cross_attn.proj.bias"].contains { name.hasSuffix($0) }
    }

    func testTrainingStepMatchesTheOfficialProbe() throws {
        let m = try probe()
        try m.load(state: try weights(), strict: true)
        let ref = try HDF5File(reading: fixtureURL("attentive.h5").path)
        defer { ref.close() }
        let (img, shape) = try ref.readFloats("images")
        let labels = try ref.readInts("labels").values.map { Int($0) }
        let ctx = Context(training: true)
        let tokens = Autograd.noGrad { m.tokens(Tensor(img, shape: shape), ctx: ctx) }.detach()
        XCTAssertLessThan(relativeError(tokens.array, try ref.readFloats("f32/features").values), 1e-5, "norm(x)")
        let logits = m.head!(m.attentiveFeatures(tokens, ctx: ctx))
        XCTAssertLessThan(relativeError(logits.array, try ref.readFloats("f32/logits").values), 1e-5, "logits")
        let loss = crossEntropy(logits, labels: labels)
        XCTAssertEqual(Double(loss.item), try ref.readDoubles("f32/loss").values[0], accuracy: 1e-5)
        m.zeroGrad()
        loss.backward()
        let trained = Set(try ref.datasetNames(under: "f32/grads").map { String($0.dropFirst("f32/grads/".count)) })
        let groups = DownstreamRunner.paramGroups(try loadSpec(model: "method: cae\narch: custom\nimg_size: 32\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4",
                                                               task: "attentive", name: "att2", scratch: scratch), m)
        XCTAssertEqual(Set(groups.flatMap { $0.params.map(\.name) }), trained, "the probe trains exactly the official trainable set")
        for (name, p) in m.namedParameters() where trained.contains(name) {
            let theirs = try ref.readFloats("f32/grads/\(name)").values
            if Self.zeroGradient(name) {
                XCTAssertLessThan(p.grad!.array.map(abs).max()!, 1e-6, name)
            } else {
                XCTAssertLessThan(relativeError(p.grad!.array, theirs), 1e-4, name)
            }
        }
        XCTAssertLessThan(relativeError(m.bnMean!.array, try ref.readFloats("f32/fc_norm_running_mean").values), 1e-5, "running mean")
        XCTAssertLessThan(relativeError(m.bnVar!.array, try ref.readFloats("f32/fc_norm_running_var").values), 1e-5, "running var")
    }

    /// Evaluation: running statistics by default; the released code's batch statistics as an option.
    func testEvaluationBatchNormBothWays() throws {
        let ref = try HDF5File(reading: fixtureURL("attentive.h5").path)
        defer { ref.close() }
        let (img, shape) = try ref.readFloats("images"), (evalImg, _) = try ref.readFloats("eval_images")
        for (batchStats, key) in [(false, "f32/eval_logits_running"), (true, "f32/eval_logits_batchstats")] {
            let m = try probe(batchStatistics: batchStats)
            try m.load(state: try weights(), strict: true)
            // The training step's BatchNorm update comes first, as in the fixture.
            _ = Autograd.noGrad { m(Tensor(img, shape: shape), ctx: Context(training: true)) }
            let logits = Autograd.noGrad { m(Tensor(evalImg, shape: shape), ctx: Context(training: false)) }
            XCTAssertLessThan(relativeError(logits.array, try ref.readFloats(key).values), 1e-5, key)
        }
    }
}
