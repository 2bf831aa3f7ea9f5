import ArgumentParser
import Foundation
import TesseraCore

struct TesseraCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Self-supervised ViT pre-training (MAE, SAIM, SemAIM, CAE) and its evaluation protocols.",
        subcommands: [Bench.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print benchmark tables.")

    @Argument(help: "What to measure: ops.")
    var what: String

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
        default:
            throw ValidationError("unknown benchmark '\(what)'; choose ops")
        }
    }
}

/// Asks tools/torch_block_memory.py (when python3 with torch is installed) how many bytes PyTorch
/// keeps for backward in the same block; nil when PyTorch is not available.
func torchBlockActivationBytes(_ s: OpsBenchmark.Shape) -> Int? {
    let script = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("tools/torch_block_memory.py").path
    guard FileManager.default.fileExists(atPath: script) else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", script, "\(s.batch)", "\(s.tokens)", "\(s.width)", "\(s.heads)"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return Int(out.trimmingCharacters(in: .whitespacesAndNewlines))
}

TesseraCommand.main()
