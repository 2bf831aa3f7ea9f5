import Foundation

/// A 64-byte aligned float buffer. Buffers are recycled through `BufferPool` so that a training
/// step does not page-fault fresh memory for every activation.
public final class Storage: @unchecked Sendable {
    public let count: Int
    public let ptr: UnsafeMutablePointer<Float>
    /// Floats the buffer holds (at least `count`: the pool may hand out a slightly larger one).
    let capacity: Int

    public init(count: Int) {
        self.count = count
        (self.ptr, self.capacity) = BufferPool.shared.take(count)
    }

    /// A buffer with every element set to zero.
    public static func zeros(_ count: Int) -> Storage {
        let s = Storage(count: count)
        let p = s.ptr
        Parallel.forRange(count, minCost: 1 << 18) { r in (p + r.lowerBound).initialize(repeating: 0, count: r.count) }
        return s
    }

    deinit { BufferPool.shared.give(ptr, capacity) }
}

#if os(Linux)
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// Buffers from 1 MiB up are mapped directly, so freeing one returns its pages at once (the
/// pool's bound on what it holds depends on that).
private let mappedFloats = (1 << 20) / 4

/// Memory for `floats` floats, 64-byte aligned: its own mapping from 1 MiB up, else the C heap.
private func systemAllocate(_ floats: Int) -> UnsafeMutablePointer<Float> {
    if floats >= mappedFloats {
        let m = mmap(nil, floats * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(m != MAP_FAILED && m != nil, "tessera: out of memory mapping \(floats * 4) bytes")
        return m!.bindMemory(to: Float.self, capacity: floats)
    }
    var raw: UnsafeMutableRawPointer? = nil
    let rc = posix_memalign(&raw, 64, floats * 4)
    precondition(rc == 0 && raw != nil, "tessera: out of memory allocating \(floats * 4) bytes")
    return raw!.bindMemory(to: Float.self, capacity: floats)
}

/// Returns memory from `systemAllocate(floats)`.
private func systemRelease(_ p: UnsafeMutablePointer<Float>, _ floats: Int) {
    if floats >= mappedFloats { munmap(p, floats * 4) } else { Foundation.free(p) }
}

/// Keeps freed buffers by size and hands them out again, so a training step does not page-fault
/// fresh memory for the activations it allocated in the step before. A request takes a cached
/// buffer of its exact size, else the smallest cached one up to half as large again.
///
/// The cache never makes the process hold much more than its live high-water mark: when a request
/// misses and the cached buffers plus the live ones would pass the high-water mark of live bytes plus
/// `slackBytes`, the buffers of the sizes requested longest ago go back to the system first.
/// Without that, the buffers of one phase (a step's activations) sit idle while the next phase (its
/// gradients) allocates sizes of its own, and the resident set grows to the sum of both. Large
/// buffers are mapped directly, so freeing one returns its pages at once. The C heap, which the
/// libraries' scratch buffers come from (oneDNN allocates and frees its packing buffers on every
/// product), serves blocks up to 64 MiB and keeps up to 16 MiB of free memory at its top: with a
/// 1 MiB mapping threshold each of those buffers was a fresh mapping, page-faulted anew on every
/// call (ViT-B/16: 220 thousand page faults per step before, 40–50 thousand after; 2–7 % faster,
/// 40–70 MB more peak).
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    /// For each size: the value of `clock` when it was last requested.
    private var lastRequest: [Int: Int] = [:]
    private var clock = 0
    public private(set) var cachedBytes = 0
    /// Bytes handed back to the system by the high-water bound so far.
    public private(set) var evictedBytes = 0
    private var lock = pthread_mutex_t()
    /// Bytes currently handed out (live tensors), and the highest value seen since the last reset.
    public private(set) var liveBytes = 0
    public private(set) var peakBytes = 0
    /// The highest `liveBytes` ever seen (not reset by `resetPeak`).
    public private(set) var highWaterBytes = 0
    /// Upper bound of the cache whatever the high-water mark.
    public var maxCachedBytes = 4 << 30
    /// How far live + cached bytes may pass the high-water mark before cached buffers are freed
    /// (an eighth of the mark cost ViT-B/16 MAE 330 MiB of peak for no measurable speed).
    public var slackBytes = 64 << 20

    /// A pool of its own (tensors use `shared`).
    public init() {
        pthread_mutex_init(&lock, nil)
        #if os(Linux)
        // M_MMAP_THRESHOLD (−3 in glibc's malloc.h; setting it also stops the sliding threshold)
        // and M_TRIM_THRESHOLD (−1).
        _ = glibcMallopt(-3, 64 << 20)
        _ = glibcMallopt(-1, 16 << 20)
        #endif
    }

    /// A buffer of at least `count` floats and its capacity, to be given back with `give`.
    public func take(_ count: Int) -> (UnsafeMutablePointer<Float>, capacity: Int) {
        let n = max(count, 1)
        pthread_mutex_lock(&lock)
        // The capacity handed out: n itself, or on an exact miss the smallest cached size in (n, 1.5 n].
        var c = n
        if free[n] == nil, n >= 1024 {
            let larger = free.keys.reduce(Int.max) { $1 > n && $1 <= n + n / 2 ? min($0, $1) : $0 }
            if larger != .max { c = larger }
        }
        clock &+= 1
        lastRequest[n] = clock
        lastRequest[c] = clock
        liveBytes += c * 4
        if liveBytes > peakBytes { peakBytes = liveBytes }
        if liveBytes > highWaterBytes { highWaterBytes = liveBytes }
        if var list = free[c], let p = list.popLast() {
            free[c] = list.isEmpty ? nil : list
            cachedBytes -= c * 4
            pthread_mutex_unlock(&lock)
            return (p, c)
        }
        let evicted = evict(toFit: highWaterBytes + slackBytes)
        pthread_mutex_unlock(&lock)
        for (p, size) in evicted { systemRelease(p, size) }
        return (systemAllocate(n), n)
    }

    /// Takes cached buffers out of the cache, sizes requested longest ago first, until live + cached
    /// bytes fit `limit`; the caller frees them outside the lock.
    private func evict(toFit limit: Int) -> [(UnsafeMutablePointer<Float>, Int)] {
        guard liveBytes + cachedBytes > limit, cachedBytes > 0 else { return [] }
        var out: [(UnsafeMutablePointer<Float>, Int)] = []
        for n in free.keys.sorted(by: { lastRequest[$0, default: 0] < lastRequest[$1, default: 0] }) {
            guard var list = free[n] else { continue }
            while liveBytes + cachedBytes > limit, let p = list.popLast() {
                out.append((p, n))
                cachedBytes -= n * 4
                evictedBytes += n * 4
            }
            free[n] = list.isEmpty ? nil : list
            if liveBytes + cachedBytes <= limit { break }
        }
        return out
    }

    /// Returns a buffer from `take` with the capacity `take` reported.
    public func give(_ p: UnsafeMutablePointer<Float>, _ capacity: Int) {
        let n = max(capacity, 1)
        pthread_mutex_lock(&lock)
        liveBytes -= n * 4
        if cachedBytes + n * 4 <= maxCachedBytes {
            free[n, default: []].append(p)
            cachedBytes += n * 4
            pthread_mutex_unlock(&lock)
            return
        }
        pthread_mutex_unlock(&lock)
        systemRelease(p, n)
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        pthread_mutex_lock(&lock)
        for (n, list) in free { for p in list { systemRelease(p, n) } }
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
