import XCTest
import TesseraCore

/// Gradient checks at shapes large enough that the kernels split work over threads (GEMM row and
/// column blocks, per-batch matmul, element-wise ranges, layerNorm partial sums, attention tasks).
/// The numerical side samples a few elements per input.
final class ParallelPathGradTests: TwoThreadsTestCase {
    func testLinearLarge() {
        let x = randn([256, 128], seed: 1, std: 0.5), w = randn([192, 128], seed: 2, std: 0.1), b = randn([192], seed: 3)
        gradCheck(inputs: [x, w, b], samples: 24) { v in linear(v[0], v[1], v[2]) }
        gradCheck(inputs: [x, w, b, randn([256, 192], seed: 9)], samples: 24, label: "residual") { v in
            linear(v[0], v[1], v[2], residual: v[3])
        }
    }

    func testMatmulLarge() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randn([4, 64, 64], seed: 4, std: 0.3), bs = randn([64, 64], seed: 5, std: 0.3), bb = randn([4, 64, 64], seed: 6, std: 0.3)
            gradCheck(inputs: [a, bs], samples: 16, label: "shared transA \(ta) transB \(tb)") { v in matmul(v[0], v[1], transA: ta, transB: tb) }
            gradCheck(inputs: [a, bb], samples: 16, label: "batched transA \(ta) transB \(tb)") { v in matmul(v[0], v[1], transA: ta, transB: tb) }
        }
        // Wide products: GEMM splits over columns.
        gradCheck(inputs: [randn([16, 96], seed: 7, std: 0.3), randn([96, 2048], seed: 8, std: 0.3)], samples: 16, label: "wide") { v in
            matmul(v[0], v[1])
        }
    }

    func testElementwiseLarge() {
        let a = randn([2, 256, 512], seed: 9), b = randn([2, 256, 512], seed: 10), c = randn([512], seed: 11)
        gradCheck(inputs: [a, b], samples: 12, label: "add same") { v in v[0] + v[1] }
        gradCheck(inputs: [a, b], samples: 12, label: "sub same") { v in v[0] - v[1] }
        gradCheck(inputs: [a, b], samples: 12, label: "mul same") { v in v[0] * v[1] }
        gradCheck(inputs: [a, c], samples: 12, label: "add suffix") { v in v[0] + v[1] }
        gradCheck(inputs: [a, c], samples: 12, label: "sub suffix") { v in v[0] - v[1] }
        gradCheck(inputs: [a, c], samples: 12, label: "mul suffix") { v in v[0] * v[1] }
        gradCheck(inputs: [a], samples: 12, label: "affine") { v in affine(v[0], scale: 1.5, shift: -2) }
    }

    func testNormActivationLarge() {
        let x = randn([1024, 64], seed: 12), w = uniform([64], seed: 13, lo: 0.5, hi: 1.5), b = randn([64], seed: 14)
        gradCheck(inputs: [x, w, b], samples: 24, label: "layerNorm") { v in layerNorm(v[0], weight: v[1], bias: v[2]) }
        gradCheck(inputs: [randn([64, 128], seed: 15)], samples: 24, label: "gelu") { v in gelu(v[0]) }
        gradCheck(inputs: [randn([64, 128], seed: 16)], samples: 24, label: "softmax") { v in softmax(v[0]) }
    }

    func testAttentionLarge() {
        let (bsz, l, d, heads) = (2, 64, 64, 4)
        let qkv = randn([bsz, l, 3 * d], seed: 17, std: 0.5)
        let mask = saimMask(batch: bsz, patches: l - 1, strict: false, seed: 18)
        gradCheck(inputs: [qkv], samples: 48, label: "self, SAIM mask") { v in selfAttention(qkv: v[0], heads: heads, mask: mask) }
        let q = randn([bsz, 40, d], seed: 19, std: 0.5), kv = randn([bsz, l, d], seed: 20, std: 0.5)
        gradCheck(inputs: [q, kv], samples: 48, label: "cross, k = v") { v in attention(q: v[0], k: v[1], v: v[1], heads: heads) }
    }

    func testShapeAndConvLarge() {
        gradCheck(inputs: [randn([8, 64, 256], seed: 21)], samples: 16, label: "permute") { v in v[0].permuted([0, 2, 1]) }
        gradCheck(inputs: [randn([8, 3, 64, 64], seed: 22)], samples: 16, label: "im2col") { v in im2col(v[0], patch: 8) }
        let kernel = gaussianKernel(size: 5, sigma: 1)
        gradCheck(inputs: [randn([2, 3, 32, 32], seed: 23)], samples: 16, label: "depthwiseBlur") { v in depthwiseBlur(v[0], kernel: kernel) }
    }
}
