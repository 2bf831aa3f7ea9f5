import Foundation
import Yams

/// A YAML value in which every node remembers where it was written.
public struct ConfigNode: Equatable, Sendable {
    public enum Content: Equatable, Sendable {
        /// Scalar text as written; `quoted` is true for '...' and "..." scalars.
        case scalar(String, quoted: Bool)
        case sequence([ConfigNode])
        case mapping([ConfigEntry])
    }

    public var content: Content
    public var origin: ConfigOrigin

    public init(_ content: Content, origin: ConfigOrigin) {
        self.content = content
        self.origin = origin
    }

    /// True for an unquoted `null`, `~` or empty scalar.
    public var isNull: Bool {
        if case .scalar(let text, let quoted) = content, !quoted {
            return ["", "~", "null", "Null", "NULL"].contains(text)
        }
        return false
    }

    /// The entries of a mapping node; nil otherwise.
    public var entries: [ConfigEntry]? {
        if case .mapping(let entries) = content { return entries }
        return nil
    }

    /// The entry for `key` in a mapping node.
    public subscript(key: String) -> ConfigEntry? {
        entries?.first { $0.key == key }
    }

    /// The node at a dotted path (`model.decoder.width`), if present.
    public func node(at dottedPath: String) -> ConfigNode? {
        var current = self
        for part in dottedPath.split(separator: ".") {
            guard let entry = current[String(part)] else { return nil }
            current = entry.value
        }
        return current
    }

