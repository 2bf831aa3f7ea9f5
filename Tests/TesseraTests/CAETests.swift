import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// CAE against the official Atten4Vis/CAE code (fixtures from tools/make_cae_fixture.py and
/// tools/make_cae_mask_fixture.py): the block masks, the DALL-E tokenizer, the loss terms and every
/// gradient of a pre-training step.
final class CAETests: ScratchTestCase {
    func spec(_ model: String, checkPaths: Bool = false) throws -> ExperimentSpec {
        try loadSpec(model: model, name: "cae", scratch: scratch, checkPaths: checkPaths)
    }

    static func fixtureModel(tokenizer: String) -> String {
        """
        method: cae
        arch: custom
        img_size: 32
        patch_size: 4
        width: 64
        depth: 2
        heads: 4
        layer_scale: 0.1
        decoder: {width: 64, depth: 2, heads: 4}
        regressor_depth: 2
        decoder_layer_scale: 0.1
        num_mask_patches: 8
        block_min_patches: 4
        align_loss_weight: 2
        cae_target: dvae
        tokenizer: \(tokenizer)
        """
    }

    /// The generator gives the official MaskingGenerator's masks for the same uniforms, using exactly
    /// as many of them, on 14×14 (the recipe), 8×8 and 7×7.
    func testBlockMasksMatchTheOfficialGenerator() throws {
        let f = try HDF5File(reading: fixtureURL("cae_masks.h5").path)
        defer { f.close() }
        for c in ["base", "small", "tiny"] {
            func attr(_ k: String) throws -> Double { Double(try f.attribute(k, on: c) ?? "")! }
            let h = Int(try attr("height")), w = Int(try attr("width"))
            let gen = BlockMaskGenerator(height: h, width: w, count: Int(try attr("num_masking_patches")),
                                         minPatches: Int(try attr("min_num_patches")), minAspect: try attr("min_aspect"))
            let (masks, mshape) = try f.readBytes("\(c)/masks")
            let (u, ushape) = try f.readFloats("\(c)/uniforms")
            let consumed = try f.readInts("\(c)/consumed").values
            let n = mshape[0], k = ushape[1]
            XCTAssertGreaterThan(n, 50)
            for i in 0..<n {
                var used = 0
                var mask = [Float](repeating: 0, count: h * w)
                mask.withUnsafeMutableBufferPointer { p in
                    gen.generate(into: p.baseAddress!) { defer { used += 1 }; return u[i * k + used] }
                }
                XCTAssertEqual(mask.map { UInt8($0) }, Array(masks[(i * h * w)..<((i + 1) * h * w)]), "\(c) mask \(i)")
                XCTAssertEqual(used, Int(consumed[i]), "\(c) mask \(i): uniforms used")
            }
        }
    }

    /// Uniformly random masks hide exactly the requested count; block masks drawn in training too.
    func testMasksHideExactlyTheCount() {
        var rng = RandomGenerator(seed: 3)
        for count in [1, 10, 48, 63] {
            var m = [Float](repeating: 0, count: 64)
            m.withUnsafeMutableBufferPointer { BlockMaskGenerator.random(into: $0.baseAddress!, patches: 64, count: count) { rng.uniform() } }
            XCTAssertEqual(m.reduce(0, +), Float(count))
            let g = BlockMaskGenerator(height: 8, width: 8, count: count, minPatches: 4)
            m.withUnsafeMutableBufferPointer { g.generate(into: $0.baseAddress!) { rng.uniform() } }
            XCTAssertEqual(m.reduce(0, +), Float(count))
        }
    }

    /// The DALL-E encoder (a pickled dall_e.Encoder converted by tools/dalle_to_h5.py) gives the
    /// official logits and codebook ids.
    func testTokenizerMatchesTheOfficialEncoder() throws {
        let tok = try DALLEEncoder.load(path: fixtureURL("cae_dvae.h5").path, configKey: "model.tokenizer")
        let ref = try HDF5File(reading: fixtureURL("cae.h5").path)
        defer { ref.close() }
        let (v, shape) = try ref.readFloats("tokenizer_images")
        let view = Tensor(v, shape: shape)
        XCTAssertLessThan(relativeError(tok.logits(view).array, try ref.readFloats("f32/dvae_logits").values), 1e-5)
        XCTAssertEqual(tok.tokens(view).map(Float.init), try ref.readFloats("f32/input_ids").values)
    }

