import Foundation
import XCTest
import TesseraCore

/// Gradient and value checks for im2col, patchEmbed, depthwiseBlur and the losses.
final class ConvLossGradTests: XCTestCase {
    func testIm2col() {
        gradCheck(inputs: [randn([2, 2, 4, 6], seed: 1)]) { v in im2col(v[0], patch: 2) }
        // One 1-channel 2x4 image, patch 2: two patches, each (row, col) ordered.
        let img = Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: [1, 1, 2, 4])
        let cols = im2col(img, patch: 2)
        XCTAssertEqual(cols.shape, [1, 2, 4])
        XCTAssertEqual(cols.array, [1, 2, 5, 6, 3, 4, 7, 8])
    }

    func testPatchEmbed() {
        let img = randn([2, 3, 4, 4], seed: 2), w = randn([5, 3, 2, 2], seed: 3), bias = randn([5], seed: 4)
        gradCheck(inputs: [img, w, bias], label: "bias") { v in patchEmbed(v[0], weight: v[1], bias: v[2]) }
        gradCheck(inputs: [img, w], label: "no bias") { v in patchEmbed(v[0], weight: v[1], bias: nil) }
        // Against a direct convolution.
        let y = patchEmbed(img.detach(), weight: w.detach(), bias: bias.detach())
        var ref = [Float](repeating: 0, count: 2 * 4 * 5)
        for s in 0..<2 { for pr in 0..<2 { for pc in 0..<2 { for o in 0..<5 {
            var acc = Double(bias[o])
            for c in 0..<3 { for i in 0..<2 { for j in 0..<2 {
                let wi: Int = ((o * 3 + c) * 2 + i) * 2 + j
                let row: Int = (s * 3 + c) * 4 + pr * 2 + i
                acc += Double(w[wi]) * Double(img[row * 4 + pc * 2 + j])
            } } }
            ref[(s * 4 + pr * 2 + pc) * 5 + o] = Float(acc)
        } } } }
        assertClose(y.array, ref, tol: 1e-6, "patchEmbed values")
    }

    func testGaussianKernel() {
        let k = gaussianKernel(size: 5, sigma: 1)
        XCTAssertEqual(k.shape, [5, 5])
        XCTAssertEqual(Double(k.array.reduce(0, +)), 1, accuracy: 1e-6)
        var z = 0.0
        for y in 0..<5 {
            for x in 0..<5 {
                let r2 = Double((x - 2) * (x - 2) + (y - 2) * (y - 2))
                z += Foundation.exp(-r2 / 2)
            }
        }
        XCTAssertEqual(Double(k[12]), 1 / z, accuracy: 1e-7)
        XCTAssertEqual(k[0], k[24])
        XCTAssertEqual(k[1], k[5])
    }

    func testDepthwiseBlur() {
        for size in [3, 5] {
            let kernel = gaussianKernel(size: size, sigma: 1.5)
            // An asymmetric kernel catches a missing flip in backward.
            let skew = Tensor((0..<(size * size)).map { Float($0 % 7) - 2 }, shape: [size, size])
            for (name, kr) in [("gaussian", kernel), ("asymmetric", skew)] {
                let img = randn([2, 2, 5, 6], seed: UInt64(5 + size))
                gradCheck(inputs: [img], label: "\(name) k=\(size)") { v in depthwiseBlur(v[0], kernel: kr) }
                let y = depthwiseBlur(img.detach(), kernel: kr)
                var ref = [Float](repeating: 0, count: img.count)
                let pad = size / 2
                for pl in 0..<4 { for i in 0..<5 { for j in 0..<6 {
                    var acc = 0.0
                    for u in 0..<size { for w in 0..<size {
                        let si = i + u - pad, sj = j + w - pad
                        if si >= 0 && si < 5 && sj >= 0 && sj < 6 { acc += Double(kr[u * size + w]) * Double(img[(pl * 5 + si) * 6 + sj]) }
                    } }
                    ref[(pl * 5 + i) * 6 + j] = Float(acc)
                } } }
                assertClose(y.array, ref, tol: 1e-6, "depthwiseBlur \(name) k=\(size) values")
            }
        }
    }

    func testMSELoss() {
        let pred = randn([3, 4], seed: 10), target = randn([3, 4], seed: 11)
        gradCheck(inputs: [pred]) { v in mseLoss(v[0], target) }
        let l = mseLoss(Tensor([1, 2], shape: [2]), Tensor([0, 4], shape: [2]))
        XCTAssertEqual(l.item, 2.5)
    }

    func testMaskedPatchMSE() {
        let pred = randn([2, 3, 4], seed: 17), target = randn([2, 3, 4], seed: 18)
        gradCheck(inputs: [pred], label: "0/1 mask") { v in maskedPatchMSE(v[0], target, mask: [1, 0, 1, 1, 0, 0]) }
        gradCheck(inputs: [pred], label: "weights") { v in maskedPatchMSE(v[0], target, mask: [0.5, 0, 2, 1, 0.25, 1]) }
        // Patch means of the squared error (1 and 4), averaged over the two selected patches.
        let l = maskedPatchMSE(Tensor([1, 1, 0, 0, 2, 2], shape: [1, 3, 2]), Tensor.zeros([1, 3, 2]), mask: [1, 0, 1])
        XCTAssertEqual(l.item, 2.5, accuracy: 1e-6)
    }

    func testL1Loss() {
        let pred = randn([3, 4], seed: 12)
        // Keep every |pred − target| well above eps so the kink is never crossed.
        let offset = uniform([3, 4], seed: 13, lo: 0.2, hi: 1)
        let target = Tensor((0..<12).map { pred[$0] + (($0 % 3 == 0) ? offset[$0] : -offset[$0]) }, shape: [3, 4])
        gradCheck(inputs: [pred]) { v in l1Loss(v[0], target) }
        XCTAssertEqual(l1Loss(Tensor([1, 2], shape: [2]), Tensor([0, 4], shape: [2])).item, 1.5)
    }

    func testCrossEntropyHard() {
        let logits = randn([4, 5], seed: 14, std: 2)
        let labels = [0, 3, 4, 3]
        gradCheck(inputs: [logits], label: "hard") { v in crossEntropy(v[0], labels: labels) }
        gradCheck(inputs: [logits], label: "smoothing 0.1") { v in crossEntropy(v[0], labels: labels, smoothing: 0.1) }
        XCTAssertEqual(crossEntropy(Tensor([0, 0], shape: [1, 2]), labels: [1]).item, Float(Foundation.log(2.0)), accuracy: 1e-6)
        // Smoothing ε: (1 − ε)·(−log p_y) + ε·mean(−log p).
        let x = Tensor([2, 0, -1], shape: [1, 3])
        let lse = Foundation.log(Foundation.exp(2.0) + 1 + Foundation.exp(-1.0))
        let logp = [2 - lse, -lse, -1 - lse]
        let expect = 0.8 * -logp[1] + 0.2 * -(logp.reduce(0, +) / 3)
        XCTAssertEqual(Double(crossEntropy(x, labels: [1], smoothing: 0.2).item), expect, accuracy: 1e-6)
    }

    func testCrossEntropySoft() {
        let logits = randn([4, 5], seed: 15, std: 2)
        let raw = uniform([4, 5], seed: 16, lo: 0, hi: 1)
        let q = softmax(raw * 3)
        gradCheck(inputs: [logits], label: "soft") { v in crossEntropy(v[0], softTargets: q) }
        // Mixup-like targets whose rows do not sum to one still get the right gradient.
        gradCheck(inputs: [logits], label: "unnormalised") { v in crossEntropy(v[0], softTargets: raw) }
    }
}

