import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// The k-NN protocol: DINO's weighted vote, its PyTorch reference, and the `knn` runner end to end.
final class KNNTests: ScratchTestCase {
    /// Unit vectors at the given angles (degrees), as [count, 2].
    private func circle(_ degrees: [Double]) -> Tensor {
        Tensor(degrees.flatMap { d -> [Float] in
            let r = d * .pi / 180
            return [Float(cos(r)), Float(sin(r))]
        }, shape: [degrees.count, 2])
    }

    /// Five train points on the unit circle; the test point at 0° has one class-0 neighbour at
    /// similarity 1 and two class-1 neighbours at 0.5: a majority of 3 says class 1, the weighted vote
    /// (e^{1/T} against 2·e^{0.5/T}) says class 0.
    func testWeightedVoteDiffersFromMajority() {
        let train = circle([0, 60, -60, 180, 170])
        let trainLabels = [0, 1, 1, 2, 3]
        // 0° label 0; 0° label 2 (zero score: ranked 3rd at k = 3 only because ties go by class index);
        // 172° label 3; 10° label 0.
        let test = circle([0, 0, 172, 10])
        let testLabels = [0, 2, 3, 0]
        let r = KNN.classify(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels,
                             k: [1, 3, 5], temperature: 0.1, numClasses: 4)
        XCTAssertEqual(Set(r.keys), [1, 3, 5])
        XCTAssertEqual(r[1]!.top1, 75); XCTAssertEqual(r[1]!.top5, 75)
        XCTAssertEqual(r[3]!.top1, 75); XCTAssertEqual(r[3]!.top5, 100)
        XCTAssertEqual(r[5]!.top1, 75); XCTAssertEqual(r[5]!.top5, 100)
        // A large temperature makes every weight ≈ 1: the vote turns into a majority vote and the two
        // test points at 0°/10° with label 0 are now voted class 1.
        let flat = KNN.classify(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels,
                                k: [3], temperature: 100, numClasses: 4)
        XCTAssertEqual(flat[3]!.top1, 25)
        XCTAssertEqual(flat[3]!.top5, 100)
    }

    /// Exact agreement with DINO's knn_classifier (tools/make_knn_fixture.py) on 400 train / 200 test
    /// random clustered features, k in [1, 3, 5, 10, 20], T = 0.07. Test rows are split over several
    /// similarity chunks here, as the reference splits them into 100.
    func testMatchesDINOReference() throws {
        let url = Bundle.module.url(forResource: "knn", withExtension: "h5", subdirectory: "Fixtures")!
        let f = try HDF5File(reading: url.path)
        defer { f.close() }
        func floats(_ name: String) throws -> Tensor { let (v, s) = try f.readFloats(name); return Tensor(v, shape: s) }
        func ints(_ name: String) throws -> [Int] { try f.readInts(name).values.map { Int($0) } }
        let train = try floats("train/features"), test = try floats("test/features")
        let trainLabels = try ints("train/labels"), testLabels = try ints("test/labels")
        let ks = try ints("k")
        let top1 = try f.readDoubles("top1").values, top5 = try f.readDoubles("top5").values
        XCTAssertEqual(train.shape, [400, 32])
        XCTAssertEqual(test.shape, [200, 32])
        let r = KNN.classify(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels,
                             k: ks, temperature: 0.07, numClasses: 10)
        for (i, k) in ks.enumerated() {
            XCTAssertEqual(r[k]!.top1, top1[i], "top-1 at k=\(k)")
            XCTAssertEqual(r[k]!.top5, top5[i], "top-5 at k=\(k)")
        }
    }

