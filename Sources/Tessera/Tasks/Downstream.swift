import Foundation
import TesseraConfig
import TesseraCore
import TesseraData

/// The result of a linear probe or fine-tune.
public struct DownstreamSummary {
    public var runDir: String
    public var task: String
    public var epochs: Int
    public var steps: Int
    public var finalLoss: Double
    /// Top-1 / top-5 accuracy (%) of the last evaluation.
    public var top1: Double
    public var top5: Double
    /// Best top-1 (%) over all evaluations of the run (including before a resume).
    public var bestTop1: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    /// True when the run directory already held the finished run and nothing was done.
    public var alreadyComplete = false
}

extension DownstreamSummary {
    /// The summary of a finished run from its summary.json.
    init(finished run: RunDirectory, task: String) throws {
        let s = try readSummary(run)
        self.init(runDir: run.path, task: s["task"] as? String ?? task, epochs: s["epochs"] as? Int ?? 0, steps: s["steps"] as? Int ?? 0,
                  finalLoss: s["final_loss"] as? Double ?? .nan, top1: s["top1"] as? Double ?? .nan, top5: s["top5"] as? Double ?? .nan,
                  bestTop1: s["best_top1"] as? Double ?? .nan, imagesPerSecond: s["images_per_s"] as? Double ?? 0,
                  seconds: s["seconds"] as? Double ?? 0, alreadyComplete: true)
    }
}

/// Evaluation result on the validation split.
public struct EvalResult {
    public var top1: Double
    public var top5: Double
    public var loss: Double
    public var count: Int
}

/// Linear probing (spec §7.2) and end-to-end fine-tuning (spec §7.1) of a ViT encoder, optionally
/// initialised from a pre-training checkpoint (`init`). Same run-directory layout as pre-training:
/// config/metadata, metrics.jsonl (training lines plus `val_top1`/`val_top5` lines), checkpoint-last.h5
/// every epoch, checkpoint-best.h5 on a new best top-1, summary.json; `resume: auto` continues.
public final class DownstreamRunner {
    public let spec: ExperimentSpec
    public let run: RunDirectory
    public let overrides: [String]
    /// The classifier, built (and initialised from `init`) by `init`.
    public let model: ViTClassifier
    /// The optimizer's parameter groups (linprobe: the head only; finetune: layer-decay groups).
    public let groups: [ParamGroup]
    public let numClasses: Int
    /// Print plain log lines (false keeps tests quiet).
    public var echo = true

    /// Linear and attentive probing train a head on the frozen encoder.
    var isLinear: Bool { spec.task == .linprobe || spec.task == .attentive }

    public init(spec: ExperimentSpec, overrides: [String] = [], runDir: String? = nil) throws {
        guard spec.task == .linprobe || spec.task == .finetune || spec.task == .attentive else {
            throw TrainingError(description: "tessera: DownstreamRunner runs linprobe, attentive or finetune, not \(spec.task.rawValue)")
        }
        guard [.mae, .maePriv, .saim, .semaim, .cae, .vit].contains(spec.model.method) else {
            throw TrainingError(description: "tessera: \(spec.task.rawValue) supports model.method mae, mae_priv, saim, semaim, cae and vit; got \(spec.model.method.rawValue)")
        }
        if !spec.augment.autoAugment.isEmpty {
            do { try RandAugment.validate(config: spec.augment.autoAugment) } catch {
                throw TrainingError(description: "tessera: augment.auto_augment: \(error)")
            }
        }
        self.spec = spec
        self.overrides = overrides
        if spec.model.numClasses > 0 {
            numClasses = spec.model.numClasses
        } else {
            numClasses = try Registry.dataset(spec, train: true).classes.count
            guard numClasses > 0 else {
                throw TrainingError(description: "tessera: the data set reports no classes; set model.num_classes")
            }
        }
        try MemoryBound.check(spec)
        let m = DownstreamRunner.buildModel(spec, numClasses: numClasses)
        var rng = RandomGenerator(seed: UInt64(spec.seed))
        DownstreamRunner.initialize(m, spec, rng: &rng)
        if let path = spec.initCheckpoint {
            try DownstreamRunner.loadEncoder(m, from: path)
        }
        model = m
        groups = DownstreamRunner.paramGroups(spec, m)
        run = RunDirectory(path: runDir ?? (spec.outputDir as NSString).appendingPathComponent(spec.name))
    }

    // MARK: model

