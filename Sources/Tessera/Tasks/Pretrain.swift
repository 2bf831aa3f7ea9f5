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
    /// Builds the method instead of the registry entry `model.method` names (for a method defined
    /// outside Tessera, or a probe in tests); nil = the registry.
    public var buildMethod: ((ExperimentSpec, inout RandomGenerator) throws -> PretrainMethod)?

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
        let model = try (buildMethod ?? Registry.method(spec.model.method.rawValue).build)(spec, &initRNG)
        let groups = OptimBuilder.pretrainGroups(spec, model)
        let opt = OptimBuilder.optimizer(spec, groups)

        let loader = try TrainingLoop.trainingLoader(spec)
        let dataset = loader.dataset, iters = loader.batchesPerEpoch

        let resumed = try resumeOrStart(spec: spec, run: run, model: model, optimizer: opt, overrides: overrides, echo: echo)
        run.log("\(spec.name): \(spec.model.method.rawValue) \(spec.model.arch.rawValue), \(model.parameterCount) parameters, "
                + "\(dataset.count) images, \(iters) iterations per epoch; \(spec.summaryLine())", echo: echo)

        let loop = TrainingLoop(spec: spec, run: run, model: model, groups: groups, optimizer: opt, loader: loader, echo: echo,
                                lastCheckpointPath: resumed.path)
        loop.afterUpdate = { model.afterOptimizerStep(epoch: $0) }
        var lastEpochLoss = Double.nan
        let totalComputeStart = Date()
        let waitAtStart = loader.waitSeconds
        for epoch in resumed.epoch..<spec.epochs {
            let result = try loop.epoch(epoch, stopAfterIterations: stopAfterIterations) { batch, it, scale in
                let input = PretrainBatch(views: [batch.images] + batch.extra, labels: batch.labels,
                                          draws: Draws.make(model, indices: batch.indices, epoch: epoch, seed: UInt64(spec.seed)))
                return PretrainStep.run(model, batch: input, ctx: Context(training: true, rng: modelRNG(it)), scale: scale,
                                        replicas: spec.dataParallel ? Parallel.threads : 1)
            }
            if let stopped = result.stoppedAt {
                return RunSummary(runDir: run.path, epochs: epoch, steps: stopped.step, finalLoss: stopped.loss, imagesPerSecond: 0,
                                  dataWaitShare: 0, seconds: Date().timeIntervalSince(started))
            }
            lastEpochLoss = result.meanLoss
            run.log(String(format: "epoch %d done: mean loss %.5f", epoch, lastEpochLoss), echo: echo)
            try loop.writeEpochCheckpoints(loop.checkpoint(epochsDone: epoch + 1), epochsDone: epoch + 1, numberFinal: true)
            if spec.log.pictures, let sample = try? pictureBatch(loader: loader, method: model) {
                try? model.writePictures(sample, ctx: Context(training: false, rng: modelRNG(-1)), to: run.path, suffix: "-\(epoch + 1)",
                                         mean: spec.data.mean.map(Float.init), std: spec.data.std.map(Float.init))
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let compute = Date().timeIntervalSince(totalComputeStart)
        let waitShare = (loader.waitSeconds - waitAtStart) / max(compute, 1e-9)
        let summary = RunSummary(runDir: run.path, epochs: spec.epochs, steps: spec.epochs * iters, finalLoss: lastEpochLoss,
                                 imagesPerSecond: Double(loop.totalImages) / max(compute, 1e-9), dataWaitShare: waitShare, seconds: seconds)
        try run.write("summary.json", jsonObject([
            "task": "pretrain", "method": spec.model.method.rawValue, "epochs": spec.epochs, "steps": summary.steps,
            "final_loss": summary.finalLoss, "images_per_s": summary.imagesPerSecond, "data_wait": waitShare,
            "seconds": seconds, "parameters": model.parameterCount, "skipped_images": loader.skippedCount,
        ]))
        if spec.log.pictures { try? Pictures.curves(metrics: run.file("metrics.jsonl"), to: run.file("curves.png")) }
        run.closeLogs()
        return summary
    }

    /// The first 8 images in evaluation transform with their epoch-0 draws, for the method's pictures
    /// (the same images and draws every epoch).
    func pictureBatch(loader: DataLoader, method: PretrainMethod) throws -> PretrainBatch {
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
        return PretrainBatch(views: [out], draws: Draws.make(method, indices: Array(0..<n), epoch: 0, seed: UInt64(spec.seed)))
    }
}
