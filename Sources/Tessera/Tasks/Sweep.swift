import Foundation
import TesseraConfig
import Yams

/// A grid of runs over one base config, read from a grid file:
///
/// ```yaml
/// base: ../pretrain/FMNIST_ViT-T_MAE_quick.yaml   # relative to this file
/// name: fmnist_mask_ratio                          # optional; default: this file's stem
/// output_dir: runs                                 # optional; default: the base config's output_dir
/// grid:                                            # dotted config key → list of values
///   model.mask_ratio: [0.5, 0.75, 0.9]
///   optim.blr: [1.5e-4, 3e-4]
/// ```
///
/// Every combination of values (the first key varies slowest) is one cell: the base config with
/// `--set key=value` for each grid key, run in `<output_dir>/<name>/<cell>` where `<cell>` reads like
/// `mask_ratio=0.5,blr=0.00015`. (`name` and `output_dir` of a cell's config are set by the sweep: a
/// config name may not contain `/`, so the grid name becomes a directory level.)
public struct Sweep {
    /// One combination of grid values.
    public struct Cell {
        /// `<grid name>/<cell>`, e.g. `fmnist_mask_ratio/mask_ratio=0.5,blr=0.00015`; also the run
        /// directory relative to the output directory.
        public let name: String
        /// Every override applied to the base config, as `key=value` (grid keys in grid order, then
        /// `name` and `output_dir`).
        public let overrides: [String]
        /// Only the grid's own `key=value` pairs, in grid order.
        public let gridOverrides: [String]
        /// The loaded, validated config of this cell.
        public let spec: ExperimentSpec
        /// `<output_dir>/<grid name>/<cell>`.
        public let runDir: String

        /// True when the run directory holds a summary.json (the run finished).
        public var isFinished: Bool {
            FileManager.default.fileExists(atPath: (runDir as NSString).appendingPathComponent("summary.json"))
        }
    }

    /// What `run` did.
    public struct Report {
        /// Cells that trained (or resumed) to the end in this call.
        public var ran: [String] = []
        /// Cells skipped because they had already finished.
        public var skipped: [String] = []
        /// Cells whose run threw, with the one-line error.
        public var failed: [(name: String, error: String)] = []
    }

    /// The grid file as given.
    public let gridPath: String
    /// The base config, resolved against the grid file's directory.
    public let basePath: String
    /// The grid name: the directory level grouping the cells' run directories.
    public let prefix: String
    /// Where the grid's directory is created (the grid file's `output_dir`, else the base config's).
    public let outputDir: String
    /// The grid keys in the order written.
    public let keys: [String]
    /// Every cell, in expansion order.
    public let cells: [Cell]

    /// `<output_dir>/<grid name>`: the directory holding every cell's run directory.
    public var root: String { (outputDir as NSString).appendingPathComponent(prefix) }

    /// Tasks a sweep can run.
    public static let runnableTasks: Set<TaskKind> = [.pretrain, .knn]

    // MARK: Loading

