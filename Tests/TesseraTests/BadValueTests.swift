import Foundation
import XCTest
import Tessera
import TesseraConfig

/// Schema-valid values that used to crash or blame the wrong key now stop at load with one line
/// naming the right key (issue 13's list).
final class BadValueTests: ScratchTestCase {
    func message(_ model: String) -> String {
        do {
            _ = try loadSpec(model: model, name: "bad", scratch: scratch)
            return ""
        } catch { return "\(error)" }
    }

    let mae = "method: mae\narch: custom\nimg_size: 16\npatch_size: 4\nwidth: 32\ndepth: 1\nheads: 2\ndecoder: {width: 16, depth: 1, heads: 2}"

    func testMLPRatioThatLeavesNoHiddenUnit() {
        let m = message(mae + "\nmlp_ratio: 0.01")
        XCTAssertTrue(m.contains("model.mlp_ratio") && m.contains("at least 1"), m)
    }

    func testMaskRatioZeroMasksNothing() {
        let m = message(mae + "\nmask_ratio: 0")
        XCTAssertTrue(m.contains("model.mask_ratio") && m.contains("masks no patch"), m)
    }

    /// One patch per image: the error is about MAE's mask ratio, not CAE's num_mask_patches.
    func testPatchAsLargeAsTheImageBlamesAnMAEKey() {
        let m = message(mae.replacingOccurrences(of: "patch_size: 4", with: "patch_size: 16"))
        XCTAssertTrue(m.contains("model.mask_ratio") && !m.contains("num_mask_patches"), m)
    }

    func testRunNameMustBePlain() throws {
        for bad in ["..", ".", "a/b"] {
            XCTAssertThrowsError(try ConfigLoader.load(yaml: "name: '\(bad)'\ntask: knn\nbatch_size: 4\nmodel: {method: mae, arch: tiny}\ndata: {dataset: fashion-mnist}",
                                                       file: scratch.appendingPathComponent("n.yaml").path, checkPaths: false), bad) { e in
                XCTAssertTrue("\(e)".contains("name") && "\(e)".contains("plain name"), "\(e)")
            }
        }
    }

    /// A width whose weights cannot fit in memory is refused before any model is built (it used to
    /// SIGSEGV on an unchecked allocation), and nothing is written. The config itself loads: it may be
    /// meant for a bigger machine.
    func testWidthBeyondMemory() throws {
        let huge = mae.replacingOccurrences(of: "width: 32\ndepth", with: "width: 100000000\nheads: 1\ndepth")
            .replacingOccurrences(of: "\nheads: 2\ndecoder", with: "\ndecoder")
        let spec = try loadSpec(model: huge, name: "huge", extra: "output_dir: \"\(scratch.path)\"", scratch: scratch)
        XCTAssertThrowsError(try PretrainRunner(spec: spec).train()) { e in
            XCTAssertTrue("\(e)".contains("model.width 100000000") && "\(e)".contains("GiB"), "\(e)")
            XCTAssertEqual("\(e)".split(separator: "\n").count, 1, "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("huge").path))
        // A frozen-encoder task counts the weights only.
        var probe = spec
        probe.task = .knn
        XCTAssertNoThrow(try MemoryBound.check(probe, memory: MemoryBound.parameters(spec) * 8))
        XCTAssertThrowsError(try MemoryBound.check(spec, memory: MemoryBound.parameters(spec) * 8))
    }

    /// A config that expands nested aliases ("billion laughs") stops with one line instead of
    /// exhausting memory; a binary file and an oversized file are refused with a clear line.
    func testAliasBombBinaryAndHugeConfigs() throws {
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 { yaml += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        yaml += "name: bomb\ntask: knn\nbatch_size: 4\nmodel: {method: mae, arch: tiny}\n"
        let started = Date()
        XCTAssertThrowsError(try ConfigLoader.load(yaml: yaml, file: "bomb.yaml", checkPaths: false)) { e in
            XCTAssertTrue("\(e)".contains("bomb.yaml") && "\(e)".contains("more than 100000 values"), "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "the expansion must stop early")

        let binary = scratch.appendingPathComponent("model.yaml")
        try Data([0x89, 0x48, 0x44, 0x46, 0x00, 0x01, 0xFF, 0xFE]).write(to: binary)
        XCTAssertThrowsError(try ConfigLoader.load(path: binary.path)) { e in
            XCTAssertTrue("\(e)".contains(binary.path) && "\(e)".contains("not a UTF-8 text file"), "\(e)")
        }
        let huge = scratch.appendingPathComponent("huge.yaml")
        try Data(repeating: 0x20, count: 2 << 20).write(to: huge)
        XCTAssertThrowsError(try ConfigLoader.load(path: huge.path)) { e in
            XCTAssertTrue("\(e)".contains("a config file holds at most"), "\(e)")
        }
    }

    /// `init` means nothing to pre-training: say so instead of ignoring it. The unlabeled data set is
    /// for pre-training only.
    func testInitOnPretrainAndUnlabeledDataDownstream() throws {
        let base = "name: x\nbatch_size: 4\nepochs: 1\nmodel: {method: mae, arch: tiny}\n"
        XCTAssertThrowsError(try ConfigLoader.load(yaml: base + "task: pretrain\ninit: some.h5\n", file: "p.yaml", checkPaths: false)) { e in
            XCTAssertTrue("\(e)".contains("p.yaml:") && "\(e)".contains("init") && "\(e)".contains("resume: PATH"), "\(e)")
        }
        XCTAssertThrowsError(try ConfigLoader.load(yaml: base + "task: linprobe\ndata: {dataset: images, path: /tmp}\n", file: "l.yaml",
                                                   checkPaths: false)) { e in
            XCTAssertTrue("\(e)".contains("data.dataset") && "\(e)".contains("class labels"), "\(e)")
        }
        XCTAssertNoThrow(try ConfigLoader.load(yaml: base + "task: pretrain\ndata: {dataset: images, path: /tmp}\n", file: "u.yaml",
                                               checkPaths: false))
    }
}
