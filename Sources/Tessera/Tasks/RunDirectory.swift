import Foundation
import TesseraConfig
import TesseraCore

/// `runs/<name>/`: resolved config, overrides, metadata, metrics, log, summary, checkpoints, pictures.
///
/// The rules (README "Run directories"): one process at a time holds a run directory (`.lock`, an
/// flock released when the process ends, however it ends); a finished run is never run again; a
/// resumed run must have the stored settings except for the `safeKeys`; `resume: none` never
/// overwrites an existing run and `resume: restart` moves it aside; stale temporary files of killed
/// writes are removed when the directory is opened.
public final class RunDirectory {
    public let path: String
    private var metricsHandle: FileHandle?
    private var logHandle: FileHandle?
    private var lockDescriptor: Int32 = -1

    /// Only records the path: nothing is created until `open` (all validation comes first).
    public init(path: String) { self.path = path }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    public var lastCheckpoint: String { file("checkpoint-last.h5") }
    public var isFinished: Bool { FileManager.default.fileExists(atPath: file("summary.json")) }

    /// The checkpoint-<epoch>.h5 files, newest first.
    public func numberedCheckpoints() -> [(epoch: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name -> (epoch: Int, path: String)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".h5"),
                  let n = Int(name.dropFirst("checkpoint-".count).dropLast(3)) else { return nil }
            return (n, file(name))
        }.sorted { $0.epoch > $1.epoch }
    }

    /// Settings a resumed run may change: how long it runs, how it logs, evaluates, saves and uses the
    /// machine. A change is recorded in changes.txt and the run continues; any other change stops.
    public static let safeKeys: Set<String> = [
        "epochs", "threads", "data_parallel", "resume", "output_dir", "data.num_workers", "log.every", "log.pictures",
        "eval.every", "eval.knn_k", "checkpoint.every", "checkpoint.keep_last", "checkpoint.write_last",
    ]

    /// What `open` found.
    public enum Opening: UInt8, Equatable {
        /// Nothing to continue: start from step 0.
        case fresh
        /// An earlier run with the same settings (up to `safeKeys`): continue it.
        case resume
        /// A finished run asked for nothing new: leave everything as it is.
        case complete

        var code: UInt8 { rawValue }
        init(code: UInt8) { self = Opening(rawValue: code) ?? .fresh }
    }

    /// Creates (or, for `resume: restart`, moves aside and recreates) the directory, takes the lock,
    /// removes stale temporaries and checks the stored settings against `spec`. Throws a one-line
    /// error when another process holds the directory, when `resume: none` would overwrite a run, or
    /// when a setting outside `safeKeys` differs.
    ///
    /// In a run of several processes rank 0 alone opens and writes; the other ranks wait for it and
    /// then read what it found (a failure on rank 0 stops every rank).
    public func open(spec: ExperimentSpec, overrides: [String], echo: Bool) throws -> Opening {
        guard Distributed.isDistributed else { return try openAsWriter(spec: spec, overrides: overrides, echo: echo) }
        // Rank 0's finding goes to every rank, whether or not they see the same file system.
        let found = Distributed.isWriter ? [try openAsWriter(spec: spec, overrides: overrides, echo: echo).code] : [0]
        return Opening(code: Distributed.broadcast(found).first ?? 0)
    }

    private func openAsWriter(spec: ExperimentSpec, overrides: [String], echo: Bool) throws -> Opening {
        let fm = FileManager.default
        var moved: String?
        if spec.resume == .restart, let entries = try? fm.contentsOfDirectory(atPath: path), !entries.isEmpty {
            try lock()
            var n = 1
            while fm.fileExists(atPath: "\(path).restart-\(n)") { n += 1 }
            moved = "\(path).restart-\(n)"
            guard rename(path, moved!) == 0 else {
                throw TrainingError(description: "tessera: cannot move \(path) aside to \(moved!): \(String(cString: strerror(errno)))")
            }
            release()
        }
        do {
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(description: "tessera: cannot create run directory \(path): \(Self.reason(error))")
        }
        try lock()
        removeStaleTemporaries(echo: echo)
        if let moved { log("resume: restart moved the previous run to \(moved)", echo: echo) }

        let stored = try? String(contentsOfFile: file("config.yaml"), encoding: .utf8)
        let held = ["config.yaml", "metrics.jsonl", "checkpoint-last.h5", "summary.json"].filter { fm.fileExists(atPath: file($0)) }
        guard !held.isEmpty else { return .fresh }
        if spec.resume == .none {
            throw TrainingError(description: "tessera: \(path) already holds a run (\(held.joined(separator: ", "))) and resume: none "
                                + "would overwrite it; choose a new name, resume: auto to continue it, or --set resume=restart to move it aside")
        }
        guard let stored else { return .fresh }
        let old = ConfigSchema.settings(resolvedYAML: stored), new = spec.settings()
        let changes = ConfigSchema.differences(old, new)
        let finished = isFinished
        let oldEpochs = Int(old["epochs"] ?? "") ?? spec.epochs
        let unsafe = changes.filter { !Self.safeKeys.contains($0.key) || ($0.key == "epochs" && finished && spec.epochs < oldEpochs) }
        if !unsafe.isEmpty {
            throw TrainingError(description: "tessera: \(path) holds a run with other settings ("
                                + Self.describe(unsafe)
                                + "); use a new name, or --set resume=restart to move the old run aside and start again")
        }
        let extends = changes.contains { $0.key == "epochs" } || (spec.task == .knn && changes.contains { $0.key == "eval.knn_k" })
        if finished && !extends { return .complete }
        if !changes.isEmpty {
            let line = ISO8601DateFormatter().string(from: Date()) + " resumed with "
                + Self.describe(changes) + "\n"
            try append(line, toFile: "changes.txt")
            try write("config.yaml", spec.resolvedYAML())
            try write("overrides.txt", overrides.map { "--set \($0)\n" }.joined())
            log("settings changed since the last start (recorded in changes.txt): "
                + Self.describe(changes), echo: echo)
        }
        if finished && spec.task != .knn {
            // The finished run's summary stays beside the extended one (k-NN merges new k values into its own).
            let kept = file("summary-\(oldEpochs)-epochs.json")
            try? fm.removeItem(atPath: kept)
            try fm.moveItem(atPath: file("summary.json"), toPath: kept)
        }
        return .resume
    }

    /// "key: old → new; …" for the error, changes.txt and the log.
    static func describe(_ changes: [(key: String, old: String, new: String)]) -> String {
        changes.map { "\($0.key): \($0.old) → \($0.new)" }.joined(separator: "; ")
    }

    /// Takes the directory's lock or throws naming the process that holds it.
    private func lock() throws {
        guard lockDescriptor < 0 else { return }
        let lockPath = file(".lock")
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError(description: "tessera: cannot create \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            Glibc.close(fd)
            throw TrainingError(description: "tessera: \(path) is in use by \(holder.flatMap { $0.isEmpty ? nil : $0 } ?? "another process"); "
                                + "wait for it to finish or choose another name")
        }
        let text = "PID \(getpid()) on host \(ProcessInfo.processInfo.hostName) (since \(ISO8601DateFormatter().string(from: Date())))\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { Glibc.pwrite(fd, $0, strlen($0), 0) }
        lockDescriptor = fd
    }

    /// Gives the lock up (also done by the kernel when the process ends).
    public func release() {
        closeLogs()
        if lockDescriptor >= 0 {
            Glibc.close(lockDescriptor)
            lockDescriptor = -1
        }
    }

    /// Deletes `*.tmp-<pid>` files that a killed write left (this process holds the lock, so no
    /// live writer owns them).
    private func removeStaleTemporaries(echo: Bool) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        var bytes = 0
        let stale = names.filter { $0.contains(".tmp-") }
        for name in stale {
            bytes += ((try? FileManager.default.attributesOfItem(atPath: file(name)))?[.size] as? NSNumber)?.intValue ?? 0
            try? FileManager.default.removeItem(atPath: file(name))
        }
        if !stale.isEmpty {
            log(String(format: "removed %d stale temporary file(s) of an interrupted write (%.1f MB): %@", stale.count,
                       Double(bytes) / 1e6, stale.sorted().joined(separator: ", ")), echo: echo)
        }
    }

    /// Writes `text` to `name` atomically (a temporary file, then a rename): one-line errors name the file.
    public func write(_ name: String, _ text: String) throws {
        guard Distributed.isWriter else { return }
        let target = file(name), temporary = target + ".tmp-\(getpid())"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw TrainingError(description: "tessera: cannot write \(target): \(Self.reason(error))")
        }
        guard rename(temporary, target) == 0 else {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw TrainingError(description: "tessera: cannot write \(target): \(why)")
        }
    }

    /// Appends to a small file (created when absent).
    private func append(_ text: String, toFile name: String) throws {
        let old = (try? String(contentsOfFile: file(name), encoding: .utf8)) ?? ""
        try write(name, old + text)
    }

    /// The underlying POSIX reason of a Foundation file error ("No space left on device").
    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return ns.localizedDescription
    }

    /// Records the resolved config, the overrides as given, and where/when/what ran.
    public func start(resolvedConfig: String, overrides: [String]) throws {
        guard Distributed.isWriter else { return }
        try write("config.yaml", resolvedConfig)
        try write("overrides.txt", overrides.map { "--set \($0)\n" }.joined())
        let meta: [String: Any] = [
            "git_revision": gitRevision(), "host": ProcessInfo.processInfo.hostName,
            "start_time": ISO8601DateFormatter().string(from: Date()), "version": TesseraVersion.string,
            "command": CommandLine.arguments.joined(separator: " "), "pid": Int(getpid()),
        ]
        try write("meta.json", JSON.object(meta))
    }

    /// Keeps only the metric lines with step ≤ `step` (after resuming from a checkpoint at `step`).
    public func truncateMetrics(toStep step: Int) throws {
        guard Distributed.isWriter else { return }
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

    /// Appends one JSON line to metrics.jsonl (keys in the given order, numbers at full precision).
    public func logMetrics(_ values: [(String, Any)]) {
        guard Distributed.isWriter else { return }
        append(JSON.line(values) + "\n", to: "metrics.jsonl", handle: &metricsHandle)
    }

    /// Appends a line to log.txt (and prints it).
    public func log(_ line: String, echo: Bool = true) {
        guard Distributed.isWriter else { return }
        if echo { print(line); fflush(stdout) }
        append(line + "\n", to: "log.txt", handle: &logHandle)
    }

    private func append(_ text: String, to name: String, handle: inout FileHandle?) {
        if handle == nil {
            let p = file(name)
            if !FileManager.default.fileExists(atPath: p) { _ = FileManager.default.createFile(atPath: p, contents: nil) }
            handle = FileHandle(forWritingAtPath: p)
            _ = try? handle?.seekToEnd()
        }
        // A full disk loses a log line, never the run (checkpoints report their own write errors).
        try? handle?.write(contentsOf: Data(text.utf8))
    }

    public func closeLogs() {
        try? metricsHandle?.close(); metricsHandle = nil
        try? logHandle?.close(); logHandle = nil
    }

    deinit { release() }
}

