import XCTest
import Foundation
import TesseraCore
import TesseraHDF5
import Tessera

/// Optimizers and schedules against PyTorch (tools/make_optim_fixture.py).
final class OptimizerTests: XCTestCase {
    func run(_ make: ([ParamGroup]) -> Optimizer, _ name: String, wdW: Float, wdB: Float) throws {
        let f = try HDF5File(reading: fixtureURL("optim.h5").path)
        let w = Tensor(try f.readFloats("w0").values, shape: [4, 3]).requiringGrad()
        let b = Tensor(try f.readFloats("b0").values, shape: [3]).requiringGrad()
        let gw = try f.readFloats("gw").values, gb = try f.readFloats("gb").values, lrs = try f.readFloats("lrs").values
        let refW = try f.readFloats("\(name)/w").values, refB = try f.readFloats("\(name)/b").values
        let opt = make([ParamGroup(params: [("w", w)], weightDecay: wdW), ParamGroup(params: [("b", b)], weightDecay: wdB)])
        for step in 0..<3 {
            w.grad = Tensor(Array(gw[(step * 12)..<((step + 1) * 12)]), shape: [4, 3])
            b.grad = Tensor(Array(gb[(step * 3)..<((step + 1) * 3)]), shape: [3])
            opt.step(lr: lrs[step], weightDecay: nil)
            XCTAssertLessThan(relativeError(w.array, Array(refW[(step * 12)..<((step + 1) * 12)])), 1e-6, "\(name) weight, step \(step)")
            XCTAssertLessThan(relativeError(b.array, Array(refB[(step * 3)..<((step + 1) * 3)])), 1e-6, "\(name) bias, step \(step)")
        }
        XCTAssertEqual(opt.steps, 3)
        // The state round-trips through stateTensors / loadState.
        let state = opt.stateTensors()
        XCTAssertFalse(state.isEmpty)
        let copy = make(opt.groups)
        try copy.loadState(state)
        XCTAssertEqual(Set(copy.stateTensors().keys), Set(state.keys))
    }

    func testAdamWMatchesTorch() throws {
        try run({ AdamW($0, betas: (0.9, 0.95), eps: 1e-8) }, "adamw", wdW: 0.05, wdB: 0)
    }

    /// AdamW's update runs 16 floats at a time with a scalar tail (the fixture's tensors are all
    /// tail): on 1037 values over three steps it equals torch.optim.AdamW's formula written out in
    /// Float, bit for bit.
    func testAdamWVectorPathMatchesTheFormula() {
        var rng = RandomGenerator(seed: 5)
        let n = 1037
        let w = Tensor.randn([n], rng: &rng).requiringGrad()
        var refP = w.array, refM = [Float](repeating: 0, count: n), refV = [Float](repeating: 0, count: n)
        let (b1, b2, eps, lr, wd): (Float, Float, Float, Float, Float) = (0.9, 0.95, 1e-8, 1e-3, 0.05)
        let opt = AdamW([ParamGroup(params: [("w", w)], weightDecay: wd)], betas: (b1, b2), eps: eps)
        for step in 1...3 {
            let g = Tensor.randn([n], rng: &rng)
            w.grad = g
            opt.step(lr: lr, weightDecay: nil)
            let bc1 = 1 - Float(Foundation.pow(Double(b1), Double(step)))
            let invSqrtBc2 = 1 / (1 - Float(Foundation.pow(Double(b2), Double(step)))).squareRoot()
            for i in 0..<n {
                let gi = g.data[i]
                refM[i] = b1 * refM[i] + (1 - b1) * gi
                refV[i] = b2 * refV[i] + (1 - b2) * gi * gi
                refP[i] = refP[i] * (1 - lr * wd) - lr / bc1 * refM[i] / (refV[i].squareRoot() * invSqrtBc2 + eps)
            }
            XCTAssertEqual(w.array, refP, "step \(step)")
        }
    }

    func testNesterovSGDMatchesTorch() throws {
        try run({ SGD($0, momentum: 0.9, nesterov: true) }, "sgd_nesterov", wdW: 1e-2, wdB: 0)
    }

