import Foundation
import XCTest
import TesseraConfig
import Tessera

/// Every checked-in config loads, and the paper recipes resolve to the values of the spec's tables.
final class ConfigFilesTests: XCTestCase {
    static let cfgs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../cfgs").standardized

    func load(_ rel: String) throws -> ExperimentSpec {
        try ConfigLoader.load(path: Self.cfgs.appendingPathComponent(rel).path, checkPaths: false)
    }

    func testEveryConfigLoads() throws {
        let e = FileManager.default.enumerator(atPath: Self.cfgs.path)!
        var n = 0
        while let f = e.nextObject() as? String {
            guard f.hasSuffix(".yaml"), !f.hasPrefix("pretrain/base/"), !f.hasPrefix("sweeps/") else { continue }
            XCTAssertNoThrow(try load(f), f)
            n += 1
        }
        XCTAssertGreaterThanOrEqual(n, 8)
    }

    func testMAEViTB800() throws {
        let s = try load("pretrain/ViT-B_800E.yaml")
        XCTAssertEqual(s.model.method, .mae)
        XCTAssertEqual([s.model.width, s.model.depth, s.model.heads, s.model.patchSize], [768, 12, 12, 16])
        XCTAssertEqual([s.model.decoder.width, s.model.decoder.depth, s.model.decoder.heads], [512, 8, 16])
        XCTAssertEqual(s.model.block, .fused)
        XCTAssertEqual(s.model.posEmbed, .mae)
        XCTAssertEqual(s.effectiveBatch, 4096)
        XCTAssertEqual(s.absoluteLR, 2.4e-3, accuracy: 1e-12)
        XCTAssertEqual(s.epochs, 800)
        XCTAssertEqual(s.schedule.warmupEpochs, 40)
        XCTAssertEqual(s.optim.betas, [0.9, 0.95])
        XCTAssertEqual(s.optim.weightDecay, 0.05)
        XCTAssertNil(s.optim.clipGrad)
        XCTAssertEqual(s.augment.scale, [0.2, 1.0])
        XCTAssertEqual(s.augment.interpolation, .bicubic)
        XCTAssertEqual(s.model.maskRatio, 0.75)
        XCTAssertTrue(s.model.normPixLoss)
        XCTAssertEqual(s.model.targetNorm, .unbiased)
        XCTAssertEqual(s.model.patchOrder, .hwc)
    }

    func testMAEViTH800UsesPatch14() throws {
        let s = try load("pretrain/ViT-H_800E.yaml")
        XCTAssertEqual([s.model.width, s.model.depth, s.model.heads, s.model.patchSize], [1280, 32, 16, 14])
    }

    func testMAEPrivViTB400() throws {
        let s = try load("pretrain/MAE-priv_ViT-B_400E_Norm_GAP.yaml")
        XCTAssertEqual(s.model.method, .maePriv)
        XCTAssertEqual(s.model.block, .beit)
        XCTAssertEqual(s.model.posEmbed, .moco)
        XCTAssertFalse(s.model.clsToken)
        XCTAssertTrue(s.model.sharedMask)
        XCTAssertEqual(s.model.targetNorm, .layernorm)
        XCTAssertEqual(s.model.patchOrder, .chw)
        XCTAssertEqual([s.model.decoder.width, s.model.decoder.depth, s.model.decoder.heads], [384, 4, 6])
        XCTAssertEqual(s.effectiveBatch, 4096)
        XCTAssertEqual(s.absoluteLR, 2.4e-3, accuracy: 1e-12)
        XCTAssertEqual(s.epochs, 400)
        XCTAssertEqual(s.schedule.warmupEpochs, 40)
        XCTAssertEqual(s.schedule.style, .beit)
        XCTAssertEqual(s.augment.scale, [0.08, 1.0])
        XCTAssertEqual(s.augment.interpolation, .bilinear)
    }

    func testMAEPrivSmallCLS() throws {
        let s = try load("pretrain/MAE-priv_ViT-S_100E_Norm_CLS-Token.yaml")
        XCTAssertTrue(s.model.clsToken)
        XCTAssertEqual([s.model.width, s.model.heads, s.model.decoder.width, s.model.decoder.heads], [384, 6, 192, 3])
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [100, 10])
    }
}
