import Foundation
import XCTest
import TesseraCore

/// Gradient checks for layerNorm, batchNorm1d, l2Normalize, gelu, softmax, dropout and dropPath.
final class NormActivationGradTests: XCTestCase {
    func testLayerNorm() {
        let x = randn([2, 3, 6], seed: 1)
        let w = uniform([6], seed: 2, lo: 0.5, hi: 1.5), b = randn([6], seed: 3)
        gradCheck(inputs: [x, w, b], label: "affine") { v in layerNorm(v[0], weight: v[1], bias: v[2]) }
        gradCheck(inputs: [x, w], label: "weight only") { v in layerNorm(v[0], weight: v[1], bias: nil) }
        gradCheck(inputs: [x, b], label: "bias only") { v in layerNorm(v[0], weight: nil, bias: v[1]) }
        gradCheck(inputs: [x], label: "no affine") { v in layerNorm(v[0], weight: nil, bias: nil) }
        // Many rows, so the backward's per-thread partial sums for w and b are exercised.
        gradCheck(inputs: [randn([37, 4], seed: 4), uniform([6], seed: 18, lo: 0.5, hi: 1.5), randn([6], seed: 19)], label: "37 rows") { v in
            layerNorm(linear(v[0], randn([6, 4], seed: 5)), weight: v[1], bias: v[2])
        }
    }

    func testGeluLinear() {
        let h = uniform([2, 3, 8], seed: 21, lo: -3, hi: 3), w = randn([5, 8], seed: 22), b = randn([5], seed: 23)
        gradCheck(inputs: [h, w, b], label: "bias") { v in geluLinear(v[0], v[1], v[2]) }
        gradCheck(inputs: [h, w], label: "no bias") { v in geluLinear(v[0], v[1]) }
        // The fused op equals its unfused composition.
        let fused = geluLinear(h, w, b), plain = linear(gelu(h), w, b)
        assertClose(fused.array, plain.array, tol: 1e-6, "geluLinear forward")
        // Large enough for the parallel paths.
        gradCheck(inputs: [randn([64, 96], seed: 24), randn([48, 96], seed: 25, std: 0.1), randn([48], seed: 26)],
                  samples: 24, label: "large") { v in geluLinear(v[0], v[1], v[2]) }
        // h an intermediate (its gradient buffer written, not accumulated into, as in a model),
        // read twice (accumulated into one already written), and a frozen weight.
        gradCheck(inputs: [h, w, b], label: "intermediate h") { v in geluLinear(v[0] + v[0], v[1], v[2]) }
        gradCheck(inputs: [h, w, b], label: "h used twice") { v in
            let u = v[0] + v[0]
            return geluLinear(u, v[1], v[2]) + linear(u, v[1], v[2])
        }
        gradCheck(inputs: [h], label: "frozen weight") { v in geluLinear(v[0] + v[0], w, b) }
        gradCheck(inputs: [h], label: "frozen weight, h used twice") { v in
            let u = v[0] + v[0]
            return geluLinear(u, w, b) + linear(u, w)
        }
    }

