import Foundation
import TesseraCore

/// `runs/<name>/`: resolved config, overrides, metadata, metrics, log, summary, checkpoints, pictures.
public final class RunDirectory {
    public let path: String
    private var metricsHandle: FileHandle?
    private var logHandle: FileHandle?

    public init(path: String) throws {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(description: "tessera: cannot create run directory \(path): \(error.localizedDescription)")
        }
    }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    public var lastCheckpoint: String { file("checkpoint-last.h5") }

    /// Writes `text` to `name` atomically (temporary file + rename).
    public func write(_ name: String, _ text: String) throws {
        let url = URL(fileURLWithPath: file(name))
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    /// Records the resolved config, the overrides as given, and where/when/what ran.
    public func start(resolvedConfig: String, overrides: [String]) throws {
        try write("config.yaml", resolvedConfig)
        try write("overrides.txt", overrides.map { "--set \($0)\n" }.joined())
        let meta: [String: String] = [
            "git_revision": gitRevision(), "host": ProcessInfo.processInfo.hostName,
            "start_time": ISO8601DateFormatter().string(from: Date()), "version": TesseraVersion.string,
            "command": CommandLine.arguments.joined(separator: " "),
        ]
        try write("meta.json", jsonObject(meta))
    }

    /// Keeps only the metric lines with step ≤ `step` (after resuming from a checkpoint at `step`).
    public func truncateMetrics(toStep step: Int) throws {
        let p = file("metrics.jsonl")
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let data = line.data(using: .utf8),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let s = obj["step"] as? Int else { return false }
            return s <= step
        }
        try write("metrics.jsonl", kept.map { $0 + "\n" }.joined())
    }

    /// Appends one JSON line to metrics.jsonl (keys sorted; numbers as given).
    public func logMetrics(_ values: [(String, Any)]) {
        let line = "{" + values.map { "\"\($0.0)\": \(jsonValue($0.1))" }.joined(separator: ", ") + "}\n"
        append(line, to: "metrics.jsonl", handle: &metricsHandle)
    }

    /// Appends a line to log.txt (and prints it).
    public func log(_ line: String, echo: Bool = true) {
        if echo { print(line); fflush(stdout) }
        append(line + "\n", to: "log.txt", handle: &logHandle)
    }

    private func append(_ text: String, to name: String, handle: inout FileHandle?) {
        if handle == nil {
            let p = file(name)
            if !FileManager.default.fileExists(atPath: p) { _ = FileManager.default.createFile(atPath: p, contents: nil) }
            handle = FileHandle(forWritingAtPath: p)
            handle?.seekToEndOfFile()
        }
        handle?.write(text.data(using: .utf8)!)
    }

    public func closeLogs() {
        try? metricsHandle?.close(); metricsHandle = nil
        try? logHandle?.close(); logHandle = nil
    }

    deinit { closeLogs() }
}

func jsonValue(_ v: Any) -> String {
    switch v {
    case let d as Double: return d.isFinite ? String(format: "%.6g", d) : "null"
    case let f as Float: return f.isFinite ? String(format: "%.6g", Double(f)) : "null"
    case let i as Int: return String(i)
    case let b as Bool: return b ? "true" : "false"
    case let s as String:
        let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\"\(escaped)\""
    case let a as [Any]: return "[" + a.map(jsonValue).joined(separator: ", ") + "]"
    case let d as [String: Any]: return jsonObject(d)
    default: return "\"\(v)\""
    }
}

func jsonObject(_ d: [String: Any]) -> String {
    "{\n" + d.keys.sorted().map { "  \"\($0)\": \(jsonValue(d[$0]!))" }.joined(separator: ",\n") + "\n}\n"
}

/// The git revision of the working directory, or "unknown".
func gitRevision() -> String {
    guard let r = Subprocess.run(["git", "rev-parse", "--short", "HEAD"]), r.succeeded else { return "unknown" }
    let s = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    return s.isEmpty ? "unknown" : s
}

/// A one-line progress display on a terminal: epoch, step of total, loss, images/s, ETA.
struct ProgressLine {
    let enabled = isatty(STDOUT_FILENO) != 0
    func show(epoch: Int, epochs: Int, step: Int, total: Int, loss: Double, terms: String = "", imagesPerSecond: Double, eta: Double) {
        guard enabled else { return }
        let width = 24, filled = total > 0 ? width * step / total : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "\r epoch %d/%d %@ %d/%d  loss %.4f%@  %.0f img/s  ETA %@ ", epoch + 1, epochs, bar, step, total,
                          loss, terms, imagesPerSecond, formatDuration(eta))
        FileHandle.standardOutput.write(line.data(using: .utf8)!)
    }
    func clear() {
        guard enabled else { return }
        FileHandle.standardOutput.write("\r\u{1B}[K".data(using: .utf8)!)
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite && s >= 0 else { return "--:--" }
    let t = Int(s)
    return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%02d:%02d", t / 60, t % 60)
}
