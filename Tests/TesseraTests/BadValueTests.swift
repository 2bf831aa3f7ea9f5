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
}