/// JSON text through JSONSerialization: strings escaped by it, numbers at full precision
/// (a Float as the Double it equals), non-finite numbers as null.
enum JSON {
    static func value(_ v: Any) -> Any {
        switch v {
        case let d as Double: return d.isFinite ? d : NSNull()
        case let f as Float: return f.isFinite ? Double(f) : NSNull()
        case let a as [Any]: return a.map(value)
        case let d as [String: Any]: return d.mapValues(value)
        case let i as Int: return i
        case let b as Bool: return b
        case let s as String: return s
        default: return "\(v)"
        }
    }

    static func text(_ v: Any, options: JSONSerialization.WritingOptions) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: value(v), options: options.union(.fragmentsAllowed))) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A pretty-printed object with sorted keys (summary.json, meta.json).
    static func object(_ d: [String: Any]) -> String { text(d, options: [.prettyPrinted, .sortedKeys]) + "\n" }

    /// One line with the keys in the given order (metrics.jsonl).
    static func line(_ fields: [(String, Any)]) -> String {
        "{" + fields.map { text($0.0, options: []) + ": " + text($0.1, options: [.sortedKeys]) }.joined(separator: ", ") + "}"
    }
}

/// The git revision of the working directory, or "unknown".
func gitRevision() -> String {
    guard let r = Subprocess.run(["git", "rev-parse", "--short", "HEAD"]), r.succeeded else { return "unknown" }
    let s = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    return s.isEmpty ? "unknown" : s
}

/// A one-line progress display on a terminal: epoch, step of total, loss, images/s, ETA.
struct ProgressLine {
    let enabled = isatty(STDOUT_FILENO) != 0 && Distributed.isWriter
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
