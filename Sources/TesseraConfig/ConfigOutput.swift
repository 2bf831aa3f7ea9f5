import Foundation

extension ExperimentSpec {
    /// The resolved config as YAML: every key of `ConfigSchema.keys` with its effective value,
    /// sections in schema order. Loading it back gives an equal spec.
    public func resolvedYAML() -> String {
        var lines = ["# Resolved Tessera config: every key with its effective value."]
        ConfigSchema.emit(section: "", indent: "", spec: self, into: &lines)
        return lines.joined(separator: "\n") + "\n"
    }
}

extension ConfigSchema {
    fileprivate static func emit(section: String, indent: String, spec: ExperimentSpec, into lines: inout [String]) {
        for key in keys where key.section == section {
            lines.append("\(indent)\(key.name): \(key.encode(spec))")
        }
        for child in sections where !child.path.isEmpty && parentPath(child.path) == section {
            lines.append("\(indent)\(child.path.split(separator: ".").last!):")
            emit(section: child.path, indent: indent + "  ", spec: spec, into: &lines)
        }
    }

    fileprivate static func parentPath(_ path: String) -> String {
        guard let dot = path.lastIndex(of: ".") else { return "" }
        return String(path[..<dot])
    }

    /// Markdown reference of every section and key: type, default, allowed values and meaning.
    public static func markdown() -> String {
        var out = """
        # Tessera configuration reference

        Generated from `ConfigSchema` (Sources/TesseraConfig/ConfigSchema.swift) by `ConfigSchema.markdown()`;
        edit the schema, not this file.

        ## How a config is read

        * A config is a YAML mapping. Keys are snake_case; unknown or misspelt keys are errors
          (`file.yaml:12: optim.lerning_rate: unknown key 'lerning_rate' in 'optim' (did you mean 'lr'?)`).
        * `_base_: other.yaml` or `_base_: [a.yaml, b.yaml]` inherits from other files, paths relative to
          the including file. Later bases override earlier ones, the file overrides its bases, and
          mappings merge key by key. A mapping containing `_delete_: true` replaces the inherited
          mapping instead of merging into it.
        * `--set a.b.c=value` overrides one key after merging; the value is YAML (`0.1`, `true`,
          `[0.2, 1.0]`, `adamw`, `null`).
        * Defaults marked "by method", "from arch" and so on are computed after merging and overrides,
          only for keys the config does not set.
        * Learning rate: `optim.lr` if set, else `optim.blr × batch_size × accum_iter / 256`.
        * Values are checked before anything runs: ranges below, enum values, width divisible by heads
          and by 4, image size divisible by patch size, existing `data.path`, `init` and `resume` paths.


        """
        for section in sections {
            out += "## " + (section.path.isEmpty ? "Top level" : "`\(section.path)`") + "\n\n"
            out += section.doc + ".\n\n"
            out += "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n"
            for key in keys where key.section == section.path {
                let cells = ["`\(key.path)`", key.type, key.defaultIsLiteral ? "`\(key.defaultText)`" : key.defaultText, key.ruleText, key.doc]
                out += "| " + cells.map(escapeCell).joined(separator: " | ") + " |\n"
            }
            out += "\n"
        }
        return out
    }

    private static func escapeCell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|")
    }
}

extension ExperimentSpec {
    /// Every key's dotted path and its value as the resolved YAML writes it.
    public func settings() -> [String: String] {
        Dictionary(uniqueKeysWithValues: ConfigSchema.keys.map { ($0.path, $0.encode(self)) })
    }
}

extension ConfigSchema {
    /// The dotted key → value text of a file `resolvedYAML()` wrote (a run directory's config.yaml).
    public static func settings(resolvedYAML text: String) -> [String: String] {
        var out: [String: String] = [:]
        var stack: [(indent: Int, name: String)] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = String(raw)
            let trimmed = line.drop { $0 == " " }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let indent = line.count - trimmed.count
            guard let colon = trimmed.firstIndex(of: ":") else { continue }
            let name = String(trimmed[..<colon])
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            while let last = stack.last, last.indent >= indent { stack.removeLast() }
            let dotted = (stack.map(\.name) + [name]).joined(separator: ".")
            if value.isEmpty { stack.append((indent, name)) } else { out[dotted] = value }
        }
        return out
    }

    /// The keys whose values differ between two settings maps. A key the old map lacks (written by
    /// an older Tessera) counts only when the new value differs from the key's default.
    public static func differences(_ old: [String: String], _ new: [String: String]) -> [(key: String, old: String, new: String)] {
        var out: [(key: String, old: String, new: String)] = []
        for key in keys {
            let n = new[key.path] ?? ""
            if let o = old[key.path] {
                if o != n { out.append((key.path, o, n)) }
            } else if !(key.defaultIsLiteral && key.defaultText == n) {
                out.append((key.path, "(absent)", n))
            }
        }
        return out
    }
}