    /// Reads a grid file, expands its cells and loads (validates) every cell's config. Any problem —
    /// in the grid file or in any cell — is thrown before anything runs, as a one-line `ConfigError`
    /// naming the grid file (and line where one applies) and the cell.
    public static func load(gridPath: String) throws -> Sweep {
        let file = gridPath
        guard FileManager.default.fileExists(atPath: file) else {
            throw ConfigError(origin: .file(path: file, line: 0), key: nil, message: "grid file not found")
        }
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ConfigError(origin: .file(path: file, line: 0), key: nil, message: "cannot read: \(error.localizedDescription)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let error as YamlError {
            throw gridYAMLError(error, file: file)
        }
        func at(_ node: Node?) -> ConfigOrigin { .file(path: file, line: node?.mark?.line ?? 0) }

        guard let root, case .mapping(let top) = root else {
            throw ConfigError(origin: at(root), key: nil,
                              message: "a grid file must be a mapping with base: and grid:, got \(describe(root))")
        }
        var fields: [String: (key: Node, value: Node)] = [:]
        for (keyNode, valueNode) in top {
            guard case .scalar(let k) = keyNode else {
                throw ConfigError(origin: at(keyNode), key: nil, message: "keys must be plain strings")
            }
            let key = k.string
            guard ["base", "name", "output_dir", "grid"].contains(key) else {
                throw ConfigError(origin: at(keyNode), key: key,
                                  message: "unknown key '\(key)' in a grid file (expected base, name, output_dir, grid)")
            }
            guard fields[key] == nil else {
                throw ConfigError(origin: at(keyNode), key: key, message: "duplicate key '\(key)'")
            }
            fields[key] = (keyNode, valueNode)
        }

        // base
        guard let base = fields["base"] else {
            throw ConfigError(origin: .file(path: file, line: 0), key: "base",
                              message: "required key is missing (the config file the grid varies)")
        }
        guard case .scalar(let baseScalar) = base.value, !isNull(base.value) else {
            throw ConfigError(origin: at(base.value), key: "base", message: "expected a config file name, got \(describe(base.value))")
        }
        let directory = (file as NSString).deletingLastPathComponent
        let baseName = baseScalar.string
        let basePath = collapse(baseName.hasPrefix("/") || directory.isEmpty
            ? baseName : (directory as NSString).appendingPathComponent(baseName))
        guard FileManager.default.fileExists(atPath: basePath) else {
            throw ConfigError(origin: at(base.value), key: "base", message: "config file not found: \(basePath)")
        }

        // name
        var prefix = safeComponent(URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent)
        if let name = fields["name"] {
            guard case .scalar(let s) = name.value, !isNull(name.value) else {
                throw ConfigError(origin: at(name.value), key: "name", message: "expected a name, got \(describe(name.value))")
            }
            guard !s.string.isEmpty, s.string != ".", s.string != "..", safeComponent(s.string) == s.string else {
                throw ConfigError(origin: at(name.value), key: "name",
                                  message: "must be a non-empty name of letters, digits and ._+- (it names a directory), got '\(s.string)'")
            }
            prefix = s.string
        }

        // output_dir
        var gridOutputDir: String?
        if let out = fields["output_dir"] {
            guard case .scalar(let s) = out.value, !isNull(out.value), !s.string.isEmpty else {
                throw ConfigError(origin: at(out.value), key: "output_dir", message: "expected a directory, got \(describe(out.value))")
            }
            gridOutputDir = s.string
        }

        // grid
        guard let grid = fields["grid"] else {
            throw ConfigError(origin: .file(path: file, line: 0), key: "grid",
                              message: "required key is missing (a mapping of config keys to lists of values)")
        }
        guard case .mapping(let gridMapping) = grid.value else {
            throw ConfigError(origin: at(grid.value), key: "grid",
                              message: "expected a mapping of config keys to lists of values, got \(describe(grid.value))")
        }
        var axes: [Axis] = []
        for (keyNode, valueNode) in gridMapping {
            guard case .scalar(let k) = keyNode else {
                throw ConfigError(origin: at(keyNode), key: "grid", message: "keys must be dotted config keys such as optim.blr")
            }
            let key = k.string
            if axes.contains(where: { $0.key == key }) {
                throw ConfigError(origin: at(keyNode), key: "grid.\(key)", message: "duplicate key '\(key)'")
            }
            if key == "name" || key == "output_dir" {
                throw ConfigError(origin: at(keyNode), key: "grid.\(key)",
                                  message: "'\(key)' is set by the sweep for every cell and cannot be varied")
            }
            // The config loader knows the keys (and suggests near misses): try the key on the base.
            do {
                _ = try ConfigLoader.loadTree(path: basePath, overrides: ["\(key)=null"])
            } catch let error as ConfigError where error.origin == .override {
                throw ConfigError(origin: at(keyNode), key: "grid.\(key)", message: error.message)
            }
            guard case .sequence(let items) = valueNode else {
                throw ConfigError(origin: at(valueNode), key: "grid.\(key)",
                                  message: "expected a list of values, e.g. [\(describe(valueNode, plain: true))], got \(describe(valueNode))")
            }
            guard !items.isEmpty else {
                throw ConfigError(origin: at(valueNode), key: "grid.\(key)", message: "empty list: give at least one value")
            }
            var values: [Axis.Value] = []
            for item in items {
                if case .alias = item {
                    throw ConfigError(origin: at(item), key: "grid.\(key)", message: "YAML aliases are not supported")
                }
                let value = Axis.Value(yaml: renderYAML(item, topLevel: true), token: nameToken(item), line: item.mark?.line ?? 0)
                if let twin = values.first(where: { $0.token == value.token }) {
                    throw ConfigError(origin: at(item), key: "grid.\(key)",
                                      message: "values \(twin.yaml) and \(value.yaml) give the same run name '\(value.token)'")
                }
                values.append(value)
            }
            axes.append(Axis(key: key, line: keyNode.mark?.line ?? 0, values: values))
        }
        guard !axes.isEmpty else {
            throw ConfigError(origin: at(grid.value), key: "grid", message: "no keys: give at least one config key with a list of values")
        }
        let labels = shortLabels(axes.map(\.key))

        // Expand: the first key varies slowest.
        var combos: [[Int]] = [[]]
        for axis in axes {
            combos = combos.flatMap { combo in axis.values.indices.map { combo + [$0] } }
        }

        // Validate every cell before anything runs.
        var cells: [Cell] = []
        var outputDir = gridOutputDir
        for (n, combo) in combos.enumerated() {
            let gridOverrides = zip(axes, combo).map { "\($0.key)=\($0.values[$1].yaml)" }
            let cellName = fitLength(zip(labels, zip(axes, combo)).map { "\($0)=\($1.0.values[$1.1].token)" }.joined(separator: ","))
            let fullName = "\(prefix)/\(cellName)"
            func cellError(_ error: Error) -> ConfigError {
                var line = 0
                if let e = error as? ConfigError, e.origin == .override, let key = e.key,
                   let i = axes.firstIndex(where: { $0.key == key }) {
                    line = axes[i].values[combo[i]].line
                }
                return ConfigError(origin: .file(path: file, line: line), key: nil,
                                   message: "cell \(n + 1) of \(combos.count) '\(fullName)': \(error)")
            }
            do {
                if outputDir == nil {
                    outputDir = try ConfigLoader.load(path: basePath, overrides: gridOverrides + ["name=\(plainOrQuoted(cellName))"]).outputDir
                }
                let cellDir = (outputDir! as NSString).appendingPathComponent(prefix)
                let overrides = gridOverrides + ["name=\(plainOrQuoted(cellName))", "output_dir=\(plainOrQuoted(cellDir))"]
                let spec = try ConfigLoader.load(path: basePath, overrides: overrides)
                guard runnableTasks.contains(spec.task) else {
                    throw TrainingError(description: "task '\(spec.task.rawValue)' cannot be swept yet (\(runnableTasks.map(\.rawValue).sorted().joined(separator: ", ")) can)")
                }
                cells.append(Cell(name: fullName, overrides: overrides, gridOverrides: gridOverrides, spec: spec,
                                  runDir: (cellDir as NSString).appendingPathComponent(cellName)))
            } catch {
                throw cellError(error)
            }
        }
        return Sweep(gridPath: file, basePath: basePath, prefix: prefix, outputDir: outputDir ?? "runs",
                     keys: axes.map(\.key), cells: cells)
    }

