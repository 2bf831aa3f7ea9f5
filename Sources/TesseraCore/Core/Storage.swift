import Foundation

/// A 64-byte aligned float buffer. Buffers are recycled through `BufferPool` so that a training
/// step does not page-fault fresh memory for every activation.
public final class Storage: @unchecked Sendable {
    public let count: Int
    public let ptr: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        self.ptr = BufferPool.shared.take(count)
    }

    /// A buffer with every element set to zero.
    public static func zeros(_ count: Int) -> Storage {
        let s = Storage(count: count)
        let p = s.ptr
        Parallel.forRange(count, minCost: 1 << 18) { r in (p + r.lowerBound).initialize(repeating: 0, count: r.count) }
        return s
    }

    deinit { BufferPool.shared.give(ptr, count) }
}

/// Keeps freed buffers by exact element count and hands them out again. The cache is bounded;
/// past the bound buffers go back to the system.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private var lock = pthread_mutex_t()
    /// Bytes currently handed out (live tensors), and the highest value seen since the last reset.
    public private(set) var liveBytes = 0
    public private(set) var peakBytes = 0
    public var maxCachedBytes = 4 << 30

    init() { pthread_mutex_init(&lock, nil) }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = max(count, 1)
        pthread_mutex_lock(&lock)
        liveBytes += n * 4
        if liveBytes > peakBytes { peakBytes = liveBytes }
        if var list = free[n], let p = list.popLast() {
            free[n] = list
            cachedBytes -= n * 4
            pthread_mutex_unlock(&lock)
            return p
        }
        pthread_mutex_unlock(&lock)
        var raw: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&raw, 64, n * 4)
        precondition(rc == 0 && raw != nil, "tessera: out of memory allocating \(n * 4) bytes")
        return raw!.bindMemory(to: Float.self, capacity: n)
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        let n = max(count, 1)
        pthread_mutex_lock(&lock)
        liveBytes -= n * 4
        if cachedBytes + n * 4 <= maxCachedBytes {
            free[n, default: []].append(p)
            cachedBytes += n * 4
            pthread_mutex_unlock(&lock)
            return
        }
        pthread_mutex_unlock(&lock)
        Foundation.free(p)
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        pthread_mutex_lock(&lock)
        for (_, list) in free { for p in list { Foundation.free(p) } }
        free = [:]
        cachedBytes = 0
        pthread_mutex_unlock(&lock)
    }

    public func resetPeak() {
        pthread_mutex_lock(&lock)
        peakBytes = liveBytes
        pthread_mutex_unlock(&lock)
    }
}
