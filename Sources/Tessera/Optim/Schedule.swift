import Foundation

/// Learning-rate schedules as pure functions of the iteration (spec §8.3).
public enum LRSchedule: Sendable, Equatable {
    /// MAE util/lr_sched.py: linear warmup from 0 over `warmup` epochs, then half-cosine to `minLR`,
    /// evaluated at the fractional epoch e = epoch + it / itersPerEpoch.
    case mae(base: Double, minLR: Double, warmupEpochs: Double, epochs: Double)
    /// BEiT / MAE-priv / CAE cosine_scheduler: a per-iteration array, linspace(0, base) over the
    /// warmup iterations (endpoints included), then final + ½(base − final)(1 + cos(π i / N)).
    case beit(base: Double, final: Double, warmupEpochs: Int, epochs: Int)
    case constant(Double)

    /// The learning rate for training iteration `iteration` (0-based, `iters` per epoch) when
    /// `accumIter` iterations make one update: the MAE style reads the fractional epoch of the
    /// iteration, the BEiT array is indexed by update.
    public func value(iteration it: Int, itersPerEpoch iters: Int, accumIter: Int) -> Double {
        if case .beit = self { return value(step: it / accumIter, itersPerEpoch: iters / accumIter) }
        return value(step: it, itersPerEpoch: iters)
    }

    /// The learning rate at global iteration `step` (0-based) with `iters` iterations per epoch.
    public func value(step: Int, itersPerEpoch iters: Int) -> Double {
        switch self {
        case .constant(let v):
            return v
        case let .mae(base, minLR, warmup, epochs):
            let e = Double(step) / Double(max(iters, 1))
            if e < warmup { return base * e / warmup }
            let t = (e - warmup) / max(epochs - warmup, 1e-12)
            return minLR + (base - minLR) * 0.5 * (1 + cos(Double.pi * t))
        case let .beit(base, final, warmupEpochs, epochs):
            let warm = warmupEpochs * iters
            if step < warm {
                return warm == 1 ? 0 : base * Double(step) / Double(warm - 1)
            }
            let n = epochs * iters - warm
            let i = min(step - warm, max(n - 1, 0))
            return final + 0.5 * (base - final) * (1 + cos(Double.pi * Double(i) / Double(max(n, 1))))
        }
    }
}
