import Foundation
import TesseraConfig
import TesseraCore
import TesseraData

/// `tessera bench train`: MAE and SAIM pre-training throughput and peak memory of Tessera beside PyTorch
/// (eager and torch.compile, through tools/bench_torch_mae.py and bench_torch_saim.py) on the same model, batch and
/// optimizer, measured in one run. Every measurement runs in a fresh process so that peak memory
/// is comparable: the growth of the peak resident set over the size just before the model is built.
public enum TrainBenchmark {
    /// A benchmark model: MAE with the given encoder and decoder, or SAIM with the given encoder and
    /// `queryDepth` query blocks (MLP head, 3×3 target blur, norm-pix); AdamW (0.9, 0.95), wd 0.05.
    public struct Preset: Sendable {
        public enum Method: String, Sendable { case mae, saim, semaim, cae, finetune }
        public let name: String
        public let method: Method
        public let width, depth, heads, img, patch, decWidth, decDepth, decHeads, batch: Int
        public let queryDepth: Int
        /// CAE: regressor blocks and masked patches per image.
        public var regressorDepth = 0, maskCount = 0
        /// Fine-tuning: classes of the head.
        public var numClasses = 0

        public init(name: String, width: Int, depth: Int, heads: Int, img: Int, patch: Int,
                    decWidth: Int, decDepth: Int, decHeads: Int, batch: Int) {
            self.name = name
            method = .mae
            self.width = width; self.depth = depth; self.heads = heads; self.img = img; self.patch = patch
            self.decWidth = decWidth; self.decDepth = decDepth; self.decHeads = decHeads; self.batch = batch
            queryDepth = 0
        }

        public init(saim name: String, width: Int, depth: Int, heads: Int, img: Int, patch: Int, queryDepth: Int, batch: Int,
                    semantic: Bool = false) {
            self.name = name
            method = semantic ? .semaim : .saim
            self.width = width; self.depth = depth; self.heads = heads; self.img = img; self.patch = patch
            decWidth = 0; decDepth = 0; decHeads = 0; self.batch = batch
            self.queryDepth = queryDepth
        }

        /// CAE with pixel targets (no tokenizer weights here): encoder on the visible patches, the
        /// alignment pass on the masked ones, `regressorDepth` regressor blocks and a decoder over the
        /// `maskCount` masked tokens.
        public init(cae name: String, width: Int, depth: Int, heads: Int, img: Int, patch: Int,
                    decWidth: Int, decDepth: Int, decHeads: Int, regressorDepth: Int, maskCount: Int, batch: Int) {
            self.name = name
            method = .cae
            self.width = width; self.depth = depth; self.heads = heads; self.img = img; self.patch = patch
            self.decWidth = decWidth; self.decDepth = decDepth; self.decHeads = decHeads; self.batch = batch
            queryDepth = 0
            self.regressorDepth = regressorDepth
            self.maskCount = maskCount
        }

        /// End-to-end fine-tuning of a ViT with MAE's recipe: mean-pooled patch tokens, fc_norm and a
        /// `numClasses` head; drop path 0.1, mixup 0.8 / cutmix 1.0 soft targets with label smoothing
        /// 0.1, AdamW with layer decay 0.75.
        public init(finetune name: String, width: Int, depth: Int, heads: Int, img: Int, patch: Int, numClasses: Int, batch: Int) {
            self.name = name
            method = .finetune
            self.width = width; self.depth = depth; self.heads = heads; self.img = img; self.patch = patch
            decWidth = 0; decDepth = 0; decHeads = 0; self.batch = batch
            queryDepth = 0
            self.numClasses = numClasses
        }

