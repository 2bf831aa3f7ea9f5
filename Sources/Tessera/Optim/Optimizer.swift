import TesseraCore

/// Parameters that share a weight decay and a learning-rate scale.
public struct ParamGroup {
    public var params: [(name: String, tensor: Tensor)]
    public var weightDecay: Float
    public var lrScale: Float
    public init(params: [(name: String, tensor: Tensor)], weightDecay: Float, lrScale: Float = 1) {
        self.params = params; self.weightDecay = weightDecay; self.lrScale = lrScale
    }
}

/// A per-parameter update rule with state that checkpoints by parameter name.
public protocol Optimizer: AnyObject {
    var groups: [ParamGroup] { get }
    /// Number of updates applied so far.
    var steps: Int { get set }
    /// Applies one update with learning rate `lr` (each group scales it) and weight-decay value `wd`
    /// for groups whose own decay is non-zero (nil keeps each group's value).
    func step(lr: Float, weightDecay wd: Float?)
    /// State tensors keyed "<param name>/<slot>" (e.g. "blocks.0.norm1.weight/exp_avg").
    func stateTensors() -> [String: Tensor]
    func loadState(_ state: [String: Tensor]) throws
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Per-parameter state buffers, created on first use.
final class SlotStore {
    var slots: [String: Tensor] = [:]
    func get(_ key: String, like t: Tensor, zero: Bool = true) -> (Tensor, fresh: Bool) {
        if let s = slots[key] { return (s, false) }
        let s = zero ? Tensor.zeros(t.shape) : Tensor(shape: t.shape)
        slots[key] = s
        return (s, true)
    }
    func load(_ state: [String: Tensor], expected groups: [ParamGroup], slotNames: [String]) throws {
        var out: [String: Tensor] = [:]
        let shapes = Dictionary(uniqueKeysWithValues: groups.flatMap { $0.params }.map { ($0.name, $0.tensor.shape) })
        for (key, t) in state {
            guard let slash = key.lastIndex(of: "/") else { continue }
            let name = String(key[..<slash]), slot = String(key[key.index(after: slash)...])
            guard slotNames.contains(slot) else { continue }
            guard let shape = shapes[name] else {
                throw OptimizerStateError(description: "tessera: optimizer state for '\(name)', which the model does not have")
            }
            guard shape == t.shape else {
                throw OptimizerStateError(description: "tessera: optimizer state '\(key)' has shape \(t.shape), parameter has \(shape)")
            }
            out[key] = t.clone()
        }
        slots = out
    }
}

/// Global L2 norm of all gradients; scales them down to `maxNorm` when given and exceeded
/// (torch.nn.utils.clip_grad_norm_, coefficient maxNorm / (norm + 1e-6)). Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ groups: [ParamGroup], maxNorm: Float?) -> Float {
    var total: Double = 0
    for g in groups { for (_, p) in g.params {
        guard let gr = p.grad else { continue }
        total += Double(Kernels.sumSquaredDeviations(gr.data, 0, gr.count))
    } }
    let norm = Float(total.squareRoot())
    if let maxNorm, norm.isFinite {
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            for g in groups { for (_, p) in g.params {
                guard let gr = p.grad else { continue }
                let d = gr.data
                for i in 0..<gr.count { d[i] *= coef }
            } }
        }
    }
    return norm
}

/// AdamW as torch.optim.AdamW: decoupled decay p ← p·(1 − lr·wd), then the bias-corrected Adam step.
public final class AdamW: Optimizer {
    public let groups: [ParamGroup]
    public var steps = 0
    public let beta1: Float, beta2: Float, eps: Float
    let store = SlotStore()

    public init(_ groups: [ParamGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8) {
        self.groups = groups; beta1 = betas.0; beta2 = betas.1; self.eps = eps
    }

    public func step(lr: Float, weightDecay wd: Float?) {
        steps += 1
        let bc1 = 1 - Float(Foundation.pow(Double(beta1), Double(steps)))
        let bc2 = 1 - Float(Foundation.pow(Double(beta2), Double(steps)))
        let b1 = beta1, b2 = beta2, eps = eps
        let invSqrtBc2 = 1 / bc2.squareRoot()
        for g in groups {
            let glr = lr * g.lrScale
            let decay = g.weightDecay == 0 ? 0 : (wd ?? g.weightDecay)
            let stepSize = glr / bc1
            for (name, p) in g.params {
                guard let grad = p.grad else { continue }
                let m = store.get(name + "/exp_avg", like: p).0, v = store.get(name + "/exp_avg_sq", like: p).0
                let pp = p.data, gp = grad.data, mp = m.data, vp = v.data
                let shrink = 1 - glr * decay
                Parallel.forRange(p.count, costPerItem: 8, minCost: 1 << 16) { r in
                    for i in r {
                        let gi = gp[i]
                        let mi = b1 * mp[i] + (1 - b1) * gi
                        let vi = b2 * vp[i] + (1 - b2) * gi * gi
                        mp[i] = mi; vp[i] = vi
                        pp[i] = pp[i] * shrink - stepSize * mi / (vi.squareRoot() * invSqrtBc2 + eps)
                    }
                }
            }
        }
    }

    public func stateTensors() -> [String: Tensor] { store.slots }
    public func loadState(_ state: [String: Tensor]) throws {
        try store.load(state, expected: groups, slotNames: ["exp_avg", "exp_avg_sq"])
    }
}

/// SGD with momentum as torch.optim.SGD (coupled decay g + wd·p; buffer starts as the first
/// gradient; Nesterov uses g + m·buf).
public final class SGD: Optimizer {
    public let groups: [ParamGroup]
    public var steps = 0
    public let momentum: Float, nesterov: Bool
    let store = SlotStore()