    /// fc1's bias folded into geluLinear's sweeps: GELU(x·W1ᵀ + b1)·W2ᵀ + b2 from the bias-free product.
    func testGeluLinearWithInputBias() {
        func h0() -> Tensor { uniform([2, 3, 8], seed: 44, lo: -3, hi: 3) }
        let x = randn([2, 3, 6], seed: 31), w1 = randn([8, 6], seed: 32, std: 0.5), b1 = randn([8], seed: 33)
        let w2 = randn([5, 8], seed: 34), b2 = randn([5], seed: 35)
        gradCheck(inputs: [x, w1, b1, w2, b2], label: "input bias") { v in
            geluLinear(linear(v[0], v[1]), v[3], v[4], inputBias: v[2])
        }
        // The same values as fc1 adding its own bias.
        let fused = geluLinear(linear(x, w1), w2, b2, inputBias: b1), plain = linear(gelu(linear(x, w1, b1)), w2, b2)
        assertClose(fused.array, plain.array, tol: 1e-6, "geluLinear with input bias, forward")
        // Only the biases and x trainable (both weights frozen: no GELU(h) for dW2, dh still needed
        // for b1); only b1 trainable (h itself has no gradient). h read by another op as well is
        // refused (a precondition), since the bias is added to it in place.
        gradCheck(inputs: [x, b1, b2], label: "input bias, frozen weights") { v in
            geluLinear(linear(v[0], w1), w2, v[2], inputBias: v[1])
        }
        gradCheck(inputs: [b1], label: "input bias only") { v in geluLinear(linear(x, w1), w2, b2, inputBias: v[0]) }
        // A skip connection added in fc2's pass: an intermediate residual, and one read elsewhere too.
        gradCheck(inputs: [x, w1, b1, w2, b2, randn([2, 3, 5], seed: 41)], label: "input bias, residual") { v in
            geluLinear(linear(v[0], v[1]), v[3], v[4], inputBias: v[2], residual: v[5] + v[5])
        }
        gradCheck(inputs: [h0(), w2, randn([2, 3, 5], seed: 42)], label: "residual read twice") { v in
            let r = v[2] * 1.5
            return geluLinear(v[0], v[1], residual: r) * r
        }
        let r = randn([2, 3, 5], seed: 43)
        assertClose(geluLinear(linear(x, w1), w2, b2, inputBias: b1, residual: r).array, (plain + r).array, tol: 1e-6,
                    "geluLinear with a residual, forward")
        // Large enough for the parallel paths (two parts, partial bias sums merged).
        gradCheck(inputs: [randn([64, 40], seed: 36), randn([96, 40], seed: 37, std: 0.1), randn([96], seed: 38),
                           randn([48, 96], seed: 39, std: 0.1), randn([48], seed: 40)],
                  samples: 24, label: "input bias, large") { v in geluLinear(linear(v[0], v[1]), v[3], v[4], inputBias: v[2]) }
    }

    func testLayerNormForward() {
        let y = layerNorm(Tensor([1, 2, 3, 4], shape: [1, 4]), weight: Tensor([1, 1, 2, 2], shape: [4]),
                          bias: Tensor([0, 0, 0, 1], shape: [4]), eps: 0)
        // mean 2.5, var 1.25
        let s = 1 / Float(1.25).squareRoot()
        assertClose(y.array, [-1.5 * s, -0.5 * s, 2 * 0.5 * s, 2 * 1.5 * s + 1], tol: 1e-6, "layerNorm values")
    }

