import Foundation
import TesseraConfig
import TesseraCore
import TesseraData
import TesseraHDF5

/// The k-NN protocol (spec §3.5, §7.3): DINO's temperature-weighted vote over cosine similarities of
/// L2-normalised features, plus feature extraction and its on-disk cache.
public enum KNN {
    /// Test rows whose similarity rows together stay under this many floats (64 MB).
    static let similarityBudget = 1 << 24

    /// DINO's weighted k-NN. `train` [N, D] and `test` [M, D] hold L2-normalised rows. For every test
    /// row the k_max = max(k) most similar train rows are found (higher similarity first, lower train
    /// index first among equals); each k then votes with its first k of them:
    /// `score[c] = Σ_{i ≤ k, y_i = c} exp(s_i / T)`. Classes are ranked by score, descending, ties by
    /// class index; top-1 is the first, top-5 hits when the label is among the first min(5, k).
    /// Returns accuracies in percent for every k.
    public static func classify(train: Tensor, trainLabels: [Int], test: Tensor, testLabels: [Int], k: [Int],
                                temperature: Float, numClasses: Int) -> [Int: (top1: Double, top5: Double)] {
        precondition(train.rank == 2 && test.rank == 2 && train.shape[1] == test.shape[1],
                     "tessera: k-NN needs [N, D] train and [M, D] test features of one width")
        precondition(trainLabels.count == train.shape[0] && testLabels.count == test.shape[0],
                     "tessera: k-NN label counts do not match the feature rows")
        precondition(!k.isEmpty && k.allSatisfy { $0 > 0 }, "tessera: k-NN needs positive k values")
        let n = train.shape[0], m = test.shape[0], d = train.shape[1]
        let ks = Array(Set(k)).sorted()
        var top1 = [Int: Int](), top5 = [Int: Int]()
        for kk in ks { top1[kk] = 0; top5[kk] = 0 }
        guard n > 0, m > 0 else { return Dictionary(uniqueKeysWithValues: ks.map { ($0, (0.0, 0.0)) }) }
        let kMax = min(ks.last!, n)
        let rowsPerChunk = max(1, min(m, similarityBudget / n))
        let sims = UnsafeMutablePointer<Float>.allocate(capacity: rowsPerChunk * n)
        defer { sims.deallocate() }
        let threads = Parallel.threads
        // Per test row and k: (top-1 hit, top-5 hit), filled in parallel over rows of a chunk.
        let hits = UnsafeMutablePointer<UInt8>.allocate(capacity: rowsPerChunk * ks.count)
        defer { hits.deallocate() }

        var start = 0
        while start < m {
            let rows = min(rowsPerChunk, m - start)
            BLAS.gemm(transB: true, m: rows, n: n, k: d, a: test.data + start * d, lda: d,
                      b: train.data, ldb: d, c: sims, ldc: n)
            let parts = min(threads, rows)
            Parallel.run(parts) { p in
                let lo = rows * p / parts, hi = rows * (p + 1) / parts
                var nbSim = [Float](repeating: 0, count: kMax), nbIdx = [Int](repeating: 0, count: kMax)
                var score = [Float](repeating: 0, count: numClasses)
                var order = [Int](repeating: 0, count: numClasses)
                for r in lo..<hi {
                    let row = sims + r * n
                    let filled = topK(row, n: n, k: kMax, sims: &nbSim, indices: &nbIdx)
                    let label = testLabels[start + r]
                    for (ki, kk) in ks.enumerated() {
                        let used = min(kk, filled)
                        for c in 0..<numClasses { score[c] = 0 }
                        for i in 0..<used { score[trainLabels[nbIdx[i]]] += expf(nbSim[i] / temperature) }
                        rankClasses(score, into: &order)
                        let first = min(5, kk, numClasses)
                        var h: UInt8 = order[0] == label ? 1 : 0
                        for j in 0..<first where order[j] == label { h |= 2 }
                        hits[r * ks.count + ki] = h
                    }
                }
            }
            for r in 0..<rows {
                for (ki, kk) in ks.enumerated() {
                    let h = hits[r * ks.count + ki]
                    if h & 1 != 0 { top1[kk]! += 1 }
                    if h & 2 != 0 { top5[kk]! += 1 }
                }
            }
            start += rows
        }
        var out: [Int: (top1: Double, top5: Double)] = [:]
        for kk in ks { out[kk] = (100 * Double(top1[kk]!) / Double(m), 100 * Double(top5[kk]!) / Double(m)) }
        return out
    }

