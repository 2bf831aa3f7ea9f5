import Foundation

public struct TableError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// The finished runs under a directory as one markdown table: one row per run directory (any
/// directory holding summary.json), with the run's task and method, its `--set` overrides (so a
/// sweep reads as a grid) and every scalar of its summary (nested objects as `knn/top1`).
public struct ResultsTable {
    public struct Row {
        /// The run directory relative to the root.
        public var run: String
        /// Column → formatted value; missing columns are absent.
        public var values: [String: String]
    }

    /// The directory searched.
    public let root: String
    /// Every column after `run`, in display order.
    public let columns: [String]
    /// The columns that came from overrides.txt.
    public let overrideColumns: [String]
    /// Rows sorted by run.
    public let rows: [Row]

    /// Shown where a run has no value for a column.
    public static let missing = "—"
    /// Summary keys shown first, in this order, when present; the rest follow alphabetically.
    static let leadingKeys = ["final_loss", "images_per_s", "epochs", "steps", "seconds"]
    /// Overrides set by the sweep for every cell; the run column already says them.
    static let hiddenOverrides: Set<String> = ["name", "output_dir"]

    /// Reads every summary.json under `root` (recursively). Throws when `root` is not a directory.
    public static func load(root: String) throws -> ResultsTable {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else {
            throw TableError(description: "tessera: \(root): no such directory")
        }
        guard isDirectory.boolValue else {
            throw TableError(description: "tessera: \(root): not a directory")
        }
        var runDirs: [String] = []
        if FileManager.default.fileExists(atPath: (root as NSString).appendingPathComponent("summary.json")) { runDirs.append("") }
        if let walker = FileManager.default.enumerator(atPath: root) {
            while let rel = walker.nextObject() as? String {
                if (rel as NSString).lastPathComponent == "summary.json" && rel != "summary.json" {
                    runDirs.append((rel as NSString).deletingLastPathComponent)
                }
            }
        }
        runDirs.sort()

        var rows: [Row] = []
        var overrideKeys: [String] = []
        var summaryKeys = Set<String>()
        for rel in runDirs {
            let dir = rel.isEmpty ? root : (root as NSString).appendingPathComponent(rel)
            let shown = rel.isEmpty ? (URL(fileURLWithPath: root).standardizedFileURL.lastPathComponent) : rel
            var values: [String: String] = [:]
            let summaryPath = (dir as NSString).appendingPathComponent("summary.json")
            if let data = FileManager.default.contents(atPath: summaryPath),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                flatten(object, prefix: "", into: &values)
            } else {
                values["task"] = "(unreadable summary.json)"
            }
            for key in values.keys where key != "task" && key != "method" { summaryKeys.insert(key) }
            for (key, value) in readOverrides(dir) where !hiddenOverrides.contains(key) {
                if !overrideKeys.contains(key) { overrideKeys.append(key) }
                values["set:" + key] = value
            }
            rows.append(Row(run: shown, values: values))
        }
        // An override column may share its name with a summary key; keep them apart internally.
        let leading = leadingKeys.filter(summaryKeys.contains)
        let rest = summaryKeys.subtracting(leading).sorted()
        let columns = ["task", "method"] + overrideKeys.map { "set:" + $0 } + leading + rest
        return ResultsTable(root: root, columns: columns, overrideColumns: overrideKeys, rows: rows)
    }

    /// The table for the runs under `root`, or a one-line note when there are none.
    public static func markdown(root: String) throws -> String {
        try load(root: root).markdown()
    }

    /// The markdown table (columns padded for reading in a terminal), or a note when empty.
    public func markdown() -> String {
        guard !rows.isEmpty else { return "no finished runs under \(root) (no summary.json found)\n" }
        // An override named like a summary key (`epochs`) is headed `--set epochs`.
        let headers = ["run"] + columns.map { column -> String in
            guard column.hasPrefix("set:") else { return column }
            let key = String(column.dropFirst(4))
            return columns.contains(key) ? "--set \(key)" : key
        }
        let cells: [[String]] = rows.map { row in
            [row.run] + columns.map { row.values[$0] ?? Self.missing }
        }.map { $0.map(Self.escape) }
        let numeric: [Bool] = [false] + columns.indices.map { c in
            let present = rows.compactMap { $0.values[columns[c]] }
            return !present.isEmpty && present.allSatisfy { Double($0) != nil }
        }
        let widths = headers.indices.map { c in max(3, ([headers[c]] + cells.map { $0[c] }).map(\.count).max() ?? 3) }
        func pad(_ text: String, _ c: Int) -> String {
            let fill = String(repeating: " ", count: widths[c] - text.count)
            return numeric[c] ? fill + text : text + fill
        }
        func line(_ items: [String]) -> String { "| " + items.joined(separator: " | ") + " |\n" }
        var out = line(headers.indices.map { pad(Self.escape(headers[$0]), $0) })
        out += line(headers.indices.map { numeric[$0] ? String(repeating: "-", count: widths[$0] - 1) + ":" : String(repeating: "-", count: widths[$0]) })
        for row in cells { out += line(row.indices.map { pad(row[$0], $0) }) }
        return out
    }

    // MARK: Reading

    /// Scalars of a summary, nested objects flattened to `outer/inner`; lists are left out.
    static func flatten(_ object: [String: Any], prefix: String, into values: inout [String: String]) {
        for (key, value) in object {
            let name = prefix.isEmpty ? key : "\(prefix)/\(key)"
            if let nested = value as? [String: Any] {
                flatten(nested, prefix: name, into: &values)
            } else if let text = format(value) {
                values[name] = text
            }
        }
    }

    /// A JSON scalar for the table: integers as such, other numbers `%.4g` (`%.0f` from 10⁴ on), null as missing.
    static func format(_ value: Any) -> String? {
        switch value {
        case is NSNull: return nil
        case let s as String: return s
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            let x = n.doubleValue
            guard x.isFinite else { return "\(x)" }
            if x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
            return abs(x) >= 1e4 && abs(x) < 1e15 ? String(format: "%.0f", x) : String(format: "%.4g", x)
        default:
            return nil
        }
    }

    /// `key → value` from a run's overrides.txt (`--set key=value` lines), in file order; a value
    /// wrapped in matching quotes is shown without them.
    static func readOverrides(_ dir: String) -> [(String, String)] {
        guard let text = try? String(contentsOfFile: (dir as NSString).appendingPathComponent("overrides.txt"), encoding: .utf8) else {
            return []
        }
        var pairs: [(String, String)] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("--set ") { line = String(line.dropFirst(6)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<eq]).trimmingCharacters(in: .whitespaces)
            var value = String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let q = value.first, q == "'" || q == "\"", value.last == q {
                value = String(value.dropFirst().dropLast())
                if q == "'" { value = value.replacingOccurrences(of: "''", with: "'") }
            }
            if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = value } else { pairs.append((key, value)) }
        }
        return pairs
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }
}