    /// Short rendering of a value for error messages: `'abc'`, `null`, `a list`, `a mapping`.
    var shortDescription: String {
        switch content {
        case .scalar(let text, _): return isNull ? "null" : "'\(text)'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}

/// One `key: value` pair of a mapping; `keyOrigin` is where the key was written.
public struct ConfigEntry: Equatable, Sendable {
    public var key: String
    public var keyOrigin: ConfigOrigin
    public var value: ConfigNode

    public init(key: String, keyOrigin: ConfigOrigin, value: ConfigNode) {
        self.key = key
        self.keyOrigin = keyOrigin
        self.value = value
    }
}

extension ConfigNode {
    /// Parses YAML text (one document) into a located tree. An empty document is an empty mapping.
    static func parse(yaml: String, file: String) throws -> ConfigNode {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError.fromYams(error, file: file)
        } catch {
            throw ConfigError(origin: .file(path: file, line: 0), key: nil, message: "\(error)")
        }
        guard let root else { return ConfigNode(.mapping([]), origin: .file(path: file, line: 1)) }
        var budget = maxNodes
        return try convert(root, file: file, path: "", budget: &budget)
    }

    /// Most values one config file may hold once aliases are expanded: a "billion laughs" file of
    /// nested aliases stops here instead of exhausting memory.
    static let maxNodes = 100_000

    /// Parses a `--set` value (a YAML scalar or flow collection).
    static func parseOverrideValue(_ text: String, key: String) throws -> ConfigNode {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError(origin: .override, key: key, message: "cannot parse value '\(text)' as YAML")
        }
        guard let root else { return ConfigNode(.scalar("", quoted: false), origin: .override) }
        var budget = maxNodes
        return relocated(try convert(root, file: "--set", path: key, budget: &budget), to: .override)
    }

    private static func relocated(_ node: ConfigNode, to origin: ConfigOrigin) -> ConfigNode {
        var copy = node
        copy.origin = origin
        switch node.content {
        case .scalar: break
        case .sequence(let items): copy.content = .sequence(items.map { relocated($0, to: origin) })
        case .mapping(let entries):
            copy.content = .mapping(entries.map {
                ConfigEntry(key: $0.key, keyOrigin: origin, value: relocated($0.value, to: origin))
            })
        }
        return copy
    }

    private static func convert(_ node: Node, file: String, path: String, budget: inout Int) throws -> ConfigNode {
        let origin = ConfigOrigin.file(path: file, line: node.mark?.line ?? 0)
        budget -= 1
        guard budget >= 0 else {
            throw ConfigError(origin: origin, key: path.isEmpty ? nil : path,
                              message: "the file expands to more than \(maxNodes) values (nested YAML aliases?)")
        }
        switch node {
        case .scalar(let scalar):
            let quoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
                || scalar.style == .literal || scalar.style == .folded
            return ConfigNode(.scalar(scalar.string, quoted: quoted), origin: origin)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            for (index, item) in sequence.enumerated() {
                items.append(try convert(item, file: file, path: "\(path)[\(index)]", budget: &budget))
            }
            return ConfigNode(.sequence(items), origin: origin)
        case .mapping(let mapping):
            var entries: [ConfigEntry] = []
            for (keyNode, valueNode) in mapping {
                let keyOrigin = ConfigOrigin.file(path: file, line: keyNode.mark?.line ?? 0)
                guard case .scalar(let keyScalar) = keyNode else {
                    throw ConfigError(origin: keyOrigin, key: path.isEmpty ? nil : path,
                                      message: "mapping keys must be plain strings")
                }
                let key = keyScalar.string
                let dotted = path.isEmpty ? key : "\(path).\(key)"
                if entries.contains(where: { $0.key == key }) {
                    throw ConfigError(origin: keyOrigin, key: dotted, message: "duplicate key '\(key)'")
                }
                entries.append(ConfigEntry(key: key, keyOrigin: keyOrigin,
                                           value: try convert(valueNode, file: file, path: dotted, budget: &budget)))
            }
            return ConfigNode(.mapping(entries), origin: origin)
        case .alias:
            throw ConfigError(origin: origin, key: path.isEmpty ? nil : path,
                              message: "YAML aliases are not supported; use _base_ inheritance")
        }
    }

    /// `base` overlaid with `self`: mappings merge key by key (recursively) unless `self` contains
    /// `_delete_: true`, in which case `self` replaces `base`; any other value replaces `base`.
    func merged(over base: ConfigNode) -> ConfigNode {
        guard case .mapping(let overEntries) = content else { return self }
        let deletes = overEntries.contains { $0.key == "_delete_" && $0.value.isTrue }
        let ownEntries = overEntries.filter { $0.key != "_delete_" }
        guard !deletes, case .mapping(var result) = base.content else {
            return ConfigNode(.mapping(ownEntries.map { $0.withMappingsCleaned() }), origin: origin)
        }
        for entry in ownEntries {
            if let index = result.firstIndex(where: { $0.key == entry.key }) {
                result[index] = ConfigEntry(key: entry.key, keyOrigin: entry.keyOrigin,
                                            value: entry.value.merged(over: result[index].value))
            } else {
                result.append(entry.withMappingsCleaned())
            }
        }
        return ConfigNode(.mapping(result), origin: base.origin)
    }

    /// Removes `_delete_` markers from nested mappings that have nothing to replace.
    fileprivate func cleaned() -> ConfigNode {
        guard case .mapping(let entries) = content else { return self }
        return ConfigNode(.mapping(entries.filter { $0.key != "_delete_" }.map { $0.withMappingsCleaned() }),
                          origin: origin)
    }

    fileprivate var isTrue: Bool {
        if case .scalar(let text, false) = content { return ["true", "True", "TRUE", "yes"].contains(text) }
        return false
    }
}

extension ConfigEntry {
    fileprivate func withMappingsCleaned() -> ConfigEntry {
        ConfigEntry(key: key, keyOrigin: keyOrigin, value: value.cleaned())
    }
}

extension ConfigError {
    /// A one-line error from a Yams parse failure.
    static func fromYams(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let detail = context.map { context in
                context.mark.line != mark.line
                    ? "\(problem) (\(context.text) started on line \(context.mark.line))"
                    : "\(problem) (\(context.text))"
            } ?? problem
            return ConfigError(origin: .file(path: file, line: mark.line), key: nil,
                               message: "invalid YAML: \(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(origin: .file(path: file, line: context.mark.line), key: nil,
                               message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        default:
            return ConfigError(origin: .file(path: file, line: 0), key: nil, message: "invalid YAML: \(error)")
        }
    }
}
