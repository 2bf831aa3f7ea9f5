import Foundation
import TesseraConfig
import TesseraCore
import TesseraData

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// The result of a finished (or stopped) run.
public struct RunSummary {
    public var runDir: String
    public var epochs: Int
    public var steps: Int
    public var finalLoss: Double
    public var imagesPerSecond: Double
    public var dataWaitShare: Double
    public var seconds: Double
}

/// Pre-training: the loop of spec §2.5/§8 (per-iteration lr, accumulation, optional clipping), with
/// checkpoints, exact resume, metrics and pictures.
public final class PretrainRunner {
    public let spec: ExperimentSpec
    public let run: RunDirectory
    public let overrides: [String]
    /// For tests: stop (as if killed) after this many iterations of this invocation, without a checkpoint.
    public var stopAfterIterations: Int?
    /// Print plain log lines (false keeps tests quiet).
    public var echo = true

    public init(spec: ExperimentSpec, overrides: [String] = [], runDir: String? = nil) throws {
        self.spec = spec
        self.overrides = overrides
        run = try RunDirectory(path: runDir ?? (spec.outputDir as NSString).appendingPathComponent(spec.name))
    }

    /// The model generator for iteration `it`: a pure function of (seed, it), so a resumed run draws
    /// exactly what an uninterrupted one does. `it` = −1 is the reconstruction pictures' generator (taken
    /// by bit pattern: `UInt64(-1)` traps in checked builds).
    func modelRNG(_ it: Int) -> RandomGenerator {
        RandomGenerator(seed: UInt64(spec.seed)).derived(0x4D4F_4445_4C, UInt64(truncatingIfNeeded: it))
    }

