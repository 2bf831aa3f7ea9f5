import Foundation
import TesseraConfig
import TesseraCore
import TesseraData

/// The epoch loop the pre-training and downstream runners share: the learning rate per optimizer
/// update, the forward pass the runner supplies, the stop on a non-finite loss, gradient accumulation
/// and clipping, the optimizer step, and the windowed metric lines (metrics.jsonl, progress bar or
/// plain log line).
final class TrainingLoop {
    let spec: ExperimentSpec
    let run: RunDirectory
    let model: Module
    let groups: [ParamGroup]
    let optimizer: Optimizer
    let schedule: LRSchedule
    let loader: DataLoader
    let echo: Bool
    let progress = ProgressLine()
    /// The newest checkpoint on disk, named in the non-finite-loss error.
    var lastCheckpointPath: String?
    /// Runs after every optimizer step with the epoch (pre-training: the method's `afterOptimizerStep`).
    var afterUpdate: ((Int) -> Void)?
    /// Images and iterations run by this process (not counting a resumed run's earlier part).
    private(set) var totalImages = 0
    private(set) var iterations = 0

    var itersPerEpoch: Int { loader.batchesPerEpoch }

    struct EpochResult {
        /// Mean loss over the iterations run.
        var meanLoss: Double
        /// Set when `stopAfterIterations` ended the epoch early: (global step, loss of that step).
        var stoppedAt: (step: Int, loss: Double)?
    }

    init(spec: ExperimentSpec, run: RunDirectory, model: Module, groups: [ParamGroup], optimizer: Optimizer,
         loader: DataLoader, echo: Bool, lastCheckpointPath: String?) {
        self.spec = spec
        self.run = run
        self.model = model
        self.groups = groups
        self.optimizer = optimizer
        self.schedule = OptimBuilder.schedule(spec)
        self.loader = loader
        self.echo = echo
        self.lastCheckpointPath = lastCheckpointPath
    }

    /// The shuffled, drop-last training loader of `spec`; throws when an epoch holds fewer batches
    /// than one accumulation group.
    static func trainingLoader(_ spec: ExperimentSpec) throws -> DataLoader {
        let dataset = try Registry.dataset(spec, train: true)
        // Each process reads its shard of every epoch's order (DistributedSampler: one permutation for
        // all ranks, padded to equal length); per-sample randomness stays a function of the index.
        let loader = DataLoader(dataset: dataset, pipeline: Registry.pipeline(spec, train: true), batchSize: spec.batchSize,
                                shuffle: true, dropLast: true, seed: UInt64(spec.seed), workers: spec.data.numWorkers,
                                rank: Distributed.rank, worldSize: Distributed.size)
        let iters = loader.batchesPerEpoch
        guard iters >= spec.accumIter else {
            throw TrainingError(description: "tessera: data set of \(dataset.count) images gives \(iters) batches of \(spec.batchSize) per epoch, fewer than accum_iter \(spec.accumIter)")
        }
        return loader
    }

    /// Runs one epoch. `step(batch, iteration, scale)` runs the forward pass, back-propagates
    /// scale × loss when the loss is finite (`Tensor.backwardIfFinite`) and returns the loss and the
    /// method's named terms; each term's window mean is logged beside the loss (metrics.jsonl, the
    /// progress line and the plain log line).
    /// Gradients left over from an incomplete accumulation group of the previous epoch are dropped,
    /// as MAE's train_one_epoch does (a checkpoint does not hold them, so resume could not).
    func epoch(_ epoch: Int, stopAfterIterations: Int? = nil, step: (Batch, Int, Float) throws -> StepResult) throws -> EpochResult {
        let iters = itersPerEpoch, accum = spec.accumIter
        var window = (loss: 0.0, count: 0, images: 0, start: Date(), wait: loader.waitSeconds)
        var termSums: [(name: String, sum: Double)] = []
        var epochLoss = 0.0, epochCount = 0
        var gradNorm: Float = 0
        var lr = 0.0
        let batches = loader.epoch(epoch)
        model.zeroGrad()
        var i = 0
        while let batch = batches.next() {
            let it = epoch * iters + i
            if i % accum == 0 { lr = schedule.value(iteration: it, itersPerEpoch: iters, accumIter: accum) }
            var result = try step(batch, it, accum > 1 ? 1 / Float(accum) : 1)
            if Distributed.isDistributed { result = Self.averagedOverRanks(result) }
            let lossValue = Double(result.loss)
            guard lossValue.isFinite else {
                progress.clear()
                batches.stop()
                throw TrainingError(description: "tessera: loss is \(lossValue) at epoch \(epoch), iteration \(it); stopped. "
                                    + "Last good checkpoint: \(lastCheckpointPath ?? "none")")
            }
            if (i + 1) % accum == 0 {
                if Distributed.isDistributed { averageGradientsOverRanks() }
                gradNorm = clipGradNorm(groups, maxNorm: spec.optim.clipGrad.map(Float.init))
                optimizer.step(lr: Float(lr), weightDecay: nil)
                afterUpdate?(epoch)
                model.zeroGrad()
            }
            let n = batch.images.shape[0]
            window.loss += lossValue; window.count += 1; window.images += n
            if termSums.isEmpty { termSums = result.terms.map { ($0.name, 0) } }
            for (i, t) in result.terms.enumerated() where i < termSums.count { termSums[i].sum += Double(t.value) }
            epochLoss += lossValue; epochCount += 1
            totalImages += n
            iterations += 1
            i += 1
            if i % max(spec.log.every, 1) == 0 || i == iters {
                let dt = max(Date().timeIntervalSince(window.start), 1e-9)
                let wait = (loader.waitSeconds - window.wait) / dt
                let ips = Double(window.images) / dt
                let meanLoss = window.loss / Double(window.count)
                let terms = termSums.map { ($0.name, $0.sum / Double(window.count)) }
                var fields: [(String, Any)] = [("epoch", epoch), ("step", it + 1), ("lr", lr), ("loss", meanLoss)]
                fields += terms.map { ($0.0, $0.1 as Any) }
                fields += [("grad_norm", Double(gradNorm)), ("images_per_s", ips), ("data_wait", wait),
                           ("peak_mib", Memory.peakResidentMiB())]
                run.logMetrics(fields)
                let termText = terms.map { String(format: "  %@ %.4f", $0.0, $0.1) }.joined()
                let remaining = Double((spec.epochs - epoch) * iters - i) * Double(spec.batchSize) / max(ips, 1e-9)
                progress.show(epoch: epoch, epochs: spec.epochs, step: i, total: iters, loss: meanLoss, terms: termText,
                              imagesPerSecond: ips, eta: remaining)
                if !progress.enabled && echo {
                    print(String(format: "epoch %d step %d/%d  loss %.4f%@  lr %.3e  grad %.3f  %.0f img/s  wait %.1f%%", epoch, i, iters,
                                 meanLoss, termText, lr, Double(gradNorm), ips, 100 * wait))
                }
                window = (0, 0, 0, Date(), loader.waitSeconds)
                for j in termSums.indices { termSums[j].sum = 0 }
            }
            if let stop = stopAfterIterations, iterations >= stop {
                batches.stop()
                progress.clear()
                return EpochResult(meanLoss: epochLoss / Double(epochCount), stoppedAt: (it + 1, lossValue))
            }
        }
        progress.clear()
        return EpochResult(meanLoss: epochLoss / Double(max(epochCount, 1)), stoppedAt: nil)
    }

