import ArgumentParser
import Foundation
import Tessera
import TesseraConfig
import TesseraCore
import TesseraData

/// Prints one line to stderr and exits 1: every user-facing failure goes through here.
func fail(_ error: Error) -> Never {
    let text = String(describing: error)
    // One rank's failure stops every rank of a run started by mpirun.
    if Distributed.isDistributed { Distributed.abort(text) }
    FileHandle.standardError.write(((text.hasPrefix("tessera") ? "" : "tessera: ") + text + "\n").data(using: .utf8)!)
    exit(1)
}

struct TesseraCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Self-supervised ViT pre-training (MAE, MAE-priv, SAIM, SemAIM, CAE) and its evaluation protocols (fine-tuning, linear, attentive and k-NN probing).",
        subcommands: [Train.self, Step.self, VisualizeCommand.self, List.self, Prepare.self, Bench.self, ConfigDoc.self, SweepCommand.self, TableCommand.self])
}

struct ConfigOptions: ParsableArguments {
    @Argument(help: "The experiment config (YAML).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a key, e.g. --set optim.blr=1e-4 (repeatable).")
    var overrides: [String] = []

    func load(checkPaths: Bool = true) -> ExperimentSpec {
        do { return try ConfigLoader.load(path: config, overrides: overrides, checkPaths: checkPaths) } catch { fail(error) }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the experiment a config describes.")
    @OptionGroup var options: ConfigOptions
    @Flag(help: "Resume from the run directory's checkpoint-last.h5 (the default with resume: auto).")
    var resume = false

    func run() throws {
        Distributed.start()
        ExperimentSpec.worldSize = Distributed.size
        ExperimentSpec.rank = Distributed.rank
        var spec = options.load()
        if resume { spec.resume = .auto }
        do {
            switch spec.task {
            case .pretrain:
                let runner = try PretrainRunner(spec: spec, overrides: options.overrides)
                let s = try runner.train()
                guard Distributed.isWriter else { return }
                if s.alreadyComplete { complete(s.runDir, String(format: "final loss %.5f", s.finalLoss)) }
                print(String(format: "done: %@ — final loss %.5f, %.0f images/s, data wait %.1f%%, %.0f s",
                             s.runDir, s.finalLoss, s.imagesPerSecond, 100 * s.dataWaitShare, s.seconds))
            case .knn:
                let runner = try KNNRunner(spec: spec, overrides: options.overrides)
                let r = try runner.run()
                guard Distributed.isWriter else { return }
                let k = r.keys.sorted()
                let text = "k-NN top-1 " + k.map { String(format: "%.2f%% @%d", r[$0]!.top1, $0) }.joined(separator: ", ")
                if runner.alreadyComplete { complete(runner.directory.path, text) }
                print("done: \(runner.directory.path) — " + text)
            case .linprobe, .finetune, .attentive:
                let runner = try DownstreamRunner(spec: spec, overrides: options.overrides)
                let s = try runner.train()
                guard Distributed.isWriter else { return }
                if s.alreadyComplete { complete(s.runDir, String(format: "%@ top-1 %.2f%%, top-5 %.2f%%", s.task, s.top1, s.top5)) }
                print(String(format: "done: %@ — %@ top-1 %.2f%%, top-5 %.2f%% (best top-1 %.2f%%), %.0f s",
                             s.runDir, s.task, s.top1, s.top5, s.bestTop1, s.seconds))
            }
        } catch { fail(error) }
    }
}

/// A rerun of a finished run: says so and exits 0, having changed nothing.
func complete(_ dir: String, _ result: String) -> Never {
    print("complete: \(dir) already holds this finished run (\(result)); nothing was changed. "
          + "Raise epochs to extend it, or --set resume=restart to run it again.")
    exit(0)
}

struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One forward and backward on a given batch; writes the loss and every gradient.")
    @OptionGroup var options: ConfigOptions
    @Option(name: .customLong("init"), help: "Weights: a Tessera checkpoint or a converted state dict (params/<name>).")
    var weights: String
    @Option(help: "HDF5 file with `images` [B,3,H,W] and optional `noise` [B,L].")
    var batch: String
    @Option(help: "Output HDF5 file (loss, grads/<name>).")
    var out: String

