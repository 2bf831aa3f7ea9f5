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
