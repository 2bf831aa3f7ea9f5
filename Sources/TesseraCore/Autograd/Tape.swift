/// Where a tensor's gradient accumulates. The tape holds slots, never the tensors themselves.
public final class GradSlot: @unchecked Sendable {
    public let shape: [Int]
    /// Leaves (parameters and inputs marked with `requiringGrad`) keep their gradient after backward.
    public let isLeaf: Bool
    public var grad: Tensor?
    /// Inside `Replicas.run`: one entry per replica. Replicas 1, 2, … write this leaf's gradient to
    /// their entry's `grad`, summed into `grad` once every replica's backward is done with the leaf.
    /// Each replica writes only its own entry; the array is only read while they run.
    var replicas: [ReplicaLeaf] = []

    init(shape: [Int], isLeaf: Bool) {
        self.shape = shape
        self.isLeaf = isLeaf
    }

    /// The gradient this thread adds to: `grad`, or a leaf's shadow inside replica r > 0.
    private var mine: Tensor? {
        @inline(__always) get {
            guard isLeaf else { return grad }
            let r = ThreadState.current.replica
            return r == 0 ? grad : shadow(r)
        }
        @inline(__always) set {
            guard isLeaf else { grad = newValue; return }
            let r = ThreadState.current.replica
            if r == 0 { grad = newValue } else { _ = shadow(r); replicas[r].grad = newValue }
        }
    }

    private func shadow(_ r: Int) -> Tensor? {
        precondition(r < replicas.count, "tessera: a leaf of shape \(shape) that Replicas.run was not given received a gradient in replica \(r)")
        return replicas[r].grad
    }

    /// Adds the gradients of replicas 1, 2, … into `grad`, in replica order, and drops them.
    func mergeReplicaGradients() {
        for leaf in replicas.dropFirst() {
            guard let g = leaf.grad else { continue }
            if let existing = grad { Kernels.addInPlace(existing.data, g.data, existing.count) } else { grad = g }
            leaf.grad = nil
        }
    }

    /// Adds `g` into this slot. When `owned` is true the caller gives up `g`, so the first
    /// contribution is adopted without a copy.
    public func accumulate(_ g: Tensor, owned: Bool) {
        precondition(g.count == shape.reduce(1, *), "tessera: gradient of shape \(g.shape) for a tensor of shape \(shape)")
        if let existing = mine {
            Kernels.addInPlace(existing.data, g.data, existing.count)
        } else if owned {
            mine = g.shape == shape ? g : g.view(shape)
        } else {
            let c = Tensor(shape: shape)
            let src = g.data, dst = c.data
            Parallel.forRange(c.count, minCost: 1 << 18) { r in (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count) }
            mine = c
        }
    }

    /// Where a kernel should write this slot's gradient: the existing gradient with beta 1 (add to
    /// it), or a fresh uninitialised buffer with beta 0 (overwrite it).
    public func target() -> (Tensor, Float) {
        if let g = mine { return (g, 1) }
        let g = Tensor(shape: shape)
        mine = g
        return (g, 0)
    }

    /// A gradient buffer to write into directly (zeroed on first use), for kernels that accumulate.
    public func buffer() -> Tensor {
        if let g = mine { return g }
        let g = Tensor.zeros(shape)
        mine = g
        return g
    }
}

/// One replica's view of one leaf inside `Replicas.run` (see `GradSlot.replicas`).
final class ReplicaLeaf {
    /// Replica r > 0: its gradient of the leaf until it is merged into the leaf's own.
    var grad: Tensor?
    /// Ops on this replica's tape that read the leaf and whose backward step has not run yet.
    var pending = 0
    /// This replica's backward has passed the leaf's last use (or its pass never used the leaf).
    var done = false
}

/// The recorded backward steps of the current forward pass, in execution order.
public enum Autograd {
    struct Node {
        let out: GradSlot
        let backward: (Tensor) -> Void
        /// Inside `Replicas.run`: the leaves among the op's inputs (each once).
        var leaves: [GradSlot] = []
    }
    /// The tape and the recording switch belong to the calling thread, so replicas (see
    /// `Replicas.run`) record and run their own passes side by side.
    static var tape: [Node] {
        get { ThreadState.current.tape }
        _modify { yield &ThreadState.current.tape }
    }
    static var enabled: Bool {
        get { ThreadState.current.enabled }
        set { ThreadState.current.enabled = newValue }
    }

