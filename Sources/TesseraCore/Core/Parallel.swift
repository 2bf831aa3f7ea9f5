import Dispatch
import Foundation
import CBLAS

/// The one pool of worker threads. OpenBLAS is kept single-threaded and large GEMMs are split over
/// this pool instead, so the two never compete for cores.
public enum Parallel {
    /// Configured worker count: TESSERA_THREADS, else the number of online cores, shared out among
    /// the processes mpirun started on this machine (OMPI_COMM_WORLD_LOCAL_SIZE) so that they do not
    /// compete for cores.
    nonisolated(unsafe) public private(set) static var threads: Int = {
        openblas_set_num_threads(1)
        let env = ProcessInfo.processInfo.environment
        if let s = env["TESSERA_THREADS"], let n = Int(s), n > 0 { return n }
        let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
    }()

    public static func setThreads(_ n: Int) {
        _ = threads
        threads = max(1, n)
    }

    /// Threads a kernel may split its work over here: `threads`, or 1 inside a replica (the replicas
    /// already occupy the cores).
    @inline(__always)
    public static var workers: Int { ThreadState.current.serial ? 1 : threads }

    /// Calls `body(chunk)` for `chunks` chunks concurrently (inline when one chunk or one worker).
    @inline(__always)
    public static func run(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 1 || workers <= 1 {
            for c in 0..<chunks { body(c) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks, execute: body)
    }

    /// Splits `0..<n` into at most `workers` contiguous ranges when `n * costPerItem` is large enough
    /// to pay for the hand-off, and runs them concurrently.
    @inline(__always)
    public static func forRange(_ n: Int, costPerItem: Int = 1, minCost: Int = 1 << 15,
                                _ body: (Range<Int>) -> Void) {
        let parts = min(workers, max(1, n * costPerItem / minCost), n)
        if parts <= 1 {
            if n > 0 { body(0..<n) }
            return
        }
        run(parts) { p in
            let lo = n * p / parts, hi = n * (p + 1) / parts
            if lo < hi { body(lo..<hi) }
        }
    }
}

/// What a compute thread carries for itself: its autograd tape, whether recording is on, and, inside
/// `Replicas.run`, which replica it runs (kernels then stay on this thread).
final class ThreadState {
    var tape: [Autograd.Node] = []
    var enabled = true
    /// 0 outside replicas and in replica 0; leaf gradients of replica r > 0 go to the slot's entry r.
    var replica = 0
    /// True inside a replica: kernels run on the calling thread only.
    var serial = false
    /// Inside `Replicas.run`: the run this thread is a replica of.
    var group: ReplicaGroup?

    init() {}

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        // A thread's own state is released when the thread ends (loader threads come and go).
        let rc = pthread_key_create(&k) { p in if let p { Unmanaged<ThreadState>.fromOpaque(p).release() } }
        precondition(rc == 0, "tessera: pthread_key_create failed (\(rc))")
        return k
    }()

    /// This thread's state, made on first use and kept for the thread's life.
    @inline(__always)
    static var current: ThreadState {
        if let p = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(p).takeUnretainedValue() }
        let s = ThreadState()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// Runs `body` with `state` as this thread's state, then puts the previous one back.
    static func with<T>(_ state: ThreadState, _ body: () throws -> T) rethrows -> T {
        _ = current
        let saved = pthread_getspecific(key)
        pthread_setspecific(key, Unmanaged.passUnretained(state).toOpaque())
        defer { pthread_setspecific(key, saved) }
        return try withExtendedLifetime(state) { try body() }
    }
}