    /// The k largest entries of `row` in order (similarity descending, index ascending among equals).
    /// Returns how many were found (min(k, n)).
    static func topK(_ row: UnsafePointer<Float>, n: Int, k: Int, sims: inout [Float], indices: inout [Int]) -> Int {
        var count = 0
        for j in 0..<n {
            let s = row[j]
            if count == k {
                // Strictly better than the current last; an equal value has a larger index, so it loses.
                guard s > sims[k - 1] else { continue }
            }
            // Insertion point: after every entry with similarity ≥ s (those have smaller indices).
            var lo = 0, hi = count
            while lo < hi {
                let mid = (lo + hi) / 2
                if sims[mid] >= s { lo = mid + 1 } else { hi = mid }
            }
            let last = count == k ? k - 1 : count
            var i = last
            while i > lo { sims[i] = sims[i - 1]; indices[i] = indices[i - 1]; i -= 1 }
            sims[lo] = s; indices[lo] = j
            if count < k { count += 1 }
        }
        return count
    }

    /// Class indices sorted by score descending, ties by class index (a stable sort).
    static func rankClasses(_ score: [Float], into order: inout [Int]) {
        for c in 0..<order.count { order[c] = c }
        order.sort { score[$0] > score[$1] || (score[$0] == score[$1] && $0 < $1) }
    }

    /// Features of every sample of `loader.dataset`, in dataset order, L2-normalised: [count, D], and
    /// their labels. The loader should not shuffle nor drop; samples are placed by `batch.indices`.
    /// With several processes each extracts its share (`Strided`, loader over it) into the full
    /// table, zeros elsewhere, and one sum over the ranks gathers the rows.
    public static func extract(model: ViTClassifier, loader: DataLoader) -> (features: Tensor, labels: [Int]) {
        let share = loader.dataset as? Strided
        let count = share?.base.count ?? loader.dataset.count
        let width = model.encoder.shape.width
        let raw = Tensor.zeros([count, width])
        var labels = [Int](repeating: -1, count: count)
        Autograd.noGrad {
            let ctx = Context(training: false)
            let batches = loader.epoch(0)
            while let batch = batches.next() {
                let f = mapBatchRows(batch.images, parts: Parallel.threads, maxRows: model.inferenceChunk) { model.features($0, ctx: ctx) }
                precondition(f.shape == [batch.indices.count, width], "tessera: unexpected feature shape \(f.shape)")
                for (r, local) in batch.indices.enumerated() {
                    let i = share?.global(local) ?? local
                    (raw.data + i * width).update(from: f.data + r * width, count: width)
                    labels[i] = batch.labels[r]
                }
            }
        }
        if Distributed.isDistributed {
            Distributed.sum(raw.data, count: raw.count)
            var coded = labels.map { Double($0 + 1) }   // −1 (not extracted here) adds nothing
            Distributed.sum(&coded)
            labels = coded.map { Int($0) - 1 }
        }
        let normed = Autograd.noGrad { l2Normalize(raw) }
        return (normed, labels)
    }
}

/// The `knn` task: extract (or reuse cached) features of the train and val splits with the encoder of
/// `init`, then report DINO k-NN accuracies for every `eval.knn_k`.
///
/// Run directory: config.yaml, overrides.txt, meta.json, log.txt, summary.json and features.h5, the
/// cache (`train/features`, `train/labels`, `val/features`, `val/labels`, root attribute `key`). The
/// cache is reused when its key (checkpoint path + modification time, feature kind, data and
/// transform) matches, so asking for other k values costs only the vote.
public final class KNNRunner {
    public let spec: ExperimentSpec
    public let overrides: [String]
    public let directory: RunDirectory
    /// Print log lines (false keeps tests quiet).
    public var echo = true
    /// Whether the last `run()` took its features from features.h5.
    public private(set) var usedCache = false
    /// Whether the last `run()` found the finished run and only reported its results.
    public private(set) var alreadyComplete = false

    public init(spec: ExperimentSpec, overrides: [String] = [], runDir: String? = nil) throws {
        self.spec = spec
        self.overrides = overrides
        directory = RunDirectory(path: runDir ?? (spec.outputDir as NSString).appendingPathComponent(spec.name))
    }

    public var cachePath: String { directory.file("features.h5") }

    /// The k-NN accuracies a finished run's summary holds for every k of `k`; nil when one is missing.
    static func results(_ summary: [String: Any], k: [Int]) -> [Int: (top1: Double, top5: Double)]? {
        guard let knn = summary["knn"] as? [String: Any] else { return nil }
        var out: [Int: (top1: Double, top5: Double)] = [:]
        for v in k {
            guard let t1 = (knn["top1@\(v)"] as? NSNumber)?.doubleValue, let t5 = (knn["top5@\(v)"] as? NSNumber)?.doubleValue else { return nil }
            out[v] = (t1, t5)
        }
        return out
    }

