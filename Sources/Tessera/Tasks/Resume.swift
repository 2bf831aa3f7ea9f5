import Foundation
import TesseraConfig
import TesseraCore

/// A checkpoint chosen to continue from, read and checked before anything is written.
struct ResumePoint {
    var path: String
    var checkpoint: Checkpoint
}

/// Reads the checkpoint an explicit `resume: PATH` names and loads it into the model and optimizer
/// before the run directory is opened, so a bad file stops the run before anything is written. Nil
/// for the other resume modes.
func explicitResumePoint(_ spec: ExperimentSpec, model: Module, optimizer: Optimizer) throws -> ResumePoint? {
    guard case .path(let p) = spec.resume else { return nil }
    let point = ResumePoint(path: p, checkpoint: try Checkpoint.readOnEveryRank(p))
    try restore(point, spec: spec, model: model, optimizer: optimizer)
    return point
}

/// Loads a checkpoint's parameters, buffers and optimizer state (strict: the same model).
func restore(_ point: ResumePoint, spec: ExperimentSpec, model: Module, optimizer: Optimizer) throws {
    let ck = point.checkpoint
    if ck.epoch > spec.epochs {
        throw CheckpointError(description: "tessera: \(point.path) holds \(ck.epoch) epochs, more than epochs: \(spec.epochs)")
    }
    if let bad = ck.params.first(where: { !$0.value.allFinite })?.key {
        throw CheckpointError(description: "tessera: \(point.path): tensor \(bad) holds NaN or infinite values")
    }
    do {
        try model.load(state: ck.params, strict: true)
        try optimizer.loadState(ck.optimizer)
    } catch {
        throw CheckpointError(description: "tessera: cannot resume from \(point.path): \(error)")
    }
    optimizer.steps = ck.optimizerSteps
}

/// The run directory's own checkpoint to continue from: checkpoint-last.h5, or, when that file
/// cannot be read (a truncated copy), the newest numbered checkpoint that can, with a log line
/// saying so. Nil when the directory holds no checkpoint.
///
/// Several processes: rank 0, the only one that writes the directory, chooses the file, and every
/// rank reads its bytes from rank 0 (`Checkpoint.readOnEveryRank`), so no rank needs to see the
/// directory itself.
func directoryResumePoint(_ run: RunDirectory, echo: Bool) throws -> ResumePoint? {
    guard Distributed.isDistributed else { return try localDirectoryResumePoint(run, echo: echo) }
    let chosen = Distributed.isWriter ? try localDirectoryResumePoint(run, echo: echo)?.path ?? "" : ""
    let path = Distributed.broadcast(chosen)
    return path.isEmpty ? nil : ResumePoint(path: path, checkpoint: try Checkpoint.readOnEveryRank(path))
}

private func localDirectoryResumePoint(_ run: RunDirectory, echo: Bool) throws -> ResumePoint? {
    let numbered = run.numberedCheckpoints()
    guard FileManager.default.fileExists(atPath: run.lastCheckpoint) else {
        // Only numbered files (checkpoint.write_last: false): the newest one.
        guard let newest = numbered.first else { return nil }
        return ResumePoint(path: newest.path, checkpoint: try Checkpoint.read(newest.path))
    }
    do {
        return ResumePoint(path: run.lastCheckpoint, checkpoint: try Checkpoint.read(run.lastCheckpoint))
    } catch {
        for (_, path) in numbered {
            guard let ck = try? Checkpoint.read(path) else { continue }
            run.log("warning: \(run.lastCheckpoint) cannot be read (\(error)); resuming from \(path), the newest intact numbered checkpoint",
                    echo: echo)
            return ResumePoint(path: path, checkpoint: ck)
        }
        throw CheckpointError(description: "\(error); no intact numbered checkpoint beside it to fall back to "
                              + "(--set resume=restart moves the run aside and starts again)")
    }
}

/// Where a training run starts, once `run.open` has taken the directory: from `explicit` (already
/// restored by `explicitResumePoint`) or the run directory's checkpoint (auto), restoring model,
/// optimizer and metric lines, or afresh (writing config.yaml, overrides.txt and meta.json).
/// Returns the checkpoint path resumed from, its completed epochs and iterations.
func resumeOrStart(spec: ExperimentSpec, run: RunDirectory, opening: RunDirectory.Opening, explicit: ResumePoint?,
                   model: Module, optimizer: Optimizer, overrides: [String], echo: Bool) throws -> (path: String?, epoch: Int, step: Int) {
    let point: ResumePoint?
    switch spec.resume {
    case .none, .restart: point = nil
    case .auto: point = opening == .resume ? try directoryResumePoint(run, echo: echo) : nil
    case .path: point = explicit
    }
    guard let point else {
        try run.start(resolvedConfig: spec.resolvedYAML(), overrides: overrides)
        // A run killed before its first checkpoint starts again from step 0: drop its metric lines.
        try run.truncateMetrics(toStep: 0)
        return (nil, 0, 0)
    }
    let ck = point.checkpoint
    if explicit == nil { try restore(point, spec: spec, model: model, optimizer: optimizer) }
    // A fresh directory resumed from an explicit checkpoint still records its config and metadata.
    if !FileManager.default.fileExists(atPath: run.file("config.yaml")) {
        try run.start(resolvedConfig: spec.resolvedYAML(), overrides: overrides)
    }
    try run.truncateMetrics(toStep: ck.step)
    run.log("resumed from \(point.path) at epoch \(ck.epoch) (iteration \(ck.step))", echo: echo)
    return (point.path, ck.epoch, ck.step)
}