    /// The classifier for the spec's task and method (pooling, feature norm, learnable position table).
    public static func buildModel(_ spec: ExperimentSpec, numClasses: Int) -> ViTClassifier {
        let m = spec.model
        let priv = m.method == .maePriv
        var style = Registry.vitStyle(spec)
        let pool: ViTClassifier.Pool
        let norm: ViTClassifier.FeatureNorm
        if spec.task == .attentive {
            // CAE tools/run_attentive.py: norm(x) over all tokens, AttentiveBlock, LP_BatchNorm (eps 1e-5).
            style.dropPath = 0
            let c = ViTClassifier(Registry.vitShape(spec), style, pool: .attentive, featureNorm: .batchNorm(eps: 1e-5), numClasses: numClasses)
            c.batchStatisticsAtEval = spec.eval.attentiveBatchStatistics
            c.syncBatchNorm = spec.syncBN
            return c
        }
        if spec.task == .linprobe {
            style.dropPath = 0
            if priv {
                pool = m.clsToken ? .rawCls : .rawMean
                norm = .batchNorm(eps: 1e-5)
            } else {
                pool = m.globalPool || !m.clsToken ? .mean : .cls
                norm = .batchNorm(eps: 1e-6)
            }
        } else {
            if priv {
                pool = m.clsToken ? .rawCls : .rawMean
                norm = .layerNorm
            } else {
                let gap = m.globalPool || !m.clsToken
                pool = gap ? .mean : .cls
                norm = gap ? .layerNorm : .none
                style.learnablePos = true
            }
        }
        let c = ViTClassifier(Registry.vitShape(spec), style, pool: pool, featureNorm: norm, numClasses: numClasses)
        c.syncBatchNorm = spec.syncBN
        return c
    }

    /// Random initialisation: the encoder as in pre-training (spec §1.4), then the head
    /// (MAE linprobe trunc_normal 0.01, MAE-priv linprobe normal 0.01, MAE fine-tune trunc_normal 2e-5,
    /// MAE-priv fine-tune trunc_normal 0.02 × init_scale 0.001; bias 0).
    public static func initialize(_ model: ViTClassifier, _ spec: ExperimentSpec, rng: inout RandomGenerator) {
        let priv = spec.model.method == .maePriv
        model.encoder.initialize(rng: &rng, torchDefaultPatch: priv, clsTruncated: priv)
        guard let head = model.head else { return }
        if spec.task == .attentive {
            // The probe's head N(0, 0.01), bias 0; query_token and the block as built (zeros, LN 1/0),
            // the block's Linears truncated normal 0.02 (timm's init in modeling_finetune).
            if let blk = model.attentiveBlock {
                for (name, p) in blk.namedParameters() where name.hasSuffix(".weight") && p.rank == 2 {
                    Init.truncatedNormal(p, std: 0.02, rng: &rng)
                }
            }
            Init.normal(head.weight, std: 0.01, rng: &rng)
        } else if spec.task == .linprobe {
            if priv { Init.normal(head.weight, std: 0.01, rng: &rng) } else { Init.truncatedNormal(head.weight, std: 0.01, rng: &rng) }
        } else if priv {
            Init.truncatedNormal(head.weight, std: 0.02, rng: &rng)
            for i in 0..<head.weight.count { head.weight.data[i] *= 0.001 }
        } else {
            Init.truncatedNormal(head.weight, std: 2e-5, rng: &rng)
        }
        if let b = head.bias { Init.constant(b, 0) }
    }

    /// Loads the encoder of a pre-training (or downstream) checkpoint: names mapped by
    /// `ViTClassifier.encoderState(from:)`, loaded non-strictly; every encoder parameter must be
    /// present with the right shape (head and fc_norm are new and exempt).
    public static func loadEncoder(_ model: ViTClassifier, from path: String) throws {
        var unused: [String] = []
        try loadWeights(into: model, from: path, map: { state in
            unused = model.unusedEncoderTensors(in: state)
            return model.encoderState(from: state)
        }, exempt: ViTClassifier.isNewInDownstream)
        if !unused.isEmpty {
            let shown = unused.prefix(6).joined(separator: ", ") + (unused.count > 6 ? ", … (\(unused.count) in all)" : "")
            throw CheckpointError(description: "tessera: \(path): the checkpoint has encoder tensor(s) the model has no place for: \(shown) "
                                  + "(check model.depth/layer_scale/block/method against the config that wrote it)")
        }
    }

