/// Modules: a parameter tree with PyTorch dotted names (`blocks.3.attn.qkv.weight`).

/// Per-forward state: training mode and the generator for dropout and drop-path.
public final class Context {
    public var training: Bool
    public var rng: RandomGenerator
    /// The caller reads only the loss (and its gradients), not a method's other outputs, so a method
    /// may skip rows no loss term reads: MAE then runs its last decoder block, norm and prediction
    /// head on the removed patches only and returns no prediction. Same loss and gradients, within
    /// float rounding. The training step sets it; parity checks and pictures leave it off.
    public var lossOnly = false

    public init(training: Bool, rng: RandomGenerator = RandomGenerator(seed: 0)) {
        self.training = training
        self.rng = rng
    }
}

/// A node of the parameter tree. Subclasses register parameters, buffers and children by name.
open class Module {
    public private(set) var parameterList: [(String, Tensor)] = []
    public private(set) var bufferList: [(String, Tensor)] = []
    public private(set) var childList: [(String, Module)] = []
    /// Second names of modules already registered elsewhere in the tree (`alias`).
    public private(set) var aliasList: [(String, Module)] = []
    /// A frozen module (`freeze`) is left out of its parents' parameters and state dict.
    public private(set) var isFrozen = false
    /// A frozen module kept in checkpoints as buffers (`keepAsState`).
    public private(set) var savedWhileFrozen = false

    public init() {}

    /// Registers a trainable tensor (it gets a gradient slot).
    @discardableResult
    public func parameter(_ name: String, _ t: Tensor) -> Tensor {
        t.requiringGrad()
        parameterList.append((name, t))
        return t
    }

    /// Registers a fixed tensor stored in checkpoints (sin-cos tables, BatchNorm running stats).
    @discardableResult
    public func buffer(_ name: String, _ t: Tensor) -> Tensor {
        bufferList.append((name, t))
        return t
    }

    @discardableResult
    public func child<M: Module>(_ name: String, _ m: M) -> M {
        childList.append((name, m))
        return m
    }

    /// Makes an already registered module visible under a second name, as PyTorch does when one
    /// module is assigned to two attributes (SAIM's `share_weight`: `query_blocks` is `blocks`; CAE's
    /// `alignment_encoder` is `encoder`). Its tensors stay one set: they appear once in
    /// `namedParameters` (so they are stepped, clipped and decayed once) and under both names in
    /// `stateDict` (so checkpoints load in the original code).
    @discardableResult
    public func alias<M: Module>(_ name: String, _ m: M) -> M {
        aliasList.append((name, m))
        return m
    }

    /// Freezes this module: its tensors stop requiring gradients, and a parent leaves it out of its
    /// parameters (never stepped, clipped, decayed or a replica leaf) and out of its state dict (never
    /// written into training checkpoints). A frozen teacher or tokenizer loads its own weights with
    /// `load(state:)` called on it directly.
    @discardableResult
    public func freeze() -> Self {
        isFrozen = true
        savedWhileFrozen = false
        for (_, t) in namedParameters() + namedBuffers() { t.requiringGrad(false) }
        return self
    }

    /// Makes this module state that is saved but never trained (SemAIM's EMA model): like `freeze`,
    /// its tensors take no gradient and a parent leaves them out of its parameters, but a parent lists
    /// all of them (parameters and buffers) among its buffers, so they are written into checkpoints
    /// and loaded on resume.
    @discardableResult
    public func keepAsState() -> Self {
        _ = freeze()
        savedWhileFrozen = true
        return self
    }

    /// Registers `m`'s parameters, buffers and children directly under this module (no name prefix),
    /// for models whose checkpoints keep the encoder's names at the top level (MAE, SAIM).
    public func inline(_ m: Module) {
        parameterList += m.parameterList
        bufferList += m.bufferList
        childList += m.childList
        aliasList += m.aliasList
    }

    /// Every trainable parameter under this module, depth first, with dotted names; each tensor once
    /// (aliases and frozen children are left out).
    public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        collect(prefix, &out, buffers: false, aliases: false)
        return out
    }

    /// Every buffer under this module with dotted names (aliases and frozen children left out).
    public func namedBuffers(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        collect(prefix, &out, buffers: true, aliases: false)
        return out
    }

    private func collect(_ prefix: String, _ out: inout [(name: String, tensor: Tensor)], buffers: Bool, aliases: Bool) {
        for (n, t) in (buffers ? bufferList : parameterList) { out.append((prefix + n, t)) }
        for (n, c) in childList {
            if !c.isFrozen {
                c.collect(prefix + n + ".", &out, buffers: buffers, aliases: aliases)
            } else if c.savedWhileFrozen && buffers {
                c.collect(prefix + n + ".", &out, buffers: false, aliases: aliases)
                c.collect(prefix + n + ".", &out, buffers: true, aliases: aliases)
            }
        }
        if aliases {
            for (n, c) in aliasList where !c.isFrozen { c.collect(prefix + n + ".", &out, buffers: buffers, aliases: aliases) }
        }
    }

    /// Parameters and buffers together, including every alias name: the checkpoint's state dict.
    public func stateDict() -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        collect("", &out, buffers: false, aliases: true)
        collect("", &out, buffers: true, aliases: true)
        return out.sorted { $0.name < $1.name }
    }

    /// The state-dict names that exist only through `alias` (their tensors have a primary name too).
    public func aliasNames() -> Set<String> {
        let primary = Set((namedParameters() + namedBuffers()).map(\.name))
        return Set(stateDict().map(\.name).filter { !primary.contains($0) })
    }

    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Clears every parameter's gradient.
    public func zeroGrad() {
        for (_, t) in namedParameters() { t.grad = nil }
    }
}

/// A list of modules named 0, 1, 2, … (nn.ModuleList).
public final class ModuleList<M: Module>: Module {
    public private(set) var items: [M] = []

    public init(_ items: [M]) {
        super.init()
        for (i, m) in items.enumerated() { self.items.append(child(String(i), m)) }
    }

    public subscript(_ i: Int) -> M { items[i] }
    public var count: Int { items.count }
}
