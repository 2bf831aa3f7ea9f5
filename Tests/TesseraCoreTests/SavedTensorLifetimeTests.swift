import XCTest
import TesseraCore

/// Backward closures must keep alive every value they read. Each op here gets temporaries as inputs
/// (nothing but the tape refers to them); between forward and backward the buffer pool is drained
/// with NaN-filled tensors of every small size, so a closure that kept only a raw pointer into a
/// freed buffer reads NaN. The gradients must equal those of an undisturbed run bit for bit.
final class SavedTensorLifetimeTests: XCTestCase {
    private func check(_ label: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                       _ f: ([Tensor]) -> Tensor) {
        func gradients(poison: Bool) -> [[Float]] {
            for x in inputs {
                x.requiringGrad()
                x.grad = nil
            }
            Autograd.reset()
            let y = f(inputs.map { affine($0, scale: 1) })
            var junk: [Tensor] = []
            if poison { for n in 1...600 { for _ in 0..<4 { junk.append(Tensor.full([n], .nan)) } } }
            y.backward(randn(y.shape, seed: 3))
            withExtendedLifetime(junk) {}
            return inputs.map { $0.grad?.array ?? [] }
        }
        let clean = gradients(poison: false), poisoned = gradients(poison: true)
        for i in inputs.indices {
            XCTAssertFalse(clean[i].contains { $0.isNaN }, "\(label): input \(i) gradient has NaN", file: file, line: line)
            XCTAssertTrue(clean[i] == poisoned[i], "\(label): input \(i) gradient changed when freed buffers were reused",
                          file: file, line: line)
        }
    }

