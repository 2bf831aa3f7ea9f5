import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// SemAIM against the official skyoux/SemAIM code (fixtures from tools/make_semaim_fixture.py): the
/// eval-mode encoder pass and its attention maps, the order it picks, and the loss and every gradient
/// of the training step, with pixel targets and with a CLIP teacher (SemAIM*); plus the teacher
/// files, the EMA model and the config errors.
final class SemAIMTests: ScratchTestCase {
    func spec(_ model: String, checkPaths: Bool = false, extra: String = "") throws -> ExperimentSpec {
        try loadSpec(model: model, name: "semaim", extra: extra, scratch: scratch, checkPaths: checkPaths)
    }

    static let pixelModel = """
        method: semaim
        arch: custom
        img_size: 56
        patch_size: 4
        width: 64
        depth: 4
        heads: 4
        query_depth: 2
        prediction_head: mlp
        gaussian_kernel_size: 3
        gaussian_sigma: 1
        norm_pix_loss: true
        loss_type: l2
        permutation: attention_center
        attention_type: cls
        """

    static func clipModel(teacher: String) -> String {
        """
        method: semaim
        arch: custom
        img_size: 56
        patch_size: 4
        width: 32
        depth: 2
        heads: 2
        query_depth: 2
        prediction_head: mlp
        gaussian_kernel_size: 3
        gaussian_sigma: 1
        norm_pix_loss: true
        permutation: attention_center
        attention_type: cls
        predict_feature: clip
        teacher: \(teacher)
        """
    }

    /// A batch file for `tessera step`: the fixture's images, and its tie-break uniforms as the first L
    /// floats of each draw (the two stochastic-centre floats are unused by attention_center).
    func batchFile(_ fixture: String) throws -> String {
        let ref = try HDF5File(reading: fixture)
        defer { ref.close() }
        let (images, shape) = try ref.readFloats("images")
        let (u, ushape) = try ref.readFloats("uniform")
        let (b, l) = (ushape[0], ushape[1])
        var draws = [Float](repeating: 0, count: b * (l + 2))
        for bi in 0..<b { for j in 0..<l { draws[bi * (l + 2) + j] = u[bi * l + j] } }
        let path = scratch.appendingPathComponent("batch-\((fixture as NSString).lastPathComponent)").path
        let f = try HDF5File(creating: path)
        try f.write("images", floats: images, shape: shape)
        try f.write("draws", floats: draws, shape: [b, l + 2])
        f.close()
        return path
    }

    func model(_ spec: ExperimentSpec, weights: String) throws -> SemAIM {
        var rng = RandomGenerator(seed: 0)
        let m = try SemAIM(spec, rng: &rng)
        try m.load(state: try Checkpoint.read(weights).params, strict: true)
        return m
    }

    /// The eval-mode, no-grad encoder pass (`forward_encoder`) gives the official tokens, cls and gap
    /// feature attention and last-block self-attention; the order built from them is the official one.
    func testEncoderPassAndOrderMatchTheOfficialCode() throws {
        let path = fixtureURL("semaim.h5").path
        let m = try model(try spec(Self.pixelModel), weights: path)
        let ref = try HDF5File(reading: path)
        defer { ref.close() }
        let (images, ishape) = try ref.readFloats("images")
        let x = Tensor(images, shape: ishape)
        let pass = m.encoderPass(m.model, x)
        XCTAssertLessThan(relativeError(pass.tokens.array, try ref.readFloats("f32/enc_tokens").values), 1e-5, "tokens")
        XCTAssertLessThan(relativeError(pass.feature.array, try ref.readFloats("f32/attention_cls").values), 1e-5, "cls attention")
        XCTAssertLessThan(relativeError(pass.selfAttention.array, try ref.readFloats("f32/self_attention").values), 1e-5, "self attention")
        let gap = SemAIM.featureAttention(pass.tokens, reference: .patchMean)
        XCTAssertLessThan(relativeError(gap.array, try ref.readFloats("f32/attention_gap").values), 1e-5, "gap attention")
        let draws = try HDF5File(reading: try batchFile(path))
        defer { draws.close() }
        let (d, dshape) = try draws.readFloats("draws")
        let g = m.guide(x, draws: Tensor(d, shape: dshape))
        let want = try ref.readFloats("f32/permutation").values
        XCTAssertLessThan(zip(g.scores.array, want).map { abs($0 - $1) }.max()!, 1e-5, "scores")
        let l = dshape[1] - 2
        for bi in 0..<dshape[0] {
            let mine = (0..<l).sorted { g.scores.data[bi * l + $0] < g.scores.data[bi * l + $1] }
            let theirs = (0..<l).sorted { want[bi * l + $0] < want[bi * l + $1] }
            XCTAssertEqual(mine, theirs, "order of sample \(bi)")
        }
    }