        var yaml: String {
            if method == .finetune {
                return """
                name: bench_\(name)
                task: finetune
                batch_size: \(batch)
                epochs: 1
                model: {method: mae, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img),
                        global_pool: true, drop_path: 0.1, num_classes: \(numClasses)}
                data: {dataset: fashion-mnist}
                augment: {mixup: 0.8, cutmix: 1.0, smoothing: 0.1}
                optim: {name: adamw, lr: 1.0e-4, weight_decay: 0.05, betas: [0.9, 0.999], layer_decay: 0.75}
                log: {pictures: false}
                """
            }
            let model: String
            switch method {
            case .finetune: preconditionFailure("unreachable")
            case .mae:
                model = """
                {method: mae, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img),
                        decoder: {width: \(decWidth), depth: \(decDepth), heads: \(decHeads)}, mask_ratio: 0.75, norm_pix_loss: true}
                """
            case .saim:
                model = """
                {method: saim, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img),
                        query_depth: \(queryDepth), prediction_head: mlp, gaussian_kernel_size: 3, gaussian_sigma: 1, norm_pix_loss: true}
                """
            case .cae:
                model = """
                {method: cae, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img),
                        layer_scale: 0.1, decoder: {width: \(decWidth), depth: \(decDepth), heads: \(decHeads)}, regressor_depth: \(regressorDepth),
                        decoder_layer_scale: 0.1, num_mask_patches: \(maskCount), block_min_patches: 4, cae_target: pixels, norm_pix_loss: true}
                """
            case .semaim:
                model = """
                {method: semaim, arch: custom, width: \(width), depth: \(depth), heads: \(heads), patch_size: \(patch), img_size: \(img),
                        query_depth: \(queryDepth), prediction_head: mlp, gaussian_kernel_size: 3, gaussian_sigma: 1, norm_pix_loss: true,
                        permutation: attention_center, attention_type: cls}
                """
            }
            return """
            name: bench_\(name)
            task: pretrain
            batch_size: \(batch)
            epochs: 1
            model: \(model)
            data: {dataset: fashion-mnist}
            optim: {name: adamw, lr: 1.0e-4, weight_decay: 0.05, betas: [0.9, 0.95]}
            log: {pictures: false}
            """
        }

        /// The PyTorch side's script under tools/.
        public var torchScript: String { "bench_torch_\(method.rawValue).py" }

        var torchArguments: [String] {
            let common = ["--width", "\(width)", "--depth", "\(depth)", "--heads", "\(heads)", "--img", "\(img)", "--patch", "\(patch)",
                          "--batch", "\(batch)"]
            switch method {
            case .mae: return common + ["--dec-width", "\(decWidth)", "--dec-depth", "\(decDepth)", "--dec-heads", "\(decHeads)"]
            case .saim, .semaim: return common + ["--query-depth", "\(queryDepth)", "--kernel", "3", "--sigma", "1"]
            case .cae: return common + ["--dec-width", "\(decWidth)", "--dec-depth", "\(decDepth)", "--dec-heads", "\(decHeads)",
                                        "--regressor-depth", "\(regressorDepth)", "--mask-count", "\(maskCount)"]
            case .finetune: return common + ["--classes", "\(numClasses)"]
            }
        }

        /// Multiply-adds ×2 of one training image (forward + backward ≈ 3 × forward) in the linear
        /// layers, patch embedding and attention products; element-wise work is not counted.
        public var flopsPerImage: Double {
            let l = (img / patch) * (img / patch)
            func blocks(_ tokens: Int, _ d: Int, _ n: Int) -> Double {
                let linear = 2.0 * Double(tokens) * Double(12 * d * d)
                let attention = 4.0 * Double(tokens * tokens * d)
                return Double(n) * (linear + attention)
            }
            let embed = 2.0 * Double(l * patch * patch * 3 * width)
            let out = patch * patch * 3
            switch method {
            case .finetune:
                // Every block over all L + 1 tokens and the head; no decoder.
                return 3 * (embed + blocks(l + 1, width, depth) + 2.0 * Double(width * numClasses))
            case .mae:
                let visible = l - Int(Double(l) * 0.75) + 1
                let decoderEmbed = 2.0 * Double(visible * width * decWidth)
                let pred = 2.0 * Double((l + 1) * decWidth * out)
                return 3 * (embed + blocks(visible, width, depth) + decoderEmbed + blocks(l + 1, decWidth, decDepth) + pred)
            case .saim:
                // Content and query blocks over L + 1 tokens each; the MLP head (D → 4D → p²·3) on L + 1.
                let head = 2.0 * Double((l + 1) * (width * 4 * width + 4 * width * out))
                return 3 * (embed + blocks(l + 1, width, depth) + blocks(l + 1, width, queryDepth) + head)
            case .cae:
                // Encoder on cls + visible (forward + backward), the alignment pass on cls + masked
                // (forward only), regressor blocks (queries M, keys/values L = visible + queries), the
                // decoder over the M masked tokens and its pixel head.
                let m = maskCount, d = decWidth
                let visible = blocks(1 + l - m, width, depth), aligned = blocks(1 + m, width, depth)
                let regressor = Double(regressorDepth) * (2.0 * Double((10 * m + 2 * l) * d * d) + 4.0 * Double(m * l * d))
                let pred = 2.0 * Double(m * d * out)
                return 3 * (embed + visible + regressor + blocks(m, d, decDepth) + pred) + embed + aligned
            case .semaim:
                // SAIM's step plus the order pass: one forward of the content stream without masks.
                let saim = 3 * (embed + blocks(l + 1, width, depth) + blocks(l + 1, width, queryDepth)
                                + 2.0 * Double((l + 1) * (width * 4 * width + 4 * width * out)))
                return saim + embed + blocks(l + 1, width, depth)
            }
        }
    }