    // MARK: Running

    /// Runs the cells in order: a cell whose run directory has summary.json is skipped; any other
    /// trains (continuing from its checkpoint-last.h5 when the config says `resume: auto`). A cell
    /// that fails is recorded and the sweep goes on with the next. `echo` prints progress lines
    /// (and the runs' own log lines).
    @discardableResult
    public func run(echo: Bool = true) throws -> Report {
        var report = Report()
        func say(_ line: String) { if echo { print(line); fflush(stdout) } }
        for (i, cell) in cells.enumerated() {
            if cell.isFinished {
                say("skip \(cell.name): finished")
                report.skipped.append(cell.name)
                continue
            }
            let resuming = cell.spec.resume == .auto
                && FileManager.default.fileExists(atPath: (cell.runDir as NSString).appendingPathComponent("checkpoint-last.h5"))
            say("run \(i + 1)/\(cells.count) \(cell.name)\(resuming ? " (resuming)" : "")")
            do {
                try Self.train(cell, echo: echo)
                report.ran.append(cell.name)
            } catch {
                let text = String(describing: error)
                say("fail \(cell.name): \(text)")
                report.failed.append((cell.name, text))
            }
        }
        return report
    }

    private static func train(_ cell: Cell, echo: Bool) throws {
        switch cell.spec.task {
        case .pretrain:
            let runner = try PretrainRunner(spec: cell.spec, overrides: cell.overrides, runDir: cell.runDir)
            runner.echo = echo
            try runner.train()
        case .knn:
            let runner = try KNNRunner(spec: cell.spec, overrides: cell.overrides, runDir: cell.runDir)
            runner.echo = echo
            try runner.run()
        default:
            throw TrainingError(description: "tessera: task '\(cell.spec.task.rawValue)' cannot be swept yet")
        }
    }

    // MARK: Grid values

    struct Axis {
        struct Value {
            /// The value as override text (YAML the config loader reads back to the same value).
            let yaml: String
            /// The value as it appears in run names.
            let token: String
            let line: Int
        }
        let key: String
        let line: Int
        let values: [Value]
    }

    /// YAML text for a node: scalars as written (quoted when needed), lists and mappings in flow style.
    static func renderYAML(_ node: Node, topLevel: Bool) -> String {
        switch node {
        case .scalar(let s):
            let quoted = s.style == .singleQuoted || s.style == .doubleQuoted || s.style == .literal || s.style == .folded
            if !quoted && isPlainSafe(s.string, inFlow: !topLevel) { return s.string }
            return singleQuoted(s.string)
        case .sequence(let seq):
            return "[" + seq.map { renderYAML($0, topLevel: false) }.joined(separator: ", ") + "]"
        case .mapping(let map):
            return "{" + map.map { "\(renderYAML($0.key, topLevel: false)): \(renderYAML($0.value, topLevel: false))" }
                .joined(separator: ", ") + "}"
        case .alias:
            return "null"
        }
    }