    /// Pool and feature norm for `eval.knn_feature` (spec §7.3): MAE-priv's raw cls / raw mean of all
    /// tokens, SemAIM's norm(x)[:, 0] / fresh-LN(mean of patch tokens).
    public static func pooling(_ feature: KnnFeature) -> (pool: ViTClassifier.Pool, norm: ViTClassifier.FeatureNorm) {
        switch feature {
        case .cls: return (.rawCls, .none)
        case .mean: return (.rawMean, .none)
        case .normCls: return (.cls, .none)
        case .fcNormMean: return (.mean, .layerNorm)
        }
    }

    /// The feature extractor with `init` loaded (or a random encoder when `init` is null).
    public func buildModel() throws -> ViTClassifier {
        try MemoryBound.check(spec)
        let (pool, norm) = Self.pooling(spec.eval.knnFeature)
        let model = ViTClassifier(Registry.vitShape(spec), Registry.vitStyle(spec), pool: pool, featureNorm: norm, numClasses: 0)
        guard let path = spec.initCheckpoint else {
            var rng = RandomGenerator(seed: UInt64(spec.seed))
            let priv = spec.model.method == .maePriv
            model.encoder.initialize(rng: &rng, torchDefaultPatch: priv, clsTruncated: priv)
            return model
        }
        try DownstreamRunner.loadEncoder(model, from: path)
        return model
    }

