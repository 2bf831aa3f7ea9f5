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

/// The loop every optimizer shares: one update count, per-parameter state, and the sweep over
/// groups and over the parameters that have a gradient, with each group's learning rate and decay.
/// An optimizer writes only `update` (and, when it has one, `beginStep` and its decay rule).
public class OptimizerBase {
    public let groups: [ParamGroup]
    public var steps = 0
    let store = SlotStore()
    /// The state slots this optimizer keeps per parameter (checkpoint keys "<name>/<slot>").
    let slotNames: [String]

    init(_ groups: [ParamGroup], slots: [String]) {
        self.groups = groups
        self.slotNames = slots
    }

    /// Called once per step after `steps` is incremented (bias corrections).
    func beginStep() {}

    /// The decay applied to a group: zero for no-decay groups, else `wd` or the group's own value.
    func decay(for group: ParamGroup, _ wd: Float?) -> Float { group.weightDecay == 0 ? 0 : (wd ?? group.weightDecay) }

    /// Updates parameter `p` named `name` from its gradient with learning rate `lr` and decay `decay`.
    func update(_ name: String, _ p: Tensor, grad: Tensor, lr: Float, decay: Float) {
        preconditionFailure("tessera: \(type(of: self)) does not implement update")
    }

    public func step(lr: Float, weightDecay wd: Float?) {
        steps += 1
        beginStep()
        for g in groups {
            let glr = lr * g.lrScale, decay = decay(for: g, wd)
            for (name, p) in g.params {
                guard let grad = p.grad else { continue }
                update(name, p, grad: grad, lr: glr, decay: decay)
            }
        }
    }

    public func stateTensors() -> [String: Tensor] { store.slots }
    public func loadState(_ state: [String: Tensor]) throws { try store.load(state, expected: groups, slotNames: slotNames) }
}

/// AdamW as torch.optim.AdamW: decoupled decay p ← p·(1 − lr·wd), then the bias-corrected Adam step.
public final class AdamW: OptimizerBase, Optimizer {
    public let beta1: Float, beta2: Float, eps: Float
    private var bc1: Float = 1, invSqrtBc2: Float = 1

    public init(_ groups: [ParamGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8) {
        beta1 = betas.0; beta2 = betas.1; self.eps = eps
        super.init(groups, slots: ["exp_avg", "exp_avg_sq"])
    }

    override func beginStep() {
        bc1 = 1 - Float(Foundation.pow(Double(beta1), Double(steps)))
        invSqrtBc2 = 1 / (1 - Float(Foundation.pow(Double(beta2), Double(steps)))).squareRoot()
    }

    override func update(_ name: String, _ p: Tensor, grad: Tensor, lr: Float, decay: Float) {
        let m = store.get(name + "/exp_avg", like: p).0, v = store.get(name + "/exp_avg_sq", like: p).0
        let pp = p.data, gp = grad.data, mp = m.data, vp = v.data
        let b1 = beta1, b2 = beta2, eps = eps, invSqrtBc2 = invSqrtBc2
        let shrink = 1 - lr * decay, stepSize = lr / bc1
        Parallel.forRange(p.count, costPerItem: 8, minCost: 1 << 16) { r in
            // 16 floats at a time in explicit vectors (the scalar loop was not vectorised: it ran one
            // square root and one division per element); each lane does the scalar tail's operations
            // in the same order, so the result does not depend on where a range starts.
            typealias V = SIMD16<Float>
            var i = r.lowerBound
            while i + 16 <= r.upperBound {
                let g = UnsafeRawPointer(gp + i).loadUnaligned(as: V.self)
                let m = V(repeating: b1) * UnsafeRawPointer(mp + i).loadUnaligned(as: V.self) + V(repeating: 1 - b1) * g
                let v = V(repeating: b2) * UnsafeRawPointer(vp + i).loadUnaligned(as: V.self) + V(repeating: 1 - b2) * g * g
                UnsafeMutableRawPointer(mp + i).storeBytes(of: m, as: V.self)
                UnsafeMutableRawPointer(vp + i).storeBytes(of: v, as: V.self)
                let x = UnsafeRawPointer(pp + i).loadUnaligned(as: V.self)
                let step = V(repeating: stepSize) * m / (v.squareRoot() * V(repeating: invSqrtBc2) + V(repeating: eps))
                UnsafeMutableRawPointer(pp + i).storeBytes(of: x * V(repeating: shrink) - step, as: V.self)
                i += 16
            }
            while i < r.upperBound {
                let gi = gp[i]
                let mi = b1 * mp[i] + (1 - b1) * gi
                let vi = b2 * vp[i] + (1 - b2) * gi * gi
                mp[i] = mi; vp[i] = vi
                pp[i] = pp[i] * shrink - stepSize * mi / (vi.squareRoot() * invSqrtBc2 + eps)
                i += 1
            }
        }
    }
}

/// SGD with momentum as torch.optim.SGD (coupled decay g + wd·p; buffer starts as the first
/// gradient; Nesterov uses g + m·buf).
public final class SGD: OptimizerBase, Optimizer {
    public let momentum: Float, nesterov: Bool