    func testEveryOpKeepsItsSavedValues() {
        let x = randn([2, 3, 4], seed: 1), w = randn([5, 4], seed: 2), b = randn([5], seed: 3)
        check("linear", [x, w, b]) { v in linear(v[0], v[1], v[2]) }
        check("matmul shared", [x, randn([4, 6], seed: 4)]) { v in matmul(v[0], v[1]) }
        check("matmul batched ᵀᵀ", [x, randn([2, 6, 3], seed: 5)]) { v in matmul(v[0], v[1], transA: true, transB: true) }
        check("mul general", [x, randn([2, 1, 4], seed: 6)]) { v in v[0] * v[1] }
        check("mul suffix", [x, randn([4], seed: 7)]) { v in v[0] * v[1] }
        check("add / sub", [x, randn([3, 1], seed: 8)]) { v in (v[0] + v[1]) - v[1] * 2 }
        check("expand, sum, mean", [randn([2, 1, 4], seed: 9)]) { v in
            sum(expand(v[0], to: [2, 3, 4]), axis: 1) + mean(v[0]) + sum(v[0]) * 0.5
        }
        check("reshape, permute, transpose", [x]) { v in v[0].reshaped([6, 4]).permuted([1, 0]).transposed(0, 1) }
        check("concat, slice, split", [x, randn([2, 2, 4], seed: 10)]) { v in
            let c = concat([v[0], v[1]], axis: 1)
            return slice(c, axis: 1, start: 1, length: 3) * split(c, axis: 1, sizes: [2, 3])[1]
        }
        check("gather, scatter", [x, randn([2, 5, 4], seed: 11)]) { v in
            scatterTokens(gatherTokens(v[0], [2, 0, 1, 1], count: 2), [4, 1, 0, 3], length: 5, base: v[1])
        }
        check("layerNorm", [x, uniform([4], seed: 12, lo: 0.5, hi: 1.5), randn([4], seed: 13)]) { v in
            layerNorm(v[0], weight: v[1], bias: v[2])
        }
        let rm = Tensor.zeros([4]), rv = Tensor.full([4], 1)
        check("batchNorm1d training", [randn([6, 4], seed: 14)]) { v in batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: true) }
        check("batchNorm1d eval", [randn([6, 4], seed: 15)]) { v in batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: false) }
        check("l2Normalize, gelu, softmax", [x]) { v in softmax(gelu(l2Normalize(v[0]))) }
        check("dropout, dropPath", [x]) { v in
            var g = RandomGenerator(seed: 9)
            return dropPath(dropout(v[0], p: 0.3, training: true, rng: &g), p: 0.4, training: true, rng: &g)
        }
        let mask = saimMask(batch: 2, patches: 4, strict: false, seed: 16)
        check("selfAttention", [randn([2, 5, 24], seed: 17)]) { v in selfAttention(qkv: v[0], heads: 2, mask: mask) }
        check("attention", [randn([2, 3, 8], seed: 18), randn([2, 5, 8], seed: 19)]) { v in
            attention(q: v[0], k: v[1], v: gelu(v[1]), heads: 4)
        }
        check("im2col, patchEmbed", [randn([1, 2, 4, 4], seed: 20), randn([3, 2, 2, 2], seed: 21), randn([3], seed: 22)]) { v in
            patchEmbed(v[0], weight: v[1], bias: v[2]) + sum(im2col(v[0], patch: 2), axis: 2, keepDim: true)
        }
        check("depthwiseBlur", [randn([1, 2, 5, 5], seed: 23)]) { v in depthwiseBlur(v[0], kernel: gaussianKernel(size: 3, sigma: 1)) }
        let target = randn([2, 3, 4], seed: 24)
        check("mse, l1, maskedPatchMSE", [x]) { v in
            mseLoss(v[0], affine(target, scale: 1)) + l1Loss(v[0], affine(target, scale: 1))
                + maskedPatchMSE(v[0], affine(target, scale: 1), mask: [1, 0, 1, 1, 1, 0])
        }
        let logits = randn([4, 5], seed: 25)
        check("crossEntropy", [logits]) { v in
            crossEntropy(v[0], labels: [1, 2, 3, 0], smoothing: 0.1)
                + crossEntropy(v[0], softTargets: softmax(affine(logits, scale: 2)))
        }
    }

    /// Backward releases what a step saved as soon as that step has run, as PyTorch does: by the time
    /// the first op's backward runs, the saved tensors of the later ops are gone, so a deep chain does
    /// not hold every activation until the end of backward.
    func testBackwardReleasesSavedTensorsAsItGoes() {
        Autograd.reset()
        let n = 1 << 18  // 1 MiB per tensor
        let x = randn([n], seed: 11).requiringGrad()
        var liveInFirstStep = 0
        let first = Tensor(shape: [n])
        first.data.update(from: x.data, count: n)
        Autograd.record(first, [x]) { g in
            liveInFirstStep = BufferPool.shared.liveBytes
            x.slot?.accumulate(g, owned: false)
        }
        var h = first
        for _ in 0..<16 { h = gelu(h) }  // each saves its 1 MiB input
        let live = BufferPool.shared.liveBytes
        h.backward(Tensor.full([n], 1))
        // 16 saved inputs are 16 MiB; what may remain in the first step is its own gradient and a few
        // buffers in flight.
        XCTAssertLessThan(liveInFirstStep, live - 8 * 4 * n, "saved tensors of later ops were still alive in the first op's backward")
        XCTAssertNotNil(x.grad)
    }

    /// The buffer pool reuses exact sizes, takes a slightly larger cached buffer when the exact size
    /// misses, and never holds live + cached bytes much above the live high-water mark: one phase's
    /// freed buffers go back to the system when the next phase needs other sizes.
    func testBufferPoolStaysNearItsHighWaterMark() {
        let pool = BufferPool()
        let mib = 1 << 18
        let phaseA = (0..<128).map { pool.take(mib + $0 * 4096) }  // 128 buffers of 1-3 MiB, 256 MiB in all
        let a0 = phaseA[0].0
        for (p, c) in phaseA { pool.give(p, c) }
        let high = pool.highWaterBytes
        XCTAssertEqual(pool.cachedBytes, high)
        let again = pool.take(mib)
        XCTAssertEqual(again.0, a0, "an exact size is reused")
        pool.give(again.0, again.capacity)
        let larger = pool.take(mib - 100)
        XCTAssertEqual(larger.capacity, mib, "a miss takes the smallest cached size up to 1.5 times larger")
        pool.give(larger.0, larger.capacity)
        // Phase B: the same total in sizes phase A never used (more than 1.5 times larger).
        var phaseB: [(UnsafeMutablePointer<Float>, capacity: Int)] = []
        for i in 0..<40 {
            phaseB.append(pool.take(6 * mib + i * 4096))
            XCTAssertLessThanOrEqual(pool.liveBytes + pool.cachedBytes, pool.highWaterBytes + (64 << 20),
                                     "live + cached passed the high-water mark plus slack at buffer \(i)")
        }
        XCTAssertGreaterThan(pool.evictedBytes, 0)
        for (p, c) in phaseB { pool.give(p, c) }
        pool.trim()
        XCTAssertEqual(pool.cachedBytes, 0)
    }
}