    /// `tessera step` on the official weights (a SemAIM `{'state_dict': {'module.…'}}` checkpoint
    /// converted by tools/pth_to_h5.py), images and uniforms gives the official loss and every gradient,
    /// the eval-mode order pass included.
    func testStepMatchesOfficialSemAIM() throws {
        let path = fixtureURL("semaim.h5").path
        try assertStep(path, spec: try spec(Self.pixelModel))
    }

    /// SemAIM*: a tiny CLIP image tower (openai-clip's VisionTransformer, random weights, converted by
    /// tools/teacher_to_h5.py) picks the order and gives the targets.
    func testStepMatchesOfficialSemAIMWithCLIPTeacher() throws {
        let path = fixtureURL("semaim_clip.h5").path
        let teacher = fixtureURL("semaim_clip_teacher.h5").path
        try assertStep(path, spec: try spec(Self.clipModel(teacher: teacher)))
        // The teacher's tokens and similarity are the official ones.
        let m = try model(try spec(Self.clipModel(teacher: teacher)), weights: path)
        let ref = try HDF5File(reading: path)
        defer { ref.close() }
        let (images, ishape) = try ref.readFloats("images")
        let tokens = m.teacher!.tokens(Tensor(images, shape: ishape))
        XCTAssertLessThan(relativeError(tokens.array, try ref.readFloats("f32/teacher_tokens").values), 1e-5, "clip tokens")
        XCTAssertLessThan(relativeError(SemAIM.similarity(tokens).array, try ref.readFloats("f32/similarity").values), 1e-5, "similarity")
    }

    /// A DINO ViT teacher (timm names; a DINO training checkpoint's `teacher` entry converted by
    /// tools/teacher_to_h5.py) gives the official forward_features_dino tokens.
    func testDINOTeacherMatchesTheOfficialForward() throws {
        let ref = try HDF5File(reading: fixtureURL("semaim_clip.h5").path)
        defer { ref.close() }
        let (images, ishape) = try ref.readFloats("images")
        let teacher = try Teacher.load(kind: "dino", path: fixtureURL("semaim_dino_teacher.h5").path, configKey: "model.teacher", imageSize: 56)
        let tokens = teacher.tokens(Tensor(images, shape: ishape))
        XCTAssertLessThan(relativeError(tokens.array, try ref.readFloats("dino/tokens").values), 1e-5, "dino tokens")
        XCTAssertLessThan(relativeError(SemAIM.similarity(tokens).array, try ref.readFloats("dino/similarity").values), 1e-5, "dino similarity")
    }

    func assertStep(_ fixture: String, spec: ExperimentSpec, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = scratch.appendingPathComponent("step-out.h5").path
        try StepCommand.run(spec: spec, weights: fixture, batch: try batchFile(fixture), out: out)
        let ref = try HDF5File(reading: fixture)
        defer { ref.close() }
        let got = try HDF5File(reading: out)
        defer { got.close() }
        let loss = try got.readDoubles("loss").values[0], refLoss = try ref.readDoubles("f32/loss").values[0]
        XCTAssertLessThan(abs(loss - refLoss) / abs(refLoss), 1e-5, "loss \(loss) vs \(refLoss)", file: file, line: line)
        let names = try ref.datasetNames(under: "f32/grads").map { String($0.dropFirst("f32/grads/".count)) }
        XCTAssertEqual(Set(try got.datasetNames(under: "grads").map { String($0.dropFirst("grads/".count)) }), Set(names), file: file, line: line)
        for g in names {
            let mine = try got.readFloats("grads/\(g)").values, theirs = try ref.readFloats("f32/grads/\(g)").values
            if g.hasSuffix("attn.k.bias") {
                // exactly zero in exact arithmetic (a shift of every key's logit cancels in the softmax)
                XCTAssertLessThan(mine.map(abs).max()!, 1e-6, g, file: file, line: line)
            } else {
                XCTAssertLessThan(relativeError(mine, theirs), 1e-4, g, file: file, line: line)
            }
        }
        // the prediction (the official one has the cls row)
        let (refPred, shape) = try ref.readFloats("f32/pred")
        let (l, k) = (shape[1] - 1, shape[2])
        var rows: [Float] = []
        for b in 0..<shape[0] { rows.append(contentsOf: refPred[((b * (l + 1) + 1) * k)..<((b + 1) * (l + 1) * k)]) }
        XCTAssertLessThan(relativeError(try got.readFloats("prediction").values, rows), 1e-5, "prediction", file: file, line: line)
    }

    // MARK: the method's parts

