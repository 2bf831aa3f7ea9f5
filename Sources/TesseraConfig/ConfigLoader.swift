import Foundation

/// Reads YAML configs: `_base_` inheritance, `--set` overrides, then strict typed decoding.
///
/// Inheritance: `_base_: other.yaml` (or a list) names files relative to the including file. Bases
/// are merged in order (later wins), then the file itself on top. Mappings merge key by key; a
/// mapping containing `_delete_: true` replaces what it would otherwise merge into.
public enum ConfigLoader {
    /// Loads, merges, overrides, decodes and validates a config file.
    /// - Parameters:
    ///   - overrides: `--set` arguments as `dotted.key=value`; the value is YAML (`0.1`, `true`, `[0.2, 1.0]`, `adamw`).
    ///   - checkPaths: verify that `data.path`, `init` and a `resume` path exist.
    public static func load(path: String, overrides: [String] = [], checkPaths: Bool = true) throws -> ExperimentSpec {
        let tree = try loadTree(path: path, overrides: overrides)
        return try SpecDecoder.decode(tree, fileStem: stem(of: path), checkPaths: checkPaths)
    }

    /// Loads a config from YAML text; `file` names it in errors and `_base_` paths are relative to
    /// its directory.
    public static func load(yaml: String, file: String = "config.yaml", overrides: [String] = [],
                            checkPaths: Bool = true) throws -> ExperimentSpec {
        let tree = try loadTree(yaml: yaml, file: file, overrides: overrides)
        return try SpecDecoder.decode(tree, fileStem: stem(of: file), checkPaths: checkPaths)
    }

    /// The merged tree (bases and overrides applied, before decoding), every node carrying the file
    /// and line it came from. Override paths are checked against the schema.
    public static func loadTree(path: String, overrides: [String] = []) throws -> ConfigNode {
        let file = displayPath(path)
        let text = try read(file, includedFrom: nil)
        return try loadTree(yaml: text, file: file, overrides: overrides)
    }

    /// `loadTree(path:overrides:)` for YAML text named `file`.
    public static func loadTree(yaml: String, file: String, overrides: [String] = []) throws -> ConfigNode {
        var tree = try resolve(yaml: yaml, file: displayPath(file), chain: [])
        tree.origin = .file(path: displayPath(file), line: 0)
        for override in overrides {
            try apply(override: override, to: &tree)
        }
        return tree
    }

    /// The config file name without directory and extension.
    static func stem(of path: String) -> String {
        URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }

    /// A path with `.` and `..` components removed, kept relative if it was relative.
    static func displayPath(_ path: String) -> String {
        let standardized = (path as NSString).standardizingPath
        return standardized.isEmpty ? path : standardized
    }