    /// Whether ops record backward steps (false inside `noGrad`).
    public static var isEnabled: Bool { enabled }

    /// Runs `body` without recording anything on the tape.
    public static func noGrad<T>(_ body: () throws -> T) rethrows -> T {
        let saved = enabled
        enabled = false
        defer { enabled = saved }
        return try body()
    }

    /// Forgets the recorded forward pass (gradients already accumulated stay).
    public static func reset() { tape.removeAll(keepingCapacity: true) }

    /// Number of recorded steps (for tests).
    public static var tapeLength: Int { tape.count }

    /// Makes `out` part of the graph when any input requires a gradient and records its backward step.
    /// The closure receives the gradient of `out` and accumulates into the inputs' slots.
    @inline(__always)
    public static func record(_ out: Tensor, _ inputs: [Tensor?], _ backward: @escaping (Tensor) -> Void) {
        guard enabled else { return }
        var any = false
        for t in inputs where t?.slot != nil { any = true; break }
        guard any else { return }
        let slot = GradSlot(shape: out.shape, isLeaf: false)
        out.slot = slot
        let state = ThreadState.current
        var node = Node(out: slot, backward: backward)
        if let group = state.group {
            for case let s? in inputs.map({ $0?.slot }) where !s.replicas.isEmpty && !node.leaves.contains(where: { $0 === s }) {
                node.leaves.append(s)
            }
            if !node.leaves.isEmpty { group.recordUses(node.leaves, replica: state.replica) }
        }
        state.tape.append(node)
    }

    /// True when the op should record (cheap check before building saved state).
    @inline(__always)
    public static func needsGrad(_ inputs: Tensor?...) -> Bool {
        guard enabled else { return false }
        for t in inputs where t?.slot != nil { return true }
        return false
    }

    /// Back-propagates from `root` (usually a scalar loss) through the whole tape, then clears it.
    static func backward(from root: Tensor, seed: Tensor?) {
        guard let rootSlot = root.slot else {
            preconditionFailure("tessera: backward() on a tensor that does not require a gradient")
        }
        if let seed {
            checkShapes(seed.shape, root.shape, "backward seed")
            rootSlot.accumulate(seed.clone(), owned: true)
        } else {
            precondition(root.count == 1, "tessera: backward() without a seed needs a scalar, got shape \(root.shape)")
            rootSlot.accumulate(Tensor.full(root.shape, 1), owned: true)
        }
        let state = ThreadState.current
        var nodes = state.tape
        state.tape.removeAll(keepingCapacity: true)
        let saved = enabled
        enabled = false
        defer { enabled = saved }
        let group = state.group
        group?.beginBackward(replica: state.replica)
        // Each node leaves the array before its step runs, so the tensors its closure saved are
        // released as soon as that step is done (as PyTorch frees saved tensors), not at the end.
        while let node = nodes.popLast() {
            if let g = node.out.grad {
                node.out.grad = nil
                node.backward(g)
            }
            if let group, !node.leaves.isEmpty { group.finishUses(node.leaves, replica: state.replica) }
        }
    }
}

extension Tensor {
    /// Reverse-mode pass from this tensor; gradients accumulate into every leaf's `grad`.
    public func backward(_ seed: Tensor? = nil) { Autograd.backward(from: self, seed: seed) }

    /// For a training loss: back-propagates `scale` × this scalar when it is finite, else drops the
    /// recorded pass; returns the loss value either way (the caller decides what a non-finite loss means).
    public func backwardIfFinite(scale: Float = 1) -> Float {
        let v = item
        guard v.isFinite else { Autograd.reset(); return v }
        backward(scale == 1 ? nil : Tensor.full(shape, scale))
        return v
    }

    /// Adds `g` to this tensor's gradient slot if it has one.
    @inline(__always)
    func accumulateGrad(_ g: Tensor, owned: Bool) { slot?.accumulate(g, owned: owned) }
}
