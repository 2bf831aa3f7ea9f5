import Foundation
import XCTest
import Tessera
import TesseraConfig

/// Grid sweeps (`Sweep`) and result tables (`ResultsTable`).
final class SweepTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("tessera-sweep-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try write("base.yaml", Self.tinyConfig(outputDir: path("runs")))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func path(_ rel: String) -> String { (dir as NSString).appendingPathComponent(rel) }

    @discardableResult
    private func write(_ rel: String, _ text: String) throws -> String {
        let p = path(rel)
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// A model small enough that one epoch over 256 Fashion-MNIST images takes well under a second.
    static func tinyConfig(outputDir: String) -> String {
        """
        name: tiny
        task: pretrain
        seed: 0
        output_dir: \(outputDir)
        batch_size: 64
        epochs: 1
        \(tinyMAEModelAndData)
        schedule:
          warmup_epochs: 0
        log:
          pictures: false

        """
    }

    private func loadError(_ gridPath: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try Sweep.load(gridPath: gridPath)
            XCTFail("expected an error for \(gridPath)", file: file, line: line)
            return ""
        } catch {
            let text = String(describing: error)
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
            return text
        }
    }

    // MARK: Expansion

    func testCellsExpandInKeyOrderWithReadableNames() throws {
        let grid = try write("sweeps/g.yaml", """
            base: ../base.yaml
            grid:
              model.mask_ratio: [0.5, 0.75]
              optim.blr: [1.5e-4, 3e-4]
            """)
        let sweep = try Sweep.load(gridPath: grid)
        XCTAssertEqual(sweep.prefix, "g")
        XCTAssertEqual(sweep.keys, ["model.mask_ratio", "optim.blr"])
        XCTAssertEqual(sweep.root, path("runs/g"))
        XCTAssertEqual(sweep.basePath, path("base.yaml"))
        XCTAssertEqual(sweep.cells.map(\.name), [
            "g/mask_ratio=0.5,blr=0.00015", "g/mask_ratio=0.5,blr=0.0003",
            "g/mask_ratio=0.75,blr=0.00015", "g/mask_ratio=0.75,blr=0.0003",
        ])
        let first = sweep.cells[0]
        XCTAssertEqual(first.gridOverrides, ["model.mask_ratio=0.5", "optim.blr=1.5e-4"])
        XCTAssertEqual(first.overrides, ["model.mask_ratio=0.5", "optim.blr=1.5e-4",
                                         "name=mask_ratio=0.5,blr=0.00015", "output_dir=\(path("runs/g"))"])
        XCTAssertEqual(first.runDir, path("runs/g/mask_ratio=0.5,blr=0.00015"))
        XCTAssertEqual(first.spec.name, "mask_ratio=0.5,blr=0.00015")
        XCTAssertEqual(sweep.cells.map(\.spec.model.maskRatio), [0.5, 0.5, 0.75, 0.75])
        XCTAssertEqual(sweep.cells.map(\.spec.optim.blr), [1.5e-4, 3e-4, 1.5e-4, 3e-4])
        // The recorded overrides reproduce the cell with `tessera train base.yaml --set ...`.
        for cell in sweep.cells {
            XCTAssertEqual(try ConfigLoader.load(path: path("base.yaml"), overrides: cell.overrides), cell.spec)
        }
        // Loading validates only: nothing is created.
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("runs")))
    }

    func testValuesRoundTripAndLabelsStayUnique() throws {
        let grid = try write("g2.yaml", """
            base: base.yaml
            name: shapes
            output_dir: \(path("elsewhere"))
            grid:
              model.width: [32]
              model.decoder.width: [16, 24]
              augment.scale:
                - [0.2, 1.0]
                - [0.5, 1.0]
              model.norm_pix_loss: [true, false]
              data.dataset: ['fashion-mnist']
              optim.name: [adamw]
            """)
        let sweep = try Sweep.load(gridPath: grid)
        XCTAssertEqual(sweep.cells.count, 8)
        XCTAssertEqual(Set(sweep.cells.map(\.name)).count, 8)
        XCTAssertEqual(sweep.cells[0].name,
                       "shapes/model.width=32,decoder.width=16,scale=0.2_1.0,norm_pix_loss=true,dataset=fashion-mnist,optim.name=adamw")
        XCTAssertEqual(sweep.cells[0].gridOverrides, ["model.width=32", "model.decoder.width=16", "augment.scale=[0.2, 1.0]",
                                                      "model.norm_pix_loss=true", "data.dataset='fashion-mnist'", "optim.name=adamw"])
        XCTAssertEqual(sweep.root, path("elsewhere/shapes"))
        XCTAssertTrue(sweep.cells.allSatisfy { $0.runDir.hasPrefix(path("elsewhere/shapes/")) })
        XCTAssertEqual(sweep.cells.map(\.spec.model.decoder.width), [16, 16, 16, 16, 24, 24, 24, 24])
        XCTAssertEqual(sweep.cells.map(\.spec.augment.scale), [[0.2, 1.0], [0.2, 1.0], [0.5, 1.0], [0.5, 1.0],
                                                               [0.2, 1.0], [0.2, 1.0], [0.5, 1.0], [0.5, 1.0]])
        XCTAssertEqual(sweep.cells.map(\.spec.model.normPixLoss), [true, false, true, false, true, false, true, false])
    }

    // MARK: Errors

    func testEveryCellIsValidatedBeforeAnythingRuns() throws {
        let grid = try write("g.yaml", """
            base: base.yaml
            grid:
              optim.blr: [1.5e-4]
              model.mask_ratio: [0.5,
                                 1.5]
            """)
        let text = loadError(grid)
        XCTAssertTrue(text.hasPrefix("\(grid):5: cell 2 of 2 'g/blr=0.00015,mask_ratio=1.5'"), text)
        XCTAssertTrue(text.contains("model.mask_ratio"), text)
        XCTAssertTrue(text.contains("1.5"), text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("runs")))
    }

    func testGridFileErrors() throws {
        let cases: [(String, String)] = [
            ("grid:\n  model.mask_ratio: [0.5]\n", "bad.yaml: base: required key is missing"),
            ("base: nope.yaml\ngrid: {model.mask_ratio: [0.5]}\n", "bad.yaml:1: base: config file not found"),
            ("base: base.yaml\n", "bad.yaml: grid: required key is missing"),
            ("base: base.yaml\ngrid: [0.5, 0.75]\n", "bad.yaml:2: grid: expected a mapping of config keys to lists of values, got a list"),
            ("base: base.yaml\ngrid: {}\n", "bad.yaml:2: grid: no keys"),
            ("base: base.yaml\ngrid:\n  model.mask_ratio: []\n", "bad.yaml:3: grid.model.mask_ratio: empty list"),
            ("base: base.yaml\ngrid:\n  model.mask_ratio: 0.5\n", "bad.yaml:3: grid.model.mask_ratio: expected a list of values"),
            ("base: base.yaml\ngrid:\n  optim.blr: [1e-4]\n  model.mask_ratoi: [0.5]\n",
             "bad.yaml:4: grid.model.mask_ratoi: unknown key 'mask_ratoi' in 'model' (did you mean 'mask_ratio'?)"),
            ("base: base.yaml\ngrid:\n  name: [a, b]\n", "bad.yaml:3: grid.name: 'name' is set by the sweep"),
            ("base: base.yaml\ngrid:\n  model.mask_ratio: [0.5, 0.50]\n", "bad.yaml:3: grid.model.mask_ratio: values 0.5 and 0.50 give the same run name"),
            ("base: base.yaml\ngrids:\n  model.mask_ratio: [0.5]\n", "bad.yaml:2: grids: unknown key 'grids' in a grid file"),
            ("base: base.yaml\nname: a/b\ngrid: {model.mask_ratio: [0.5]}\n", "bad.yaml:2: name: must be a non-empty name"),
            ("- base.yaml\n", "bad.yaml:1: a grid file must be a mapping"),
        ]
        for (yaml, expected) in cases {
            let grid = try write("bad.yaml", yaml)
            let text = loadError(grid)
            XCTAssertTrue(text.hasPrefix(dir + "/" + expected), "\(yaml.debugDescription)\n got: \(text)\n want: \(expected)")
        }
        let broken = try write("bad.yaml", "base: [base.yaml\ngrid: {}\n")
        let text = loadError(broken)
        XCTAssertTrue(text.hasPrefix(broken + ":") && text.contains("invalid YAML"), text)
        XCTAssertTrue(loadError(path("missing.yaml")).contains("missing.yaml: grid file not found"))
    }

    // MARK: Running

    func testSweepRunsCellsThenSkipsFinishedOnesAndTabulates() throws {
        let started = Date()
        let grid = try write("tiny_sweep.yaml", """
            base: base.yaml
            output_dir: \(path("out"))
            grid:
              model.mask_ratio: [0.5, 0.75]
            """)
        let sweep = try Sweep.load(gridPath: grid)
        let names = ["tiny_sweep/mask_ratio=0.5", "tiny_sweep/mask_ratio=0.75"]
        XCTAssertEqual(sweep.cells.map(\.name), names)
        XCTAssertFalse(sweep.cells.contains { $0.isFinished })

        let first = try sweep.run(echo: false)
        XCTAssertEqual(first.ran, names)
        XCTAssertEqual(first.skipped, [])
        XCTAssertTrue(first.failed.isEmpty, "\(first.failed)")
        var stamps: [Date] = []
        for cell in sweep.cells {
            let summary = (cell.runDir as NSString).appendingPathComponent("summary.json")
            let attributes = try FileManager.default.attributesOfItem(atPath: summary)
            stamps.append(try XCTUnwrap(attributes[.modificationDate] as? Date))
            let overrides = try String(contentsOfFile: (cell.runDir as NSString).appendingPathComponent("overrides.txt"), encoding: .utf8)
            XCTAssertTrue(overrides.contains("--set \(cell.gridOverrides[0])\n"), overrides)
            XCTAssertTrue(cell.isFinished)
        }

        // Again: every cell is finished, nothing runs and nothing is rewritten.
        let again = try Sweep.load(gridPath: grid).run(echo: false)
        XCTAssertEqual(again.skipped, names)
        XCTAssertEqual(again.ran, [])
        for (cell, stamp) in zip(sweep.cells, stamps) {
            let summary = (cell.runDir as NSString).appendingPathComponent("summary.json")
            XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: summary)[.modificationDate] as? Date, stamp)
        }

        let table = try ResultsTable.load(root: sweep.root)
        XCTAssertEqual(table.rows.map(\.run), ["mask_ratio=0.5", "mask_ratio=0.75"])
        XCTAssertEqual(table.overrideColumns, ["model.mask_ratio"])
        let text = try ResultsTable.markdown(root: path("out"))
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 4, text)
        for column in ["run", "task", "method", "model.mask_ratio", "final_loss", "images_per_s", "epochs", "steps", "seconds"] {
            XCTAssertTrue(lines[0].contains(" \(column) "), "\(column) missing from \(lines[0])")
        }
        XCTAssertFalse(lines[0].contains("output_dir"), lines[0])
        XCTAssertTrue(lines[2].hasPrefix("| tiny_sweep/mask_ratio=0.5 "), text)
        XCTAssertTrue(lines[3].hasPrefix("| tiny_sweep/mask_ratio=0.75 "), text)
        XCTAssertTrue(lines[2].contains(" pretrain ") && lines[2].contains(" mae "), text)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }

    // MARK: Tables

    func testTableColumnsFormattingAndMissingValues() throws {
        try write("t/b/summary.json", """
            {"task": "pretrain", "method": "mae", "final_loss": 0.123456, "epochs": 2, "images_per_s": 12345.6, "seconds": 3.25,
             "knn": {"top1": 71.23456}, "curve": [1, 2]}
            """)
        try write("t/b/overrides.txt", "--set optim.blr=3e-4\n--set name=b\n--set epochs=2\n")
        try write("t/a/nested/summary.json", #"{"task": "pretrain", "method": "mae_priv", "final_loss": 0.5, "data_wait": null}"#)
        try write("t/a/nested/overrides.txt", "--set model.mask_ratio=0.9\n--set output_dir='x y'\n")
        try write("t/unfinished/log.txt", "started\n")
        let table = try ResultsTable.load(root: path("t"))
        XCTAssertEqual(table.rows.map(\.run), ["a/nested", "b"])
        XCTAssertEqual(table.overrideColumns, ["model.mask_ratio", "optim.blr", "epochs"])
        let text = table.markdown()
        let lines = text.split(separator: "\n").map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        XCTAssertEqual(lines[0], ["run", "task", "method", "model.mask_ratio", "optim.blr", "--set epochs", "final_loss", "images_per_s",
                                  "epochs", "seconds", "knn/top1"])
        XCTAssertEqual(lines[2], ["a/nested", "pretrain", "mae_priv", "0.9", "—", "—", "0.5", "—", "—", "—", "—"])
        XCTAssertEqual(lines[3], ["b", "pretrain", "mae", "—", "3e-4", "2", "0.1235", "12346", "2", "3.25", "71.23"])
        XCTAssertTrue(text.contains("---:"), text)
    }

    func testTableOfEmptyAndMissingDirectories() throws {
        try FileManager.default.createDirectory(atPath: path("empty/sub"), withIntermediateDirectories: true)
        XCTAssertTrue(try ResultsTable.markdown(root: path("empty")).hasPrefix("no finished runs under"))
        XCTAssertThrowsError(try ResultsTable.markdown(root: path("absent"))) { error in
            XCTAssertTrue(String(describing: error).contains("absent: no such directory"), "\(error)")
        }
    }
}
