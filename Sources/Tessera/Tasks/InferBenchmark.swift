import Foundation
import TesseraConfig
import TesseraCore

/// `tessera bench infer`: feature extraction (the cost of k-NN and of the linear probe's frozen
/// encoder): a ViT encoder's forward pass without gradients on a batch of 256, its cls token after the
/// final norm as the feature. Tessera beside PyTorch inference (timm's own VisionTransformer under
/// torch.inference_mode, eager and torch.compile, tools/bench_torch_infer.py), each measurement in a
/// fresh process, as `bench train` measures.
public enum InferBenchmark {
    public struct Preset: Sendable {
        public let name: String
        public let width, depth, heads, img, patch, batch: Int

        var yaml: String {
            """
            name: bench_\(name)
            task: knn
            batch_size: \(batch)
            model: {method: mae, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img)}
            data: {dataset: fashion-mnist}
            """
        }

        var torchArguments: [String] {
            ["--width", "\(width)", "--depth", "\(depth)", "--heads", "\(heads)", "--img", "\(img)", "--patch", "\(patch)", "--batch", "\(batch)"]
        }

        /// Multiply-adds ×2 of one image's forward pass: blocks over all L + 1 tokens and the patch embedding.
        public var flopsPerImage: Double {
            let t = (img / patch) * (img / patch) + 1
            let blocks = Double(depth) * (2.0 * Double(t) * Double(12 * width * width) + 4.0 * Double(t * t * width))
            return blocks + 2.0 * Double((t - 1) * patch * patch * 3 * width)
        }
    }

    public static let presets: [Preset] = [
        Preset(name: "infer_tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, batch: 256),
        Preset(name: "infer_vits16", width: 384, depth: 12, heads: 6, img: 224, patch: 16, batch: 256),
    ]

    public static func preset(_ name: String) throws -> Preset {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw TrainBenchmark.ValidationFailure(description: "tessera: unknown inference benchmark model '\(name)'; choose \(presets.map(\.name).joined(separator: ", "))")
        }
        return p
    }

    /// Tessera's modes: `replicas` splits the batch over the threads in chunks of about 8192 tokens
    /// (each chunk's forward on one thread, what k-NN and the probes run), `kernels` runs one pass over
    /// the whole batch with threaded kernels.
    public static let tesseraModes = ["replicas", "kernels"]

    /// Extracts features of fixed synthetic images in this process: `warmup` untimed batches, then
    /// `steps` timed ones.
    public static func measureTessera(_ p: Preset, steps: Int, warmup: Int, replicas: Bool) throws -> TrainBenchmark.Measurement {
        let spec = try ConfigLoader.load(yaml: p.yaml, file: "bench_\(p.name).yaml", checkPaths: false)
        let base = Memory.residentBytes()
        var rng = RandomGenerator(seed: 0)
        let model = ViTClassifier(Registry.vitShape(spec), Registry.vitStyle(spec), pool: .cls, featureNorm: .none, numClasses: 0)
        model.encoder.initialize(rng: &rng, torchDefaultPatch: false, clsTruncated: false)
        let images = Tensor.randn([p.batch, 3, p.img, p.img], rng: &rng)
        let ctx = Context(training: false)
        var times: [Double] = []
        var check: Float = 0
        for i in 0..<(warmup + steps) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let f = Autograd.noGrad { mapBatchRows(images, parts: replicas ? Parallel.threads : 1, maxRows: replicas ? model.inferenceChunk : .max) { model.features($0, ctx: ctx) } }
            if i >= warmup { times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9) }
            check += f.data[0]
        }
        precondition(check.isFinite, "tessera: non-finite features")
        return TrainBenchmark.Measurement(imagesPerSecond: Double(p.batch * times.count) / times.reduce(0, +), stepSeconds: times,
                                          peakBytes: Memory.peakResidentBytes() - base, threads: Parallel.threads)
    }

    /// The comparison table, rounds alternating Tessera's modes and PyTorch's.
    public static func report(presets: [Preset], steps: Int, warmup: Int, rounds: Int, withTorch: Bool, tesseraModes: [String],
                              torchModes: [String], executable: String, toolsDirectory: String) -> String {
        let script = (toolsDirectory as NSString).appendingPathComponent("bench_torch_infer.py")
        let torch = withTorch && FileManager.default.fileExists(atPath: script) && TrainBenchmark.torchAvailable()
        let rows = tesseraModes.map { (label: $0 == "replicas" ? "tessera" : "tessera " + $0, mode: $0) }
        let frameworks = rows.map(\.label) + (torch ? torchModes.map { "torch " + $0 } : [])
        var lines = ["Feature extraction (encoder forward without gradients, cls token after the final norm), synthetic images, "
                     + "\(Parallel.threads) threads; \(steps) timed batches after \(warmup) warm-up, \(rounds) round(s) run in turn"]
        if !torch { lines.append("(PyTorch not measured: " + (withTorch ? "python3 with torch and timm, or \(script), not found" : "--no-torch") + ")") }
        let before = OpsBenchmark.sgemmRate()
        lines.append("CPU: \(OpsBenchmark.cpuModel). " + TrainBenchmark.sgemmLine(before))
        lines.append("")
        lines.append("model          framework        img/s per round        best img/s  GFLOP/s  %SGEMM  peak MiB   ×eager  ×compile")
        for p in presets {
            var results: [String: [TrainBenchmark.Measurement]] = [:]
            // The all-thread SGEMM rate probed at the start of each round, beside each measurement of it.
            var roundSGEMM: [String: [Double]] = [:], probes: [Double] = []
            var notes: [String] = []
            for _ in 0..<rounds {
                let probe = OpsBenchmark.sgemmRate().all
                probes.append(probe)
                for f in frameworks {
                    var note = ""
                    let m: TrainBenchmark.Measurement?
                    if let row = rows.first(where: { $0.label == f }) {
                        m = TrainBenchmark.runMeasurement(executable, ["bench", "infer", "--model", p.name, "--reps", "\(steps)", "--warmup", "\(warmup)",
                                                                       "--only", "tessera", "--tessera-modes", row.mode], note: &note)
                    } else {
                        m = TrainBenchmark.runMeasurement("python3", [script] + p.torchArguments
                                                          + ["--steps", "\(steps)", "--warmup", "\(warmup)", "--threads", "\(Parallel.threads)",
                                                             "--mode", f == "torch eager" ? "eager" : "compile"], note: &note)
                    }
                    if let m {
                        results[f, default: []].append(m)
                        roundSGEMM[f, default: []].append(probe)
                    } else { notes.append("\(f): \(note)") }
                }
            }
            lines += TrainBenchmark.tableLines(name: p.name, frameworks: frameworks, results: results, roundSGEMM: roundSGEMM,
                                               probes: probes, batch: p.batch, flopsPerImage: p.flopsPerImage)
            for n in notes { lines.append("  note: \(n)") }
        }
        lines.append("")
        lines.append("After the rows: " + TrainBenchmark.sgemmLine(OpsBenchmark.sgemmRate()))
        lines.append("img/s: batch / median batch time of each measurement; best: the best round. tessera splits each batch over the")
        lines.append("threads in chunks of ~8192 tokens (k-NN and the probes do); tessera kernels runs one pass with threaded kernels. GFLOP/s: linear, patch-")
        lines.append("embedding and attention products of the forward pass. Peak MiB: growth of the peak resident set over the size")
        lines.append("before the model is built, each measurement a fresh process. %SGEMM: each round's GFLOP/s over the all-thread")
        lines.append("SGEMM rate probed at the start of that round, median over the rounds (the host drifts by minutes).")
        return lines.joined(separator: "\n")
    }
}