    /// tiny32 is DEVELOPERS.md's peer configuration; vits16 is ViT-S/16 at 224 px with the decoder of
    /// the MAE-priv ViT-S recipe (192 wide, 4 deep, 3 heads; MAE's own 512/8 decoder would be 80 % of
    /// that model's arithmetic); vitb16 is MAE's own ViT-B/16 recipe shape (decoder 512 wide, 8 deep,
    /// 16 heads) at batch 16; saim_tiny32 is SAIM on tiny32's encoder with 12 query blocks, and
    /// semaim_tiny32 the same model in SemAIM's order (attention_center / cls, with its eval-mode
    /// encoder pass before every step); cae_tiny32 is CAE (pixel targets) on tiny32's encoder with half
    /// the patches masked, a 192-wide regressor of 4 blocks and decoder of 4.
    public static let presets: [Preset] = [
        Preset(name: "tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, decWidth: 128, decDepth: 2, decHeads: 4, batch: 128),
        Preset(name: "vits16", width: 384, depth: 12, heads: 6, img: 224, patch: 16, decWidth: 192, decDepth: 4, decHeads: 3, batch: 32),
        Preset(name: "vitb16", width: 768, depth: 12, heads: 12, img: 224, patch: 16, decWidth: 512, decDepth: 8, decHeads: 16, batch: 16),
        Preset(saim: "saim_tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, queryDepth: 12, batch: 128),
        Preset(saim: "semaim_tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, queryDepth: 12, batch: 128, semantic: true),
        Preset(finetune: "ft_tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, numClasses: 10, batch: 128),
        Preset(finetune: "ft_vits16", width: 384, depth: 12, heads: 6, img: 224, patch: 16, numClasses: 1000, batch: 32),
        Preset(cae: "cae_tiny32", width: 192, depth: 12, heads: 3, img: 32, patch: 4, decWidth: 192, decDepth: 4, decHeads: 3,
               regressorDepth: 4, maskCount: 32, batch: 128),
    ]

    public static func preset(_ name: String) throws -> Preset {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw ValidationFailure(description: "tessera: unknown benchmark model '\(name)'; choose \(presets.map(\.name).joined(separator: ", "))")
        }
        return p
    }

    public struct ValidationFailure: Error, CustomStringConvertible { public let description: String }

    /// One measurement: images per second over the timed steps and peak memory growth.
    public struct Measurement: Sendable {
        public var imagesPerSecond: Double
        public var stepSeconds: [Double]
        public var peakBytes: Int
        public var threads: Int
        /// Seconds of each timed step spent in the gradient allreduce (several processes only).
        public var allreduceSeconds: [Double] = []

        public var json: String {
            let steps = stepSeconds.map { String(format: "%.5f", $0) }.joined(separator: ", ")
            let reduce = allreduceSeconds.map { String(format: "%.5f", $0) }.joined(separator: ", ")
            return "{\"images_per_s\": \(imagesPerSecond), \"step_seconds\": [\(steps)], \"peak_bytes\": \(peakBytes), \"threads\": \(threads), "
                + "\"allreduce_seconds\": [\(reduce)]}"
        }

        init(imagesPerSecond: Double, stepSeconds: [Double], peakBytes: Int, threads: Int, allreduceSeconds: [Double] = []) {
            self.imagesPerSecond = imagesPerSecond; self.stepSeconds = stepSeconds; self.peakBytes = peakBytes; self.threads = threads
            self.allreduceSeconds = allreduceSeconds
        }

        /// Parses the JSON line a measuring child process prints; nil when it is not one.
        public init?(json line: String) {
            guard let d = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let ips = d["images_per_s"] as? Double, let peak = d["peak_bytes"] as? Int else { return nil }
            self.init(imagesPerSecond: ips, stepSeconds: d["step_seconds"] as? [Double] ?? [], peakBytes: peak,
                      threads: d["threads"] as? Int ?? 0, allreduceSeconds: d["allreduce_seconds"] as? [Double] ?? [])
        }
    }

    /// Trains the preset in this process on fixed synthetic images: `warmup` untimed steps, then
    /// `steps` timed ones (forward, backward, AdamW update, zeroing the gradients). `dataParallel`
    /// splits each batch over the threads as pre-training does by default (`PretrainStep`); false runs
    /// one pass with threaded kernels.
    public static func measureTessera(_ p: Preset, steps: Int, warmup: Int, dataParallel: Bool = true) throws -> Measurement {
        if p.method == .finetune { return try measureFinetune(p, steps: steps, warmup: warmup, dataParallel: dataParallel) }
        let spec = try ConfigLoader.load(yaml: p.yaml, file: "bench_\(p.name).yaml", checkPaths: false)
        let base = Memory.residentBytes()
        var rng = RandomGenerator(seed: 0)
        let model = try Registry.method(spec.model.method.rawValue).build(spec, &rng)
        let groups = OptimBuilder.pretrainGroups(spec, model)
        let opt = OptimBuilder.optimizer(spec, groups)
        // Under mpirun each process takes its share of the batch and the gradients are averaged
        // over the processes, as a training run does.
        let local = p.batch / Distributed.size, first = Distributed.rank * local
        let images = Tensor.randn([local, 3, p.img, p.img], rng: &rng)
        return timedSteps(p, steps: steps, warmup: warmup, base: base, model: model, groups: groups, optimizer: opt,
                          // As in the PyTorch script, the draws (noise) are made before the timed region.
                          prepare: { i in PretrainBatch(views: [images], draws: Draws.make(model, indices: Array(first..<(first + local)), epoch: i, seed: 0)) },
                          forwardBackward: { i, batch in
                              _ = PretrainStep.run(model, batch: batch, ctx: Context(training: true, rng: rng.derived(1, UInt64(i))), scale: 1,
                                                   replicas: dataParallel ? Parallel.threads : 1)
                          })
    }

    /// The timed loop of both kinds of step: `warmup` untimed and `steps` timed iterations of
    /// `prepare(i)` (before the timer), `forwardBackward(i, prepared)`, the gradient allreduce under
    /// mpirun (timed on its own too), the optimizer step and zeroing the gradients.
    static func timedSteps<Prepared>(_ p: Preset, steps: Int, warmup: Int, base: Int, model: Module, groups: [ParamGroup],
                                     optimizer: Optimizer, prepare: (Int) -> Prepared,
                                     forwardBackward: (Int, Prepared) throws -> Void) rethrows -> Measurement {
        let params = groups.flatMap { $0.params.map(\.tensor) }
        var times: [Double] = [], reduce: [Double] = []
        for i in 0..<(warmup + steps) {
            let prepared = prepare(i)
            let t0 = DispatchTime.now().uptimeNanoseconds
            try forwardBackward(i, prepared)
            let r0 = DispatchTime.now().uptimeNanoseconds
            if Distributed.isDistributed { averageGradientsOverRanks(params) }
            let r1 = DispatchTime.now().uptimeNanoseconds
            optimizer.step(lr: 1e-4, weightDecay: nil)
            model.zeroGrad()
            if i >= warmup {
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                if Distributed.isDistributed { reduce.append(Double(r1 - r0) * 1e-9) }
            }
        }
        return Measurement(imagesPerSecond: Double(p.batch * times.count) / times.reduce(0, +), stepSeconds: times,
                           peakBytes: Memory.peakResidentBytes() - base, threads: Parallel.threads, allreduceSeconds: reduce)
    }

    /// A fine-tuning step as `tessera train` runs it (`DownstreamRunner.step`): mixup/cutmix soft
    /// targets drawn in the timed region (as the training loop does), forward with drop path,
    /// soft-target cross-entropy, backward, AdamW over the layer-decay groups, zeroing the gradients.
    static func measureFinetune(_ p: Preset, steps: Int, warmup: Int, dataParallel: Bool) throws -> Measurement {
        let spec = try ConfigLoader.load(yaml: p.yaml, file: "bench_\(p.name).yaml", checkPaths: false)
        let base = Memory.residentBytes()
        let runner = try DownstreamRunner(spec: spec, runDir: NSTemporaryDirectory())
        let opt = OptimBuilder.optimizer(spec, runner.groups)
        let a = spec.augment
        let mixup = Mixup(mixupAlpha: a.mixup, cutmixAlpha: a.cutmix, prob: a.mixupProb, switchProb: a.switchProb,
                          labelSmoothing: a.smoothing, numClasses: p.numClasses)
        let local = p.batch / Distributed.size, first = Distributed.rank * local
        var rng = RandomGenerator(seed: 0)
        let images = Tensor.randn([local, 3, p.img, p.img], rng: &rng)
        let labels = (first..<(first + local)).map { $0 % p.numClasses }
        return try timedSteps(p, steps: steps, warmup: warmup, base: base, model: runner.model, groups: runner.groups, optimizer: opt,
                              prepare: { _ in () }, forwardBackward: { i, _ in
            var mixRNG = rng.derived(2, UInt64(i))
            // Mixed in place, as timm's Mixup does; mixing keeps the values bounded over the steps.
            let soft = try mixup.apply(images: images, labels: labels, rng: &mixRNG)
            _ = runner.step(images: images, labels: labels, softTargets: soft, ctx: Context(training: true, rng: rng.derived(1, UInt64(i))),
                            scale: 1, replicas: dataParallel ? Parallel.threads : 1)
        })
    }

    /// Runs a command and parses the last line of its output as a measurement; nil (with the reason
    /// in `note`) when it fails.
    static func runMeasurement(_ executable: String, _ arguments: [String], note: inout String) -> Measurement? {
        guard let r = Subprocess.run([executable] + arguments) else {
            note = "\(executable) could not start"
            return nil
        }
        if r.succeeded, let last = r.stdout.split(separator: "\n").last, let m = Measurement(json: String(last)) { return m }
        let lastError = r.stderr.split(separator: "\n").last.map(String.init) ?? "no output"
        note = "\(executable) \(arguments.first ?? ""): exit \(r.status); \(lastError)"
        return nil
    }

    static func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, n - s.count))
        return left ? fill + s : s + fill
    }