    public init(_ groups: [ParamGroup], momentum: Float = 0.9, nesterov: Bool = false) {
        self.momentum = momentum; self.nesterov = nesterov
        super.init(groups, slots: ["momentum_buffer"])
    }

    override func update(_ name: String, _ p: Tensor, grad: Tensor, lr: Float, decay: Float) {
        let pp = p.data, gp = grad.data
        if momentum == 0 {
            for i in 0..<p.count { pp[i] -= lr * (gp[i] + decay * pp[i]) }
            return
        }
        let (buf, fresh) = store.get(name + "/momentum_buffer", like: p)
        let bp = buf.data, m = momentum
        for i in 0..<p.count {
            let d = gp[i] + decay * pp[i]
            let b = fresh ? d : m * bp[i] + d
            bp[i] = b
            pp[i] -= lr * (nesterov ? d + m * b : b)
        }
    }
}

/// LARS as in MAE's util/lars.py (MoCo v3): parameters with more than one dimension get
/// d = g + wd·p scaled by trust·‖p‖/‖d‖ (when both norms are positive); 1-D parameters get plain
/// momentum. buf ← m·buf + d (zero start); p ← p − lr·buf.
public final class LARS: OptimizerBase, Optimizer {
    public let momentum: Float, trust: Float

    public init(_ groups: [ParamGroup], momentum: Float = 0.9, trustCoefficient: Float = 0.001) {
        self.momentum = momentum; trust = trustCoefficient
        super.init(groups, slots: ["mu"])
    }

    override func decay(for group: ParamGroup, _ wd: Float?) -> Float { wd ?? group.weightDecay }

    override func update(_ name: String, _ p: Tensor, grad: Tensor, lr: Float, decay: Float) {
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
        let bp = store.get(name + "/mu", like: p).0.data
        for i in 0..<n {
            bp[i] = momentum * bp[i] + dp[i]
            pp[i] -= lr * bp[i]
        }
    }
}

import Foundation

/// MAE-priv's LARS (a timm copy, spec §7.2): with weight decay 0 (the shipped configs) it is momentum
/// SGD whose buffer starts as the first gradient; otherwise every parameter's gradient is scaled by
/// trust·‖p‖ / (‖g‖ + wd·‖p‖ + 1e-8) before the momentum step (the decay term itself has no effect
/// in the original and is not added).
public final class TimmLARS: OptimizerBase, Optimizer {
    public let momentum: Float, trust: Float

    public init(_ groups: [ParamGroup], momentum: Float = 0.9, trustCoefficient: Float = 0.001) {
        self.momentum = momentum; trust = trustCoefficient
        super.init(groups, slots: ["momentum_buffer"])
    }

    override func decay(for group: ParamGroup, _ wd: Float?) -> Float { wd ?? group.weightDecay }

    override func update(_ name: String, _ p: Tensor, grad: Tensor, lr: Float, decay: Float) {
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
            pp[i] -= lr * bp[i]
        }
    }
}