/// The forward-only layers of the frozen tokenizer against direct loops, and ReLU's gradient.
final class TokenizerLayerTests: XCTestCase {
    func testConv2dMatchesTheDirectSum() {
        for (k, p, c, o, h, w) in [(3, 1, 2, 3, 5, 6), (7, 3, 3, 4, 9, 8), (1, 0, 4, 2, 3, 3), (3, 0, 1, 2, 4, 4)] {
            let x = randn([2, c, h, w], seed: UInt64(k * 10 + p)), wt = randn([o, c, k, k], seed: 3), b = randn([o], seed: 4)
            let y = conv2d(x, weight: wt, bias: b, padding: p)
            let ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1
            XCTAssertEqual(y.shape, [2, o, ho, wo])
            var want = [Float](repeating: 0, count: 2 * o * ho * wo)
            for bi in 0..<2 { for oi in 0..<o { for i in 0..<ho { for j in 0..<wo {
                var s = Double(b.data[oi])
                for ci in 0..<c { for ky in 0..<k { for kx in 0..<k {
                    let iy = i + ky - p, ix = j + kx - p
                    if iy >= 0 && iy < h && ix >= 0 && ix < w {
                        s += Double(x.data[((bi * c + ci) * h + iy) * w + ix]) * Double(wt.data[((oi * c + ci) * k + ky) * k + kx])
                    }
                } } }
                want[((bi * o + oi) * ho + i) * wo + j] = Float(s)
            } } } }
            assertClose(y.array, want, tol: 1e-5, "conv2d k\(k) p\(p)")
        }
    }

    func testMaxPoolAndReLU() {
        let x = randn([2, 3, 5, 4], seed: 7)
        let y = maxPool2x2(x)
        XCTAssertEqual(y.shape, [2, 3, 2, 2])
        for plane in 0..<6 { for i in 0..<2 { for j in 0..<2 {
            let a = (0..<2).flatMap { di in (0..<2).map { dj in x.data[plane * 20 + (2 * i + di) * 4 + 2 * j + dj] } }
            XCTAssertEqual(y.data[plane * 4 + i * 2 + j], a.max()!)
        } } }
        gradCheck(inputs: [uniform([3, 7], seed: 8, lo: -2, hi: 2)]) { v in relu(v[0]) }
        XCTAssertEqual(relu(Tensor([-1, 0, 2], shape: [3])).array, [0, 0, 2])
    }
}
