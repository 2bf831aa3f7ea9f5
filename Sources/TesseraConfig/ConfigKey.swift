import Foundation

/// What the loader knows while filling defaults.
struct DefaultContext {
    /// The config file name without directory and extension.
    var fileStem: String
}

/// A key's default: a plain value, none (the key must be given), or computed from other keys after
/// merging. A derived default may throw `ValueIssue` when no value can be derived.
enum Default<T> {
    case value(T)
    case required
    case derived(String, (ExperimentSpec, DefaultContext) throws -> T)
}

/// A range or length rule, applied to the numbers of a value (each element of a list).
struct Rule {
    let text: String
    let check: (_ numbers: [Double], _ count: Int?) -> String?

    static let any = Rule(text: "") { _, _ in nil }

    static func atLeast(_ low: Double) -> Rule {
        Rule(text: "≥ \(fmt(low))") { numbers, _ in
            numbers.first { $0 < low }.map { "must be ≥ \(fmt(low)), got \(fmt($0))" }
        }
    }

    static func greaterThan(_ low: Double) -> Rule {
        Rule(text: "> \(fmt(low))") { numbers, _ in
            numbers.first { $0 <= low }.map { "must be > \(fmt(low)), got \(fmt($0))" }
        }
    }

    /// [low, high] or [low, high) when `openHigh`.
    static func range(_ low: Double, _ high: Double, openHigh: Bool = false) -> Rule {
        let text = "[\(fmt(low)), \(fmt(high))\(openHigh ? ")" : "]")"
        return Rule(text: "in \(text)") { numbers, _ in
            numbers.first { $0 < low || (openHigh ? $0 >= high : $0 > high) }
                .map { "must be in \(text), got \(fmt($0))" }
        }
    }

    /// (low, high]
    static func openLow(_ low: Double, _ high: Double) -> Rule {
        Rule(text: "in (\(fmt(low)), \(fmt(high))]") { numbers, _ in
            numbers.first { $0 <= low || $0 > high }.map { "must be in (\(fmt(low)), \(fmt(high))], got \(fmt($0))" }
        }
    }

    static func count(_ n: Int, _ elements: Rule = .any) -> Rule {
        let text = elements.text.isEmpty ? "\(n) values" : "\(n) values, each \(elements.text)"
        return Rule(text: text) { numbers, count in
            if let count, count != n { return "expected \(n) values, got \(count)" }
            return elements.check(numbers, count)
        }
    }

    static func nonEmpty(_ elements: Rule = .any) -> Rule {
        let text = elements.text.isEmpty ? "non-empty" : "non-empty, each \(elements.text)"
        return Rule(text: text) { numbers, count in
            if count == 0 { return "expected at least one value" }
            return elements.check(numbers, count)
        }
    }
}

/// `1`, `0.75`, `1e-08`: integers without a fraction, others in shortest form.
func fmt(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return "\(x)"
}

/// One config key, declared once: its dotted YAML path, type, default, rule and meaning.
/// Decoding, validation, YAML output and the markdown reference are all derived from these.
public struct ConfigKey {
    /// Dotted path, e.g. `optim.lr`.
    public let path: String
    /// Type as shown in docs: `int`, `float or null`, `[float]`, `adamw|sgd|lars|lars_timm`.
    public let type: String
    /// Default as shown in docs (a YAML value, `required`, or how it is derived).
    public let defaultText: String
    /// True when `defaultText` is a YAML value rather than a description.
    public let defaultIsLiteral: Bool
    /// Allowed range or length as shown in docs; empty when any value of the type is allowed.
    public let ruleText: String
    /// One-line meaning.
    public let doc: String
    /// Other spellings that earn a "did you mean" pointing here (e.g. `learning_rate` for `lr`).
    public let aliases: [String]

    let decode: (ConfigNode, inout ExperimentSpec) throws -> Void
    let fill: (inout ExperimentSpec, DefaultContext) throws -> Void
    let check: (ExperimentSpec) -> String?
    let encode: (ExperimentSpec) -> String

    /// The last path component (`lr` for `optim.lr`).
    public var name: String { String(path.split(separator: ".").last ?? "") }
    /// The enclosing section path (`optim` for `optim.lr`, `""` at top level).
    public var section: String {
        guard let dot = path.lastIndex(of: ".") else { return "" }
        return String(path[..<dot])
    }

    static func make<T: ConfigValue>(_ path: String, _ keyPath: WritableKeyPath<ExperimentSpec, T>,
                                     _ defaultValue: Default<T>, _ doc: String,
                                     aka: [String] = []) -> ConfigKey {
        make(path, keyPath, defaultValue, .any, doc, aka: aka)
    }

    static func make<T: ConfigValue>(_ path: String, _ keyPath: WritableKeyPath<ExperimentSpec, T>,
                                     _ defaultValue: Default<T>, _ rule: Rule, _ doc: String,
                                     aka: [String] = []) -> ConfigKey {
        let defaultText: String
        var literal = false
        switch defaultValue {
        case .value(let v): defaultText = v.yaml; literal = true
        case .required: defaultText = "required"
        case .derived(let text, _): defaultText = text
        }
        return ConfigKey(
            path: path, type: T.typeName, defaultText: defaultText, defaultIsLiteral: literal,
            ruleText: rule.text, doc: doc, aliases: aka,
            decode: { node, spec in spec[keyPath: keyPath] = try T.decode(node) },
            fill: { spec, context in
                switch defaultValue {
                case .value(let v): spec[keyPath: keyPath] = v
                case .required: throw ValueIssue("required key is missing")
                case .derived(_, let derive): spec[keyPath: keyPath] = try derive(spec, context)
                }
            },
            check: { spec in
                let value = spec[keyPath: keyPath]
                return rule.check(value.numbers, value.elementCount)
            },
            encode: { spec in spec[keyPath: keyPath].yaml })
    }
}

/// A mapping of keys (`model`, `model.decoder`, ...) with its one-line meaning.
public struct ConfigSection: Sendable {
    /// Dotted path; `""` is the top level.
    public let path: String
    public let doc: String
    /// Other spellings that earn a "did you mean" pointing here.
    public let aliases: [String]
}
