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

    /// SAIM README (spec §4.5): 2048 = 64 × 32, blr 2e-4 → lr 1.6e-3, warmup 30, 9×9 blur σ 1, norm-pix,
    /// MLP head, 12 query blocks, betas (0.9, 0.95), no clipping; the README's weight decay 0.5.
    func testSAIMViTB800() throws {
        let s = try load("pretrain/SAIM_ViT-B_800E.yaml")
        XCTAssertEqual(s.model.method, .saim)
        XCTAssertEqual([s.model.width, s.model.depth, s.model.heads, s.model.patchSize, s.model.queryDepth], [768, 12, 12, 16, 12])
        XCTAssertEqual(s.model.block, .split)
        XCTAssertEqual(s.model.posEmbed, .mae)
        XCTAssertFalse(s.model.shareWeight)
        XCTAssertEqual(s.model.predictionHead, .mlp)
        XCTAssertEqual([s.model.gaussianKernelSize], [9])
        XCTAssertEqual(s.model.gaussianSigma, 1)
        XCTAssertTrue(s.model.normPixLoss)
        XCTAssertEqual(s.model.targetNorm, .unbiased)
        XCTAssertEqual(s.model.lossType, .l2)
        XCTAssertEqual(s.effectiveBatch, 2048)
        XCTAssertEqual(s.absoluteLR, 1.6e-3, accuracy: 1e-12)
        XCTAssertEqual(s.schedule.warmupEpochs, 30)
        XCTAssertEqual(s.optim.weightDecay, 0.5)
        XCTAssertEqual(s.optim.betas, [0.9, 0.95])
        XCTAssertNil(s.optim.clipGrad)
        XCTAssertEqual(s.augment.scale, [0.2, 1.0])
        XCTAssertEqual(s.checkpoint.every, 100)
        let ft = try load("finetune/SAIM_ViT-B_100E.yaml")
        XCTAssertEqual(ft.model.method, .saim)
        XCTAssertEqual(ft.model.block, .split)
        XCTAssertFalse(ft.model.globalPool)
        XCTAssertEqual(ft.effectiveBatch, 1024)
        XCTAssertEqual(ft.schedule.warmupEpochs, 20)
        XCTAssertEqual(ft.optim.layerDecay, 0.65)
        let lin = try load("lincls/SAIM_ViT-B_90E.yaml")
        XCTAssertEqual(lin.model.block, .split)
        XCTAssertEqual(lin.optim.name, .sgd)
        XCTAssertEqual(lin.effectiveBatch, 2048)
        XCTAssertEqual(lin.absoluteLR, 0.8, accuracy: 1e-12)
        XCTAssertEqual(lin.schedule.warmupEpochs, 0)
        XCTAssertEqual(lin.optim.weightDecay, 0)
    }

    /// SemAIM's README command (spec §5.5) and its downstream recipes.
    func testSemAIMRecipes() throws {
        let s = try load("pretrain/SemAIM_ViT-B_800E.yaml")
        XCTAssertEqual(s.model.method, .semaim)
        XCTAssertEqual([s.model.width, s.model.depth, s.model.heads, s.model.patchSize, s.model.queryDepth], [768, 12, 12, 16, 12])
        XCTAssertEqual(s.model.block, .fused)
        XCTAssertEqual(s.model.permutation, .attentionCenter)
        XCTAssertEqual(s.model.attentionType, .cls)
        XCTAssertEqual(s.model.predictFeature, .none)
        XCTAssertEqual([s.model.gaussianKernelSize], [9])
        XCTAssertTrue(s.model.normPixLoss)
        XCTAssertEqual(s.effectiveBatch, 2048)
        XCTAssertEqual(s.absoluteLR, 1.6e-3, accuracy: 1e-12)
        XCTAssertEqual(s.optim.weightDecay, 0.05)
        XCTAssertEqual(s.optim.clipGrad, 3)
        XCTAssertEqual(s.schedule.warmupEpochs, 30)
        XCTAssertEqual(try load("pretrain/SemAIM_ViT-B_400E.yaml").epochs, 400)
        let l = try load("pretrain/SemAIM_ViT-L_800E.yaml")
        XCTAssertEqual([l.model.width, l.model.depth, l.model.heads, l.model.queryDepth], [1024, 24, 16, 12])
        let clip = try load("pretrain/SemAIM-CLIP_ViT-B_800E.yaml")
        XCTAssertEqual(clip.model.predictFeature, .clip)
        XCTAssertNotNil(clip.model.teacher)
        let knn = try load("knn/SemAIM_ViT-L.yaml")
        XCTAssertEqual(knn.eval.knnFeature, .fcNormMean)
        XCTAssertEqual(knn.eval.knnK, [10, 20, 30])
        XCTAssertEqual(try load("lincls/SemAIM_ViT-B_90E.yaml").absoluteLR, 1.6, accuracy: 1e-12)
        XCTAssertEqual(try load("finetune/SemAIM_ViT-B_100E.yaml").effectiveBatch, 1024)
    }

    /// CAE's scripts (spec §6.5, §7.4): absolute lr, torch's default betas, block masks, the 112 px
    /// tokenizer view, and the attentive probe.
    func testCAERecipes() throws {
        let s = try load("pretrain/CAE_ViT-B_800E.yaml")
        XCTAssertEqual(s.model.method, .cae)
        XCTAssertEqual(s.model.block, .beit)
        XCTAssertEqual(s.model.posEmbed, .moco)
        XCTAssertEqual(s.model.layerScale, 0.1)
        XCTAssertEqual([s.model.decoder.width, s.model.decoder.depth, s.model.decoder.heads, s.model.regressorDepth], [768, 4, 12, 4])
        XCTAssertEqual(s.model.numMaskPatches, 98)
        XCTAssertEqual(s.model.caeTarget, .dvae)
        XCTAssertEqual(s.augment.tokenizerSize, 112)
        XCTAssertTrue(s.augment.flipBeforeCrop)
        XCTAssertEqual(s.effectiveBatch, 2048)
        XCTAssertEqual(s.absoluteLR, 1.5e-3, accuracy: 1e-12)
        XCTAssertEqual(s.optim.betas, [0.9, 0.999])
        XCTAssertEqual(s.schedule.style, .beit)
        XCTAssertEqual(s.schedule.minLR, 1e-5)
        let large = try load("pretrain/CAE_ViT-L_1600E.yaml")
        XCTAssertEqual([large.model.width, large.model.decoder.width, large.model.decoder.heads], [1024, 768, 12])
        XCTAssertEqual(large.model.layerScale, 1e-5)
        let att = try load("attentive/CAE_ViT-B_90E.yaml")
        XCTAssertEqual(att.task, .attentive)
        XCTAssertEqual(att.optim.name, .sgd)
        XCTAssertTrue(att.optim.nesterov)
        XCTAssertEqual(att.absoluteLR, 0.4, accuracy: 1e-12)
        XCTAssertEqual(att.effectiveBatch, 8192)
        XCTAssertFalse(att.eval.attentiveBatchStatistics)
        XCTAssertEqual(try load("finetune/CAE_ViT-B_100E.yaml").absoluteLR, 8e-3, accuracy: 1e-12)
        let fm = try load("pretrain/FMNIST_ViT-T_CAE.yaml")
        XCTAssertEqual(fm.model.caeTarget, .pixels)
        XCTAssertEqual(fm.augment.tokenizerSize, 0)
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
    // MARK: downstream recipes (spec §7.1, §7.2, §3.3)

    func testMAEFinetuneViTB() throws {
        let s = try load("finetune/ViT-B_100E.yaml")
        XCTAssertEqual(s.task, .finetune)
        XCTAssertEqual(s.model.method, .mae)
        XCTAssertEqual([s.model.width, s.model.depth], [768, 12])
        XCTAssertTrue(s.model.globalPool)
        XCTAssertEqual(s.effectiveBatch, 1024)
        XCTAssertEqual(s.absoluteLR, 2e-3, accuracy: 1e-12)
        XCTAssertEqual(s.optim.layerDecay, 0.65)
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [100, 5])
        XCTAssertEqual(s.optim.weightDecay, 0.05)
        XCTAssertEqual(s.optim.betas, [0.9, 0.999])
        XCTAssertEqual(s.model.dropPath, 0.1)
        XCTAssertEqual(s.augment.reprob, 0.25)
        XCTAssertEqual([s.augment.mixup, s.augment.cutmix, s.augment.smoothing], [0.8, 1.0, 0.1])
        XCTAssertEqual(s.augment.autoAugment, "rand-m9-mstd0.5-inc1")
        XCTAssertEqual(s.augment.scale, [0.08, 1.0])
        XCTAssertEqual(s.augment.interpolation, .bicubic)
        XCTAssertEqual(s.schedule.minLR, 1e-6)
        XCTAssertEqual(s.data.path, "/datasets/imagenet")
    }

    func testMAEFinetuneViTL() throws {
        let s = try load("finetune/ViT-L_50E.yaml")
        XCTAssertEqual([s.model.width, s.model.depth, s.model.heads], [1024, 24, 16])
        XCTAssertEqual(s.effectiveBatch, 1024)
        XCTAssertEqual(s.absoluteLR, 4e-3, accuracy: 1e-12)
        XCTAssertEqual(s.optim.layerDecay, 0.75)
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [50, 5])
        XCTAssertEqual(s.model.dropPath, 0.2)
        XCTAssertEqual(s.augment.reprob, 0.25)
        XCTAssertEqual([s.augment.mixup, s.augment.cutmix], [0.8, 1.0])
    }

    func testMAELinprobeViTB() throws {
        let s = try load("lincls/ViT-B_90E.yaml")
        XCTAssertEqual(s.task, .linprobe)
        XCTAssertFalse(s.model.globalPool)
        XCTAssertTrue(s.model.clsToken)
        XCTAssertEqual(s.optim.name, .lars)
        XCTAssertEqual(s.effectiveBatch, 16384)
        XCTAssertEqual(s.absoluteLR, 6.4, accuracy: 1e-12)
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [90, 10])
        XCTAssertEqual(s.optim.weightDecay, 0)
        XCTAssertEqual(s.optim.trustCoefficient, 0.001)
        XCTAssertEqual([s.augment.mixup, s.augment.cutmix, s.augment.reprob], [0, 0, 0])
        XCTAssertEqual(s.schedule.minLR, 0)
    }

    func testMAEPrivFinetuneViTBGAP() throws {
        let s = try load("finetune/MAE-priv_ViT-B_100E_GAP.yaml")
        XCTAssertEqual(s.model.method, .maePriv)
        XCTAssertFalse(s.model.clsToken)
        XCTAssertEqual(s.model.block, .beit)
        XCTAssertEqual(s.effectiveBatch, 1024)
        XCTAssertEqual(s.absoluteLR, 4e-3, accuracy: 1e-12)
        XCTAssertEqual(s.optim.layerDecay, 0.75)
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [100, 10])
        XCTAssertEqual(s.schedule.style, .beit)
        XCTAssertEqual(s.model.dropPath, 0.1)
        XCTAssertEqual(s.augment.reprob, 0)
        XCTAssertEqual([s.augment.mixup, s.augment.cutmix, s.augment.smoothing], [0.8, 1.0, 0.1])
        XCTAssertEqual(s.optim.betas, [0.9, 0.999])
    }

    func testMAEPrivLinprobeViTSCls() throws {
        let s = try load("lincls/MAE-priv_ViT-S_SGD_CLS-Token.yaml")
        XCTAssertEqual(s.model.method, .maePriv)
        XCTAssertTrue(s.model.clsToken)
        XCTAssertEqual([s.model.width, s.model.heads], [384, 6])
        XCTAssertEqual(s.optim.name, .sgd)
        XCTAssertTrue(s.optim.nesterov)
        XCTAssertEqual(s.effectiveBatch, 4096)
        XCTAssertEqual(s.absoluteLR, 1.6, accuracy: 1e-12)
        XCTAssertEqual([s.epochs, s.schedule.warmupEpochs], [90, 10])
        XCTAssertEqual(s.optim.weightDecay, 0)
        XCTAssertEqual([s.augment.mixup, s.augment.cutmix], [0, 0])
    }

    func testFMNISTDownstreamMatchesQuickPretrainModel() throws {
        let pre = try load("pretrain/FMNIST_ViT-T_MAE_quick.yaml")
        for f in ["lincls/FMNIST_ViT-T.yaml", "finetune/FMNIST_ViT-T.yaml"] {
            let s = try load(f)
            XCTAssertNil(s.initCheckpoint, f)
            XCTAssertEqual([s.model.width, s.model.depth, s.model.heads, s.model.patchSize, s.model.imgSize],
                           [pre.model.width, pre.model.depth, pre.model.heads, pre.model.patchSize, pre.model.imgSize], f)
            XCTAssertEqual(s.model.method, pre.model.method, f)
            XCTAssertEqual(s.model.block, pre.model.block, f)
        }
    }
}