    func testMAELarsMatchesReference() throws {
        try run({ LARS($0, momentum: 0.9, trustCoefficient: 0.001) }, "lars", wdW: 0.05, wdB: 0.05)
    }

    func testSchedulesMatchReference() throws {
        let f = try HDF5File(reading: fixtureURL("optim.h5").path)
        let mae = try f.readDoubles("sched/mae").values, beit = try f.readDoubles("sched/beit").values
        let m = LRSchedule.mae(base: 1e-3, minLR: 1e-5, warmupEpochs: 2, epochs: 5)
        let b = LRSchedule.beit(base: 1e-3, final: 1e-5, warmupEpochs: 2, epochs: 5)
        for i in 0..<20 {
            XCTAssertEqual(m.value(step: i, itersPerEpoch: 4), mae[i], accuracy: 1e-15, "mae step \(i)")
            XCTAssertEqual(b.value(step: i, itersPerEpoch: 4), beit[i], accuracy: 1e-15, "beit step \(i)")
        }
        // With 2 iterations per update over 8 iterations per epoch: MAE reads the iteration's epoch
        // fraction, BEiT's array (4 updates per epoch) is indexed by update.
        for it in 0..<40 {
            XCTAssertEqual(m.value(iteration: it, itersPerEpoch: 8, accumIter: 2), m.value(step: it, itersPerEpoch: 8))
            XCTAssertEqual(b.value(iteration: it, itersPerEpoch: 8, accumIter: 2), beit[it / 2], accuracy: 1e-15, "beit iteration \(it)")
        }
    }

    func testLayerDecayScales() {
        let names = ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight", "blocks.1.mlp.fc1.weight",
                     "norm.weight", "fc_norm.bias", "head.weight"]
        let params = names.map { ($0, Tensor.zeros($0.hasSuffix("weight") && !$0.contains("norm") ? [2, 2] : [2])) }
        let groups = ParamGroups.layerDecay(params, depth: 2, weightDecay: 0.05, layerDecay: 0.5)
        var scale: [String: Float] = [:], decay: [String: Float] = [:]
        for g in groups { for (n, _) in g.params { scale[n] = g.lrScale; decay[n] = g.weightDecay } }
        XCTAssertEqual(scale["patch_embed.proj.weight"], 0.125)
        XCTAssertEqual(scale["cls_token"], 0.125)
        XCTAssertEqual(scale["blocks.0.norm1.weight"], 0.25)
        XCTAssertEqual(scale["blocks.1.mlp.fc1.weight"], 0.5)
        XCTAssertEqual(scale["head.weight"], 1)
        XCTAssertEqual(scale["fc_norm.bias"], 1)
        XCTAssertEqual(decay["pos_embed"], 0)
        XCTAssertEqual(decay["cls_token"], 0)
        XCTAssertEqual(decay["blocks.1.mlp.fc1.weight"], 0.05)
        XCTAssertEqual(decay["norm.weight"], 0)
    }

    func testPretrainDecayRule() {
        let params: [(name: String, tensor: Tensor)] = [("cls_token", Tensor.zeros([1, 1, 4])), ("mask_token", Tensor.zeros([1, 1, 4])),
                                                        ("blocks.0.attn.qkv.bias", Tensor.zeros([12])), ("blocks.0.attn.qkv.weight", Tensor.zeros([12, 4])),
                                                        ("norm.weight", Tensor.zeros([4]))]
        func decayed(_ groups: [ParamGroup]) -> Set<String> {
            Set(groups.filter { $0.weightDecay > 0 }.flatMap { $0.params.map(\.name) })
        }
        // MAE/SAIM/SemAIM: only the 1-D / ".bias" rule, so cls and mask tokens ARE decayed (spec §8.1).
        XCTAssertEqual(decayed(ParamGroups.pretrain(params, weightDecay: 0.05)), ["cls_token", "mask_token", "blocks.0.attn.qkv.weight"])
        // MAE-priv also exempts its mask token.
        XCTAssertEqual(decayed(ParamGroups.pretrain(params, weightDecay: 0.05, skip: ["mask_token"])), ["cls_token", "blocks.0.attn.qkv.weight"])
    }
}
