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
