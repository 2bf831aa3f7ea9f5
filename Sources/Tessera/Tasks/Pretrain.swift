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
    /// True when the run directory already held the finished run and nothing was done.
    public var alreadyComplete = false
}

extension RunSummary {
    /// The summary of a finished run from its summary.json.
    init(finished run: RunDirectory) throws {
        let s = try readSummary(run)
        self.init(runDir: run.path, epochs: s["epochs"] as? Int ?? 0, steps: s["steps"] as? Int ?? 0,
                  finalLoss: s["final_loss"] as? Double ?? .nan, imagesPerSecond: s["images_per_s"] as? Double ?? 0,
                  dataWaitShare: s["data_wait"] as? Double ?? 0, seconds: s["seconds"] as? Double ?? 0, alreadyComplete: true)
    }
}

/// A run directory's summary.json as a dictionary. Under several processes only rank 0 reads it (the
/// others, which neither print nor write, get an empty one: they may not see rank 0's files).
func readSummary(_ run: RunDirectory) throws -> [String: Any] {
    guard Distributed.isWriter else { return [:] }
    let path = run.file("summary.json")
    guard let data = FileManager.default.contents(atPath: path),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TrainingError(description: "tessera: \(path) is not a readable JSON object")
    }
    return object
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
        run = RunDirectory(path: runDir ?? (spec.outputDir as NSString).appendingPathComponent(spec.name))
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
        try MemoryBound.check(spec)
        var initRNG = RandomGenerator(seed: UInt64(spec.seed))
        let model = try (buildMethod ?? Registry.method(spec.model.method.rawValue).build)(spec, &initRNG)
        let groups = OptimBuilder.pretrainGroups(spec, model)
        let opt = OptimBuilder.optimizer(spec, groups)

        let loader = try TrainingLoop.trainingLoader(spec)
        let dataset = loader.dataset, iters = loader.batchesPerEpoch
        let explicit = try explicitResumePoint(spec, model: model, optimizer: opt)

        // Everything is checked; only now is the run directory touched.
        let opening = try run.open(spec: spec, overrides: overrides, echo: echo)
        defer { run.release() }
        if opening == .complete { return try RunSummary(finished: run) }
        let resumed = try resumeOrStart(spec: spec, run: run, opening: opening, explicit: explicit, model: model, optimizer: opt,
                                        overrides: overrides, echo: echo)
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
            if spec.log.pictures, Distributed.isWriter, let sample = try? pictureBatch(loader: loader, method: model) {
                try? model.writePictures(sample, ctx: Context(training: false, rng: modelRNG(-1)), to: run.path, suffix: "-\(epoch + 1)",
                                         mean: spec.data.mean.map(Float.init), std: spec.data.std.map(Float.init))
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let compute = Date().timeIntervalSince(totalComputeStart)
        let waitShare = (loader.waitSeconds - waitAtStart) / max(compute, 1e-9)
        let summary = RunSummary(runDir: run.path, epochs: spec.epochs, steps: spec.epochs * iters, finalLoss: lastEpochLoss,
                                 imagesPerSecond: Double(loop.totalImages) / max(compute, 1e-9), dataWaitShare: waitShare, seconds: seconds)
        if spec.log.pictures && Distributed.isWriter { try? Pictures.curves(metrics: run.file("metrics.jsonl"), to: run.file("curves.png")) }
        try run.write("summary.json", JSON.object([
            "task": "pretrain", "method": spec.model.method.rawValue, "epochs": spec.epochs, "steps": summary.steps,
            "final_loss": summary.finalLoss, "images_per_s": summary.imagesPerSecond, "data_wait": waitShare,
            "seconds": seconds, "parameters": model.parameterCount, "skipped_images": loader.skippedCount,
            "skipped_samples": loader.skippedSamples, "batch_size": spec.batchSize, "accum_iter": spec.accumIter,
            "effective_batch": spec.effectiveBatch, "processes": ExperimentSpec.worldSize, "peak_memory_mib": Memory.peakResidentMiB(),
        ]))
        return summary
    }

    /// The first 8 images in evaluation transform with their epoch-0 draws, for the method's pictures
    /// (the same images and draws every epoch).
    func pictureBatch(loader: DataLoader, method: PretrainMethod) throws -> PretrainBatch {
        let ds = loader.dataset
        return try Visualize.batch(images: (0..<min(8, ds.count)).map { try ds.sample($0).image }, spec: spec, method: method)
    }
}

/// `tessera visualize`: a method's pictures (MAE reconstructions, SAIM/SemAIM orders and attention,
/// CAE reconstructions) of chosen images with the weights of a checkpoint.
public enum Visualize {
    /// `images` in the evaluation transform of `spec`, with the draws of samples 0..<n at epoch 0.
    static func batch(images: [Image], spec: ExperimentSpec, method: PretrainMethod) throws -> PretrainBatch {
        var pipe = Registry.pipeline(spec, train: false)
        pipe.eval = true
        let shape = pipe.outputShape
        let out = Tensor(shape: [images.count] + shape)
        var rng = RandomGenerator(seed: 0)
        for (i, img) in images.enumerated() {
            pipe.apply(img, rng: &rng, into: out.data + i * shape.reduce(1, *))
        }
        return PretrainBatch(views: [out], draws: Draws.make(method, indices: Array(images.indices), epoch: 0, seed: UInt64(spec.seed)))
    }

    /// Builds the method of `spec`, loads `weights` (a pre-training checkpoint), decodes the JPEGs
    /// and writes the method's pictures into `out`. Returns the files written.
    @discardableResult
    public static func run(spec: ExperimentSpec, weights: String, images: [String], out: String) throws -> [String] {
        guard !images.isEmpty else { throw TrainingError(description: "tessera: visualize needs at least one image (--images A.jpg ...)") }
        try MemoryBound.check(spec)
        var rng = RandomGenerator(seed: UInt64(spec.seed))
        let method = try Registry.method(spec.model.method.rawValue).build(spec, &rng)
        try loadWeights(into: method, from: weights)
        let decoder = JPEGDecoder(maxPixels: spec.data.maxImagePixels)
        let decoded = try images.map { try decoder.decode(file: $0) }
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(description: "tessera: cannot create \(out): \(RunDirectory.reason(error))")
        }
        let started = Date(timeIntervalSinceNow: -1)
        let b = try batch(images: decoded, spec: spec, method: method)
        try method.writePictures(b, ctx: Context(training: false, rng: RandomGenerator(seed: UInt64(spec.seed))), to: out, suffix: "",
                                 mean: spec.data.mean.map(Float.init), std: spec.data.std.map(Float.init))
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).map { (out as NSString).appendingPathComponent($0) }
        return files.filter { path in
            let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            return (modified ?? .distantPast) >= started
        }.sorted()
    }
}
