/// Modules: a parameter tree with PyTorch dotted names (`blocks.3.attn.qkv.weight`).

/// Per-forward state: training mode and the generator for dropout and drop-path.
public final class Context {
    public var training: Bool
    public var rng: RandomGenerator

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

    /// Registers `m`'s parameters, buffers and children directly under this module (no name prefix),
    /// for models whose checkpoints keep the encoder's names at the top level (MAE, SAIM).
    public func inline(_ m: Module) {
        parameterList += m.parameterList
        bufferList += m.bufferList
        childList += m.childList
    }

    /// Every parameter under this module, depth first, with dotted names.
    public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        collect(prefix, &out, buffers: false)
        return out
    }

    /// Every buffer under this module with dotted names.
    public func namedBuffers(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        collect(prefix, &out, buffers: true)
        return out
    }

    private func collect(_ prefix: String, _ out: inout [(name: String, tensor: Tensor)], buffers: Bool) {
        for (n, t) in (buffers ? bufferList : parameterList) { out.append((prefix + n, t)) }
        for (n, c) in childList { c.collect(prefix + n + ".", &out, buffers: buffers) }
    }

    /// Parameters and buffers together: the checkpoint's state dict.
    public func stateDict() -> [(name: String, tensor: Tensor)] {
        (namedParameters() + namedBuffers()).sorted { $0.name < $1.name }
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
