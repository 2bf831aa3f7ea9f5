/// Loading named tensors into a module, with a report of everything that did not fit.

/// What a state-dict load found that did not fit the model.
public struct StateDictMismatch: Error, CustomStringConvertible, Equatable {
    public var missing: [String] = []
    public var unexpected: [String] = []
    /// name, expected shape, found shape
    public var misShaped: [String] = []

    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && misShaped.isEmpty }

    public var description: String {
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
        if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
        if !misShaped.isEmpty { parts.append("mis-shaped keys: \(misShaped.joined(separator: "; "))") }
        return "tessera: checkpoint does not fit the model: " + parts.joined(separator: "; ")
    }
}

extension Module {
    /// Copies `state[name]` into every parameter and buffer of the same name. Returns what did not fit;
    /// with `strict` any mismatch throws before anything is copied. Alias names (`Module.alias`) may
    /// be absent; when present they must have the right shape, and the primary name's values win.
    @discardableResult
    public func load(state: [String: Tensor], strict: Bool = true) throws -> StateDictMismatch {
        var report = StateDictMismatch()
        let own = stateDict()
        let ownNames = Set(own.map(\.name))
        let aliases = aliasNames()
        for (name, t) in own {
            guard let src = state[name] else {
                if !aliases.contains(name) { report.missing.append(name) }
                continue
            }
            if src.count != t.count || (src.shape != t.shape && src.shape.filter({ $0 != 1 }) != t.shape.filter({ $0 != 1 })) {
                report.misShaped.append("\(name) expected \(t.shape) found \(src.shape)")
            }
        }
        report.unexpected = state.keys.filter { !ownNames.contains($0) }.sorted()
        if strict && !report.isEmpty { throw report }
        let bad = Set(report.misShaped.map { String($0.split(separator: " ")[0]) })
        for (name, t) in own where !bad.contains(name) && !aliases.contains(name) {
            if let src = state[name] { t.copy(from: src) }
        }
        return report
    }
}