    func testBatchNorm1dTraining() {
        let rm = Tensor.zeros([4]), rv = Tensor.full([4], 1)
        gradCheck(inputs: [randn([5, 4], seed: 6, std: 2)], label: "training") { v in
            batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: true)
        }
        // Running statistics: r ← 0.9 r + 0.1 batch, with the unbiased variance.
        let x = Tensor([1, 10, 3, 20, 5, 60], shape: [3, 2])
        let m = Tensor.zeros([2]), v = Tensor.full([2], 1)
        let y = batchNorm1d(x, runningMean: m, runningVar: v, training: true, momentum: 0.1, eps: 0)
        assertClose(m.array, [0.3, 3], tol: 1e-6, "running mean")
        assertClose(v.array, [0.9 + 0.1 * 4, 0.9 + 0.1 * 700], tol: 1e-6, "running var")
        let s0 = 1 / (Float(8) / 3).squareRoot()
        assertClose([y[0], y[2], y[4]], [-2 * s0, 0, 2 * s0], tol: 1e-6, "normalised column 0")
    }

    func testBatchNorm1dEval() {
        let rm = randn([4], seed: 7), rv = uniform([4], seed: 8, lo: 0.5, hi: 2)
        gradCheck(inputs: [randn([5, 4], seed: 9)], label: "eval") { v in
            batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: false)
        }
        let y = batchNorm1d(Tensor([3, 3], shape: [1, 2]), runningMean: Tensor([1, 2], shape: [2]),
                            runningVar: Tensor([4, 0.25], shape: [2]), training: false, eps: 0)
        assertClose(y.array, [1, 2], tol: 1e-6, "eval values")
    }

    func testL2Normalize() {
        gradCheck(inputs: [randn([3, 5], seed: 10)]) { v in l2Normalize(v[0]) }
        gradCheck(inputs: [randn([2, 2, 4], seed: 11, std: 3)], label: "rank 3") { v in l2Normalize(v[0]) }
        assertClose(l2Normalize(Tensor([3, 4], shape: [1, 2])).array, [0.6, 0.8], tol: 1e-7, "values")
    }

    func testGelu() {
        gradCheck(inputs: [uniform([4, 10], seed: 12, lo: -4, hi: 4)]) { v in gelu(v[0]) }
        // Exact (erf) GELU values: x·Φ(x).
        let y = gelu(Tensor([-2, -0.5, 0, 1, 3], shape: [5]))
        assertClose(y.array, [-0.045_500_26, -0.154_268_53, 0, 0.841_344_74, 2.995_950_2], tol: 1e-6, "gelu values")
    }

    func testQuickGelu() {
        gradCheck(inputs: [uniform([4, 10], seed: 14, lo: -6, hi: 6)]) { v in quickGelu(v[0]) }
        // x·σ(1.702·x), computed in Double.
        let xs: [Float] = [-3, -0.5, 0, 1, 4]
        let want = xs.map { Float(Double($0) / (1 + Foundation.exp(-1.702 * Double($0)))) }
        assertClose(quickGelu(Tensor(xs, shape: [5])).array, want, tol: 1e-6, "quick gelu values")
    }

    func testSoftmax() {
        gradCheck(inputs: [randn([3, 4, 5], seed: 13, std: 2)]) { v in softmax(v[0]) }
        let p = softmax(Tensor([0, 0, Float(Foundation.log(3.0)), -.infinity], shape: [1, 4]))
        assertClose(p.array, [0.2, 0.2, 0.6, 0], tol: 1e-6, "softmax values")
    }

    func testDropout() {
        let p: Float = 0.3
        let x = randn([4, 25], seed: 14)
        gradCheck(inputs: [x]) { v in
            var g = RandomGenerator(seed: 77)
            return dropout(v[0], p: p, training: true, rng: &g)
        }
        // The gradient is the upstream gradient times the mask the forward used.
        var g = RandomGenerator(seed: 77)
        x.grad = nil
        Autograd.reset()
        let y = dropout(x, p: p, training: true, rng: &g)
        let r = randn(y.shape, seed: 15)
        y.backward(r)
        let scale = 1 / (1 - p)
        var dropped = 0
        for i in 0..<x.count {
            let m = y[i] / x[i]
            XCTAssertTrue(y[i] == 0 || abs(m - scale) < 1e-5, "element \(i): factor \(m)")
            if y[i] == 0 { dropped += 1 }
            XCTAssertEqual(x.grad![i], r[i] * (y[i] == 0 ? 0 : scale), accuracy: 1e-6)
        }
        XCTAssertGreaterThan(dropped, 15)
        XCTAssertLessThan(dropped, 45)
        var g2 = RandomGenerator(seed: 1)
        XCTAssertTrue(dropout(x, p: p, training: false, rng: &g2) === x)
        XCTAssertEqual(g2.counter, 0)
    }

    func testDropPath() {
        let p: Float = 0.5
        let x = randn([8, 3, 2], seed: 16)
        gradCheck(inputs: [x]) { v in
            var g = RandomGenerator(seed: 78)
            return dropPath(v[0], p: p, training: true, rng: &g)
        }
        var g = RandomGenerator(seed: 78)
        x.grad = nil
        Autograd.reset()
        let y = dropPath(x, p: p, training: true, rng: &g)
        let r = randn(y.shape, seed: 17)
        y.backward(r)
        var kept = 0
        for s in 0..<8 {
            let factor = y[s * 6] / x[s * 6]
            XCTAssertTrue(factor == 0 || abs(factor - 2) < 1e-6, "sample \(s): factor \(factor)")
            if factor != 0 { kept += 1 }
            for i in (s * 6)..<(s * 6 + 6) {
                XCTAssertEqual(y[i], x[i] * factor, accuracy: 1e-6, "sample \(s) shares one factor")
                XCTAssertEqual(x.grad![i], r[i] * factor, accuracy: 1e-6)
            }
        }
        XCTAssertGreaterThan(kept, 0)
        XCTAssertLessThan(kept, 8)
        var g2 = RandomGenerator(seed: 1)
        XCTAssertTrue(dropPath(x, p: p, training: false, rng: &g2) === x)
    }
}
