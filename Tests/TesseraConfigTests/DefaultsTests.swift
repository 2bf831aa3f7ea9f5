import Foundation
import XCTest
import TesseraConfig

final class DefaultsTests: XCTestCase {
    func testArchPresetsSetSizes() throws {
        let expected: [(String, Int, Int, Int, Int)] = [
            ("tiny", 192, 12, 3, 16), ("small", 384, 12, 6, 16), ("base", 768, 12, 12, 16),
            ("large", 1024, 24, 16, 16), ("huge", 1280, 32, 16, 14), ("giant", 1664, 48, 16, 14),
        ]
        for (arch, width, depth, heads, patch) in expected {
            let spec = try Fixtures.load("base_model.yaml", ["model.arch=\(arch)"])
            XCTAssertEqual(spec.model.width, width, arch)
            XCTAssertEqual(spec.model.depth, depth, arch)
            XCTAssertEqual(spec.model.heads, heads, arch)
            XCTAssertEqual(spec.model.patchSize, patch, arch)
            XCTAssertEqual(spec.model.mlpRatio, 4.0, arch)
            XCTAssertEqual(spec.model.imgSize, 224, arch)
            XCTAssertEqual(spec.data.inputSize, 224, arch)
        }
    }

    func testExplicitValuesBeatArchPreset() throws {
        let spec = try Fixtures.load("base_model.yaml", ["model.arch=base", "model.heads=6", "model.patch_size=8"])
        XCTAssertEqual(spec.model.width, 768)
        XCTAssertEqual(spec.model.heads, 6)
        XCTAssertEqual(spec.model.patchSize, 8)
        XCTAssertEqual(spec.model.headDim, 128)
    }

    func testCustomArch() throws {
        let spec = try Fixtures.load("err_custom.yaml", ["model.width=64", "model.img_size=32", "model.patch_size=4"])
        XCTAssertEqual(spec.model.width, 64)
        XCTAssertEqual(spec.model.depth, 2)
        XCTAssertEqual(spec.model.heads, 2)
        XCTAssertEqual(spec.numPatches, 64)
    }

    func testMethodDefaults() throws {
        func load(_ method: String, _ arch: String = "base") throws -> ModelSpec {
            try Fixtures.load("err_missing_task.yaml", ["task=pretrain", "model.method=\(method)", "model.arch=\(arch)"]).model
        }
        let mae = try load("mae")
        XCTAssertEqual(mae.block, .fused)
        XCTAssertEqual(mae.posEmbed, .mae)
        XCTAssertEqual(mae.targetNorm, .unbiased)
        XCTAssertEqual(mae.patchOrder, .hwc)
        XCTAssertEqual([mae.decoder.width, mae.decoder.depth, mae.decoder.heads], [512, 8, 16])
        XCTAssertEqual(mae.maskRatio, 0.75)
        XCTAssertTrue(mae.normPixLoss)
        XCTAssertFalse(mae.sharedMask)

        let priv = try load("mae_priv")
        XCTAssertEqual(priv.block, .beit)
        XCTAssertEqual(priv.posEmbed, .moco)
        XCTAssertEqual(priv.targetNorm, .layernorm)
        XCTAssertEqual(priv.patchOrder, .chw)
        XCTAssertEqual([priv.decoder.width, priv.decoder.depth, priv.decoder.heads], [384, 4, 6])
        let privSmall = try load("mae_priv", "small")
        XCTAssertEqual([privSmall.decoder.width, privSmall.decoder.depth, privSmall.decoder.heads], [192, 4, 3])
        let privLarge = try load("mae_priv", "large")
        XCTAssertEqual([privLarge.decoder.width, privLarge.decoder.depth, privLarge.decoder.heads], [512, 8, 8])

        let saim = try load("saim")
        XCTAssertEqual(saim.block, .split)
        XCTAssertEqual(saim.posEmbed, .mae)
        XCTAssertEqual(saim.permutation, .stochastic)
        XCTAssertEqual(saim.queryDepth, 12)

        let semaim = try load("semaim", "large")
        XCTAssertEqual(semaim.block, .fused)
        XCTAssertEqual(semaim.permutation, .attentionCenter)
        XCTAssertEqual(semaim.queryDepth, 12)

        let cae = try load("cae")
        XCTAssertEqual(cae.block, .beit)
        XCTAssertEqual(cae.posEmbed, .moco)
        XCTAssertEqual([cae.decoder.width, cae.decoder.depth, cae.decoder.heads], [768, 4, 12])
        XCTAssertEqual(cae.numMaskPatches, 98)
        XCTAssertEqual(cae.regressorDepth, 4)
        XCTAssertEqual(cae.alignLossWeight, 2.0)
    }

