import Dispatch
import Foundation
import CBLAS

/// The one pool of worker threads. OpenBLAS is kept single-threaded and large GEMMs are split over
/// this pool instead, so the two never compete for cores.
public enum Parallel {
    /// Worker count: TESSERA_THREADS, else the number of online cores.
    nonisolated(unsafe) public private(set) static var threads: Int = {
        openblas_set_num_threads(1)
        if let s = ProcessInfo.processInfo.environment["TESSERA_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    public static func setThreads(_ n: Int) {
        _ = threads
        threads = max(1, n)
    }

    /// Calls `body(chunk)` for `chunks` chunks concurrently (inline when one chunk or one thread).
    @inline(__always)
    public static func run(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 1 || threads <= 1 {
            for c in 0..<chunks { body(c) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks, execute: body)
    }

    /// Splits `0..<n` into at most `threads` contiguous ranges when `n * costPerItem` is large enough
    /// to pay for the hand-off, and runs them concurrently.
    @inline(__always)
    public static func forRange(_ n: Int, costPerItem: Int = 1, minCost: Int = 1 << 15,
                                _ body: (Range<Int>) -> Void) {
        let parts = min(threads, max(1, n * costPerItem / minCost), n)
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
