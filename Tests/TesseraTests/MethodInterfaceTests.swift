import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// The method interface through the pre-training runner: named terms reach metrics.jsonl, a frozen
/// module is neither trained nor checkpointed, draws depend on (seed, epoch, index) only, and a
/// frozen module's weight file is checked with a one-line error.
final class MethodInterfaceTests: ScratchTestCase {
    /// A toy method on 32 px images: loss = mean((x·w − teacher(x))²) per pixel row; a frozen
    /// "teacher" Linear; terms: the mean of the draws and the teacher output's mean.
    final class ProbeMethod: Module, PretrainMethod {
        let encoder = ViTEncoder(ViTShape(imgSize: 32, patchSize: 4, inChans: 3, width: 8, depth: 1, heads: 2), ViTStyle())
        let w = Tensor.full([32, 32], 0.1)
        let teacher = Linear(32, 32)
        override init() {
            super.init()
            parameter("w", w)
            child("teacher", teacher).freeze()
            for i in 0..<teacher.weight.count { teacher.weight.data[i] = Float(i % 7) * 0.01 }
        }
        var drawWidth: Int { 3 }
        func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) { rng.fillUniform(row, 3) }
        func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
            let x = batch.images
            let t = Autograd.noGrad { teacher(x) }
            let d = matmul(x.reshaped([x.count / 32, 32]), w).reshaped(x.shape) - t
            return PretrainOutput(loss: mean(d * d), terms: ["draw_mean": batch.draws.array.reduce(0, +) / Float(batch.draws.count),
                                                           "teacher_mean": t.array.reduce(0, +) / Float(t.count)])
        }
        func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {}
    }

    private func spec() throws -> ExperimentSpec {
        let yaml = """
        name: probe
        task: pretrain
        seed: 1
        batch_size: 32
        epochs: 2
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        checkpoint: {every: 1}
        log: {every: 2, pictures: false}
        """
        return try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("probe.yaml").path)
    }

    func testTermsAreLoggedAndFrozenModulesStayOutOfTrainingAndCheckpoints() throws {
        var built: ProbeMethod?
        let runner = try PretrainRunner(spec: try spec())
        runner.echo = false
        runner.buildMethod = { _, _ in let m = ProbeMethod(); built = m; return m }
        try runner.train()
        let probe = try XCTUnwrap(built)
        let lines = try String(contentsOfFile: runner.run.file("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 8, "256 images / 32 per step / every 2 steps, 2 epochs")
        for line in lines {
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let drawMean = try XCTUnwrap(obj["draw_mean"] as? Double, "\(line)")
            XCTAssertEqual(drawMean, 0.5, accuracy: 0.1)
            XCTAssertNotNil(obj["teacher_mean"] as? Double)
        }
        // The teacher is not trained and not in the checkpoint; the trained weight is.
        for i in 0..<probe.teacher.weight.count { XCTAssertEqual(probe.teacher.weight.data[i], Float(i % 7) * 0.01) }
        XCTAssertNotEqual(probe.w.array, [Float](repeating: 0.1, count: 1024))
        let ck = try Checkpoint.read(runner.run.lastCheckpoint)
        XCTAssertEqual(Set(ck.params.keys).filter { $0.hasPrefix("teacher") }, [])
        XCTAssertNotNil(ck.params["w"])
        XCTAssertEqual(Set(ck.optimizer.keys.map { String($0.split(separator: "/")[0]) }), ["w"])
    }

    /// A sample's draw is a function of (seed, epoch, index): the same wherever it lands in a batch.
    func testDrawsDependOnSeedEpochAndIndexOnly() {
        let m = smallSAIM()
        let a = Draws.make(m, indices: [4, 9, 2], epoch: 3, seed: 7)
        let b = Draws.make(m, indices: [2, 4], epoch: 3, seed: 7)
        let l = m.drawWidth
        XCTAssertEqual(Array(a.array[0..<l]), Array(b.array[l..<(2 * l)]), "sample 4")
        XCTAssertEqual(Array(a.array[(2 * l)..<(3 * l)]), Array(b.array[0..<l]), "sample 2")
        XCTAssertNotEqual(Draws.make(m, indices: [4], epoch: 4, seed: 7).array, Array(a.array[0..<l]), "another epoch")
        XCTAssertNotEqual(Draws.make(m, indices: [4], epoch: 3, seed: 8).array, Array(a.array[0..<l]), "another seed")
        // MAE-priv's batched shuffle: every row is the first sample's.
        let priv = smallMAE(.priv)
        let shared = Draws.make(priv, indices: [5, 6, 7], epoch: 0, seed: 1)
        let w = priv.drawWidth
        XCTAssertEqual(Array(shared.array[w..<(2 * w)]), Array(shared.array[0..<w]))
        XCTAssertEqual(Array(shared.array[0..<w]), Draws.make(smallMAE(.official), indices: [5], epoch: 0, seed: 1).array)
    }

    func testFrozenWeightsFileErrorsNameTheKeyAndTheFix() throws {
        let teacher = Linear(4, 2)
        let hint = "convert one with tools/pth_to_h5.py"
        let missing = scratch.appendingPathComponent("none.h5").path
        XCTAssertThrowsError(try loadFrozenWeights(teacher, from: missing, configKey: "model.teacher", howToConvert: hint)) {
            XCTAssertEqual("\($0)", "tessera: model.teacher: \(missing) does not exist; \(hint)")
        }
        let wrong = scratch.appendingPathComponent("wrong.h5").path
        try Checkpoint(params: ["weight": Tensor.zeros([3, 4]), "bias": Tensor.zeros([2])]).write(to: wrong)
        XCTAssertThrowsError(try loadFrozenWeights(teacher, from: wrong, configKey: "model.teacher", howToConvert: hint)) {
            let m = "\($0)"
            XCTAssertTrue(m.hasPrefix("tessera: model.teacher: \(wrong) does not fit:") && m.contains("weight expected [2, 4] found [3, 4]"), m)
        }
        let good = scratch.appendingPathComponent("good.h5").path
        try Checkpoint(params: ["weight": Tensor.full([2, 4], 3), "bias": Tensor.zeros([2])]).write(to: good)
        try loadFrozenWeights(teacher, from: good, configKey: "model.teacher", howToConvert: hint)
        XCTAssertEqual(teacher.weight.array, [Float](repeating: 3, count: 8))
    }
}
