import Foundation

/// Where a configuration value came from.
public enum ConfigOrigin: Equatable, Sendable, CustomStringConvertible {
    /// A YAML file; `line` is 1-based, 0 when no line applies (the file as a whole).
    case file(path: String, line: Int)
    /// A `--set key=value` override.
    case override
    /// A schema default (plain or derived from other keys).
    case schemaDefault

    /// `path:line`, `path`, `--set` or `(default)`.
    public var description: String {
        switch self {
        case .file(let path, let line): return line > 0 ? "\(path):\(line)" : path
        case .override: return "--set"
        case .schemaDefault: return "(default)"
        }
    }

    /// The file path, when the value came from a file.
    public var file: String? {
        if case .file(let path, _) = self { return path }
        return nil
    }

    /// The 1-based line, when the value came from a file.
    public var line: Int? {
        if case .file(_, let line) = self, line > 0 { return line }
        return nil
    }
}

/// A configuration problem, reported on one line:
/// `file.yaml:12: optim.lr: expected a number, got 'abc'`, or `--set optim.lr: ...` for overrides.
public struct ConfigError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// Where the offending value (or key) was written; nil when no place applies.
    public let origin: ConfigOrigin?
    /// Dotted key (`optim.lr`); nil for problems that concern a whole file.
    public let key: String?
    /// What is wrong, without location or key.
    public let message: String

    public init(origin: ConfigOrigin?, key: String?, message: String) {
        self.origin = origin
        self.key = key
        self.message = message
    }

    public var description: String {
        let line: String
        switch (origin, key) {
        case (.override?, let key?): line = "--set \(key): \(message)"
        case (let origin?, let key?): line = "\(origin): \(key): \(message)"
        case (let origin?, nil): line = "\(origin): \(message)"
        case (nil, let key?): line = "\(key): \(message)"
        case (nil, nil): line = message
        }
        return line.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: " ")
    }

    public var errorDescription: String? { description }
}