    /// True when `text` reads back as the same plain scalar.
    static func isPlainSafe(_ text: String, inFlow: Bool) -> Bool {
        guard let first = text.first, let last = text.last else { return true }   // empty plain = null
        if first == " " || last == " " || text.contains("\n") || text.contains(": ") || text.contains(" #") || text.hasSuffix(":") {
            return false
        }
        if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
            // `-1`, `-.5`: a leading minus is fine on numbers.
            if first == "-", text.count > 1, Double(text) != nil { return !inFlow || !text.contains(",") }
            return false
        }
        if inFlow && text.contains(where: { ",[]{}".contains($0) }) { return false }
        return true
    }

    static func singleQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// Sweep-made strings (cell names, directories): plain when unmistakably a string, else quoted.
    static func plainOrQuoted(_ text: String) -> String {
        let simple = !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._/=,+-".contains($0)) }
        return simple && (text.contains("/") || text.contains("=")) && isPlainSafe(text, inFlow: false)
            ? text : singleQuoted(text)
    }

    /// A value as it appears in a run name: numbers in canonical form (`1.5e-4` → `0.00015`),
    /// strings as written, lists joined with `_`, all restricted to filesystem-safe characters.
    static func nameToken(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            let quoted = s.style == .singleQuoted || s.style == .doubleQuoted
            let text = s.string
            if !quoted {
                if isNull(node) { return "null" }
                if let i = Int(text) { return String(i) }
                if let d = Double(text), d.isFinite { return safeComponent("\(d)") }
            }
            return text.isEmpty ? "empty" : safeComponent(text)
        case .sequence(let seq):
            return seq.isEmpty ? "empty" : seq.map(nameToken).joined(separator: "_")
        case .mapping(let map):
            return map.isEmpty ? "empty" : map.map { "\(nameToken($0.key))-\(nameToken($0.value))" }.joined(separator: "_")
        case .alias:
            return "alias"
        }
    }

    /// Replaces anything but letters, digits and `._+-` by `_` (a leading `.` too: no hidden directories).
    static func safeComponent(_ text: String) -> String {
        var out = String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._+-".contains($0)) ? $0 : "_" })
        if out.hasPrefix(".") { out = "_" + out.dropFirst() }
        return out.isEmpty ? "_" : out
    }

    /// For each dotted key, the shortest tail of its components that no other key ends with
    /// (`mask_ratio`; `model.width` next to `decoder.width`).
    static func shortLabels(_ keys: [String]) -> [String] {
        let parts = keys.map { $0.split(separator: ".").map(String.init) }
        return parts.enumerated().map { i, p in
            for n in 1...max(p.count, 1) {
                let tail = p.suffix(n)
                // `name` alone would read as the run's own name (`optim.name` stays `optim.name`).
                let clash = parts.enumerated().contains { j, q in j != i && q.suffix(n) == tail }
                    || (n == 1 && p.count > 1 && (tail.first == "name" || tail.first == "output_dir"))
                if !clash || n == p.count { return tail.joined(separator: ".") }
            }
            return keys[i]
        }
    }

    /// `a/b/../c` → `a/c`, `./a` → `a`, for relative paths too (leading `..` are kept).
    static func collapse(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            if part == "..", path.hasPrefix("/"), parts.isEmpty { continue }
            parts.append(part)
        }
        let joined = parts.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    /// Keeps a cell name within common file-name limits: past 120 characters, a prefix plus a hash of the whole.
    static func fitLength(_ name: String) -> String {
        guard name.utf8.count > 120 else { return name }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(name.prefix(100)) + "-" + String(hash, radix: 16)
    }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    static func describe(_ node: Node?, plain: Bool = false) -> String {
        guard let node else { return plain ? "" : "an empty file" }
        switch node {
        case .scalar(let s): return plain ? s.string : (isNull(node) ? "null" : "'\(s.string)'")
        case .sequence: return plain ? "..." : "a list"
        case .mapping: return plain ? "..." : "a mapping"
        case .alias: return plain ? "..." : "an alias"
        }
    }

    static func gridYAMLError(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return ConfigError(origin: .file(path: file, line: mark.line), key: nil, message: "invalid YAML: \(problem)")
        default:
            return ConfigError(origin: .file(path: file, line: 0), key: nil, message: "invalid YAML: \(error)")
        }
    }
}
