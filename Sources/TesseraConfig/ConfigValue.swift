import Foundation

/// A problem with one value, before location and key are attached.
struct ValueIssue: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A Swift type a config key can hold: how it is named in docs, decoded from a node and written
/// back as flow YAML.
protocol ConfigValue: Equatable {
    /// Type name for docs and errors (`int`, `float`, `bool`, `string`, `[float]`, `a|b|c`).
    static var typeName: String { get }
    static func decode(_ node: ConfigNode) throws -> Self
    /// Flow YAML that decodes back to an equal value.
    var yaml: String { get }
    /// The numbers a range rule checks (empty for non-numeric values and null).
    var numbers: [Double] { get }
    /// Element count for lists, nil otherwise.
    var elementCount: Int? { get }
}

extension ConfigValue {
    var numbers: [Double] { [] }
    var elementCount: Int? { nil }
}

private func plainText(_ node: ConfigNode, expected: String) throws -> String {
    guard case .scalar(let text, let quoted) = node.content, !quoted, !node.isNull else {
        throw ValueIssue("expected \(expected), got \(node.shortDescription)")
    }
    return text
}

extension Int: ConfigValue {
    static var typeName: String { "int" }
    static func decode(_ node: ConfigNode) throws -> Int {
        let text = try plainText(node, expected: "an integer")
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw ValueIssue("expected an integer, got '\(text)'")
        }
        return value
    }
    var yaml: String { String(self) }
    var numbers: [Double] { [Double(self)] }
}

extension Double: ConfigValue {
    static var typeName: String { "float" }
    static func decode(_ node: ConfigNode) throws -> Double {
        let text = try plainText(node, expected: "a number")
        guard let value = Double(text.replacingOccurrences(of: "_", with: "")), value.isFinite else {
            throw ValueIssue("expected a number, got '\(text)'")
        }
        return value
    }
    /// Shortest round-trip form, with a '.' before any exponent so YAML 1.1 readers see a float.
    var yaml: String {
        var text = description
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }), !text[..<e].contains(".") {
            text.insert(contentsOf: ".0", at: e)
        }
        if let e = text.firstIndex(of: "e"), text.index(after: e) < text.endIndex,
           text[text.index(after: e)].isNumber {
            text.insert("+", at: text.index(after: e))
        }
        return text
    }
    var numbers: [Double] { [self] }
}

extension Bool: ConfigValue {
    static var typeName: String { "bool" }
    static func decode(_ node: ConfigNode) throws -> Bool {
        let text = try plainText(node, expected: "true or false")
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ValueIssue("expected true or false, got '\(text)'")
        }
    }
    var yaml: String { self ? "true" : "false" }
}

extension String: ConfigValue {
    static var typeName: String { "string" }
    static func decode(_ node: ConfigNode) throws -> String {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            throw ValueIssue("expected a string, got \(node.shortDescription)")
        }
        return text
    }
    /// Always double-quoted, with `\` and `"` escaped.
    var yaml: String {
        var out = "\""
        for scalar in unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\x%02X", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

extension Optional: ConfigValue where Wrapped: ConfigValue {
    static var typeName: String { "\(Wrapped.typeName) or null" }
    static func decode(_ node: ConfigNode) throws -> Wrapped? {
        node.isNull ? nil : try Wrapped.decode(node)
    }
    var yaml: String { map(\.yaml) ?? "null" }
    var numbers: [Double] { map(\.numbers) ?? [] }
    var elementCount: Int? { self?.elementCount }
}

extension Array: ConfigValue where Element: ConfigValue {
    static var typeName: String { "[\(Element.typeName)]" }
    static func decode(_ node: ConfigNode) throws -> [Element] {
        guard case .sequence(let items) = node.content else {
            throw ValueIssue("expected a list of \(Element.typeName), got \(node.shortDescription)")
        }
        return try items.enumerated().map { index, item in
            do { return try Element.decode(item) } catch let issue as ValueIssue {
                throw ValueIssue("item \(index): \(issue.message)")
            }
        }
    }
    var yaml: String { "[" + map(\.yaml).joined(separator: ", ") + "]" }
    var numbers: [Double] { flatMap(\.numbers) }
    var elementCount: Int? { count }
}

/// Enumerations decode from their raw spelling and list the allowed values on failure.
protocol ConfigEnum: ConfigValue, CaseIterable, RawRepresentable where RawValue == String {}

extension ConfigEnum {
    static var allowed: [String] { allCases.map(\.rawValue) }
    static var typeName: String { allowed.joined(separator: "|") }
    static func decode(_ node: ConfigNode) throws -> Self {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            throw ValueIssue("expected one of \(allowed.joined(separator: ", ")), got \(node.shortDescription)")
        }
        if let value = Self(rawValue: text) { return value }
        var message = "unknown value '\(text)' (allowed: \(allowed.joined(separator: ", "))"
        if let guess = Suggest.closest(to: text, among: allowed) { message += "; did you mean '\(guess)'?" }
        throw ValueIssue(message + ")")
    }
    var yaml: String { rawValue }
}

extension TaskKind: ConfigEnum {}
extension Method: ConfigEnum {}
extension Arch: ConfigEnum {}
extension BlockLayout: ConfigEnum {}
extension PosEmbedLayout: ConfigEnum {}
extension TargetNorm: ConfigEnum {}
extension PatchOrder: ConfigEnum {}
extension PredictionHead: ConfigEnum {}
extension LossType: ConfigEnum {}
extension Permutation: ConfigEnum {}
extension AttentionType: ConfigEnum {}
extension PredictFeature: ConfigEnum {}
extension CAETarget: ConfigEnum {}
extension MaskGenerator: ConfigEnum {}
extension DatasetKind: ConfigEnum {}
extension CropMode: ConfigEnum {}
extension Interpolation: ConfigEnum {}
extension OptimizerKind: ConfigEnum {}
extension ScheduleStyle: ConfigEnum {}
extension KnnFeature: ConfigEnum {}

extension ResumeMode: ConfigValue {
    static var typeName: String { "auto|none|restart|path" }
    static func decode(_ node: ConfigNode) throws -> ResumeMode {
        if node.isNull { return .none }
        guard case .scalar(let text, let quoted) = node.content else {
            throw ValueIssue("expected auto, none, restart or a checkpoint path, got \(node.shortDescription)")
        }
        if !quoted && text == "auto" { return .auto }
        if !quoted && text == "none" { return .none }
        if !quoted && text == "restart" { return .restart }
        guard !text.isEmpty else { throw ValueIssue("expected auto, none, restart or a checkpoint path, got ''") }
        return .path(text)
    }
    var yaml: String {
        switch self {
        case .auto: return "auto"
        case .none: return "none"
        case .restart: return "restart"
        case .path(let path): return path.yaml
        }
    }
}
