import Foundation
import TesseraCore

/// One batch: images `[B, C, H, W]`, labels and dataset indices of the samples used, and extra
/// per-sample tensors (CAE's second view `[B, C, h, w]`).
public struct Batch: @unchecked Sendable {
    public var images: Tensor
    public var labels: [Int]
    public var indices: [Int]
    public var extra: [Tensor]
}

/// DistributedSampler order for one epoch: a permutation from (seed, epoch) when shuffling, padded
/// by wrapping to a multiple of `worldSize`, then every `worldSize`-th index from `rank`.
public func shardIndices(count: Int, shuffle: Bool, seed: UInt64, epoch: Int, rank: Int = 0, worldSize: Int = 1) -> [Int] {
    precondition(worldSize >= 1 && rank >= 0 && rank < worldSize, "tessera: rank \(rank) outside world size \(worldSize)")
    guard count > 0 else { return [] }
    var shuffler = RandomGenerator(seed: seed).derived(0x5348_5546, UInt64(epoch))
    var order = shuffle ? shuffler.permutation(count) : Array(0..<count)
    let total = (count + worldSize - 1) / worldSize * worldSize
    var k = 0
    while order.count < total { order.append(order[k % count]); k += 1 }
    return Array(stride(from: rank, to: total, by: worldSize).map { order[$0] })
}

/// A prefetching loader: worker threads decode and transform whole batches into a bounded queue.
///
/// Sample `i` of epoch `e` uses only `RandomGenerator(seed: seed).derived(e, i)`, so batches are
/// bit-identical for any number of workers. An unreadable sample is reported once on stderr,
/// counted in `skippedCount` and replaced by the next readable index (batch size stays fixed).
public final class DataLoader: @unchecked Sendable {
    public let dataset: ImageDataset
    public let pipeline: TransformPipeline
    public let batchSize: Int
    public var shuffle: Bool
    public var dropLast: Bool
    public var seed: UInt64
    /// 0 = transform in the consumer's thread.
    public var workers: Int
    /// Ready batches kept ahead of the consumer.
    public var prefetch: Int
    public var rank: Int
    public var worldSize: Int

    private let lock = NSLock()
    private var _skipped = 0
    private var _wait = 0.0
    private var knownBad = Set<Int>()

    /// Distinct samples that could not be read (each warned about once).
    public var skippedCount: Int { lock.lock(); defer { lock.unlock() }; return knownBad.count }
    /// Times a sample was replaced by the next readable one (a bad image counts once per epoch).
    public var skippedSamples: Int { lock.lock(); defer { lock.unlock() }; return _skipped }
    /// Seconds the consumer spent waiting in `next()` (all epochs).
    public var waitSeconds: Double { lock.lock(); defer { lock.unlock() }; return _wait }

    public init(dataset: ImageDataset, pipeline: TransformPipeline, batchSize: Int, shuffle: Bool = true,
                dropLast: Bool = true, seed: UInt64 = 0, workers: Int = 2, prefetch: Int = 3,
                rank: Int = 0, worldSize: Int = 1) {
        precondition(batchSize > 0, "tessera: batch size must be positive")
        self.dataset = dataset
        self.pipeline = pipeline
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.workers = max(0, workers)
        self.prefetch = max(1, prefetch)
        self.rank = rank
        self.worldSize = worldSize
    }

    /// This rank's sample order for `epoch`.
    public func indices(epoch: Int) -> [Int] {
        shardIndices(count: dataset.count, shuffle: shuffle, seed: seed, epoch: epoch, rank: rank, worldSize: worldSize)
    }

    /// Batches per epoch on this rank.
    public var batchesPerEpoch: Int {
        let n = (dataset.count + worldSize - 1) / worldSize
        return dropLast ? n / batchSize : (n + batchSize - 1) / batchSize
    }

    /// The batches of one epoch. Dropping the iterator stops its workers.
    public func epoch(_ epoch: Int) -> EpochIterator { EpochIterator(loader: self, epoch: epoch) }

    func addWait(_ s: Double) { lock.lock(); _wait += s; lock.unlock() }