    public init(_ groups: [ParamGroup], momentum: Float = 0.9, nesterov: Bool = false) {
        self.groups = groups; self.momentum = momentum; self.nesterov = nesterov
    }

    public func step(lr: Float, weightDecay wd: Float?) {
        steps += 1
        for g in groups {
            let glr = lr * g.lrScale
            let decay = g.weightDecay == 0 ? 0 : (wd ?? g.weightDecay)
            for (name, p) in g.params {
                guard let grad = p.grad else { continue }
                let pp = p.data, gp = grad.data
                if momentum == 0 {
                    for i in 0..<p.count { pp[i] -= glr * (gp[i] + decay * pp[i]) }
                    continue
                }
                let (buf, fresh) = store.get(name + "/momentum_buffer", like: p)
                let bp = buf.data, m = momentum
                for i in 0..<p.count {
                    let d = gp[i] + decay * pp[i]
                    let b = fresh ? d : m * bp[i] + d
                    bp[i] = b
                    pp[i] -= glr * (nesterov ? d + m * b : b)
                }
            }
        }
    }

    public func stateTensors() -> [String: Tensor] { store.slots }
    public func loadState(_ state: [String: Tensor]) throws {
        try store.load(state, expected: groups, slotNames: ["momentum_buffer"])
    }
}

/// LARS as in MAE's util/lars.py (MoCo v3): parameters with more than one dimension get
/// d = g + wd·p scaled by trust·‖p‖/‖d‖ (when both norms are positive); 1-D parameters get plain
/// momentum. buf ← m·buf + d (zero start); p ← p − lr·buf.
public final class LARS: TrustMomentumOptimizer, Optimizer {
    public init(_ groups: [ParamGroup], momentum: Float = 0.9, trustCoefficient: Float = 0.001) {
        super.init(groups, momentum: momentum, trustCoefficient: trustCoefficient, slot: "mu")
    }

    public func step(lr: Float, weightDecay wd: Float?) {
        steps += 1
        for g in groups {
            let glr = lr * g.lrScale
            let decay = wd ?? g.weightDecay
            for (name, p) in g.params {
                guard let grad = p.grad else { continue }
                let n = p.count, pp = p.data, gp = grad.data
                let d = Tensor(shape: p.shape)
                let dp = d.data
                if p.rank > 1 {
                    var pn: Double = 0, dn: Double = 0
                    for i in 0..<n {
                        dp[i] = gp[i] + decay * pp[i]
                        pn += Double(pp[i] * pp[i]); dn += Double(dp[i] * dp[i])
                    }
                    let q: Float = pn > 0 && dn > 0 ? trust * Float(pn.squareRoot() / dn.squareRoot()) : 1
                    for i in 0..<n { dp[i] *= q }
                } else {
                    dp.update(from: gp, count: n)
                }
                let buf = store.get(name + "/mu", like: p).0
                let bp = buf.data
                for i in 0..<n {
                    bp[i] = momentum * bp[i] + dp[i]
                    pp[i] -= glr * bp[i]
                }
            }
        }
    }

}

import Foundation

/// MAE-priv's LARS (a timm copy, spec §7.2): with weight decay 0 (the shipped configs) it is momentum
/// SGD whose buffer starts as the first gradient; otherwise every parameter's gradient is scaled by
/// trust·‖p‖ / (‖g‖ + wd·‖p‖ + 1e-8) before the momentum step (the decay term itself has no effect
/// in the original and is not added).
public final class TimmLARS: TrustMomentumOptimizer, Optimizer {
    public init(_ groups: [ParamGroup], momentum: Float = 0.9, trustCoefficient: Float = 0.001) {
        super.init(groups, momentum: momentum, trustCoefficient: trustCoefficient, slot: "momentum_buffer")
    }

    public func step(lr: Float, weightDecay wd: Float?) {
        steps += 1
        for g in groups {
            let glr = lr * g.lrScale
            let decay = wd ?? g.weightDecay
            for (name, p) in g.params {
                guard let grad = p.grad else { continue }
                let n = p.count, pp = p.data, gp = grad.data
                var q: Float = 1
                if decay != 0 {
                    var pn: Double = 0, gn: Double = 0
                    for i in 0..<n { pn += Double(pp[i] * pp[i]); gn += Double(gp[i] * gp[i]) }
                    let wn = Float(pn.squareRoot()), gnorm = Float(gn.squareRoot())
                    if wn > 0 && gnorm > 0 { q = trust * wn / (gnorm + decay * wn + 1e-8) }
                }
                let (buf, fresh) = store.get(name + "/momentum_buffer", like: p)
                let bp = buf.data
                for i in 0..<n {
                    let d = q * gp[i]
                    bp[i] = fresh ? d : momentum * bp[i] + d
                    pp[i] -= glr * bp[i]
                }
            }
        }
    }

}

/// What the two LARS variants share: parameter groups, the update count, a momentum buffer per
/// parameter (checkpointed under `slot`), momentum and trust coefficient.
public class TrustMomentumOptimizer {
    public let groups: [ParamGroup]
    public var steps = 0
    public let momentum: Float, trust: Float
    let store = SlotStore()
    let slot: String

    init(_ groups: [ParamGroup], momentum: Float, trustCoefficient: Float, slot: String) {
        self.groups = groups; self.momentum = momentum; trust = trustCoefficient; self.slot = slot
    }

    public func stateTensors() -> [String: Tensor] { store.slots }
    public func loadState(_ state: [String: Tensor]) throws { try store.load(state, expected: groups, slotNames: [slot]) }
}