    /// Names: timm's fused qkv in the content blocks, split q/k/v in the query blocks, one `norm`.
    func testCheckpointNamesAreTheOriginals() {
        let names = Set(smallSemAIM().stateDict().map(\.name))
        XCTAssertTrue(names.contains("blocks.0.attn.qkv.weight"))
        XCTAssertTrue(names.contains("query_blocks.1.attn.q.weight"))
        XCTAssertTrue(names.contains("norm.weight") && names.contains("gaussian_blur.weight") && names.contains("prediction_head.fc2.bias"))
        XCTAssertFalse(names.contains { $0.hasPrefix("ema.") || $0.hasPrefix("teacher.") })
    }

    /// The order pass runs in eval mode under no-grad: with drop-path on, the pass gives the same
    /// order on every call, and no gradient reaches the weights through it.
    func testOrderPassIsEvalModeAndNoGrad() {
        let m = smallSemAIM { $0.model.queryDepth = 2 }
        for b in m.encoder.blocks.items { b.dropPath = 0.5 }
        var rng = RandomGenerator(seed: 8)
        let images = Tensor.randn([2, 3, 16, 16], rng: &rng)
        let draws = Tensor.uniform([2, m.drawWidth], rng: &rng)
        let a = m.guide(images, draws: draws).scores.array, b = m.guide(images, draws: draws).scores.array
        XCTAssertEqual(a, b)
        let pass = m.encoderPass(m.model, images)
        XCTAssertNil(pass.tokens.slot, "the order pass recorded a gradient")
    }

    /// The feature loss is the mean over rows of Σ(p̂ − t̂)² = 2 − 2cos.
    func testFeatureLossIsTwoMinusTwoCosine() {
        var rng = RandomGenerator(seed: 2)
        let p = Tensor.randn([2, 3, 5], rng: &rng), t = Tensor.randn([2, 3, 5], rng: &rng)
        var want = 0.0
        for r in 0..<6 {
            var dot = 0.0, np = 0.0, nt = 0.0
            for k in 0..<5 { let a = Double(p.data[r * 5 + k]), b = Double(t.data[r * 5 + k]); dot += a * b; np += a * a; nt += b * b }
            want += 2 - 2 * dot / (np * nt).squareRoot()
        }
        XCTAssertEqual(Double(SemAIM.featureLoss(p, t).item), want / 6, accuracy: 1e-5)
    }

    /// EMA (timm ModelEma): decay ramps 0.999 → 0.9999 over 100 epochs; the copy starts as the
    /// model, is never a parameter, is saved under `ema.` and moves by (1 − decay) per step.
    func testEMAIsSavedNotTrainedAndFollowsModelEma() throws {
        XCTAssertEqual(SemAIM.emaDecay(epoch: 0), 0.999)
        XCTAssertEqual(SemAIM.emaDecay(epoch: 50), 0.99945, accuracy: 1e-12)
        XCTAssertEqual(SemAIM.emaDecay(epoch: 100), 0.9999)
        let m = smallSemAIM { $0.useEma = true }
        XCTAssertFalse(m.namedParameters().contains { $0.name.hasPrefix("ema.") })
        let state = Dictionary(uniqueKeysWithValues: m.stateDict().map { ($0.name, $0.tensor) })
        let w = state["blocks.0.attn.qkv.weight"]!, e = state["ema.blocks.0.attn.qkv.weight"]!
        XCTAssertEqual(w.array, e.array)
        XCTAssertFalse(w === e)
        let before = e.array
        for i in 0..<w.count { w.data[i] += 1 }
        m.afterOptimizerStep(epoch: 0)
        for i in 0..<e.count { XCTAssertEqual(e.data[i], before[i] * 0.999 + 0.001 * w.data[i], accuracy: 1e-6) }
        XCTAssertNotNil(state["ema.pos_embed"])
    }

