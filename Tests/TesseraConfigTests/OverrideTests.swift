import Foundation
import XCTest
import TesseraConfig

final class OverrideTests: XCTestCase {
    func testOverridesAreTypedBySchema() throws {
        let spec = try Fixtures.load("child_single.yaml", [
            "optim.lr=0.1",
            "model.norm_pix_loss=false",
            "augment.scale=[0.3, 1.0]",
            "optim.name=sgd",
            "init=null",
            "model.decoder.depth=3",
            "data.limit=5",
            "name=123",
            "optim.clip_grad=3",
            "eval.knn_k=[5]",
            "resume=none",
            "model.mask_ratio=0.6",
        ])
        XCTAssertEqual(spec.optim.lr, 0.1)
        XCTAssertFalse(spec.model.normPixLoss)
        XCTAssertEqual(spec.augment.scale, [0.3, 1.0])
        XCTAssertEqual(spec.optim.name, .sgd)
        XCTAssertNil(spec.initCheckpoint)
        XCTAssertEqual(spec.model.decoder.depth, 3)
        XCTAssertEqual(spec.model.decoder.width, 128, "other decoder keys still come from the base")
        XCTAssertEqual(spec.data.limit, 5)
        XCTAssertEqual(spec.name, "123")
        XCTAssertEqual(spec.optim.clipGrad, 3.0)
        XCTAssertEqual(spec.eval.knnK, [5])
        XCTAssertEqual(spec.resume, .none)
        XCTAssertEqual(spec.model.maskRatio, 0.6)
    }

    func testLaterOverrideWins() throws {
        let spec = try Fixtures.load("child_single.yaml", ["seed=1", "seed=2"])
        XCTAssertEqual(spec.seed, 2)
    }

    func testOverrideCanSetAWholeMapping() throws {
        let spec = try Fixtures.load("child_single.yaml", ["model.decoder={depth: 6, heads: 4}"])
        XCTAssertEqual(spec.model.decoder.depth, 6)
        XCTAssertEqual(spec.model.decoder.heads, 4)
        XCTAssertEqual(spec.model.decoder.width, 128, "a mapping value merges like a file would")
    }

    func testOverrideUnknownKeySuggests() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.lerning_rate=0.1"])?.description,
                       "--set optim.lerning_rate: unknown key 'lerning_rate' in 'optim' (did you mean 'lr'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["model.decoder.widht=3"])?.description,
                       "--set model.decoder.widht: unknown key 'widht' in 'model.decoder' (did you mean 'width'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["modle.arch=base"])?.description,
                       "--set modle.arch: unknown key 'modle' (did you mean 'model'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.lr.x=1"])?.description,
                       "--set optim.lr.x: 'optim.lr' is a value, not a section")
    }

    func testOverrideBadValue() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.lr=abc"])?.description,
                       "--set optim.lr: expected a number, got 'abc'")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["model.cls_token=maybe"])?.description,
                       "--set model.cls_token: expected true or false, got 'maybe'")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.name=adamx"])?.description,
                       "--set optim.name: unknown value 'adamx' (allowed: adamw, sgd, lars, lars_timm; did you mean 'adamw'?)")
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.lr=-1"])?.description,
                       "--set optim.lr: must be ≥ 0, got -1")
    }

    func testOverrideWithoutEquals() {
        XCTAssertEqual(Fixtures.error("child_single.yaml", ["optim.lr"])?.description,
                       "--set optim.lr: expected key=value")
    }
}