    /// The loss and terms averaged over the ranks (equal shards, so the mean of the ranks' means is
    /// the mean over the global batch). A non-finite loss on any rank makes the average non-finite,
    /// so every rank stops at the same iteration.
    static func averagedOverRanks(_ r: StepResult) -> StepResult {
        var values = [Double(r.loss)] + r.terms.map { Double($0.value) }
        Distributed.sum(&values)
        let n = Double(Distributed.size)
        return StepResult(loss: Float(values[0] / n),
                          terms: r.terms.enumerated().map { ($0.element.name, Float(values[$0.offset + 1] / n)) })
    }

    /// After the local (thread-replica) reduction: every trainable gradient summed over the ranks in
    /// one allreduce and divided by their number, so clipping, the non-finite check and the step see
    /// the global gradient. A parameter without a gradient contributes zeros on that rank.
    func averageGradientsOverRanks() {
        Tessera.averageGradientsOverRanks(groups.flatMap { $0.params.map(\.tensor) })
    }
}

/// Every gradient of `params` summed over the ranks in one allreduce and divided by their number
/// (zeros for a parameter without a gradient), so all ranks step with the global mean gradient.
func averageGradientsOverRanks(_ params: [Tensor]) {
    let total = params.reduce(0) { $0 + $1.count }
    let flat = Tensor.zeros([total])
    var at = 0
    for p in params {
        if let g = p.grad { (flat.data + at).update(from: g.data, count: p.count) }
        at += p.count
    }
    Distributed.sum(flat.data, count: total)
    let scale = 1 / Float(Distributed.size)
    at = 0
    for p in params {
        if p.grad == nil { p.grad = Tensor.zeros(p.shape) }
        let g = p.grad!.data, src = flat.data + at
        for j in 0..<p.count { g[j] = src[j] * scale }
        at += p.count
    }
}

extension TrainingLoop {
    /// The checkpoint after `epochsDone` epochs: parameters and buffers, optimizer state, counters,
    /// seed, method and resolved config.
    func checkpoint(epochsDone: Int) -> Checkpoint {
        var ck = Checkpoint(params: Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor) }))
        ck.optimizer = optimizer.stateTensors()
        ck.epoch = epochsDone
        ck.step = epochsDone * itersPerEpoch
        ck.optimizerSteps = optimizer.steps
        ck.seed = UInt64(spec.seed)
        ck.method = spec.model.method.rawValue
        ck.config = spec.resolvedYAML()
        return ck
    }

    /// Writes checkpoint-last.h5 (when `checkpoint.write_last`) and, every `checkpoint.every` epochs,
    /// checkpoint-<epoch>.h5; the final epoch is numbered too when `numberFinal`. With
    /// `checkpoint.keep_last: N` only the newest N numbered files stay (deleted after the new one is
    /// in place; checkpoint-last.h5 and checkpoint-best.h5 are other files and always stay).
    func writeEpochCheckpoints(_ ck: Checkpoint, epochsDone: Int, numberFinal: Bool) throws {
        guard Distributed.isWriter else {
            lastCheckpointPath = run.lastCheckpoint
            return
        }
        if spec.checkpoint.writeLast {
            try ck.write(to: run.lastCheckpoint)
            lastCheckpointPath = run.lastCheckpoint
        }
        let final = epochsDone == spec.epochs
        let periodic = spec.checkpoint.every > 0 && epochsDone % spec.checkpoint.every == 0
        if final ? numberFinal : periodic {
            try ck.write(to: run.file("checkpoint-\(epochsDone).h5"))
            if spec.checkpoint.keepLast > 0 { pruneNumberedCheckpoints(keep: spec.checkpoint.keepLast) }
        }
    }

    /// Deletes all but the newest `keep` checkpoint-<epoch>.h5 files of the run directory.
    func pruneNumberedCheckpoints(keep: Int) {
        for old in run.numberedCheckpoints().dropFirst(keep) {
            try? FileManager.default.removeItem(atPath: old.path)
        }
    }
}
