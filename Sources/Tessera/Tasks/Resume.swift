import Foundation
import TesseraConfig
import TesseraCore

/// Where a training run starts: from the checkpoint `resume` names (auto: the run directory's
/// checkpoint-last.h5 when present), restoring model, optimizer and metric lines, or afresh.
/// Returns the checkpoint path resumed from, its completed epochs and iterations.
func resumeOrStart(spec: ExperimentSpec, run: RunDirectory, model: Module, optimizer: Optimizer,
                   overrides: [String], echo: Bool) throws -> (path: String?, epoch: Int, step: Int) {
    let path: String?
    switch spec.resume {
    case .none: path = nil
    case .auto: path = FileManager.default.fileExists(atPath: run.lastCheckpoint) ? run.lastCheckpoint : nil
    case .path(let p): path = p
    }
    guard let path else {
        try run.start(resolvedConfig: spec.resolvedYAML(), overrides: overrides)
        // A run killed before its first checkpoint starts again from step 0: drop its metric lines.
        try run.truncateMetrics(toStep: 0)
        return (nil, 0, 0)
    }
    let ck = try Checkpoint.read(path)
    try model.load(state: ck.params, strict: true)
    try optimizer.loadState(ck.optimizer)
    optimizer.steps = ck.optimizerSteps
    // A fresh directory resumed from an explicit checkpoint still records its config and metadata.
    if !FileManager.default.fileExists(atPath: run.file("config.yaml")) {
        try run.start(resolvedConfig: spec.resolvedYAML(), overrides: overrides)
    }
    try run.truncateMetrics(toStep: ck.step)
    run.log("resumed from \(path) at epoch \(ck.epoch) (iteration \(ck.step))", echo: echo)
    return (path, ck.epoch, ck.step)
}
