import Dispatch

/// Data parallelism inside one process: the batch is cut into parts and each part runs its own
/// forward and backward pass on its own thread, with kernels kept on that thread. Nothing waits
/// between ops, and element-wise work, small attention products and autograd bookkeeping run on
/// both cores at once instead of one after another.
public enum Replicas {
    /// Runs `body(r)` for r in 0..<n concurrently. Each replica has its own autograd tape and runs its
    /// kernels on its own thread. `leaves` are the tensors (parameters) whose gradients the replicas
    /// write; replica 0 adds to their `grad` as usual, the others to private buffers that are added
    /// into `grad` afterwards, in replica order, so the sum does not depend on timing. Replicas start
    /// with the caller's recording switch (no-grad around the call holds inside every replica), and
    /// `Autograd.noGrad` inside a replica holds on that replica's thread.
    public static func run(_ n: Int, leaves: [Tensor], _ body: (Int) -> Void) {
        precondition(n >= 1, "tessera: Replicas.run needs at least one replica, got \(n)")
        precondition(Autograd.tapeLength == 0 || n == 1, "tessera: Replicas.run with \(Autograd.tapeLength) ops already on the calling thread's tape")
        if n == 1 { body(0); return }
        let recording = Autograd.isEnabled
        let slots = leaves.compactMap(\.slot)
        for s in slots { s.shadows = (1..<n).map { _ in ShadowGrad() } }
        DispatchQueue.concurrentPerform(iterations: n) { r in
            let state = ThreadState()
            state.replica = r
            state.serial = true
            state.enabled = recording
            ThreadState.with(state) { body(r) }
        }
        for s in slots {
            for case let g? in s.shadows.map(\.grad) {
                if let existing = s.grad { Kernels.addInPlace(existing.data, g.data, existing.count) } else { s.grad = g }
            }
            s.shadows = []
        }
    }
}
