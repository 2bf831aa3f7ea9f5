import Foundation
import XCTest
import TesseraConfig

final class RoundTripTests: XCTestCase {
    func testResolvedYAMLLoadsBackEqual() throws {
        for fixture in ["full.yaml", "child_list.yaml", "child_delete.yaml", "nested/child_recursive.yaml"] {
            let spec = try Fixtures.load(fixture, ["resume=\(Fixtures.path("base_model.yaml"))"])
            let yaml = spec.resolvedYAML()
            let again = try ConfigLoader.load(yaml: yaml, file: "resolved.yaml")
            XCTAssertEqual(again, spec, fixture)
            XCTAssertEqual(again.resolvedYAML(), yaml, fixture)
        }
    }

    func testFullFixtureValues() throws {
        let spec = try Fixtures.load("full.yaml")
        XCTAssertEqual(spec.name, "round \"trip\" run")
        XCTAssertEqual(spec.task, .finetune)
        XCTAssertEqual(spec.model.method, .maePriv)
        XCTAssertEqual(spec.model.layerScale, 1e-5)
        XCTAssertEqual(spec.model.decoderLayerScale, 1e-5)
        XCTAssertTrue(spec.model.globalPool)
        XCTAssertEqual(spec.data.mean, [0.286])
        XCTAssertEqual(spec.data.padTo, 32)
        XCTAssertEqual(spec.augment.autoAugment, "rand-m9-mstd0.5-inc1")
        XCTAssertEqual(spec.augment.evalResize, 36)
        XCTAssertEqual(spec.optim.betas, [0.9, 0.999])
        XCTAssertEqual(spec.optim.clipGrad, 3.0)
        XCTAssertEqual(spec.schedule.style, .beit)
        XCTAssertEqual(spec.schedule.minLR, 1e-6)
        XCTAssertEqual(spec.eval.knnFeature, .mean)
    }

    func testResolvedYAMLText() throws {
        let yaml = try Fixtures.load("full.yaml").resolvedYAML()
        XCTAssertTrue(yaml.contains("\nname: \"round \\\"trip\\\" run\"\n"), yaml)
        XCTAssertTrue(yaml.contains("\n  eps: 1.0e-08\n"), yaml)
        XCTAssertTrue(yaml.contains("\n  lr: null\n"), yaml)
        XCTAssertTrue(yaml.contains("\nmodel:\n  method: mae_priv\n"), yaml)
        XCTAssertTrue(yaml.contains("\n  decoder:\n    width: 192\n    depth: 4\n    heads: 3\n"), yaml)
        XCTAssertTrue(yaml.contains("\n  knn_k: [10, 20]\n"), yaml)
    }
}

final class SchemaDocTests: XCTestCase {
    func testMarkdownListsEveryKey() {
        let markdown = ConfigSchema.markdown()
        for key in ConfigSchema.keys {
            XCTAssertTrue(markdown.contains("| `\(key.path)` |"), key.path)
            XCTAssertFalse(key.doc.isEmpty, key.path)
            XCTAssertFalse(key.doc.contains("\n"), key.path)
        }
        XCTAssertTrue(markdown.contains(
            "| `optim.lr` | float or null | `null` | ≥ 0 | absolute peak learning rate; null = blr × effective batch / 256 |"))
        XCTAssertTrue(markdown.contains("| `model.method` | mae\\|mae_priv\\|saim\\|semaim\\|cae\\|vit | `mae` |"))
    }

    func testSchemaPathsAreUniqueSnakeCase() {
        let paths = ConfigSchema.keys.map(\.path)
        XCTAssertEqual(Set(paths).count, paths.count)
        for path in paths {
            XCTAssertNil(path.range(of: "[^a-z0-9_.]", options: .regularExpression), path)
        }
        XCTAssertEqual(ConfigSchema.key("optim.lr")?.defaultText, "null")
        XCTAssertEqual(ConfigSchema.key("model.mask_ratio")?.ruleText, "in [0, 1)")
    }

    /// docs/CONFIG.md must match `ConfigSchema.markdown()`. Regenerate with
    /// `TESSERA_WRITE_CONFIG_DOC=1 swift test --filter SchemaDocTests`.
    func testConfigDocIsCurrent() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let doc = repo.appendingPathComponent("docs/CONFIG.md")
        let markdown = ConfigSchema.markdown()
        if ProcessInfo.processInfo.environment["TESSERA_WRITE_CONFIG_DOC"] == "1" {
            try FileManager.default.createDirectory(at: doc.deletingLastPathComponent(), withIntermediateDirectories: true)
            try markdown.write(to: doc, atomically: true, encoding: .utf8)
        }
        guard let current = try? String(contentsOf: doc, encoding: .utf8) else {
            throw XCTSkip("docs/CONFIG.md not present next to the sources")
        }
        XCTAssertEqual(current, markdown,
                       "docs/CONFIG.md is stale: run TESSERA_WRITE_CONFIG_DOC=1 swift test --filter SchemaDocTests")
    }
}