    /// Whether python3 can import torch.
    static func torchAvailable() -> Bool { Subprocess.run(["python3", "-c", "import torch"])?.succeeded ?? false }

    /// Tessera's two ways to use the threads: `replicas` (the batch split over threads, the default in
    /// pre-training) and `kernels` (one pass whose kernels are split over threads).
    /// `openblas` is `replicas` with every product in OpenBLAS (`TESSERA_GEMM=openblas`), to show what
    /// the oneDNN products add.
    /// `mpi2` runs two processes of one thread each under mpirun (the batch split between them, one
    /// gradient allreduce per step) against the default one process of two threads.
    public static let tesseraModes = ["replicas", "kernels", "openblas", "mpi2"]

    /// Images per second from a measurement's median step time (robust to the bursts of a shared
    /// host), the same statistic for every framework; the mean rate when no step times were sent.
    public static func rate(_ m: Measurement, batch: Int) -> Double {
        m.stepSeconds.isEmpty ? m.imagesPerSecond : Double(batch) / median(m.stepSeconds)
    }

    /// "SGEMM on the model's linear shapes: 1 thread X GFLOP/s, N threads Y GFLOP/s".
    static func sgemmLine(_ r: (one: Double, all: Double)) -> String {
        String(format: "SGEMM on tiny32's linear shapes (%@, single-threaded calls): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s",
               BLAS.libraryName(transA: false, transB: true, m: 64 * 65, n: 576, k: 192), r.one, Parallel.threads, r.all)
    }