    /// Pre-training with use_ema resumes exactly: a run killed in its second epoch and started again
    /// ends with the uninterrupted run's weights, EMA weights included.
    func testEMAStateResumesExactly() throws {
        let model = """
            method: semaim
            arch: custom
            img_size: 32
            patch_size: 8
            width: 32
            depth: 2
            heads: 2
            query_depth: 2
            gaussian_kernel_size: 3
            use_ema: true
            """
        let extra = """
            output_dir: \(scratch.path)
            log:
              pictures: false
            """
        func specNamed(_ name: String) throws -> ExperimentSpec {
            var s = try spec(model, extra: extra)
            s.name = name
            s.epochs = 2
            s.batchSize = 16
            s.data.inputSize = 32
            s.data.padTo = 32
            s.data.limit = 48
            s.data.mean = [0.286, 0.286, 0.286]
            s.data.std = [0.353, 0.353, 0.353]
            return s
        }
        let straight = try PretrainRunner(spec: try specNamed("straight"))
        _ = try straight.train()
        let killed = try PretrainRunner(spec: try specNamed("killed"))
        killed.stopAfterIterations = 4
        _ = try killed.train()
        _ = try PretrainRunner(spec: try specNamed("killed"), runDir: killed.run.path).train()
        let a = try Checkpoint.read(straight.run.file("checkpoint-2.h5")).params
        let b = try Checkpoint.read(killed.run.file("checkpoint-2.h5")).params
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        XCTAssertTrue(a.keys.contains("ema.blocks.1.mlp.fc2.weight"))
        XCTAssertNotEqual(a["ema.blocks.1.mlp.fc2.weight"]!.array, a["blocks.1.mlp.fc2.weight"]!.array, "the EMA moved apart")
        for (k, v) in a { XCTAssertEqual(v.array, b[k]!.array, k) }
    }

    /// A SemAIM checkpoint, EMA included, feeds the downstream encoder (fused qkv, timm names): every
    /// encoder parameter comes from the online model, and the ema.* names are left unused.
    func testSemAIMCheckpointLoadsIntoTheDownstreamEncoder() throws {
        let m = smallSemAIM { $0.useEma = true }
        for (_, t) in m.ema!.stateDict() { for i in 0..<t.count { t.data[i] += 1 } }
        let own = try downstreamState(loading: m, methodName: "semaim", scratch: scratch)
        XCTAssertEqual(own["blocks.1.attn.qkv.weight"]!.array, m.encoder.blocks[1].attn.qkv!.weight.array)
        XCTAssertEqual(own["norm.weight"]!.array, m.model.norm.weight!.array)
    }

    /// The SemAIM figure: input | last-block self-attention | similarity | order, one row per image.
    func testPicturesAreWritten() throws {
        let m = smallSemAIM()
        var rng = RandomGenerator(seed: 1)
        let images = Tensor.randn([2, 3, 16, 16], rng: &rng)
        let batch = PretrainBatch(views: [images], draws: Draws.make(m, indices: [0, 1], epoch: 0, seed: 0))
        try m.writePictures(batch, ctx: Context(training: false), to: scratch.path, suffix: "-1", mean: [0, 0, 0], std: [1, 1, 1])
        let png = try Data(contentsOf: scratch.appendingPathComponent("semaim-1.png"))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }

    // MARK: bad input

    func testBadValuesNameTheKey() throws {
        func fails(_ model: String, key: String, checkPaths: Bool = false, _ line: UInt = #line) {
            XCTAssertThrowsError(try spec(model, checkPaths: checkPaths), line: line) { e in
                XCTAssertTrue("\(e)".contains(key), "\(e)", line: line)
            }
        }
        fails(Self.pixelModel + "\nshare_weight: true", key: "model.share_weight")
        fails(Self.pixelModel + "\npredict_feature: clip", key: "model.teacher")
        fails(Self.pixelModel + "\npredict_feature: ema", key: "model.")
        fails(Self.pixelModel.replacingOccurrences(of: "attention_center", with: "spiral"), key: "model.permutation")
        fails("method: saim\npermutation: attention_center", key: "model.permutation")
        fails(Self.clipModel(teacher: "/nonexistent/clip.h5"), key: "model.teacher", checkPaths: true)
    }

    /// A teacher file that is missing, not a teacher, or does not fit the image size stops before
    /// training with one line naming the key and the file.
    func testBadTeacherFilesStopWithOneLine() throws {
        let s = try spec(Self.clipModel(teacher: scratch.appendingPathComponent("missing.h5").path))
        var rng = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try SemAIM(s, rng: &rng)) { e in
            XCTAssertTrue("\(e)".contains("model.teacher") && "\(e)".contains("missing.h5") && "\(e)".contains("teacher_to_h5.py"), "\(e)")
        }
        // a SemAIM checkpoint is not a CLIP teacher
        let wrong = try spec(Self.clipModel(teacher: fixtureURL("semaim.h5").path))
        XCTAssertThrowsError(try SemAIM(wrong, rng: &rng)) { e in
            XCTAssertTrue("\(e)".contains("conv1.weight") && "\(e)".contains("semaim.h5"), "\(e)")
        }
        // the CLIP teacher of 56 px images does not fit 64 px ones
        var big = try spec(Self.clipModel(teacher: fixtureURL("semaim_clip_teacher.h5").path))
        big.model.imgSize = 64
        XCTAssertThrowsError(try SemAIM(big, rng: &rng)) { e in
            XCTAssertTrue("\(e)".contains("positional_embedding"), "\(e)")
        }
    }
}
