import XCTest
import TesseraCore
import TesseraHDF5

/// Every op against PyTorch (Fixtures/ops.h5, group ops/*): output and input gradients.
final class TorchOpFixtureTests: XCTestCase {
    func testLinear() throws {
        try checkAgainstTorch("ops/linear") { c in linear(c["x"], c["w"], c["b"]) }
        try checkAgainstTorch("ops/linear_nobias") { c in linear(c["x"], c["w"]) }
    }

    func testMatmul() throws {
        for ta in [false, true] {
            for tb in [false, true] {
                let tag = "\(ta ? 1 : 0)\(tb ? 1 : 0)"
                try checkAgainstTorch("ops/matmul_shared_\(tag)") { c in matmul(c["a"], c["b"], transA: ta, transB: tb) }
                try checkAgainstTorch("ops/matmul_batched_\(tag)") { c in matmul(c["a"], c["b"], transA: ta, transB: tb) }
            }
        }
    }

    func testBroadcastArithmetic() throws {
        try checkAgainstTorch("ops/add_general") { c in c["a"] + c["b"] }
        try checkAgainstTorch("ops/sub_suffix") { c in c["a"] - c["b"] }
        try checkAgainstTorch("ops/mul_general") { c in c["a"] * c["b"] }
        try checkAgainstTorch("ops/mul_scalar_like") { c in c["a"] * c["b"] }
    }

    func testReductionsAndShapes() throws {
        try checkAgainstTorch("ops/sum_axis1") { c in sum(c["x"], axis: 1) }
        try checkAgainstTorch("ops/mean_axis2_keep") { c in mean(c["x"], axis: 2, keepDim: true) }
        try checkAgainstTorch("ops/permute") { c in c["x"].permuted([2, 0, 3, 1]) }
        try checkAgainstTorch("ops/concat") { c in concat([c["a"], c["b"]], axis: 1) }
        try checkAgainstTorch("ops/slice") { c in slice(c["x"], axis: 1, start: 1, length: 3) }
        try checkAgainstTorch("ops/gather_tokens") { c in gatherTokens(c["x"], try c.ints("index"), count: 3) }
        try checkAgainstTorch("ops/scatter_tokens") { c in
            scatterTokens(c["src"], try c.ints("index"), length: 5, base: c["base"])
        }
    }

    func testNormalization() throws {
        try checkAgainstTorch("ops/layer_norm") { c in layerNorm(c["x"], weight: c["w"], bias: c["b"], eps: 1e-6) }
        try checkAgainstTorch("ops/layer_norm_plain") { c in layerNorm(c["x"], weight: nil, bias: nil, eps: 1e-6) }
        try checkAgainstTorch("ops/l2_normalize") { c in l2Normalize(c["x"]) }
        try checkAgainstTorch("ops/batch_norm_eval") { c in
            batchNorm1d(c["x"], runningMean: try c.const("running_mean"), runningVar: try c.const("running_var"), training: false)
        }
        var stats: (Tensor, Tensor)? = nil
        try checkAgainstTorch("ops/batch_norm_train") { c in
            let m = try c.const("running_mean"), v = try c.const("running_var")
            stats = (m, v)
            return batchNorm1d(c["x"], runningMean: m, runningVar: v, training: true, momentum: 0.1, eps: 1e-5)
        }
        let h5 = try OpsFixture.file.get()
        assertClose(stats!.0.array, try h5.readFloats("ops/batch_norm_train/after/running_mean").values, tol: 1e-6, "running mean")
        assertClose(stats!.1.array, try h5.readFloats("ops/batch_norm_train/after/running_var").values, tol: 1e-6, "running var")
    }

    func testActivations() throws {
        try checkAgainstTorch("ops/gelu") { c in gelu(c["x"]) }
        try checkAgainstTorch("ops/softmax") { c in softmax(c["x"]) }
    }

    func testAttention() throws {
        try checkAgainstTorch("ops/self_attention") { c in selfAttention(qkv: c["qkv"], heads: 2) }
        try checkAgainstTorch("ops/self_attention_mask") { c in selfAttention(qkv: c["qkv"], heads: 2, mask: try c.const("mask")) }
        try checkAgainstTorch("ops/cross_attention") { c in
            attention(q: c["q"], k: c["k"], v: c["v"], heads: 2, mask: try c.const("mask"))
        }
    }

    func testConvolution() throws {
        try checkAgainstTorch("ops/im2col") { c in im2col(c["img"], patch: 2) }
        try checkAgainstTorch("ops/patch_embed") { c in patchEmbed(c["img"], weight: c["w"], bias: c["b"]) }
        try checkAgainstTorch("ops/depthwise_blur") { c in
            let k = try c.const("kernel")
            assertClose(gaussianKernel(size: 5, sigma: 1).array, k.array, tol: 1e-6, "Gaussian kernel")
            return depthwiseBlur(c["img"], kernel: gaussianKernel(size: 5, sigma: 1))
        }
    }

    func testLosses() throws {
        try checkAgainstTorch("ops/mse_loss") { c in mseLoss(c["pred"], try c.const("target")) }
        try checkAgainstTorch("ops/l1_loss") { c in l1Loss(c["pred"], try c.const("target")) }
        try checkAgainstTorch("ops/cross_entropy") { c in crossEntropy(c["logits"], labels: try c.ints("labels")) }
        try checkAgainstTorch("ops/cross_entropy_smooth") { c in
            crossEntropy(c["logits"], labels: try c.ints("labels"), smoothing: 0.1)
        }
        try checkAgainstTorch("ops/cross_entropy_soft") { c in crossEntropy(c["logits"], softTargets: try c.const("q")) }
        try checkAgainstTorch("ops/masked_patch_mse") { c in
            maskedPatchMSE(c["pred"], try c.const("target"), mask: try c.const("mask").array)
        }
    }
}