    /// What the cached features depend on.
    func cacheKey() -> String {
        var source = "random encoder, seed \(spec.seed)"
        if let p = spec.initCheckpoint {
            let attrs = try? FileManager.default.attributesOfItem(atPath: p)
            let mtime = (attrs?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            let size = (attrs?[.size] as? NSNumber)?.intValue ?? -1
            source = "checkpoint \(URL(fileURLWithPath: p).standardizedFileURL.path), mtime \(String(format: "%.6f", mtime)), size \(size)"
        }
        let m = spec.model, d = spec.data, a = spec.augment
        let model = "\(m.method.rawValue) \(m.width)x\(m.depth)x\(m.heads) p\(m.patchSize) img\(m.imgSize) cls \(m.clsToken) block \(m.block.rawValue) pos \(m.posEmbed.rawValue)"
        let data = "\(d.dataset.rawValue) \(d.path) \(d.trainSplit)/\(d.valSplit) limit \(d.limit)/\(d.valLimit) size \(d.inputSize) "
            + "pad \(d.padTo.map(String.init) ?? "-") resize \(d.resizeTo.map(String.init) ?? "-") mean \(d.mean) std \(d.std) "
            + "eval_resize \(a.evalResize.map(String.init) ?? "-") \(a.evalInterpolation.rawValue)"
        return "\(source); feature \(spec.eval.knnFeature.rawValue); model \(model); data \(data)"
    }

    struct Features {
        var train: Tensor, trainLabels: [Int], val: Tensor, valLabels: [Int]
    }

    func readCache(key: String, trainCount: Int, valCount: Int) -> Features? {
        guard FileManager.default.fileExists(atPath: cachePath), let f = try? HDF5File(reading: cachePath) else { return nil }
        defer { f.close() }
        guard (try? f.attribute("key")) == key else { return nil }
        func split(_ name: String, _ count: Int) -> (Tensor, [Int])? {
            guard let (v, shape) = try? f.readFloats("\(name)/features"), shape.count == 2, shape[0] == count,
                  let (l, _) = try? f.readInts("\(name)/labels"), l.count == count else { return nil }
            return (Tensor(v, shape: shape), l.map { Int($0) })
        }
        guard let t = split("train", trainCount), let v = split("val", valCount) else { return nil }
        return Features(train: t.0, trainLabels: t.1, val: v.0, valLabels: v.1)
    }

    func writeCache(_ x: Features, key: String) throws {
        try HDF5.writeAtomically(to: cachePath) { f in
            try f.write("train/features", floats: UnsafePointer(x.train.data), shape: x.train.shape)
            try f.write("train/labels", ints: x.trainLabels.map(Int64.init), shape: [x.trainLabels.count])
            try f.write("val/features", floats: UnsafePointer(x.val.data), shape: x.val.shape)
            try f.write("val/labels", ints: x.valLabels.map(Int64.init), shape: [x.valLabels.count])
            try f.setAttribute("key", key)
            try f.setAttribute("feature", spec.eval.knnFeature.rawValue)
            try f.setAttribute("init", spec.initCheckpoint ?? "")
            try f.setAttribute("version", TesseraVersion.string)
        }
    }

    @discardableResult
    public func run() throws -> [Int: (top1: Double, top5: Double)] {
        if spec.threads > 0 { Parallel.setThreads(spec.threads) }
        let started = Date()
        let trainSet = try Registry.dataset(spec, train: true)
        let valSet = try Registry.dataset(spec, train: false)
        let key = cacheKey()
        // Several processes: rank 0 alone reads the cache and the finished summary and decides for all
        // (the other ranks may not see its files); they extract features only when it does.
        let cached = Distributed.isWriter ? readCache(key: key, trainCount: trainSet.count, valCount: valSet.count) : nil
        let useCache = Distributed.broadcast(cached != nil)
        // The encoder (and its init checkpoint) is checked before the run directory is touched.
        let encoder = useCache ? nil : try buildModel()
        let opening = try directory.open(spec: spec, overrides: overrides, echo: echo)
        defer { directory.release() }
        let previous = Distributed.isWriter && directory.isFinished ? try readSummary(directory) : nil
        alreadyComplete = false
        var done: [Int: (top1: Double, top5: Double)]? = nil
        if opening == .complete, let previous { done = Self.results(previous, k: spec.eval.knnK) }
        let extract = Distributed.broadcast(done == nil && !useCache)
        if let done {
            alreadyComplete = true
            return done
        }
        if !Distributed.isWriter && !extract { return [:] }
        if opening == .fresh { try directory.start(resolvedConfig: spec.resolvedYAML(), overrides: overrides) }
        let x: Features
        if let cached {
            usedCache = true
            x = cached
            directory.log("\(spec.name): k-NN on cached features (\(cachePath)): \(x.train.shape[0]) train, \(x.val.shape[0]) val, "
                    + "width \(x.train.shape[1])", echo: echo)
        } else {
            usedCache = false
            guard let model = encoder else { preconditionFailure("the encoder is built whenever the cache is not used") }
            directory.log("\(spec.name): k-NN, \(spec.model.arch.rawValue) encoder from \(spec.initCheckpoint ?? "random init (seed \(spec.seed))"), "
                    + "feature \(spec.eval.knnFeature.rawValue), \(trainSet.count) train / \(valSet.count) val images", echo: echo)
            let pipe = Registry.pipeline(spec, train: false)
            func loader(_ ds: ImageDataset) -> DataLoader {
                DataLoader(dataset: Strided.share(of: ds), pipeline: pipe, batchSize: spec.batchSize, shuffle: false, dropLast: false,
                           seed: UInt64(spec.seed), workers: spec.data.numWorkers)
            }
            let t0 = Date()
            let tr = KNN.extract(model: model, loader: loader(trainSet))
            let va = KNN.extract(model: model, loader: loader(valSet))
            x = Features(train: tr.features, trainLabels: tr.labels, val: va.features, valLabels: va.labels)
            if Distributed.isWriter { try writeCache(x, key: key) }
            directory.log(String(format: "features extracted in %.1f s (%.0f images/s)", Date().timeIntervalSince(t0),
                           Double(trainSet.count + valSet.count) / max(Date().timeIntervalSince(t0), 1e-9)), echo: echo)
        }
        let classes = max(trainSet.classes.count, (x.trainLabels.max() ?? 0) + 1, (x.valLabels.max() ?? 0) + 1)
        let t1 = Date()
        let result = KNN.classify(train: x.train, trainLabels: x.trainLabels, test: x.val, testLabels: x.valLabels,
                                  k: spec.eval.knnK, temperature: Float(spec.eval.knnTemperature), numClasses: classes)
        let voteSeconds = Date().timeIntervalSince(t1)
        // Results for k values asked for earlier stay in the summary (same features, same vote).
        var knn: [String: Any] = (previous?["knn"] as? [String: Any]) ?? [:]
        for k in result.keys.sorted() {
            let r = result[k]!
            knn["top1@\(k)"] = r.top1
            knn["top5@\(k)"] = r.top5
            directory.log(String(format: "k-NN k=%d T=%g: top-1 %.2f%%  top-5 %.2f%%", k, spec.eval.knnTemperature, r.top1, r.top5), echo: echo)
        }
        try directory.write("summary.json", JSON.object([
            "task": "knn", "method": spec.model.method.rawValue, "feature": spec.eval.knnFeature.rawValue,
            "init": spec.initCheckpoint ?? "random", "temperature": spec.eval.knnTemperature, "knn": knn,
            "train_images": x.train.shape[0], "val_images": x.val.shape[0], "cached_features": usedCache,
            "vote_seconds": voteSeconds, "seconds": Date().timeIntervalSince(started),
        ]))
        return result
    }
}