    private static func read(_ file: String, includedFrom origin: ConfigOrigin?) throws -> String {
        guard FileManager.default.fileExists(atPath: file) else {
            throw ConfigError(origin: origin ?? .file(path: file, line: 0), key: origin == nil ? nil : "_base_",
                              message: "config file not found: \(file)")
        }
        let at = origin ?? .file(path: file, line: 0), key = origin == nil ? nil : "_base_"
        let attributes = try? FileManager.default.attributesOfItem(atPath: file)
        if let size = (attributes?[.size] as? NSNumber)?.intValue, size > maxFileBytes {
            throw ConfigError(origin: at, key: key, message: "\(file) is \(size) bytes; a config file holds at most \(maxFileBytes)")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(origin: at, key: key, message: "cannot read \(file)")
        }
        guard !data.contains(0), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(origin: at, key: key, message: "\(file) is not a UTF-8 text file (a binary file?)")
        }
        return text
    }

    /// Largest config file read (a YAML experiment config is a few kilobytes).
    static let maxFileBytes = 1 << 20

    /// Parses `yaml` and merges in its bases; `chain` holds the absolute paths of the including files.
    private static func resolve(yaml: String, file: String, chain: [String]) throws -> ConfigNode {
        let absolute = URL(fileURLWithPath: file).standardizedFileURL.path
        let chain = chain + [absolute]
        let node = try ConfigNode.parse(yaml: yaml, file: file)
        if node.isNull { return ConfigNode(.mapping([]), origin: .file(path: file, line: 1)) }
        guard var entries = node.entries else {
            throw ConfigError(origin: node.origin, key: nil,
                              message: "a config file must be a mapping of keys, got \(node.shortDescription)")
        }
        guard let baseIndex = entries.firstIndex(where: { $0.key == "_base_" }) else { return node }
        let baseEntry = entries.remove(at: baseIndex)
        let own = ConfigNode(.mapping(entries), origin: node.origin)

        let names: [(String, ConfigOrigin)]
        switch baseEntry.value.content {
        case .scalar(let text, _) where !baseEntry.value.isNull:
            names = [(text, baseEntry.keyOrigin)]
        case .sequence(let items):
            names = try items.map { item in
                guard case .scalar(let text, _) = item.content, !item.isNull else {
                    throw ConfigError(origin: item.origin, key: "_base_",
                                      message: "expected a file name, got \(item.shortDescription)")
                }
                return (text, item.origin)
            }
        default:
            throw ConfigError(origin: baseEntry.keyOrigin, key: "_base_",
                              message: "expected a file name or a list of file names, got \(baseEntry.value.shortDescription)")
        }

        let directory = (file as NSString).deletingLastPathComponent
        var merged: ConfigNode?
        for (name, origin) in names {
            let basePath = displayPath(name.hasPrefix("/") ? name : (directory as NSString).appendingPathComponent(name))
            let baseAbsolute = URL(fileURLWithPath: basePath).standardizedFileURL.path
            if let start = chain.firstIndex(of: baseAbsolute) {
                let cycle = (chain[start...] + [baseAbsolute]).map { ($0 as NSString).lastPathComponent }
                throw ConfigError(origin: origin, key: "_base_",
                                  message: "inheritance cycle: \(cycle.joined(separator: " -> "))")
            }
            let text = try read(basePath, includedFrom: origin)
            let base = try resolve(yaml: text, file: basePath, chain: chain)
            merged = merged.map { base.merged(over: $0) } ?? base
        }
        guard let merged else { return own }
        var result = own.merged(over: merged)
        result.origin = node.origin
        return result
    }

    /// Applies one `dotted.key=value` override to the merged tree.
    static func apply(override: String, to tree: inout ConfigNode) throws {
        guard let equals = override.firstIndex(of: "=") else {
            throw ConfigError(origin: .override, key: override, message: "expected key=value")
        }
        let key = String(override[..<equals]).trimmingCharacters(in: .whitespaces)
        let valueText = String(override[override.index(after: equals)...])
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !key.isEmpty, !parts.contains("") else {
            throw ConfigError(origin: .override, key: key, message: "expected a dotted key such as optim.lr")
        }
        var section = ""
        for (index, part) in parts.enumerated() {
            let full = section.isEmpty ? part : "\(section).\(part)"
            let isLast = index == parts.count - 1
            if ConfigSchema.sectionPaths.contains(full) {
                section = full
                continue
            }
            if isLast && ConfigSchema.keyIndex[full] != nil { break }
            if ConfigSchema.keyIndex[full] != nil {
                throw ConfigError(origin: .override, key: key, message: "'\(full)' is a value, not a section")
            }
            throw ConfigError(origin: .override, key: key,
                              message: SpecDecoder.unknownKeyMessage(part, in: section))
        }
        let value = try ConfigNode.parseOverrideValue(valueText, key: key)
        tree = set(value, at: parts[...], in: tree)
    }

    private static func set(_ value: ConfigNode, at path: ArraySlice<String>, in node: ConfigNode) -> ConfigNode {
        guard let head = path.first else { return value.merged(over: node) }
        var entries = node.entries ?? []
        if let index = entries.firstIndex(where: { $0.key == head }) {
            entries[index].value = set(value, at: path.dropFirst(), in: entries[index].value)
            if path.count == 1 { entries[index].keyOrigin = .override }
        } else {
            let empty = ConfigNode(.mapping([]), origin: .override)
            entries.append(ConfigEntry(key: head, keyOrigin: .override,
                                       value: set(value, at: path.dropFirst(), in: empty)))
        }
        return ConfigNode(.mapping(entries), origin: node.origin)
    }
}