    static func median(_ v: [Double]) -> Double {
        let t = v.sorted()
        guard !t.isEmpty else { return .nan }
        return t.count % 2 == 1 ? t[t.count / 2] : (t[t.count / 2 - 1] + t[t.count / 2]) / 2
    }

    /// One model's rows of a `bench train` or `bench infer` table, the SGEMM probes of its rounds and
    /// the per-round ratios of the first framework to each PyTorch mode and to the faster of them.
    /// `roundSGEMM[f]` holds the probe of the round of each of `results[f]`'s measurements.
    public static func tableLines(name: String, frameworks: [String], results: [String: [Measurement]], roundSGEMM: [String: [Double]],
                                  probes: [Double], batch: Int, flopsPerImage: Double) -> [String] {
        var lines: [String] = []
        func best(_ f: String) -> Double? { results[f]?.map { rate($0, batch: batch) }.max() }
        for f in frameworks {
            guard let ms = results[f], let b = best(f) else {
                lines.append(pad(name, 15) + pad(f, 17) + "failed")
                continue
            }
            let perRound = ms.map { String(format: "%.1f", rate($0, batch: batch)) }.joined(separator: " ")
            let peak = Double(ms.map(\.peakBytes).max() ?? 0) / 1_048_576
            let vsEager = best("torch eager").map { String(format: "%.2f", b / $0) } ?? "-"
            let vsCompile = best("torch compile").map { String(format: "%.2f", b / $0) } ?? "-"
            // Share of SGEMM: each round's rate over the probe of that round, median over the rounds.
            let share = median(zip(ms, roundSGEMM[f] ?? []).map { rate($0, batch: batch) * flopsPerImage / 1e9 / $1 })
            lines.append(pad(name, 15) + pad(f, 17) + pad(perRound, 23)
                         + String(format: "%10.1f  %7.1f  %5.0f %%  %8.1f  ", b, b * flopsPerImage / 1e9, 100 * share, peak)
                         + pad(vsEager, 7, left: true) + "  " + pad(vsCompile, 8, left: true))
        }
        lines.append("  SGEMM (\(Parallel.threads) threads) probed at the start of each round: "
                     + probes.map { String(format: "%.1f", $0) }.joined(separator: " ") + " GFLOP/s")
        // Ratios within each round (measured minutes apart, not hours), and their median.
        guard let mine = results[frameworks[0]], !mine.isEmpty else { return lines }
        for f in frameworks.dropFirst() where f.hasPrefix("torch") {
            guard let theirs = results[f], theirs.count == mine.count else { continue }
            let r = zip(mine, theirs).map { rate($0, batch: batch) / rate($1, batch: batch) }
            lines.append("  \(frameworks[0]) ÷ \(f) per round: " + r.map { String(format: "%.2f", $0) }.joined(separator: " ")
                         + String(format: "  (median %.2f)", median(r)))
        }
        // Against the faster PyTorch mode of each round.
        let torchRows = frameworks.filter { $0.hasPrefix("torch") }.compactMap { results[$0] }
        if torchRows.count > 1, torchRows.allSatisfy({ $0.count == mine.count }) {
            let r = mine.indices.map { i in rate(mine[i], batch: batch) / torchRows.map { rate($0[i], batch: batch) }.max()! }
            lines.append("  \(frameworks[0]) ÷ the faster PyTorch mode per round: " + r.map { String(format: "%.2f", $0) }.joined(separator: " ")
                         + String(format: "  (median %.2f)", median(r)))
        }
        return lines
    }

