import Foundation
import XCTest
import TesseraConfig

/// Every error names the file, the line and the key, on one line.
final class ErrorTests: XCTestCase {
    private func assertError(_ fixture: String, line: Int, key: String, _ message: String,
                             keepDataPath: Bool = false, file: StaticString = #filePath, testLine: UInt = #line) {
        let error = Fixtures.error(fixture, keepDataPath: keepDataPath, file: file, line: testLine)
        XCTAssertEqual(error?.description, "\(Fixtures.path(fixture)):\(line): \(key): \(message)",
                       file: file, line: testLine)
        XCTAssertEqual(error?.origin?.line, line, file: file, line: testLine)
        XCTAssertEqual(error?.key, key, file: file, line: testLine)
    }

    func testWrongType() {
        assertError("err_type.yaml", line: 7, key: "optim.lr", "expected a number, got 'abc'")
    }

    func testUnknownKeyWithSuggestion() {
        assertError("err_unknown.yaml", line: 6, key: "optim.lerning_rate",
                    "unknown key 'lerning_rate' in 'optim' (did you mean 'lr'?)")
    }

    func testKeyInWrongSectionSuggestsFullPath() {
        assertError("err_misplaced.yaml", line: 2, key: "lr", "unknown key 'lr' (did you mean 'optim.lr'?)")
    }

    func testWidthNotDivisibleByHeads() {
        assertError("err_heads.yaml", line: 6, key: "model.heads",
                    "model.width 100 is not divisible by model.heads 3")
    }

    func testWidthNotDivisibleByFour() {
        assertError("err_width4.yaml", line: 5, key: "model.width",
                    "198 is not divisible by 4, which the 2-D sin-cos position embedding needs")
    }

    func testMaskRatioRange() {
        assertError("err_mask.yaml", line: 6, key: "model.mask_ratio", "must be in [0, 1), got 1")
    }

    func testImageSizeNotDivisibleByPatch() {
        assertError("err_patch.yaml", line: 3, key: "model.img_size",
                    "model.img_size 30 is not divisible by model.patch_size 4")
    }

    func testInputSizeNotDivisibleByPatch() {
        assertError("err_input_size.yaml", line: 6, key: "data.input_size",
                    "data.input_size 30 is not divisible by model.patch_size 4")
    }

    func testBatchSizeMustBePositive() {
        assertError("err_batch.yaml", line: 5, key: "batch_size", "must be > 0, got 0")
    }

    func testMissingDataPath() {
        assertError("err_path.yaml", line: 7, key: "data.path",
                    "path does not exist: /nonexistent/tessera-imagenet", keepDataPath: true)
    }

    func testMissingDataPathIsSkippedWhenNotChecking() throws {
        let spec = try ConfigLoader.load(path: Fixtures.path("err_path.yaml"), checkPaths: false)
        XCTAssertEqual(spec.data.path, "/nonexistent/tessera-imagenet")
    }

    func testMissingInitCheckpoint() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["task=finetune", "init=/nonexistent/ckpt.h5"])?.description,
                       "--set init: checkpoint does not exist: /nonexistent/ckpt.h5")
    }

    func testNegativeLearningRate() {
        assertError("err_lr.yaml", line: 6, key: "optim.lr", "must be ≥ 0, got -0.1")
    }

    func testUnknownEnumValueListsAllowed() {
        assertError("err_enum.yaml", line: 3, key: "model.method",
                    "unknown value 'maee' (allowed: mae, mae_priv, saim, semaim, cae, vit; did you mean 'mae'?)")
    }

    func testCustomArchNeedsWidth() {
        assertError("err_custom.yaml", line: 2, key: "model.width", "required when model.arch is custom")
    }

    func testYAMLSyntaxErrorHasLine() {
        let error = Fixtures.error("err_syntax.yaml")
        XCTAssertEqual(error?.origin?.file, Fixtures.path("err_syntax.yaml"))
        XCTAssertNotNil(error?.origin?.line)
        XCTAssertTrue(error?.description.hasPrefix("\(Fixtures.path("err_syntax.yaml")):") ?? false)
        XCTAssertEqual(error?.description, "\(Fixtures.path("err_syntax.yaml")):4: invalid YAML: "
                       + "did not find expected ',' or ']' (while parsing a flow sequence started on line 3)")
    }

    func testMissingRequiredKeyNamesFileAndKey() {
        XCTAssertEqual(Fixtures.error("err_missing_task.yaml")?.description,
                       "\(Fixtures.path("err_missing_task.yaml")): task: required key is missing")
    }

    func testTrainingTaskNeedsEpochs() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["epochs=0"])?.description,
                       "--set epochs: must be ≥ 1 for task pretrain, got 0")
        XCTAssertNoThrow(try Fixtures.load("child_single.yaml", ["task=knn", "epochs=0"]))
    }

    func testDecoderHeadsChecked() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["model.decoder.heads=5"])?.description,
                       "--set model.decoder.heads: model.decoder.width 128 is not divisible by model.decoder.heads 5")
    }

    func testChannelStatsMatchInputChannels() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["model.in_chans=1"])?.description,
                       "--set model.in_chans: data.mean has 3 values but model.in_chans is 1")
    }

    func testListLengthChecked() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.betas=[0.9]"])?.description,
                       "--set optim.betas: expected 2 values, got 1")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.betas=[0.9, 1.5]"])?.description,
                       "--set optim.betas: must be in [0, 1), got 1.5")
    }

    func testMoreDidYouMean() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optimizer.lr=0.1"])?.description,
                       "--set optimizer.lr: unknown key 'optimizer' (did you mean 'optim'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["model.decoder_dim=256"])?.description,
                       "--set model.decoder_dim: unknown key 'decoder_dim' in 'model' (did you mean 'model.decoder.width'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.zzz=1"])?.description,
                       "--set optim.zzz: unknown key 'zzz' in 'optim'")
    }

    func testSectionMustBeAMapping() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim=3"])?.description,
                       "--set optim: expected a mapping of keys, got '3'")
    }
}
