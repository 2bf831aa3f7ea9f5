import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore

/// Linear probing and fine-tuning on a tiny ViT over a slice of Fashion-MNIST.
final class DownstreamTests: ScratchTestCase {
    private func yaml(name: String, task: String, extra: String = "") -> String {
        """
        name: \(name)
        task: \(task)
        seed: 3
        batch_size: 64
        epochs: 2
        init: null
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        log:
          every: 4
          pictures: false
        \(extra)
        """
    }

    private func spec(_ text: String, _ overrides: [String] = []) throws -> ExperimentSpec {
        try ConfigLoader.load(yaml: text, file: scratch.appendingPathComponent("config.yaml").path, overrides: overrides)
    }

    private func runner(_ s: ExperimentSpec) throws -> DownstreamRunner {
        let r = try DownstreamRunner(spec: s)
        r.echo = false
        return r
    }

    private func encoderCopy(_ m: ViTClassifier) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (n, t) in m.stateDict() where !n.hasPrefix("head.") && !n.hasPrefix("fc_norm.") {
            out[n] = Array(UnsafeBufferPointer(start: t.data, count: t.count))
        }
        return out
    }

    private func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    func testLinearProbeLearnsAndKeepsEncoderFrozen() throws {
        let s = try spec(yaml(name: "lin", task: "linprobe", extra: """
            optim: {name: sgd, lr: 0.5, weight_decay: 0.0, momentum: 0.9}
            schedule: {warmup_epochs: 0}
            augment: {crop: none, hflip: 0.0}
            """), ["epochs=3", "data.limit=512", "data.val_limit=256"])
        let r = try runner(s)
        XCTAssertEqual(r.model.pool, .cls)
        XCTAssertEqual(r.model.featureNorm, .batchNorm(eps: 1e-6))
        XCTAssertEqual(r.groups.flatMap { $0.params.map(\.name) }.sorted(), ["head.1.bias", "head.1.weight"])
        let before = encoderCopy(r.model)
        let t0 = Date()
        let out = try r.train()
        let dt = Date().timeIntervalSince(t0)
        print(String(format: "linprobe: val top-1 %.2f%%, top-5 %.2f%%, %.2f s", out.top1, out.top5, dt))
        XCTAssertGreaterThan(out.top1, 30, "a BN + linear head on random ViT features should beat chance (10 %) clearly")
        XCTAssertGreaterThanOrEqual(out.top5, out.top1)
        let after = encoderCopy(r.model)
        XCTAssertEqual(before.keys.sorted(), after.keys.sorted())
        for (k, v) in before { XCTAssertEqual(v, after[k]!, "encoder tensor \(k) changed") }
        // BN running statistics moved away from (0, 1).
        let rv = r.model.bnMean!
        XCTAssertNotEqual(Array(UnsafeBufferPointer(start: rv.data, count: rv.count)), [Float](repeating: 0, count: rv.count))
        let summary = try json(r.run.file("summary.json"))
        XCTAssertEqual(summary["task"] as? String, "linprobe")
        XCTAssertEqual((summary["top1"] as? NSNumber)?.doubleValue ?? -1, out.top1, accuracy: 1e-3)
        let metrics = try String(contentsOfFile: r.run.file("metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(metrics.components(separatedBy: "val_top1").count - 1, 3)
    }

    func testFineTuneWritesCheckpointsAndSummaryAndResumes() throws {
        let s = try spec(yaml(name: "ft", task: "finetune", extra: """
            optim: {name: adamw, blr: 1.0e-3, weight_decay: 0.05, betas: [0.9, 0.999], layer_decay: 0.75}
            schedule: {warmup_epochs: 1, min_lr: 1.0e-6}
            augment: {auto_augment: rand-m9-mstd0.5-inc1, reprob: 0.25, mixup: 0.8, cutmix: 1.0, smoothing: 0.1}
            """), ["model.drop_path=0.1"])
        let r = try runner(s)
        XCTAssertEqual(r.model.pool, .mean)
        XCTAssertEqual(r.model.featureNorm, .layerNorm)
        XCTAssertTrue(r.model.namedParameters().contains { $0.name == "pos_embed" }, "MAE fine-tunes the position table")
        let t0 = Date()
        let out = try r.train()
        print(String(format: "finetune: val top-1 %.2f%%, top-5 %.2f%%, %.2f s", out.top1, out.top5, Date().timeIntervalSince(t0)))
        for f in ["checkpoint-last.h5", "checkpoint-best.h5", "summary.json", "metrics.jsonl", "config.yaml"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: r.run.file(f)), f)
        }
        XCTAssertTrue(out.top1.isFinite && out.top1 >= 0 && out.top1 <= 100)
        XCTAssertGreaterThanOrEqual(out.bestTop1, out.top1)
        let summary = try json(r.run.file("summary.json"))
        XCTAssertEqual(summary["task"] as? String, "finetune")
        XCTAssertEqual(summary["method"] as? String, "mae")
        for k in ["top1", "top5", "best_top1", "epochs", "seconds"] { XCTAssertNotNil(summary[k], k) }
        let ck = try Checkpoint.read(r.run.lastCheckpoint)
        XCTAssertEqual(ck.epoch, 2)
        XCTAssertNotNil(ck.params["fc_norm.weight"])
        XCTAssertFalse(ck.optimizer.isEmpty)

        // resume: auto after the last epoch only re-evaluates and gives the same numbers.
        let again = try runner(s).train()
        XCTAssertEqual(again.top1, out.top1, accuracy: 1e-9)
        XCTAssertEqual(again.bestTop1, out.bestTop1, accuracy: 1e-9)
    }

    /// Data-parallel fine-tuning: the batch split over two replicas gives the whole-batch loss and
    /// gradients up to float summation order, with hard labels (label smoothing) and with mixup targets.
    func testFineTuneStepSplitOverReplicasEqualsOnePass() throws {
        let r = try runner(try spec(yaml(name: "dp", task: "finetune"), ["model.drop_path=0", "augment.smoothing=0.1"]))
        XCTAssertEqual(r.replicas, Parallel.threads, "fine-tuning splits by default")
        var rng = RandomGenerator(seed: 11)
        let images = Tensor.randn([6, 3, 32, 32], rng: &rng)
        let labels = [0, 3, 9, 3, 1, 7]
        let soft = Tensor.randn([6, 10], rng: &rng)
        for targets in [nil, soft] {
            func run(_ n: Int) -> (Float, [String: [Float]]) {
                r.model.zeroGrad()
                let out = r.step(images: images, labels: labels, softTargets: targets, ctx: Context(training: true, rng: RandomGenerator(seed: 2)),
                                 scale: 0.5, replicas: n)
                var grads: [String: [Float]] = [:]
                for (name, p) in r.model.namedParameters() { grads[name] = p.grad.map { $0.array } }
                return (out.loss, grads)
            }
            let (one, g1) = run(1), (two, g2) = run(2)
            XCTAssertEqual(two, one, accuracy: 1e-5 * abs(one))
            XCTAssertEqual(Set(g1.keys), Set(g2.keys))
            for (name, a) in g1 {
                let b = g2[name]!
                let scale = max(a.map(abs).max() ?? 0, 1e-6)
                let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(worst / scale, 1e-4, "\(name) (soft targets: \(targets != nil))")
            }
        }
        var probe = try spec(yaml(name: "lp", task: "linprobe"))
        probe.dataParallel = true
        XCTAssertEqual(try runner(probe).replicas, 1, "a probe's BatchNorm needs the whole batch")
    }

    func testLayerDecayScales() throws {
        let s = try spec(yaml(name: "ld", task: "finetune", extra: "optim: {layer_decay: 0.5}"), ["model.depth=2"])
        let r = try runner(s)
        var scale: [String: Float] = [:]
        var decay: [String: Float] = [:]
        for g in r.groups { for p in g.params { scale[p.name] = g.lrScale; decay[p.name] = g.weightDecay } }
        XCTAssertEqual(scale["patch_embed.proj.weight"], 0.125)
        XCTAssertEqual(scale["cls_token"], 0.125)
        XCTAssertEqual(scale["pos_embed"], 0.125)
        XCTAssertEqual(scale["blocks.0.attn.qkv.weight"], 0.25)
        XCTAssertEqual(scale["blocks.1.mlp.fc2.weight"], 0.5)
        XCTAssertEqual(scale["fc_norm.weight"], 1)
        XCTAssertEqual(scale["head.weight"], 1)
        XCTAssertEqual(decay["head.weight"], 0.05)
        XCTAssertEqual(decay["head.bias"], 0)
        XCTAssertEqual(decay["pos_embed"], 0)
        XCTAssertEqual(decay["cls_token"], 0)
        XCTAssertEqual(decay["blocks.0.norm1.weight"], 0)
        XCTAssertEqual(Set(scale.keys), Set(r.model.namedParameters().map(\.name)))
    }

    func testLoadsPretrainingCheckpointAndRejectsMissingKeys() throws {
        // One epoch of tiny MAE pre-training.
        let pre = try spec("""
            name: pre
            task: pretrain
            seed: 1
            batch_size: 64
            epochs: 1
            output_dir: "\(scratch.path)"
            \(tinyMAEModelAndData)
            log: {every: 4, pictures: false}
            """)
        let pr = try PretrainRunner(spec: pre)
        pr.echo = false
        try pr.train()
        let ckPath = pr.run.lastCheckpoint
        let ck = try Checkpoint.read(ckPath)
        XCTAssertTrue(ck.params.keys.contains { $0.hasPrefix("decoder") })

        for task in ["linprobe", "finetune"] {
            let s = try spec(yaml(name: "load-\(task)", task: task), ["init=\(ckPath)"])
            let r = try runner(s)
            var n = 0
            for (name, t) in r.model.stateDict() where !name.hasPrefix("head") && !name.hasPrefix("fc_norm") {
                let src = try XCTUnwrap(ck.params[name], "\(task): \(name) not in the checkpoint")
                XCTAssertEqual(Array(UnsafeBufferPointer(start: t.data, count: t.count)),
                               Array(UnsafeBufferPointer(start: src.data, count: src.count)), "\(task): \(name)")
                n += 1
            }
            XCTAssertGreaterThan(n, 10)
        }

        // Drop one encoder tensor: a clear error naming it.
        var broken = ck
        broken.params["blocks.0.attn.qkv.weight"] = nil
        let bad = scratch.appendingPathComponent("broken.h5").path
        try broken.write(to: bad)
        let s = try spec(yaml(name: "bad", task: "finetune"), ["init=\(bad)"])
        XCTAssertThrowsError(try DownstreamRunner(spec: s)) { e in
            XCTAssertTrue("\(e)".contains("blocks.0.attn.qkv.weight"), "\(e)")
        }
    }
}