    /// The comparison table: for each preset and round, Tessera in each of `tesseraModes` (child
    /// processes running `self bench train --only tessera-<mode>`), then PyTorch eager, then torch.compile.
    public static func report(presets: [Preset], steps: Int, warmup: Int, rounds: Int, withTorch: Bool,
                              tesseraModes: [String] = ["replicas"], torchModes: [String] = ["eager", "compile"],
                              executable: String, toolsDirectory: String) -> String {
        let scripts = Set(presets.map { (toolsDirectory as NSString).appendingPathComponent($0.torchScript) })
        let torch = withTorch && scripts.allSatisfy { FileManager.default.fileExists(atPath: $0) } && torchAvailable()
        // Row label → the mode a child process measures ("tessera" alone is the default, replicas).
        let tesseraRows = tesseraModes.map { (label: $0 == "replicas" ? "tessera" : "tessera " + $0, mode: $0) }
        let frameworks = tesseraRows.map(\.label) + (torch ? torchModes.map { "torch " + $0 } : [])
        var lines = ["Pre-training step (forward, backward, AdamW), synthetic images, \(Parallel.threads) threads; "
                     + "\(steps) timed steps after \(warmup) warm-up, \(rounds) round(s) run in turn"]
        if !torch {
            let missing = withTorch ? "python3 with torch or \(scripts.sorted().joined(separator: ", ")) not found" : "--no-torch"
            lines.append("(PyTorch not measured: \(missing))")
        }
        let before = OpsBenchmark.sgemmRate()
        lines.append("CPU: \(OpsBenchmark.cpuModel). " + sgemmLine(before))
        lines.append("")
        lines.append("model          framework        img/s per round        best img/s  GFLOP/s  %SGEMM  peak MiB   ×eager  ×compile")
        for p in presets {
            var results: [String: [Measurement]] = [:]
            // The all-thread SGEMM rate probed at the start of each round, beside each measurement of it.
            var roundSGEMM: [String: [Double]] = [:], probes: [Double] = []
            var notes: [String] = []
            for _ in 0..<rounds {
                let probe = OpsBenchmark.sgemmRate().all
                probes.append(probe)
                for f in frameworks {
                    var note = ""
                    let m: Measurement?
                    if let row = tesseraRows.first(where: { $0.label == f }) {
                        let args = ["bench", "train", "--model", p.name, "--reps", "\(steps)", "--warmup", "\(warmup)",
                                    "--only", "tessera", "--tessera-modes", row.mode == "openblas" ? "replicas" : row.mode]
                        switch row.mode {
                        case "openblas": m = runMeasurement("TESSERA_GEMM=openblas", [executable] + args, note: &note)
                        case "mpi2":
                            m = runMeasurement("TESSERA_THREADS=1", ["OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                                                     "OMPI_MCA_btl_vader_single_copy_mechanism=none", "mpirun", "-np", "2",
                                                                     "--oversubscribe", "--bind-to", "none", executable] + args, note: &note)
                        default: m = runMeasurement(executable, args, note: &note)
                        }
                    } else {
                        m = runMeasurement("python3", [(toolsDirectory as NSString).appendingPathComponent(p.torchScript)] + p.torchArguments
                                           + ["--steps", "\(steps)", "--warmup", "\(warmup)", "--threads", "\(Parallel.threads)",
                                              "--mode", f == "torch eager" ? "eager" : "compile"], note: &note)
                    }
                    if let m {
                        results[f, default: []].append(m)
                        roundSGEMM[f, default: []].append(probe)
                    } else { notes.append("\(f): \(note)") }
                }
            }
            lines += tableLines(name: p.name, frameworks: frameworks, results: results, roundSGEMM: roundSGEMM, probes: probes,
                                batch: p.batch, flopsPerImage: p.flopsPerImage)
            for (f, ms) in results where ms.contains(where: { !$0.allreduceSeconds.isEmpty }) {
                let shares = ms.map { median($0.allreduceSeconds) / median($0.stepSeconds) }
                lines.append("  \(f): allreduce share of the step per round: " + shares.map { String(format: "%.1f %%", 100 * $0) }.joined(separator: " "))
            }
            for n in notes { lines.append("  note: \(n)") }
        }
        lines.append("")
        lines.append("After the rows: " + sgemmLine(OpsBenchmark.sgemmRate()))
        lines.append("img/s: batch / median step time of each measurement; best: the best round. tessera splits each batch")
        lines.append("over the threads (one forward and backward pass per thread); tessera kernels runs one pass with threaded kernels.")
        lines.append("GFLOP/s: the PyTorch model's linear, patch-embedding (all patches) and attention products, 3 × forward, for")
        lines.append("every framework (Tessera's MAE embeds only the kept patches). SAIM: both streams over all L + 1 tokens, masks")
        lines.append("as additive float masks on both sides (PyTorch: fused SDPA). Peak MiB: growth of the process's peak resident set")
        lines.append("over its size before the model is built; each measurement is a fresh process. %SGEMM: each round's GFLOP/s over")
        lines.append("the all-thread SGEMM rate probed at the start of that round, median over the rounds (the host drifts by minutes).")
        return lines.joined(separator: "\n")
    }
}