    /// Linear probe: the head's parameters only (encoder frozen). Fine-tune: layer-wise lr decay groups
    /// (no weight decay for 1-D parameters, pos_embed, cls_token).
    public static func paramGroups(_ spec: ExperimentSpec, _ model: ViTClassifier) -> [ParamGroup] {
        let wd = Float(spec.optim.weightDecay)
        if spec.task == .linprobe || spec.task == .attentive {
            // The attentive probe also trains its query token and block.
            let head = model.namedParameters().filter { ViTClassifier.isNewInDownstream($0.name) }
            return ParamGroups.pretrain(head, weightDecay: wd).filter { !$0.params.isEmpty }
        }
        return ParamGroups.layerDecay(model.namedParameters(), depth: spec.model.depth, weightDecay: wd,
                                      layerDecay: Float(spec.optim.layerDecay))
    }

    // MARK: training

    func modelRNG(_ it: Int) -> RandomGenerator {
        RandomGenerator(seed: UInt64(spec.seed)).derived(0x4D4F_4445_4C, UInt64(truncatingIfNeeded: it))
    }

    func mixRNG(_ it: Int) -> RandomGenerator {
        RandomGenerator(seed: UInt64(spec.seed)).derived(0x4D49_5855_50, UInt64(truncatingIfNeeded: it))
    }

    /// Logits of a training batch: linear probing runs the frozen encoder without a tape.
    /// The frozen encoder's part splits the batch over the threads (it has no batch statistics); the
    /// BatchNorm head sees the whole batch.
    func trainLogits(_ images: Tensor, ctx: Context) -> Tensor {
        if spec.task == .attentive {
            let t = Autograd.noGrad { mapBatchRows(images, parts: Parallel.threads, maxRows: model.inferenceChunk) { model.tokens($0, ctx: ctx) } }.detach()
            return model.head!(model.attentiveFeatures(t, ctx: ctx))
        }
        if isLinear {
            let f = Autograd.noGrad { frozenFeatures(images, ctx: ctx) }.detach()
            return model.head!(f)
        }
        return model(images, ctx: ctx)
    }

    /// The linear probe's features: the frozen encoder (split over the threads), then the feature
    /// BatchNorm over the whole batch.
    func frozenFeatures(_ images: Tensor, ctx: Context) -> Tensor {
        let pooled = mapBatchRows(images, parts: Parallel.threads, maxRows: model.inferenceChunk) { model.pooledFeatures($0, ctx: ctx) }
        return model.normalizeFeatures(pooled, ctx: ctx)
    }

    /// Threads a fine-tuning batch is split over (`data_parallel`); the probes, whose BatchNorm
    /// statistics are those of the whole batch, run one pass.
    public var replicas: Int { spec.task == .finetune && spec.dataParallel ? Parallel.threads : 1 }