    /// Loads sample `index`, or the next readable one; returns the index actually used.
    func loadSample(_ index: Int, epoch: Int, into out: UnsafeMutablePointer<Float>,
                    second: UnsafeMutablePointer<Float>?) -> (label: Int, index: Int) {
        var i = index
        for _ in 0..<dataset.count {
            lock.lock(); let bad = knownBad.contains(i); lock.unlock()
            if !bad {
                do {
                    let (img, label) = try dataset.sample(i)
                    var rng = RandomGenerator(seed: seed).derived(UInt64(epoch), UInt64(i))
                    pipeline.apply(img, rng: &rng, into: out, second: second)
                    return (label, i)
                } catch {
                    lock.lock()
                    let first = knownBad.insert(i).inserted
                    lock.unlock()
                    if first { FileHandle.standardError.write("tessera: warning: skipping sample \(i): \(error)\n".data(using: .utf8)!) }
                }
            }
            lock.lock(); _skipped += 1; lock.unlock()
            i = (i + 1) % dataset.count
        }
        fatalError("tessera: no readable sample in the data set")
    }

    /// Builds batch `b` of an epoch from its index list.
    func makeBatch(_ idx: ArraySlice<Int>, epoch: Int) -> Batch {
        let shape = pipeline.outputShape
        let per = shape.reduce(1, *)
        let images = Tensor(shape: [idx.count] + shape)
        var extra: [Tensor] = []
        var perSecond = 0
        if let s = pipeline.secondShape {
            perSecond = s.reduce(1, *)
            extra.append(Tensor(shape: [idx.count] + s))
        }
        var labels: [Int] = [], used: [Int] = []
        labels.reserveCapacity(idx.count); used.reserveCapacity(idx.count)
        for (k, i) in idx.enumerated() {
            let r = loadSample(i, epoch: epoch, into: images.data + k * per,
                               second: extra.first.map { $0.data + k * perSecond })
            labels.append(r.label)
            used.append(r.index)
        }
        return Batch(images: images, labels: labels, indices: used, extra: extra)
    }
}

/// Shared state between an epoch iterator and its worker threads.
final class EpochState: @unchecked Sendable {
    let cond = NSCondition()
    var ready: [Int: Batch] = [:]
    var nextToClaim = 0
    var consumed = 0
    var stopped = false
    var running = 0
}

/// Iterates the batches of one epoch in order; worker threads fill a bounded window ahead.
public final class EpochIterator: IteratorProtocol, Sequence {
    let loader: DataLoader
    let epoch: Int
    let order: [Int]
    public let count: Int
    private var position = 0
    private let state = EpochState()

    init(loader: DataLoader, epoch: Int) {
        self.loader = loader
        self.epoch = epoch
        order = loader.indices(epoch: epoch)
        count = loader.dropLast ? order.count / loader.batchSize : (order.count + loader.batchSize - 1) / loader.batchSize
        let st = state, count = count, prefetch = loader.prefetch, order = order
        let bs = loader.batchSize
        for w in 0..<loader.workers {
            st.running += 1
            let t = Thread { [loader] in
                while true {
                    st.cond.lock()
                    while !st.stopped && st.nextToClaim < count && st.nextToClaim >= st.consumed + prefetch {
                        st.cond.wait()
                    }
                    if st.stopped || st.nextToClaim >= count {
                        st.running -= 1
                        st.cond.broadcast()
                        st.cond.unlock()
                        return
                    }
                    let b = st.nextToClaim
                    st.nextToClaim += 1
                    st.cond.unlock()
                    let batch = loader.makeBatch(order[(b * bs)..<Swift.min((b + 1) * bs, order.count)], epoch: epoch)
                    st.cond.lock()
                    st.ready[b] = batch
                    st.cond.broadcast()
                    st.cond.unlock()
                }
            }
            t.name = "tessera-data-\(w)"
            t.stackSize = 1 << 22
            t.start()
        }
    }

    public func next() -> Batch? {
        guard position < count else { return nil }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { loader.addWait(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9) }
        let b = position
        position += 1
        if loader.workers == 0 {
            let bs = loader.batchSize
            return loader.makeBatch(order[(b * bs)..<Swift.min((b + 1) * bs, order.count)], epoch: epoch)
        }
        state.cond.lock()
        defer { state.cond.unlock() }
        while state.ready[b] == nil { state.cond.wait() }
        let batch = state.ready.removeValue(forKey: b)!
        state.consumed = b + 1
        state.cond.broadcast()
        return batch
    }

    /// Stops the workers (also done on deinit); waits until they have finished their current batch.
    public func stop() {
        state.cond.lock()
        state.stopped = true
        state.cond.broadcast()
        while state.running > 0 { state.cond.wait() }
        state.ready.removeAll()
        state.cond.unlock()
    }

    deinit { stop() }
}
