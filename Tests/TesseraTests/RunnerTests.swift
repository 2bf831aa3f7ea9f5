import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// The pre-training runner, checkpoints and `tessera step` on tiny models.
final class RunnerTests: ScratchTestCase {
    // MARK: helpers

    /// A pre-training config small enough to run a few epochs in well under a second each:
    /// ViT 32/1/2 on 32×32 padded Fashion-MNIST, 256 images in batches of 32 (8 iterations per epoch).
    private func tinyYAML(name: String, extra: String = "") -> String {
        """
        name: \(name)
        task: pretrain
        seed: 5
        batch_size: 32
        epochs: 2
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        schedule:
          warmup_epochs: 1
        checkpoint:
          every: 1
        log:
          every: 1
          pictures: false
        \(extra)
        """
    }

    private func loadSpec(_ yaml: String, overrides: [String] = []) throws -> ExperimentSpec {
        try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("config.yaml").path, overrides: overrides)
    }

    private func runner(_ spec: ExperimentSpec, runDir: String? = nil) throws -> PretrainRunner {
        let r = try PretrainRunner(spec: spec, runDir: runDir)
        r.echo = false
        return r
    }

    /// metrics.jsonl as one [key: raw value text] map per line.
    private func metricLines(_ run: RunDirectory) throws -> [[String: String]] {
        let text = try String(contentsOfFile: run.file("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").map { line in
            var fields: [String: String] = [:]
            for part in line.dropFirst().dropLast().components(separatedBy: ", ") {
                let kv = part.components(separatedBy: ": ")
                fields[kv[0].trimmingCharacters(in: CharacterSet(charactersIn: "\""))] = kv.count == 2 ? kv[1] : nil
            }
            return fields
        }
    }

    /// Asserts that two metric logs agree line for line in everything but timing.
    private func assertSameMetrics(_ a: [[String: String]], _ b: [[String: String]], file: StaticString = #filePath,
                                   line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "metric line count", file: file, line: line)
        for (i, (x, y)) in zip(a, b).enumerated() {
            for key in ["epoch", "step", "lr", "loss", "grad_norm"] {
                XCTAssertNotNil(x[key], "line \(i) has no \(key)", file: file, line: line)
                XCTAssertEqual(x[key], y[key], "line \(i): \(key)", file: file, line: line)
            }
        }
    }

    private func bits(_ t: Tensor) -> [UInt32] { t.array.map(\.bitPattern) }

    private func assertBitwiseEqual(_ a: [String: Tensor], _ b: [String: Tensor], _ what: String,
                                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), what, file: file, line: line)
        for (name, t) in a {
            guard let u = b[name] else { continue }
            XCTAssertEqual(t.shape, u.shape, "\(what) \(name)", file: file, line: line)
            XCTAssertTrue(bits(t) == bits(u), "\(what) \(name) differs", file: file, line: line)
        }
    }

    private func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    // MARK: 1. exact resume

    func testResumeAfterKillReproducesUninterruptedRun() throws {
        // A: two epochs straight through.
        let a = try runner(loadSpec(tinyYAML(name: "a")))
        let summaryA = try a.train()
        XCTAssertEqual(summaryA.steps, 16)
        let metricsA = try metricLines(a.run)
        XCTAssertEqual(metricsA.count, 16)
        let finalA = try Checkpoint.read(a.run.file("checkpoint-2.h5"))

        // B: killed after 12 iterations (4 into the second epoch), then started again on the same directory.
        // B also draws reconstruction pictures after each epoch, which must not disturb training.
        let specB = try loadSpec(tinyYAML(name: "b"), overrides: ["log.pictures=true"])
        let killed = try runner(specB)
        killed.stopAfterIterations = 12
        let partial = try killed.train()
        XCTAssertEqual(partial.steps, 12)
        XCTAssertEqual(try metricLines(killed.run).count, 12)
        XCTAssertFalse(exists(killed.run.file("checkpoint-2.h5")), "no checkpoint for the unfinished epoch")
        XCTAssertFalse(exists(killed.run.file("summary.json")))
        XCTAssertTrue(exists(killed.run.file("reconstruction-1.png")))
        let mid = try Checkpoint.read(killed.run.lastCheckpoint)
        XCTAssertEqual(mid.epoch, 1)
        XCTAssertEqual(mid.step, 8)
        assertBitwiseEqual(mid.params, try Checkpoint.read(a.run.file("checkpoint-1.h5")).params, "epoch-1 params")

        let resumed = try runner(specB, runDir: killed.run.path)
        XCTAssertEqual(resumed.spec.resume, .auto)
        let summaryB = try resumed.train()
        XCTAssertEqual(summaryB.steps, 16)
        let metricsB = try metricLines(resumed.run)
        assertSameMetrics(metricsA, metricsB)
        let finalB = try Checkpoint.read(resumed.run.file("checkpoint-2.h5"))
        assertBitwiseEqual(finalA.params, finalB.params, "final params")
        assertBitwiseEqual(finalA.optimizer, finalB.optimizer, "final optimizer state")
        XCTAssertEqual(finalB.epoch, 2)
        XCTAssertEqual(finalB.step, 16)
        XCTAssertEqual(finalB.optimizerSteps, finalA.optimizerSteps)
        XCTAssertTrue(exists(resumed.run.file("reconstruction-2.png")))
        XCTAssertTrue(exists(resumed.run.file("summary.json")))
        let log = try String(contentsOfFile: resumed.run.file("log.txt"), encoding: .utf8)
        XCTAssertTrue(log.contains("resumed from \(killed.run.lastCheckpoint) at epoch 1 (iteration 8)"), log)

        // C: a fresh directory resumed from an explicit path (A's epoch-1 checkpoint) runs epoch 2 only.
        let explicit = a.run.file("checkpoint-1.h5")
        let c = try runner(loadSpec(tinyYAML(name: "c"), overrides: ["resume=\(explicit)"]))
        XCTAssertEqual(c.spec.resume, .path(explicit))
        try c.train()
        assertSameMetrics(Array(metricsA.dropFirst(8)), try metricLines(c.run))
        let finalC = try Checkpoint.read(c.run.file("checkpoint-2.h5"))
        assertBitwiseEqual(finalA.params, finalC.params, "final params (explicit resume)")
        XCTAssertFalse(exists(c.run.file("checkpoint-1.h5")), "the resumed run starts after epoch 1")
        XCTAssertTrue(exists(c.run.file("config.yaml")), "a run directory started by resuming still records its config")
        XCTAssertTrue(exists(c.run.file("meta.json")))
    }

    /// Accumulation over 3 iterations with 5 iterations per epoch (2 left over at each epoch end), and a
    /// first kill before any checkpoint exists: the restart starts afresh, is killed again in epoch 2,
    /// and the second restart resumes from epoch 1.
    func testResumeWithAccumulationAndAKillBeforeTheFirstCheckpoint() throws {
        let yaml = tinyYAML(name: "acc", extra: "accum_iter: 3")
        let overrides = ["data.limit=160"]
        let a = try runner(loadSpec(yaml, overrides: overrides + ["name=acc_a"]))
        try a.train()
        let metricsA = try metricLines(a.run)
        XCTAssertEqual(metricsA.count, 10)

        let spec = try loadSpec(yaml, overrides: overrides + ["name=acc_b"])
        let first = try runner(spec)
        first.stopAfterIterations = 2
        try first.train()
        XCTAssertFalse(exists(first.run.lastCheckpoint))
        let second = try runner(spec, runDir: first.run.path)
        second.stopAfterIterations = 7
        try second.train()
        XCTAssertEqual(try metricLines(second.run).count, 7, "a fresh start must not keep the killed run's metric lines")
        XCTAssertEqual(try Checkpoint.read(second.run.lastCheckpoint).epoch, 1)
        let third = try runner(spec, runDir: first.run.path)
        try third.train()

        assertSameMetrics(metricsA, try metricLines(third.run))
        let finalA = try Checkpoint.read(a.run.file("checkpoint-2.h5")), finalB = try Checkpoint.read(third.run.file("checkpoint-2.h5"))
        assertBitwiseEqual(finalA.params, finalB.params, "final params")
        assertBitwiseEqual(finalA.optimizer, finalB.optimizer, "final optimizer state")
        XCTAssertEqual(finalA.optimizerSteps, 2)  // one update per epoch; the 2 left-over iterations are dropped
        XCTAssertEqual(finalB.optimizerSteps, 2)
    }

    // MARK: 2. atomic checkpoint writes

    func testFailedCheckpointWriteLeavesOldFileAndNoTemporary() throws {
        let dir = scratch.appendingPathComponent("atomic")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let target = dir.appendingPathComponent("checkpoint-last.h5").path

        var good = Checkpoint(params: ["blocks.0.norm1.weight": Tensor([1, 2, 3, 4], shape: [4]),
                                       "cls_token": Tensor([0.5, -0.5], shape: [1, 1, 2])])
        good.optimizer = ["cls_token/exp_avg": Tensor([0.25, 0.125], shape: [1, 1, 2])]
        good.epoch = 3; good.step = 24; good.optimizerSteps = 24; good.seed = 9; good.method = "mae"; good.config = "seed: 9\n"
        try good.write(to: target)
        let before = try Data(contentsOf: URL(fileURLWithPath: target))

        // Fails midway: 'params/a' and 'params/x' are written, then 'params/x/y' needs 'params/x' to be a group.
        let big = Tensor(Array(repeating: 7, count: 4096), shape: [64, 64])
        var bad = Checkpoint(params: ["a": big, "x": Tensor([1], shape: [1]), "x/y": Tensor([2], shape: [1])])
        bad.epoch = 4
        XCTAssertThrowsError(try bad.write(to: target)) { error in
            XCTAssertTrue("\(error)".contains("params/x"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), before, "the old checkpoint changed")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["checkpoint-last.h5"])

        // Fails at the final rename (the target is a non-empty directory).
        let occupied = dir.appendingPathComponent("checkpoint-2.h5")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: occupied.appendingPathComponent("inside"))
        XCTAssertThrowsError(try good.write(to: occupied.path))
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), ["checkpoint-last.h5", "checkpoint-2.h5"])

        // The old file still reads back completely.
        let back = try Checkpoint.read(target)
        assertBitwiseEqual(back.params, good.params, "params")
        assertBitwiseEqual(back.optimizer, good.optimizer, "optimizer")
        XCTAssertEqual([back.epoch, back.step, back.optimizerSteps], [3, 24, 24])
        XCTAssertEqual(back.seed, 9)
        XCTAssertEqual(back.method, "mae")
        XCTAssertEqual(back.config, "seed: 9\n")
    }

    // MARK: 3. mismatch reports

    private func officialMAE(img: Int = 16, width: Int, depth: Int, decoderDepth: Int, seed: UInt64 = 0) -> MAE {
        var o = MAE.Options()
        o.decoderWidth = 16; o.decoderDepth = decoderDepth; o.decoderHeads = 2
        var rng = RandomGenerator(seed: seed)
        return MAE(ViTShape(imgSize: img, patchSize: 4, inChans: 3, width: width, depth: depth, heads: 2),
                   ViTStyle(layout: .fused, posLayout: .mae, clsToken: true), o, rng: &rng)
    }

    func testStrictLoadNamesEveryMissingUnexpectedAndMisShapedKey() throws {
        // The checkpoint: encoder 32 wide, 1 block; decoder 2 blocks. The model: 48 wide, 2 blocks; decoder 1 block.
        let source = officialMAE(width: 32, depth: 1, decoderDepth: 2)
        let path = scratch.appendingPathComponent("small.h5").path
        try Checkpoint(params: Dictionary(uniqueKeysWithValues: source.stateDict().map { ($0.name, $0.tensor) })).write(to: path)
        let state = try Checkpoint.read(path).params

        let model = officialMAE(width: 48, depth: 2, decoderDepth: 1, seed: 1)
        let before = model.stateDict().map { ($0.name, $0.tensor.array) }
        var caught: StateDictMismatch?
        XCTAssertThrowsError(try model.load(state: state, strict: true)) { caught = $0 as? StateDictMismatch }
        let report = try XCTUnwrap(caught)
        let text = report.description

        let modelNames = Set(model.stateDict().map(\.name)), stateNames = Set(state.keys)
        let missing = modelNames.subtracting(stateNames), unexpected = stateNames.subtracting(modelNames)
        XCTAssertTrue(missing.contains("blocks.1.norm1.weight"))
        XCTAssertTrue(unexpected.contains("decoder_blocks.1.norm1.weight"))
        XCTAssertEqual(Set(report.missing), missing)
        XCTAssertEqual(Set(report.unexpected), unexpected)
        for name in missing.union(unexpected) { XCTAssertTrue(text.contains(name), "\(name) not in: \(text)") }

        // Every shared key whose encoder width differs is reported with both shapes.
        let ownShapes = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor.shape) })
        let misShaped = stateNames.intersection(modelNames).filter { state[$0]!.shape != ownShapes[$0]! }
        XCTAssertFalse(misShaped.isEmpty)
        XCTAssertEqual(report.misShaped.count, misShaped.count)
        for name in misShaped {
            let entry = "\(name) expected \(ownShapes[name]!) found \(state[name]!.shape)"
            XCTAssertTrue(text.contains(entry), "'\(entry)' not in: \(text)")
        }
        XCTAssertTrue(text.contains("blocks.0.norm1.weight expected [48] found [32]"), text)
        XCTAssertTrue(text.contains("blocks.0.attn.qkv.weight expected [144, 48] found [96, 32]"), text)
        XCTAssertTrue(text.contains("decoder_embed.weight expected [16, 48] found [16, 32]"), text)
        XCTAssertTrue(text.contains("missing keys:") && text.contains("unexpected keys:") && text.contains("mis-shaped keys:"))

        // A strict load that throws copies nothing.
        for ((name, old), (_, now)) in zip(before, model.stateDict().map { ($0.name, $0.tensor.array) }) {
            XCTAssertEqual(old, now, name)
        }
    }

    // MARK: 4. position tables

    func testInterpolatePosEmbedMatchesPyTorchBicubic() throws {
        let f = try HDF5File(reading: fixtureURL("posembed.h5").path)
        defer { f.close() }
        for (group, extra, grid) in [("cls", 1, 7), ("nocls", 0, 3)] {
            let (iv, ishape) = try f.readFloats("\(group)/input")
            let (ov, oshape) = try f.readFloats("\(group)/output")
            let out = interpolatePosEmbed(Tensor(iv, shape: ishape), extraTokens: extra, newGrid: grid)
            XCTAssertEqual(out.shape, oshape, group)
            XCTAssertLessThan(relativeError(out.array, ov), 1e-5, group)
            let worst = zip(out.array, ov).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, group)
            if extra > 0 { XCTAssertEqual(Array(out.array.prefix(extra * ishape[2])), Array(iv.prefix(extra * ishape[2]))) }
        }
    }

    func testAdaptPositionTablesResizesCheckpointTablesToTheModelGrid() throws {
        let f = try HDF5File(reading: fixtureURL("posembed.h5").path)
        defer { f.close() }
        let (clsIn, clsInShape) = try f.readFloats("cls/input")      // [1, 1 + 4·4, 8]
        let (clsOut, _) = try f.readFloats("cls/output")             // [1, 1 + 7·7, 8]
        let (flatIn, flatInShape) = try f.readFloats("nocls/input")  // [1, 5·5, 8]
        let (flatOut, _) = try f.readFloats("nocls/output")          // [1, 3·3, 8]

        // Official MAE (cls rows in both tables): a 16-pixel checkpoint into a 28-pixel model.
        var o = MAE.Options()
        o.decoderWidth = 8; o.decoderDepth = 1; o.decoderHeads = 2
        func official(_ img: Int, seed: UInt64) -> MAE {
            var rng = RandomGenerator(seed: seed)
            return MAE(ViTShape(imgSize: img, patchSize: 4, inChans: 3, width: 8, depth: 1, heads: 2),
                       ViTStyle(layout: .fused, posLayout: .mae, clsToken: true), o, rng: &rng)
        }
        let small = official(16, seed: 0), large = official(28, seed: 1)
        var state = Dictionary(uniqueKeysWithValues: small.stateDict().map { ($0.name, $0.tensor) })
        state["pos_embed"] = Tensor(clsIn, shape: clsInShape)
        state["decoder_pos_embed"] = Tensor(clsIn, shape: clsInShape)
        let untouched = state["blocks.0.attn.qkv.weight"]!
        XCTAssertThrowsError(try large.load(state: state, strict: true))
        adaptPositionTables(&state, to: large)
        XCTAssertEqual(state["pos_embed"]!.shape, [1, 50, 8])
        XCTAssertLessThan(relativeError(state["pos_embed"]!.array, clsOut), 1e-5)
        XCTAssertLessThan(relativeError(state["decoder_pos_embed"]!.array, clsOut), 1e-5)
        XCTAssertTrue(state["blocks.0.attn.qkv.weight"]! === untouched)
        try large.load(state: state, strict: true)
        XCTAssertLessThan(relativeError(large.encoder.posEmbed.array, clsOut), 1e-5)
        XCTAssertLessThan(relativeError(large.decoderPosEmbed.array, clsOut), 1e-5)

        // Same grid: nothing changes.
        var same = Dictionary(uniqueKeysWithValues: large.stateDict().map { ($0.name, $0.tensor) })
        let table = same["pos_embed"]!
        adaptPositionTables(&same, to: large)
        XCTAssertTrue(same["pos_embed"]! === table)

        // MAE-priv without a cls token: `encoder.pos_embed` and `decoder_pos_embed` have no extra row.
        var p = MAE.Options()
        p.variant = .priv; p.decoderWidth = 8; p.decoderDepth = 1; p.decoderHeads = 2
        p.targetNorm = .layernorm; p.patchOrder = .chw; p.sharedMask = true
        var rng = RandomGenerator(seed: 2)
        let priv = MAE(ViTShape(imgSize: 12, patchSize: 4, inChans: 3, width: 8, depth: 1, heads: 2),
                       ViTStyle(layout: .beit, posLayout: .moco, clsToken: false), p, rng: &rng)
        var privState = Dictionary(uniqueKeysWithValues: priv.stateDict().map { ($0.name, $0.tensor) })
        XCTAssertNotNil(privState["encoder.pos_embed"])
        privState["encoder.pos_embed"] = Tensor(flatIn, shape: flatInShape)
        privState["decoder_pos_embed"] = Tensor(flatIn, shape: flatInShape)
        adaptPositionTables(&privState, to: priv)
        XCTAssertLessThan(relativeError(privState["encoder.pos_embed"]!.array, flatOut), 1e-5)
        XCTAssertLessThan(relativeError(privState["decoder_pos_embed"]!.array, flatOut), 1e-5)
        try priv.load(state: privState, strict: true)

        // A cls table offered to a model without cls rows is not guessed at; the load reports it.
        var mixed = Dictionary(uniqueKeysWithValues: priv.stateDict().map { ($0.name, $0.tensor) })
        mixed["encoder.pos_embed"] = Tensor(clsIn, shape: clsInShape)
        adaptPositionTables(&mixed, to: priv)
        XCTAssertEqual(mixed["encoder.pos_embed"]!.shape, clsInShape)
        XCTAssertThrowsError(try priv.load(state: mixed, strict: true)) { error in
            XCTAssertTrue("\(error)".contains("encoder.pos_embed expected [1, 9, 8] found [1, 17, 8]"), "\(error)")
        }
    }

    // MARK: 5. tessera step

    func testStepMatchesPyTorchOnTheMAEFixture() throws {
        let fixture = fixtureURL("mae_official.h5").path
        let yaml = """
        name: step
        task: pretrain
        batch_size: 2
        epochs: 1
        model:
          method: mae
          arch: custom
          img_size: 16
          patch_size: 4
          width: 32
          depth: 2
          heads: 4
          decoder: {width: 16, depth: 2, heads: 2}
          mask_ratio: 0.75
          norm_pix_loss: true
        data:
          dataset: fashion-mnist
        """
        let spec = try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("step.yaml").path, checkPaths: false)
        try assertStepMatchesFixture(fixture, spec: spec, scratch: scratch) { got, ref in
            XCTAssertEqual(try got.readFloats("mask").values, try ref.readFloats("f32/mask").values)
        }
    }

    // MARK: 6. non-finite loss

    func testNonFiniteLossStopsWithTheLastGoodCheckpoint() throws {
        // One iteration per epoch and no warmup, so the first update (lr 1e30) blows the weights up
        // and the loss of epoch 2 (epoch index 1, iteration 1) overflows.
        let yaml = tinyYAML(name: "nan", extra: "optim: {lr: 1.0e+30}")
        let spec = try loadSpec(yaml, overrides: ["data.limit=32", "schedule.warmup_epochs=0"])
        let r = try runner(spec)
        var message = ""
        XCTAssertThrowsError(try r.train()) { error in
            XCTAssertTrue(error is TrainingError, "\(type(of: error)): \(error)")
            message = "\(error)"
        }
        XCTAssertTrue(message.contains("epoch 1"), message)
        XCTAssertTrue(message.contains("iteration 1"), message)
        XCTAssertTrue(message.contains("Last good checkpoint: \(r.run.lastCheckpoint)"), message)

        let last = try Checkpoint.read(r.run.lastCheckpoint)
        XCTAssertEqual(last.epoch, 1)
        XCTAssertEqual(last.step, 1)
        XCTAssertFalse(exists(r.run.file("checkpoint-2.h5")))
        XCTAssertFalse(exists(r.run.file("summary.json")))
        var rng = RandomGenerator(seed: 0)
        let model = try Registry.method("mae").build(spec, &rng)
        try model.load(state: last.params, strict: true)
        for (name, t) in last.params { XCTAssertTrue(t.array.allSatisfy(\.isFinite), name) }
        // The epoch-0 metric line is there, the failing iteration logged nothing.
        XCTAssertEqual(try metricLines(r.run).map { $0["step"] }, ["1"])
    }
}