    func testPlainDefaults() throws {
        let spec = try Fixtures.load("err_missing_task.yaml", ["task=pretrain"])
        XCTAssertEqual(spec.name, "err_missing_task")
        XCTAssertEqual(spec.seed, 0)
        XCTAssertEqual(spec.outputDir, "runs")
        XCTAssertEqual(spec.accumIter, 1)
        XCTAssertEqual(spec.resume, .auto)
        XCTAssertNil(spec.initCheckpoint)
        XCTAssertEqual(spec.data.dataset, .fashionMNIST)
        XCTAssertEqual(spec.data.trainSplit, "train")
        XCTAssertEqual(spec.data.valSplit, "t10k")
        XCTAssertEqual(spec.data.numWorkers, 2)
        XCTAssertEqual(spec.data.mean, [0.485, 0.456, 0.406])
        XCTAssertEqual(spec.data.std, [0.229, 0.224, 0.225])
        XCTAssertEqual(spec.augment.scale, [0.2, 1.0])
        XCTAssertEqual(spec.augment.ratio, [0.75, 4.0 / 3.0])
        XCTAssertEqual(spec.augment.hflip, 0.5)
        XCTAssertEqual(spec.augment.autoAugment, "")
        XCTAssertEqual(spec.optim.name, .adamw)
        XCTAssertNil(spec.optim.lr)
        XCTAssertEqual(spec.optim.betas, [0.9, 0.95])
        XCTAssertEqual(spec.optim.eps, 1e-8)
        XCTAssertNil(spec.optim.clipGrad)
        XCTAssertEqual(spec.optim.trustCoefficient, 0.001)
        XCTAssertEqual(spec.schedule.style, .mae)
        XCTAssertEqual(spec.eval.knnK, [10, 20, 100, 200])
        XCTAssertEqual(spec.eval.knnTemperature, 0.07)
        XCTAssertEqual(spec.checkpoint.every, 20)
        XCTAssertTrue(spec.checkpoint.writeLast)
        XCTAssertEqual(spec.checkpoint.keepLast, 0)
        XCTAssertEqual(spec.log.every, 10)
        XCTAssertTrue(spec.log.pictures)
    }

    func testDatasetDependentDefaults() throws {
        let spec = try Fixtures.load("child_single.yaml", ["data.dataset=imagefolder"])
        XCTAssertEqual(spec.data.valSplit, "val")
        XCTAssertEqual(spec.data.path, Fixtures.directory)
        let error = try XCTUnwrap(Fixtures.error("child_single.yaml", ["data.dataset=imagefolder", "data.path=null"]))
        XCTAssertEqual(error.key, "data.path")
    }

    func testGlobalPoolDefaultsByTask() throws {
        XCTAssertTrue(try Fixtures.load("child_single.yaml", ["task=finetune"]).model.globalPool)
        XCTAssertFalse(try Fixtures.load("child_single.yaml", ["task=linprobe"]).model.globalPool)
        XCTAssertTrue(try Fixtures.load("child_single.yaml",
                                        ["task=linprobe", "model.method=mae_priv", "model.cls_token=false"]).model.globalPool)
    }
}

final class LearningRateTests: XCTestCase {
    func testBaseLRScaledByEffectiveBatch() throws {
        let spec = try Fixtures.load("child_single.yaml", ["batch_size=512", "accum_iter=8"])
        XCTAssertEqual(spec.optim.blr, 1.5e-4)
        XCTAssertEqual(spec.effectiveBatch, 4096)
        XCTAssertEqual(spec.absoluteLR, 2.4e-3, accuracy: 1e-15)
        XCTAssertEqual(spec.summaryLine(), "effective batch 4096, lr 2.4e-03 (blr 1.5e-04 x 4096 / 256)")
    }

    func testAbsoluteLRIsNotScaled() throws {
        let spec = try Fixtures.load("child_single.yaml", ["batch_size=64", "accum_iter=32", "optim.lr=1.5e-3"])
        XCTAssertEqual(spec.effectiveBatch, 2048)
        XCTAssertEqual(spec.absoluteLR, 1.5e-3)
        XCTAssertEqual(spec.summaryLine(), "effective batch 2048, lr 1.5e-03 (absolute)")
    }
}
