import Dispatch
import Foundation

/// Data parallelism inside one process: the batch is cut into parts and each part runs its own
/// forward and backward pass on its own thread, with kernels kept on that thread. Nothing waits
/// between ops, and element-wise work, small attention products and autograd bookkeeping run on
/// both cores at once instead of one after another.
public enum Replicas {
    /// Runs `body(r)` for r in 0..<n concurrently. Each replica has its own autograd tape and runs its
    /// kernels on its own thread. `leaves` are the tensors (parameters) whose gradients the replicas
    /// write; replica 0 adds to their `grad` as usual, the others to private buffers. A leaf's private
    /// buffers are added into its `grad`, in replica order, as soon as every replica's backward has
    /// passed the leaf's last use, so they live for a few ops rather than the whole pass, and the sum
    /// never depends on timing. A body runs at most one backward pass, and records no op on a leaf
    /// after it. Replicas start with the caller's recording switch (no-grad around the call holds
    /// inside every replica), and `Autograd.noGrad` inside a replica holds on that replica's thread.
    public static func run(_ n: Int, leaves: [Tensor], _ body: (Int) -> Void) {
        precondition(n >= 1, "tessera: Replicas.run needs at least one replica, got \(n)")
        precondition(Autograd.tapeLength == 0 || n == 1, "tessera: Replicas.run with \(Autograd.tapeLength) ops already on the calling thread's tape")
        if n == 1 { body(0); return }
        let recording = Autograd.isEnabled
        let group = ReplicaGroup(n: n, slots: leaves.compactMap(\.slot))
        DispatchQueue.concurrentPerform(iterations: n) { r in
            let state = ThreadState()
            state.replica = r
            state.serial = true
            state.enabled = recording
            state.group = group
            ThreadState.with(state) { body(r) }
        }
        // Leaves some replica never finished with (a skipped backward, an unused leaf).
        for s in group.slots {
            s.mergeReplicaGradients()
            s.replicas = []
        }
    }

    /// Inside a replica: the bytes of replica gradients not yet merged into their leaves (0 outside
    /// `run`). Racy while other replicas run; meant for tests and diagnostics.
    public static var unmergedGradientBytes: Int { ThreadState.current.group?.unmergedBytes ?? 0 }
}

/// The bookkeeping of one `Replicas.run`: per leaf and replica, how many recorded ops still have to
/// run their backward step, and which replicas' backward passes have begun.
final class ReplicaGroup: @unchecked Sendable {
    let slots: [GradSlot]
    private var started: [Bool]
    private var lock = pthread_mutex_t()

    init(n: Int, slots: [GradSlot]) {
        self.slots = slots
        started = [Bool](repeating: false, count: n)
        pthread_mutex_init(&lock, nil)
        for s in slots { s.replicas = (0..<n).map { _ in ReplicaLeaf() } }
    }

    deinit { pthread_mutex_destroy(&lock) }

    /// An op on replica r's tape reads `leaves`.
    func recordUses(_ leaves: [GradSlot], replica r: Int) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        precondition(!started[r], "tessera: replica \(r) recorded an op on a parameter after its backward pass; a Replicas.run body runs one forward and one backward")
        for s in leaves { s.replicas[r].pending += 1 }
    }

    /// Replica r's backward begins: leaves its pass never read are done for it.
    func beginBackward(replica r: Int) {
        var ready: [GradSlot] = []
        pthread_mutex_lock(&lock)
        precondition(!started[r], "tessera: replica \(r) ran a second backward pass; a Replicas.run body runs one forward and one backward")
        started[r] = true
        for s in slots where s.replicas[r].pending == 0 && markDone(s, r) { ready.append(s) }
        pthread_mutex_unlock(&lock)
        for s in ready { s.mergeReplicaGradients() }
    }

    /// Replica r ran the backward step of an op that read `leaves`.
    func finishUses(_ leaves: [GradSlot], replica r: Int) {
        var ready: [GradSlot] = []
        pthread_mutex_lock(&lock)
        for s in leaves {
            s.replicas[r].pending -= 1
            if s.replicas[r].pending == 0 && markDone(s, r) { ready.append(s) }
        }
        pthread_mutex_unlock(&lock)
        // Every replica is past these leaves, so nothing else writes their gradients now.
        for s in ready { s.mergeReplicaGradients() }
    }

    /// Marks leaf s done for replica r (under the lock); true when that makes it done for all.
    private func markDone(_ s: GradSlot, _ r: Int) -> Bool {
        guard !s.replicas[r].done else { return false }
        s.replicas[r].done = true
        return s.replicas.allSatisfy(\.done)
    }

    /// Bytes of replica gradients not merged yet (for tests).
    var unmergedBytes: Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return slots.reduce(0) { $0 + $1.replicas.dropFirst().reduce(0) { $0 + ($1.grad?.count ?? 0) * 4 } }
    }
}
