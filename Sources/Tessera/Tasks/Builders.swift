import Foundation
import TesseraConfig
import TesseraCore

/// Optimizer and schedule construction from a spec.
public enum OptimBuilder {
    /// Weight-decay groups for pre-training (MAE-priv also exempts its mask token, spec §8.1).
    public static func pretrainGroups(_ spec: ExperimentSpec, _ model: Module) -> [ParamGroup] {
        let skip: Set<String> = spec.model.method == .maePriv ? ["mask_token"] : []
        return ParamGroups.pretrain(model.namedParameters(), weightDecay: Float(spec.optim.weightDecay), skip: skip)
    }

    public static func optimizer(_ spec: ExperimentSpec, _ groups: [ParamGroup]) -> Optimizer {
        let o = spec.optim
        switch o.name {
        case .adamw:
            let b = o.betas.count == 2 ? (Float(o.betas[0]), Float(o.betas[1])) : (0.9, 0.999)
            return AdamW(groups, betas: b, eps: Float(o.eps))
        case .sgd:
            return SGD(groups, momentum: Float(o.momentum), nesterov: o.nesterov)
        case .lars:
            return LARS(groups, momentum: Float(o.momentum), trustCoefficient: Float(o.trustCoefficient))
        case .larsTimm:
            return TimmLARS(groups, momentum: Float(o.momentum), trustCoefficient: Float(o.trustCoefficient))
        }
    }

    /// The learning-rate schedule; `updatesPerEpoch` counts optimizer updates (BEiT style) or
    /// iterations (MAE style evaluates on fractional epochs).
    public static func schedule(_ spec: ExperimentSpec) -> LRSchedule {
        let s = spec.schedule
        switch s.style {
        case .mae:
            return .mae(base: spec.absoluteLR, minLR: s.minLR, warmupEpochs: Double(s.warmupEpochs), epochs: Double(spec.epochs))
        case .beit:
            return .beit(base: spec.absoluteLR, final: s.minLR, warmupEpochs: s.warmupEpochs, epochs: spec.epochs)
        }
    }
}

/// The memory bound checked before any model is built: a config whose weights (and, when trained,
/// gradients and two optimizer moments) cannot fit in this machine's memory stops with one line
/// naming the size keys, instead of failing an allocation mid-build. Frozen-encoder tasks (k-NN,
/// linear and attentive probes) count the weights only.
public enum MemoryBound {
    /// An estimate of the parameter count from the size keys (blocks, patch and position tables,
    /// decoder); the order of magnitude is what matters.
    public static func parameters(_ spec: ExperimentSpec) -> Double {
        let m = spec.model
        let blocks = Double(m.depth + (m.method == .saim || m.method == .semaim ? m.depth / max(m.queryDepth, 1) : 0))
        let w = Double(m.width), hidden = max(1, (w * m.mlpRatio).rounded(.down))
        let side = Double(m.imgSize / max(m.patchSize, 1))
        return blocks * (4 * w * w + 2 * w * hidden) + w * (Double(m.inChans * m.patchSize * m.patchSize) + side * side + 1)
            + Double(m.decoder.depth) * 12 * Double(m.decoder.width) * Double(m.decoder.width)
    }

    public static func check(_ spec: ExperimentSpec, memory: Double = Double(ProcessInfo.processInfo.physicalMemory)) throws {
        let trained = spec.task == .pretrain || spec.task == .finetune
        let params = parameters(spec), bytes = params * (trained ? 16 : 4)
        guard bytes > memory else { return }
        throw TrainingError(description: String(
            format: "tessera: model.width %d, model.depth %d, model.mlp_ratio %g: about %.3g parameters, %.1f GiB%@; this machine has %.1f GiB",
            spec.model.width, spec.model.depth, spec.model.mlpRatio, params, bytes / 1_073_741_824,
            trained ? " with gradients and optimizer state" : "", memory / 1_073_741_824))
    }
}