    func run() throws {
        let spec = options.load(checkPaths: false)
        do { try StepCommand.run(spec: spec, weights: weights, batch: batch, out: out) } catch { fail(error) }
    }
}

struct VisualizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visualize",
        abstract: "Write a method's pictures (reconstructions, orders, attention maps) of chosen JPEGs with a checkpoint's weights.")
    @OptionGroup var options: ConfigOptions
    @Option(name: .customLong("init"), help: "A pre-training checkpoint of the config's method.")
    var weights: String
    @Option(parsing: .upToNextOption, help: "JPEG files.")
    var images: [String]
    @Option(help: "Output folder.")
    var out: String

    func run() throws {
        let spec = options.load(checkPaths: false)
        do {
            for file in try Visualize.run(spec: spec, weights: weights, images: images, out: out) { print("wrote \(file)") }
        } catch { fail(error) }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the registered methods, layouts, optimizers, schedules and data sets.")
    func run() { print(Registry.listing(), terminator: "") }
}

struct ConfigDoc: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config-doc", abstract: "Print every config key with its default and meaning.")
    func run() { print(ConfigSchema.markdown()) }
}

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a data set as an ImageFolder tree of JPEGs.")
    @Argument(help: "Data set: fashion-mnist.")
    var dataset: String
    @Option(help: "Output folder.")
    var out: String
    @Option(help: "Fashion-MNIST IDX folder.")
    var root: String = FashionMNIST.defaultRoot

    func run() throws {
        guard dataset == "fashion-mnist" else { fail(ValidationError("unknown data set '\(dataset)'; choose fashion-mnist")) }
        do {
            let n = try prepareFashionMNIST(root: root, out: out)
            print("wrote \(n) JPEGs under \(out)/train and \(out)/val")
        } catch { fail(error) }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print benchmark tables.")

    @Argument(help: "What to measure: ops (tensor core), gemm (OpenBLAS against oneDNN on the model's shapes), data (JPEG decode + augment), train (pre-training and fine-tuning beside PyTorch), infer (feature extraction beside PyTorch inference).")
    var what: String

    @Option(help: "For `train`: comma-separated models: tiny32 (MAE ViT-Tiny, 32 px, patch 4, batch 128), vits16 (MAE ViT-S/16, 224 px, decoder 192/4/3 as MAE-priv ViT-S, batch 32), vitb16 (MAE's ViT-B/16 recipe shape, decoder 512/8/16, batch 16), saim_tiny32 (SAIM on tiny32's encoder, 12 query blocks, batch 128) semaim_tiny32 (the same model in SemAIM's order, with its eval-mode encoder pass), cae_tiny32 (CAE with pixel targets on tiny32's encoder, half the patches masked), ft_tiny32 and ft_vits16 (fine-tuning tiny32's encoder with 10 classes, batch 128, and ViT-S/16 at 224 px with 1000 classes, batch 32: drop path 0.1, mixup/cutmix, label smoothing 0.1, layer decay). For `infer`: infer_tiny32 and infer_vits16 (batch 256; the default is both).")
    var model: String = Bench.trainModels

    static let trainModels = "tiny32,vits16,vitb16,saim_tiny32,semaim_tiny32,cae_tiny32,ft_tiny32,ft_vits16"

    @Option(help: "For `train`: untimed warm-up steps (torch.compile compiles in these).")
    var warmup: Int = 3

    @Option(help: "For `train`: rounds; each runs Tessera, PyTorch eager and torch.compile in turn.")
    var rounds: Int = 2

    @Flag(help: "For `train`: do not run PyTorch.")
    var noTorch = false

    @Option(help: "For `train`: comma-separated PyTorch modes to run, eager and/or compile.")
    var torchModes: String = "eager,compile"

    @Option(help: "Comma-separated Tessera modes. For `train`: replicas (the batch split over threads, as pre-training runs), kernels (one pass, threaded kernels), openblas (replicas with every product in OpenBLAS, no oneDNN), mpi2 (two processes of one thread under mpirun); the default is replicas. For `infer`: replicas and/or kernels; the default is both.")
    var tesseraModes: String?

    @Option(help: .hidden)
    var only: String?

    @Option(help: "For `data`: a folder of JPEGs (default: ~500x375 images made from scikit-image photos).")
    var images: String?

    @Option(help: "Timed repetitions per row.")
    var reps: Int = 10

    @Option(help: "Batch size.")
    var batch: Int = 128

    func run() throws {
        switch what {
        case "ops":
            var s = OpsBenchmark.Shape()
            s.batch = batch
            print(OpsBenchmark.report(s, reps: reps, torchActivationBytes: torchBlockActivationBytes(s)))
        case "data":
            print(benchmarkDecodeAugment(imageDir: images))
        case "gemm":
            print(OpsBenchmark.gemmComparison(reps: reps))
        case "infer":
            let chosen = model == Bench.trainModels ? InferBenchmark.presets.map(\.name).joined(separator: ",") : model
            let presets = try chosen.split(separator: ",").map { try InferBenchmark.preset(String($0)) }
            let tessera = try modes(tesseraModes ?? (only == nil ? "replicas,kernels" : "replicas"), option: "--tessera-modes", allowed: InferBenchmark.tesseraModes)
            if let only {
                guard only == "tessera", tessera.count == 1 else { throw ValidationError("--only tessera takes one --tessera-modes mode") }
                for p in presets { print(try InferBenchmark.measureTessera(p, steps: reps, warmup: warmup, replicas: tessera[0] == "replicas").json) }
                return
            }
            let tools = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("tools").path
            print(InferBenchmark.report(presets: presets, steps: reps, warmup: warmup, rounds: rounds, withTorch: !noTorch, tesseraModes: tessera,
                                        torchModes: try modes(torchModes, option: "--torch-modes", allowed: ["eager", "compile"]),
                                        executable: CommandLine.arguments[0], toolsDirectory: tools))
        case "train":
            let presets = try model.split(separator: ",").map { try TrainBenchmark.preset(String($0)) }
            let tessera = try modes(tesseraModes ?? "replicas", option: "--tessera-modes", allowed: TrainBenchmark.tesseraModes)
            if let only {
                // One measurement in this (fresh) process, as a JSON line for the parent's table.
                guard only == "tessera", tessera.count == 1 else { throw ValidationError("--only tessera takes one --tessera-modes mode") }
                Distributed.start()
                for p in presets {
                    let m = try TrainBenchmark.measureTessera(p, steps: reps, warmup: warmup, dataParallel: tessera[0] == "replicas")
                    if Distributed.isWriter { print(m.json) }
                }
                return
            }
            let tools = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("tools").path
            print(TrainBenchmark.report(presets: presets, steps: reps, warmup: warmup, rounds: rounds, withTorch: !noTorch,
                                        tesseraModes: tessera,
                                        torchModes: try modes(torchModes, option: "--torch-modes", allowed: ["eager", "compile"]),
                                        executable: CommandLine.arguments[0], toolsDirectory: tools))
        default:
            throw ValidationError("unknown benchmark '\(what)'; choose ops, gemm, data, train or infer")
        }
    }

    /// A comma-separated list of modes, each one of `allowed`.
    func modes(_ list: String, option: String, allowed: [String]) throws -> [String] {
        try list.split(separator: ",").map { m in
            guard allowed.contains(String(m)) else {
                throw ValidationError("\(option): unknown mode '\(m)'; choose \(allowed.joined(separator: ", "))")
            }
            return String(m)
        }
    }
}

/// Asks tools/torch_block_memory.py (when python3 with torch is installed) how many bytes PyTorch
/// keeps for backward in the same block; nil when PyTorch is not available.
func torchBlockActivationBytes(_ s: OpsBenchmark.Shape) -> Int? {
    let script = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("tools/torch_block_memory.py").path
    guard FileManager.default.fileExists(atPath: script) else { return nil }
    guard let r = Subprocess.run(["python3", script, "\(s.batch)", "\(s.tokens)", "\(s.width)", "\(s.heads)"]), r.succeeded else { return nil }
    return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
}

setvbuf(stdout, nil, _IOLBF, 0)
TesseraCommand.main()