    /// `tessera step` on the official weights, images, tokenizer view and mask gives the official
    /// loss_main, loss_align, total loss and every gradient; the alignment encoder is the encoder.
    func testStepMatchesOfficialCAE() throws {
        let fixture = fixtureURL("cae.h5").path
        let s = try spec(Self.fixtureModel(tokenizer: fixtureURL("cae_dvae.h5").path))
        let ref = try HDF5File(reading: fixture)
        defer { ref.close() }
        let batch = scratch.appendingPathComponent("batch.h5").path
        let f = try HDF5File(creating: batch)
        let (img, ishape) = try ref.readFloats("images"), (view, vshape) = try ref.readFloats("tokenizer_images")
        let (mask, mshape) = try ref.readFloats("mask")
        try f.write("images", floats: img, shape: ishape)
        try f.write("views/1", floats: view, shape: vshape)
        try f.write("draws", floats: mask, shape: mshape)
        f.close()
        let out = scratch.appendingPathComponent("out.h5").path
        try StepCommand.run(spec: s, weights: fixture, batch: batch, out: out)
        let got = try HDF5File(reading: out)
        defer { got.close() }
        func close(_ a: String, _ b: String, _ tol: Double = 1e-5) throws {
            let x = try got.readDoubles(a).values[0], y = try ref.readDoubles(b).values[0]
            XCTAssertLessThan(abs(x - y) / max(abs(y), 1e-12), tol, "\(a) \(x) vs \(y)")
        }
        try close("loss", "f32/loss")
        try close("terms/loss_main", "f32/loss_main")
        try close("terms/loss_align", "f32/loss_align")
        try close("terms/mlm_acc", "f32/accuracy")
        let names = try ref.datasetNames(under: "f32/grads").map { String($0.dropFirst("f32/grads/".count)) }
        XCTAssertEqual(Set(try got.datasetNames(under: "grads").map { String($0.dropFirst("grads/".count)) }), Set(names))
        for g in names {
            let mine = try got.readFloats("grads/\(g)").values, theirs = try ref.readFloats("f32/grads/\(g)").values
            if Self.zeroInExactArithmetic(g) {
                XCTAssertLessThan(mine.map(abs).max()!, 1e-6, g)
                XCTAssertLessThan(theirs.map(abs).max()!, 1e-6, g)
            } else {
                XCTAssertLessThan(relativeError(mine, theirs), 1e-4, g)
            }
        }
        XCTAssertLessThan(relativeError(try got.readFloats("prediction").values, try ref.readFloats("f32/logits").values), 1e-5, "logits")
    }

    /// The key LayerNorm's bias shifts every key by the same vector, which cancels in the softmax:
    /// its gradient is exactly zero, and both sides hold rounding noise there.
    static func zeroInExactArithmetic(_ name: String) -> Bool { name.hasSuffix("norm1_k.bias") }

    /// The official state dict loads strictly, alignment_encoder.* included (one set of tensors).
    func testOfficialStateDictLoadsStrictly() throws {
        var rng = RandomGenerator(seed: 0)
        let m = try CAE(try spec(Self.fixtureModel(tokenizer: fixtureURL("cae_dvae.h5").path)), rng: &rng)
        let ck = try Checkpoint.read(fixtureURL("cae.h5").path)
        XCTAssertNoThrow(try m.load(state: ck.params, strict: true))
        XCTAssertEqual(Set(m.stateDict().map(\.name)), Set(ck.params.keys))
        XCTAssertFalse(m.namedParameters().contains { $0.name.hasPrefix("alignment_encoder.") || $0.name.hasPrefix("tokenizer.") })
        let state = Dictionary(uniqueKeysWithValues: m.stateDict().map { ($0.name, $0.tensor) })
        XCTAssertTrue(state["alignment_encoder.blocks.1.attn.qkv.weight"] === state["encoder.blocks.1.attn.qkv.weight"])
    }