    @discardableResult
    public func train() throws -> RunSummary {
        if spec.threads > 0 { Parallel.setThreads(spec.threads) }
        let started = Date()
        var initRNG = RandomGenerator(seed: UInt64(spec.seed))
        let model = try Registry.method(spec.model.method.rawValue).build(spec, &initRNG)
        let groups = OptimBuilder.pretrainGroups(spec, model)
        let opt = OptimBuilder.optimizer(spec, groups)
        let schedule = OptimBuilder.schedule(spec)

        let dataset = try Registry.dataset(spec, train: true)
        let loader = DataLoader(dataset: dataset, pipeline: Registry.pipeline(spec, train: true), batchSize: spec.batchSize,
                                shuffle: true, dropLast: true, seed: UInt64(spec.seed), workers: spec.data.numWorkers)
        let iters = loader.batchesPerEpoch
        guard iters >= spec.accumIter else {
            throw TrainingError(description: "tessera: data set of \(dataset.count) images gives \(iters) batches of \(spec.batchSize) per epoch, fewer than accum_iter \(spec.accumIter)")
        }

        let resumed = try resumeOrStart(spec: spec, run: run, model: model, optimizer: opt, overrides: overrides, echo: echo)
        let startEpoch = resumed.epoch, resumePath = resumed.path
        run.log("\(spec.name): \(spec.model.method.rawValue) \(spec.model.arch.rawValue), \(model.parameterCount) parameters, "
                + "\(dataset.count) images, \(iters) iterations per epoch; \(spec.summaryLine())", echo: echo)

        let progress = ProgressLine()
        var iterationsThisCall = 0
        var lastEpochLoss = Double.nan
        var totalImages = 0
        let totalComputeStart = Date()
        let waitAtStart = loader.waitSeconds
        var lastCheckpointPath = resumePath
        for epoch in startEpoch..<spec.epochs {
            var window = (loss: 0.0, count: 0, images: 0, start: Date(), wait: loader.waitSeconds)
            var epochLoss = 0.0, epochCount = 0
            var gradNorm: Float = 0
            var lr = 0.0
            let batches = loader.epoch(epoch)
            // As MAE's train_one_epoch: gradients left over from an incomplete accumulation group at the
            // end of the previous epoch are dropped (a checkpoint does not hold them, so resume could not).
            model.zeroGrad()
            var i = 0
            while let batch = batches.next() {
                let it = epoch * iters + i
                if i % spec.accumIter == 0 {
                    lr = schedule.value(iteration: it, itersPerEpoch: iters, accumIter: spec.accumIter)
                }
                let ctx = Context(training: true, rng: modelRNG(it))
                let out = model.forward(images: batch.images, noise: nil, ctx: ctx)
                let lossValue = Double(out.loss.item)
                guard lossValue.isFinite else {
                    Autograd.reset()
                    progress.clear()
                    throw TrainingError(description: "tessera: loss is \(lossValue) at epoch \(epoch), iteration \(it); stopped. "
                                        + "Last good checkpoint: \(lastCheckpointPath ?? "none")")
                }
                (spec.accumIter > 1 ? out.loss * (1 / Float(spec.accumIter)) : out.loss).backward()
                if (i + 1) % spec.accumIter == 0 {
                    gradNorm = clipGradNorm(groups, maxNorm: spec.optim.clipGrad.map(Float.init))
                    opt.step(lr: Float(lr), weightDecay: nil)
                    model.zeroGrad()
                }
                window.loss += lossValue; window.count += 1; window.images += batch.images.shape[0]
                epochLoss += lossValue; epochCount += 1
                totalImages += batch.images.shape[0]
                i += 1
                iterationsThisCall += 1
                let logNow = i % max(spec.log.every, 1) == 0 || i == iters
                if logNow {
                    let dt = Date().timeIntervalSince(window.start)
                    let wait = loader.waitSeconds - window.wait
                    let ips = Double(window.images) / max(dt, 1e-9)
                    run.logMetrics([("epoch", epoch), ("step", it + 1), ("lr", lr), ("loss", window.loss / Double(window.count)),
                                    ("grad_norm", Double(gradNorm)), ("images_per_s", ips), ("data_wait", wait / max(dt, 1e-9))])
                    let remaining = Double((spec.epochs - epoch) * iters - i) * Double(spec.batchSize) / max(ips, 1e-9)
                    progress.show(epoch: epoch, epochs: spec.epochs, step: i, total: iters, loss: window.loss / Double(window.count),
                                  imagesPerSecond: ips, eta: remaining)
                    if !progress.enabled && echo {
                        print(String(format: "epoch %d step %d/%d  loss %.4f  lr %.3e  grad %.3f  %.0f img/s  wait %.1f%%", epoch, i, iters,
                                     window.loss / Double(window.count), lr, Double(gradNorm), ips, 100 * wait / max(dt, 1e-9)))
                    }
                    window = (0, 0, 0, Date(), loader.waitSeconds)
                }
                if let stop = stopAfterIterations, iterationsThisCall >= stop {
                    batches.stop()
                    progress.clear()
                    return RunSummary(runDir: run.path, epochs: epoch, steps: it + 1, finalLoss: lossValue, imagesPerSecond: 0,
                                      dataWaitShare: 0, seconds: Date().timeIntervalSince(started))
                }
            }
            progress.clear()
            lastEpochLoss = epochLoss / Double(max(epochCount, 1))
            run.log(String(format: "epoch %d done: mean loss %.5f", epoch, lastEpochLoss), echo: echo)
            // Checkpoints: last after every epoch, numbered every `checkpoint.every` epochs and at the end.
            var ck = Checkpoint(params: Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor) }))
            ck.optimizer = opt.stateTensors()
            ck.epoch = epoch + 1
            ck.step = (epoch + 1) * iters
            ck.optimizerSteps = opt.steps
            ck.seed = UInt64(spec.seed)
            ck.method = spec.model.method.rawValue
            ck.config = spec.resolvedYAML()
            if spec.checkpoint.keepLast {
                try ck.write(to: run.lastCheckpoint)
                lastCheckpointPath = run.lastCheckpoint
            }
            if (spec.checkpoint.every > 0 && (epoch + 1) % spec.checkpoint.every == 0) || epoch + 1 == spec.epochs {
                try ck.write(to: run.file("checkpoint-\(epoch + 1).h5"))
            }
            if spec.log.pictures, let sample = try? pictureBatch(loader: loader) {
                try? Pictures.reconstructions(model: model, images: sample, rng: modelRNG(-1), to: run.file("reconstruction-\(epoch + 1).png"),
                                              mean: spec.data.mean.map(Float.init), std: spec.data.std.map(Float.init))
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let compute = Date().timeIntervalSince(totalComputeStart)
        let waitShare = (loader.waitSeconds - waitAtStart) / max(compute, 1e-9)
        let summary = RunSummary(runDir: run.path, epochs: spec.epochs, steps: spec.epochs * iters, finalLoss: lastEpochLoss,
                                 imagesPerSecond: Double(totalImages) / max(compute, 1e-9), dataWaitShare: waitShare, seconds: seconds)
        try run.write("summary.json", jsonObject([
            "task": "pretrain", "method": spec.model.method.rawValue, "epochs": spec.epochs, "steps": summary.steps,
            "final_loss": summary.finalLoss, "images_per_s": summary.imagesPerSecond, "data_wait": waitShare,
            "seconds": seconds, "parameters": model.parameterCount, "skipped_images": loader.skippedCount,
        ]))
        if spec.log.pictures { try? Pictures.curves(metrics: run.file("metrics.jsonl"), to: run.file("curves.png")) }
        run.closeLogs()
        return summary
    }

    /// The first 8 images of epoch 0 in evaluation order, for reconstruction pictures.
    func pictureBatch(loader: DataLoader) throws -> Tensor {
        let ds = loader.dataset
        var pipe = Registry.pipeline(spec, train: false)
        pipe.eval = true
        let n = min(8, ds.count)
        let shape = pipe.outputShape
        let out = Tensor(shape: [n] + shape)
        var rng = RandomGenerator(seed: 0)
        for i in 0..<n {
            let (img, _) = try ds.sample(i)
            pipe.apply(img, rng: &rng, into: out.data + i * shape.reduce(1, *))
        }
        return out
    }
}