    /// One forward and backward pass of the training loss (hard labels with label smoothing, or the
    /// mixup/cutmix soft targets), back-propagating `scale` × loss. With `replicas` > 1 (fine-tuning:
    /// `self.replicas`) the batch is cut
    /// into contiguous parts that run side by side (`Replicas.run`), each with its rows of the images
    /// and targets and its own stochastic-depth generator; the loss is the image-weighted mean of the
    /// parts' and the gradients are summed, equal to the whole-batch pass up to float summation order
    /// (without drop path; with it, the draws differ as they would under another batch split).
    public func step(images: Tensor, labels: [Int], softTargets: Tensor?, ctx: Context, scale: Float, replicas: Int) -> StepResult {
        let smoothing = Float(spec.augment.smoothing)
        func loss(_ x: Tensor, _ rows: Range<Int>, _ c: Context) -> Tensor {
            let logits = trainLogits(x, ctx: c)
            if let softTargets { return crossEntropy(logits, softTargets: softTargets.batchRows(rows)) }
            return crossEntropy(logits, labels: Array(labels[rows]), smoothing: smoothing)
        }
        let b = images.shape[0], n = min(max(1, replicas), b)
        guard n > 1 else { return StepResult(loss: loss(images, 0..<b, ctx).backwardIfFinite(scale: scale)) }
        let parts = (0..<n).map { r in (b * r / n)..<(b * (r + 1) / n) }
        let seeds = (0..<n).map { ctx.rng.derived(0x5245_504C, UInt64($0)) }
        var losses = [Float](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { out in
            let out = out
            Replicas.run(n, leaves: model.namedParameters().map(\.tensor)) { r in
                let w = Float(parts[r].count) / Float(b)
                out[r] = loss(images.batchRows(parts[r]), parts[r], Context(training: ctx.training, rng: seeds[r]))
                    .backwardIfFinite(scale: scale * w) * w
            }
        }
        return StepResult(loss: losses.reduce(0, +))
    }

    /// Top-1/top-5 accuracy (%) and mean cross-entropy on the validation split.
    /// Several processes evaluate disjoint shares and add up their counts, so the whole validation set
    /// counts exactly once.
    public func evaluate() throws -> EvalResult {
        let ds = Strided.share(of: try Registry.dataset(spec, train: false))
        let loader = DataLoader(dataset: ds, pipeline: Registry.pipeline(spec, train: false), batchSize: spec.batchSize,
                                shuffle: false, dropLast: false, seed: UInt64(spec.seed), workers: spec.data.numWorkers)
        let k = min(5, numClasses)
        var c1 = 0, c5 = 0, n = 0
        var lossSum = 0.0
        let batches = loader.epoch(0)
        let ctx = Context(training: false)
        while let batch = batches.next() {
            // Evaluation has no batch statistics except the attentive probe's optional ones, which
            // attentiveFeatures applies to the whole batch.
            let logits: Tensor = Autograd.noGrad {
                if spec.task == .attentive {
                    let t = mapBatchRows(batch.images, parts: Parallel.threads, maxRows: model.inferenceChunk) { model.tokens($0, ctx: ctx) }
                    return model.head!(model.attentiveFeatures(t, ctx: ctx))
                }
                return mapBatchRows(batch.images, parts: Parallel.threads, maxRows: model.inferenceChunk) { model($0, ctx: ctx) }
            }
            let b = batch.labels.count, c = logits.shape[1]
            lossSum += Double(Autograd.noGrad { crossEntropy(logits, labels: batch.labels) }.item) * Double(b)
            for i in 0..<b {
                let row = logits.data + i * c
                let target = row[batch.labels[i]]
                // Rank of the true class: classes with a strictly larger logit (ties count for the label).
                var above = 0
                for j in 0..<c where row[j] > target { above += 1 }
                if above == 0 { c1 += 1 }
                if above < k { c5 += 1 }
            }
            n += b
        }
        var totals = [Double(c1), Double(c5), Double(n), lossSum]
        Distributed.sum(&totals)
        let d = max(totals[2], 1)
        return EvalResult(top1: 100 * totals[0] / d, top5: 100 * totals[1] / d, loss: totals[3] / d, count: Int(totals[2]))
    }

    /// The best `val_top1` among the kept metric lines (after a resume).
    func bestFromMetrics() -> Double? {
        guard let text = try? String(contentsOfFile: run.file("metrics.jsonl"), encoding: .utf8) else { return nil }
        var best: Double? = nil
        for line in text.split(separator: "\n") {
            guard let data = line.data(using: .utf8),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let v = (obj["val_top1"] as? NSNumber)?.doubleValue else { continue }
            best = max(best ?? v, v)
        }
        return best
    }

    @discardableResult
    public func train() throws -> DownstreamSummary {
        if spec.threads > 0 { Parallel.setThreads(spec.threads) }
        let started = Date()
        let opt = OptimBuilder.optimizer(spec, groups)
        let task = spec.task.rawValue

        let loader = try TrainingLoop.trainingLoader(spec)
        let dataset = loader.dataset, iters = loader.batchesPerEpoch
        let a = spec.augment
        let mixup: Mixup? = (a.mixup > 0 || a.cutmix > 0) && !isLinear
            ? Mixup(mixupAlpha: a.mixup, cutmixAlpha: a.cutmix, prob: a.mixupProb, switchProb: a.switchProb,
                    labelSmoothing: a.smoothing, numClasses: numClasses)
            : nil
        if mixup != nil && spec.batchSize % 2 != 0 {
            throw TrainingError(description: "tessera: mixup/cutmix needs an even batch_size, got \(spec.batchSize)")
        }

        _ = try Registry.dataset(spec, train: false)
        let explicit = try explicitResumePoint(spec, model: model, optimizer: opt)

        // Everything is checked; only now is the run directory touched.
        let opening = try run.open(spec: spec, overrides: overrides, echo: echo)
        defer { run.release() }
        if opening == .complete { return try DownstreamSummary(finished: run, task: task) }
        let resumed = try resumeOrStart(spec: spec, run: run, opening: opening, explicit: explicit, model: model, optimizer: opt,
                                        overrides: overrides, echo: echo)
        let startEpoch = resumed.epoch, resumePath = resumed.path
        var best = resumePath != nil ? bestFromMetrics() ?? -1 : -1.0
        let trainable = groups.reduce(0) { $0 + $1.params.reduce(0) { $0 + $1.tensor.count } }
        run.log("\(spec.name): \(task) \(spec.model.method.rawValue) \(spec.model.arch.rawValue), pool \(model.pool.rawValue), "
                + "\(model.parameterCount) parameters (\(trainable) trained), \(numClasses) classes, init \(spec.initCheckpoint ?? "random"), "
                + "\(dataset.count) images, \(iters) iterations per epoch; \(spec.summaryLine())", echo: echo)

        let loop = TrainingLoop(spec: spec, run: run, model: model, groups: groups, optimizer: opt, loader: loader, echo: echo,
                                lastCheckpointPath: resumePath)
        var lastEpochLoss = Double.nan
        var last: EvalResult? = nil
        let computeStart = Date()
        for epoch in startEpoch..<spec.epochs {
            let result = try loop.epoch(epoch) { batch, it, scale in
                let ctx = Context(training: true, rng: modelRNG(it))
                var soft: Tensor? = nil
                if let mixup {
                    var r = mixRNG(it)
                    soft = try mixup.apply(images: batch.images, labels: batch.labels, rng: &r)
                }
                return self.step(images: batch.images, labels: batch.labels, softTargets: soft, ctx: ctx, scale: scale, replicas: self.replicas)
            }
            lastEpochLoss = result.meanLoss
            let step = (epoch + 1) * iters
            let ck = loop.checkpoint(epochsDone: epoch + 1)
            let evalNow = epoch + 1 == spec.epochs || (spec.eval.every > 0 && (epoch + 1) % spec.eval.every == 0)
            var improved = false
            if evalNow {
                let r = try evaluate()
                last = r
                run.logMetrics([("epoch", epoch), ("step", step), ("val_top1", r.top1), ("val_top5", r.top5), ("val_loss", r.loss)])
                if r.top1 > best {
                    best = r.top1
                    improved = true
                }
                run.log(String(format: "epoch %d done: train loss %.5f, val top-1 %.2f%%, top-5 %.2f%% (best %.2f%%)",
                               epoch, lastEpochLoss, r.top1, r.top5, best), echo: echo)
            } else {
                run.log(String(format: "epoch %d done: train loss %.5f", epoch, lastEpochLoss), echo: echo)
            }
            if improved && Distributed.isWriter { try ck.write(to: run.file("checkpoint-best.h5")) }
            try loop.writeEpochCheckpoints(ck, epochsDone: epoch + 1, numberFinal: false)
        }
        // A run resumed after its last epoch still reports an evaluation.
        let final = try last ?? evaluate()
        if best < 0 { best = final.top1 }
        let seconds = Date().timeIntervalSince(started)
        let ips = Double(loop.totalImages) / max(Date().timeIntervalSince(computeStart), 1e-9)
        let summary = DownstreamSummary(runDir: run.path, task: task, epochs: spec.epochs, steps: spec.epochs * iters,
                                        finalLoss: lastEpochLoss, top1: final.top1, top5: final.top5, bestTop1: best,
                                        imagesPerSecond: ips, seconds: seconds)
        if spec.log.pictures && Distributed.isWriter { try? Pictures.curves(metrics: run.file("metrics.jsonl"), to: run.file("curves.png")) }
        try run.write("summary.json", JSON.object([
            "task": task, "method": spec.model.method.rawValue, "epochs": spec.epochs, "steps": summary.steps,
            "top1": final.top1, "top5": final.top5, "best_top1": best, "final_loss": lastEpochLoss,
            "images_per_s": ips, "seconds": seconds, "parameters": model.parameterCount, "trained_parameters": trainable,
            "num_classes": numClasses, "init": spec.initCheckpoint ?? "", "pool": model.pool.rawValue,
            "skipped_images": loader.skippedCount, "batch_size": spec.batchSize, "accum_iter": spec.accumIter,
            "effective_batch": spec.effectiveBatch, "processes": ExperimentSpec.worldSize, "peak_memory_mib": Memory.peakResidentMiB(),
        ]))
        return summary
    }
}