    /// A k larger than the train set uses every train row.
    /// Feature extraction splits each batch over the threads (`mapBatchRows`): the same features as
    /// one pass over the whole batch, to float rounding, in row order, for any split and chunk size.
    func testSplitExtractionEqualsOnePass() throws {
        let spec = try ConfigLoader.load(yaml: "name: x\ntask: knn\nbatch_size: 8\n" + tinyMAEModelAndData, file: "x.yaml", checkPaths: false)
        let model = ViTClassifier(Registry.vitShape(spec), Registry.vitStyle(spec), pool: .cls, featureNorm: .none, numClasses: 0)
        var rng = RandomGenerator(seed: 3)
        model.encoder.initialize(rng: &rng, torchDefaultPatch: false, clsTruncated: false)
        let images = Tensor.randn([7, 3, 32, 32], rng: &rng)
        let ctx = Context(training: false)
        let whole = Autograd.noGrad { model.features(images, ctx: ctx) }.array
        for (parts, maxRows) in [(2, Int.max), (3, Int.max), (7, Int.max), (9, Int.max), (1, 2), (2, 3), (2, 1)] {
            let split = Autograd.noGrad { mapBatchRows(images, parts: parts, maxRows: maxRows) { model.features($0, ctx: ctx) } }
            XCTAssertEqual(split.shape, [7, 32])
            for (a, b) in zip(split.array, whole) {
                XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), "\(parts) parts, chunks of at most \(maxRows)")
            }
        }
    }

    func testKLargerThanTrainSet() {
        let train = circle([0, 90]), test = circle([10])
        let r = KNN.classify(train: train, trainLabels: [0, 1], test: test, testLabels: [1], k: [1, 50], temperature: 0.07, numClasses: 2)
        XCTAssertEqual(r[1]!.top1, 0)
        XCTAssertEqual(r[50]!.top1, 0)
        XCTAssertEqual(r[50]!.top5, 100)
    }

    // MARK: runner

    private func knnYAML(name: String, extra: String = "") -> String {
        """
        name: \(name)
        task: knn
        seed: 3
        batch_size: 128
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        eval:
          knn_k: [10, 20]
          knn_temperature: 0.07
          knn_feature: cls
        \(extra)
        """
    }

    private func loadSpec(_ yaml: String, overrides: [String] = []) throws -> ExperimentSpec {
        try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("config.yaml").path, overrides: overrides)
    }

    /// Random encoder on 512 train / 256 val Fashion-MNIST images: far above chance, summary and run
    /// files written, features in dataset order; a second run (other k) reuses features.h5 untouched.
    func testRunnerRandomEncoderAndCache() throws {
        let overrides = ["data.limit=512", "data.val_limit=256"]
        let spec = try loadSpec(knnYAML(name: "random"), overrides: overrides)
        let t0 = Date()
        let runner = try KNNRunner(spec: spec, overrides: overrides)
        runner.echo = false
        let r = try runner.run()
        let first = Date().timeIntervalSince(t0)
        XCTAssertFalse(runner.usedCache)
        XCTAssertGreaterThan(r[10]!.top1, 20, "random-encoder k-NN top-1 at k=10")
        XCTAssertGreaterThanOrEqual(r[10]!.top5, r[10]!.top1)
        print(String(format: "KNNTests: random encoder, 512/256 images: top-1 %.2f%% @10, %.2f%% @20; top-5 %.2f%% @10 (%.2f s)",
                     r[10]!.top1, r[20]!.top1, r[10]!.top5, first))

        let dir = runner.directory
        for file in ["config.yaml", "overrides.txt", "meta.json", "log.txt", "summary.json", "features.h5"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.file(file)), file)
        }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("summary.json")))) as! [String: Any]
        XCTAssertEqual(summary["task"] as? String, "knn")
        let knn = summary["knn"] as! [String: Any]
        XCTAssertEqual((knn["top1@10"] as! NSNumber).doubleValue, r[10]!.top1, accuracy: 1e-4)
        XCTAssertNotNil(knn["top5@20"])
        let table = try ResultsTable.load(root: scratch.path)
        XCTAssertTrue(table.columns.contains("knn/top1@10"), "\(table.columns)")

        // Cached features: unit rows, labels in dataset order.
        let f = try HDF5File(reading: runner.cachePath)
        let (feats, shape) = try f.readFloats("train/features")
        let labels = try f.readInts("train/labels").values
        f.close()
        XCTAssertEqual(shape, [512, 32])
        for row in [0, 511] {
            let norm = (0..<32).reduce(Float(0)) { $0 + feats[row * 32 + $1] * feats[row * 32 + $1] }
            XCTAssertEqual(norm, 1, accuracy: 1e-5)
        }
        let data = try Registry.dataset(spec, train: true)
        for i in [0, 1, 200, 511] { XCTAssertEqual(Int(labels[i]), try data.sample(i).label, "label \(i)") }

        // Second run with other k: same features file, not rewritten.
        let before = try FileManager.default.attributesOfItem(atPath: runner.cachePath)[.modificationDate] as! Date
        let spec2 = try loadSpec(knnYAML(name: "random"), overrides: overrides + ["eval.knn_k=[10, 5]"])
        let again = try KNNRunner(spec: spec2, overrides: overrides)
        again.echo = false
        let t1 = Date()
        let r2 = try again.run()
        let second = Date().timeIntervalSince(t1)
        XCTAssertTrue(again.usedCache)
        let after = try FileManager.default.attributesOfItem(atPath: again.cachePath)[.modificationDate] as! Date
        XCTAssertEqual(before, after, "features.h5 was rewritten")
        XCTAssertEqual(r2[10]!.top1, r[10]!.top1)
        XCTAssertEqual(r2[10]!.top5, r[10]!.top5)
        XCTAssertNotNil(r2[5])
        print(String(format: "KNNTests: cached rerun %.3f s", second))

        // Another feature kind is another run: refused in this directory, naming the key; with
        // resume=restart the old run (and its cache) moves aside and the features are extracted anew.
        let spec3 = try loadSpec(knnYAML(name: "random"), overrides: overrides + ["eval.knn_feature=mean"])
        XCTAssertThrowsError(try KNNRunner(spec: spec3, overrides: overrides).run()) { e in
            XCTAssertTrue("\(e)".contains("eval.knn_feature: cls → mean"), "\(e)")
        }
        let spec4 = try loadSpec(knnYAML(name: "random"), overrides: overrides + ["eval.knn_feature=mean", "resume=restart"])
        let third = try KNNRunner(spec: spec4, overrides: overrides)
        third.echo = false
        _ = try third.run()
        XCTAssertFalse(third.usedCache)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path + ".restart-1/features.h5"))
    }

    /// `init`: a checkpoint with the full encoder loads (same features as the source model); one
    /// lacking an encoder parameter is an error naming it.
    func testInitCheckpointLoadsAndReportsMissingKeys() throws {
        let base = try loadSpec(knnYAML(name: "ck"))
        let shape = Registry.vitShape(base), style = Registry.vitStyle(base)
        let source = ViTClassifier(shape, style, pool: .cls, featureNorm: .none, numClasses: 0)
        var rng = RandomGenerator(seed: 42)
        source.encoder.initialize(rng: &rng)
        var params = Dictionary(uniqueKeysWithValues: source.stateDict().map { ($0.name, $0.tensor) })
        params["decoder_embed.weight"] = Tensor.zeros([16, 32])   // pre-training-only keys are ignored
        let full = scratch.appendingPathComponent("full.h5").path
        try Checkpoint(params: params).write(to: full)

        let spec = try loadSpec(knnYAML(name: "ck"), overrides: ["init=\(full)", "eval.knn_feature=norm_cls"])
        let model = try KNNRunner(spec: spec).buildModel()
        var img = RandomGenerator(seed: 1)
        let x = Tensor(shape: [2, 3, 32, 32])
        img.fillNormal(x.data, x.count)
        let ctx = Context(training: false)
        let a = Autograd.noGrad { source.features(x, ctx: ctx) }, b = Autograd.noGrad { model.features(x, ctx: ctx) }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.data, count: a.count)), Array(UnsafeBufferPointer(start: b.data, count: b.count)))

        params["blocks.0.attn.qkv.weight"] = nil
        params["norm.bias"] = nil
        let partial = scratch.appendingPathComponent("partial.h5").path
        try Checkpoint(params: params).write(to: partial)
        let bad = try loadSpec(knnYAML(name: "ck"), overrides: ["init=\(partial)", "eval.knn_feature=norm_cls"])
        XCTAssertThrowsError(try KNNRunner(spec: bad).buildModel()) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("blocks.0.attn.qkv.weight") && text.contains("norm.bias"), text)
        }
    }
}