    /// A CAE checkpoint feeds the downstream encoder (encoder.* names, layer scales); a downstream
    /// config without the layer scale is refused instead of silently dropping the γ tensors.
    func testCheckpointFeedsTheDownstreamEncoderOnlyWithItsLayerScale() throws {
        let s = try spec("method: cae\narch: custom\nimg_size: 16\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nlayer_scale: 0.1\nnum_mask_patches: 6\ncae_target: pixels")
        var rng = RandomGenerator(seed: 5)
        let m = try CAE(s, rng: &rng)
        let ck = Checkpoint(params: Dictionary(uniqueKeysWithValues: m.stateDict().map { ($0.name, $0.tensor) }))
        let path = scratch.appendingPathComponent("cae-ck.h5").path
        try ck.write(to: path)
        func probe(_ extra: String) throws -> ViTClassifier {
            let model = "method: cae\narch: custom\nimg_size: 16\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nnum_classes: 10" + extra
            return DownstreamRunner.buildModel(try loadSpec(model: model, task: "linprobe", name: "lin", scratch: scratch), numClasses: 10)
        }
        let good = try probe("\nlayer_scale: 0.1")
        try DownstreamRunner.loadEncoder(good, from: path)
        let own = Dictionary(uniqueKeysWithValues: good.stateDict().map { ($0.name, $0.tensor) })
        XCTAssertEqual(own["blocks.1.gamma_2"]!.array, m.encoder.blocks[1].gamma2!.array)
        XCTAssertEqual(own["blocks.0.attn.q_bias"]!.array, m.encoder.blocks[0].attn.qBias!.array)
        XCTAssertThrowsError(try DownstreamRunner.loadEncoder(try probe(""), from: path)) { e in
            XCTAssertTrue("\(e)".contains("blocks.0.gamma_1") && "\(e)".contains("layer_scale"), "\(e)")
        }
    }

    func testBadValuesNameTheKey() throws {
        func fails(_ model: String, key: String, checkPaths: Bool = false, _ line: UInt = #line) {
            XCTAssertThrowsError(try spec(model, checkPaths: checkPaths), line: line) { e in
                XCTAssertTrue("\(e)".contains(key), "\(e)", line: line)
            }
        }
        let base = "method: cae\narch: custom\nimg_size: 32\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nnum_mask_patches: 8"
        // No tokenizer: the config loads (other tasks read it too); building the model stops.
        var r0 = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try CAE(try spec(base), rng: &r0)) { e in
            XCTAssertTrue("\(e)".contains("model.tokenizer") && "\(e)".contains("dalle_to_h5.py"), "\(e)")
        }
        fails(base + "\ntokenizer: /nonexistent/dvae.h5", key: "model.tokenizer", checkPaths: true)
        fails(base.replacingOccurrences(of: "num_mask_patches: 8", with: "num_mask_patches: 64") + "\ncae_target: pixels", key: "model.num_mask_patches")
        var rng = RandomGenerator(seed: 0)
        let missing = try spec(base + "\ntokenizer: \(scratch.appendingPathComponent("none.h5").path)")
        XCTAssertThrowsError(try CAE(missing, rng: &rng)) { e in
            XCTAssertTrue("\(e)".contains("model.tokenizer") && "\(e)".contains("dalle_to_h5.py"), "\(e)")
        }
    }

    /// Pixel targets: the split step equals one pass; the loss and terms are finite.
    func testPixelTargetsSplitLikeOnePass() throws {
        let s = try spec("method: cae\narch: custom\nimg_size: 16\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nnum_mask_patches: 6\nblock_min_patches: 2\ncae_target: pixels\ndecoder: {width: 16, depth: 1, heads: 2}\nregressor_depth: 1")
        var rng = RandomGenerator(seed: 2)
        let m = try CAE(s, rng: &rng)
        XCTAssertNotNil(m.projection, "d 16 ≠ D 32 gives the projection")
        let images = Tensor.randn([4, 3, 16, 16], rng: &rng)
        let batch = PretrainBatch(views: [images], draws: Draws.make(m, indices: Array(0..<4), epoch: 0, seed: 1))
        let saved = Parallel.threads
        Parallel.setThreads(2)
        defer { Parallel.setThreads(saved) }
        m.zeroGrad()
        let one = PretrainStep.run(m, batch: batch, ctx: Context(training: true), scale: 1, replicas: 1)
        let g1 = m.namedParameters().map { $0.tensor.grad!.array }
        m.zeroGrad()
        let two = PretrainStep.run(m, batch: batch, ctx: Context(training: true), scale: 1, replicas: 2)
        let g2 = m.namedParameters().map { $0.tensor.grad!.array }
        XCTAssertEqual(Double(one.loss), Double(two.loss), accuracy: 1e-5 * Double(abs(one.loss)))
        XCTAssertEqual(one.terms.map(\.name), ["loss_align", "loss_main"])
        for (a, b) in zip(one.terms, two.terms) { XCTAssertEqual(Double(a.value), Double(b.value), accuracy: 1e-5 * max(1, Double(abs(a.value)))) }
        for ((name, _), (a, b)) in zip(m.namedParameters(), zip(g1, g2)) where !Self.zeroInExactArithmetic(name) {
            XCTAssertLessThan(relativeError(b, a), 1e-4, name)
        }
    }
}
