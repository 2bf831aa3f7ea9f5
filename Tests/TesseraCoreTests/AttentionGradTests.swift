import Foundation
import XCTest
import TesseraCore

/// SAIM's attention masks for `batch` random orders of `patches` patches, with a cls slot at 0:
/// [B, 1+P, 1+P] of 0 / −inf. Content mask (`strict` false): patch i sees patch j iff j does not come
/// after i. Query mask (`strict` true): strictly before. cls sees only itself; everyone sees cls.
func saimMask(batch: Int, patches: Int, strict: Bool, seed: UInt64) -> Tensor {
    var g = RandomGenerator(seed: seed)
    let l = patches + 1
    let m = Tensor.zeros([batch, l, l])
    for b in 0..<batch {
        let noise = (0..<patches).map { _ in g.uniform() }
        for i in 0..<l {
            for j in 1..<l {
                let hidden = i == 0 || (strict ? noise[i - 1] <= noise[j - 1] : noise[i - 1] < noise[j - 1])
                if hidden { m[(b * l + i) * l + j] = -.infinity }
            }
        }
    }
    return m
}

/// Plain per-element attention in Double: q [B, Lq, D], k/v [B, Lk, D] as flat arrays with row
/// strides and column offsets; mask [B·Lq·Lk] or [Lq·Lk] or nil. Returns [B, Lq, D].
func referenceAttention(q: Tensor, qStride: Int, qOff: Int, k: Tensor, kStride: Int, kOff: Int,
                        v: Tensor, vStride: Int, vOff: Int,
                        b: Int, lq: Int, lk: Int, d: Int, heads: Int, mask: Tensor?) -> [Float] {
    let hd = d / heads
    let scale = 1 / Double(hd).squareRoot()
    var out = [Float](repeating: 0, count: b * lq * d)
    for bi in 0..<b { for h in 0..<heads { for i in 0..<lq {
        var logits = [Double](repeating: 0, count: lk)
        for j in 0..<lk {
            var s = 0.0
            for c in 0..<hd {
                s += Double(q[(bi * lq + i) * qStride + qOff + h * hd + c]) * Double(k[(bi * lk + j) * kStride + kOff + h * hd + c])
            }
            logits[j] = s * scale
            if let mask {
                logits[j] += Double(mask.count == lq * lk ? mask[i * lk + j] : mask[(bi * lq + i) * lk + j])
            }
        }
        let m = logits.max()!
        let e = logits.map { $0 == -.infinity ? 0 : Foundation.exp($0 - m) }
        let z = e.reduce(0, +)
        for c in 0..<hd {
            var acc = 0.0
            for j in 0..<lk { acc += e[j] / z * Double(v[(bi * lk + j) * vStride + vOff + h * hd + c]) }
            out[(bi * lq + i) * d + h * hd + c] = Float(acc)
        }
    } } }
    return out
}

/// Gradient and value checks for selfAttention (fused qkv) and attention (separate q, k, v).
final class AttentionGradTests: XCTestCase {
    let (b, l, d, heads) = (2, 5, 8, 2)

    func testSaimMaskShape() {
        for strict in [false, true] {
            let m = saimMask(batch: 2, patches: 4, strict: strict, seed: 3)
            for s in 0..<2 {
                XCTAssertEqual((0..<5).map { m[s * 25 + $0] }, [0, -.infinity, -.infinity, -.infinity, -.infinity], "cls sees only itself")
                for i in 0..<5 { XCTAssertEqual(m[(s * 5 + i) * 5], 0, "every token sees cls") }
                // Patches see 1…4 patches (content: themselves included) or 0…3 (query: strictly earlier).
                let seen = (1..<5).map { i in (1..<5).filter { m[(s * 5 + i) * 5 + $0] == 0 }.count }.sorted()
                XCTAssertEqual(seen, strict ? [0, 1, 2, 3] : [1, 2, 3, 4])
            }
        }
    }

    func testSelfAttentionNoMask() {
        let qkv = randn([b, l, 3 * d], seed: 1)
        gradCheck(inputs: [qkv]) { v in selfAttention(qkv: v[0], heads: heads) }
        let y = selfAttention(qkv: qkv.detach(), heads: heads)
        let ref = referenceAttention(q: qkv, qStride: 3 * d, qOff: 0, k: qkv, kStride: 3 * d, kOff: d, v: qkv, vStride: 3 * d,
                                     vOff: 2 * d, b: b, lq: l, lk: l, d: d, heads: heads, mask: nil)
        assertClose(y.array, ref, tol: 1e-6, "selfAttention values")
    }

    func testSelfAttentionPerSampleMask() {
        let qkv = randn([b, l, 3 * d], seed: 2)
        let mask = saimMask(batch: b, patches: l - 1, strict: false, seed: 4)
        gradCheck(inputs: [qkv], label: "[B,L,L] content mask") { v in selfAttention(qkv: v[0], heads: heads, mask: mask) }
        let mask4 = mask.reshaped([b, 1, l, l])
        gradCheck(inputs: [qkv], label: "[B,1,L,L]") { v in selfAttention(qkv: v[0], heads: heads, mask: mask4) }
        let y = selfAttention(qkv: qkv.detach(), heads: heads, mask: mask)
        let ref = referenceAttention(q: qkv, qStride: 3 * d, qOff: 0, k: qkv, kStride: 3 * d, kOff: d, v: qkv, vStride: 3 * d,
                                     vOff: 2 * d, b: b, lq: l, lk: l, d: d, heads: heads, mask: mask)
        assertClose(y.array, ref, tol: 1e-6, "masked selfAttention values")
        XCTAssertFalse(y.array.contains { !$0.isFinite })
        // cls attends only to itself: its output is its own v.
        for s in 0..<b { for c in 0..<d { XCTAssertEqual(y[s * l * d + c], qkv[s * l * 3 * d + 2 * d + c], accuracy: 1e-6) } }
    }

    func testSelfAttentionSharedMask() {
        let qkv = randn([b, l, 3 * d], seed: 5)
        let mask = Tensor.zeros([l, l])
        for i in 0..<l { for j in 0..<l where j > i { mask[i * l + j] = -.infinity } }
        mask[1] = 0  // causal, plus one extra visible entry
        mask[2 * l + 4] = -0.7  // and a finite bias
        gradCheck(inputs: [qkv], label: "[L,L] mask") { v in selfAttention(qkv: v[0], heads: heads, mask: mask) }
        let y = selfAttention(qkv: qkv.detach(), heads: heads, mask: mask)
        let ref = referenceAttention(q: qkv, qStride: 3 * d, qOff: 0, k: qkv, kStride: 3 * d, kOff: d, v: qkv, vStride: 3 * d,
                                     vOff: 2 * d, b: b, lq: l, lk: l, d: d, heads: heads, mask: mask)
        assertClose(y.array, ref, tol: 1e-6, "shared-mask values")
        // Batch of one with a [1, L, L] mask.
        let one = randn([1, l, 3 * d], seed: 6)
        gradCheck(inputs: [one], label: "B=1 [1,L,L]") { v in selfAttention(qkv: v[0], heads: heads, mask: mask.reshaped([1, l, l])) }
    }

    func testCrossAttention() {
        let lq = 3, lk = 6
        let q = randn([b, lq, d], seed: 7), k = randn([b, lk, d], seed: 8), v = randn([b, lk, d], seed: 9)
        gradCheck(inputs: [q, k, v], label: "Lq≠Lk") { t in attention(q: t[0], k: t[1], v: t[2], heads: heads) }
        let mask = Tensor.zeros([b, lq, lk])
        for s in 0..<b { for i in 0..<lq { for j in 0..<lk where (i + j + s) % 3 == 1 { mask[(s * lq + i) * lk + j] = -.infinity } } }
        gradCheck(inputs: [q, k, v], label: "Lq≠Lk masked") { t in attention(q: t[0], k: t[1], v: t[2], heads: heads, mask: mask) }
        // Keys and values from one tensor (SAIM's query stream reading the content stream).
        gradCheck(inputs: [q, k], label: "k = v") { t in attention(q: t[0], k: t[1], v: t[1], heads: heads, mask: mask) }
        let y = attention(q: q.detach(), k: k.detach(), v: v.detach(), heads: heads, mask: mask)
        let ref = referenceAttention(q: q, qStride: d, qOff: 0, k: k, kStride: d, kOff: 0, v: v, vStride: d, vOff: 0,
                                     b: b, lq: lq, lk: lk, d: d, heads: heads, mask: mask)
        assertClose(y.array, ref, tol: 1e-6, "cross-attention values")
    }

    /// Head widths that are a multiple of 16 take the register-tiled products (SmallGemm), with the
    /// logits rows padded to 16 columns (8 on AVX2 hosts): rows and tokens not a multiple of 4 or 16, both mask kinds,
    /// cross-attention with k = v, kept probabilities, and past 128 tokens, where P·V and the
    /// gradient products go back to the library while Q·Kᵀ stays tiled.
    func testTiledHeadWidths() {
        let (b, l, d, heads) = (2, 19, 32, 2)
        let qkv = randn([b, l, 3 * d], seed: 21)
        let mask = saimMask(batch: b, patches: l - 1, strict: false, seed: 22)
        gradCheck(inputs: [qkv], samples: 400, label: "hd 16, 19 tokens") { v in selfAttention(qkv: v[0], heads: heads) }
        gradCheck(inputs: [qkv], samples: 400, label: "hd 16, [B,L,L] mask") { v in selfAttention(qkv: v[0], heads: heads, mask: mask) }
        for m in [nil, mask] {
            let y = selfAttention(qkv: qkv.detach(), heads: heads, mask: m)
            let ref = referenceAttention(q: qkv, qStride: 3 * d, qOff: 0, k: qkv, kStride: 3 * d, kOff: d, v: qkv, vStride: 3 * d,
                                         vOff: 2 * d, b: b, lq: l, lk: l, d: d, heads: heads, mask: m)
            assertClose(y.array, ref, tol: 1e-5, "tiled selfAttention values")
            let (y2, p) = selfAttentionWithProbabilities(qkv: qkv.detach(), heads: heads, mask: m)
            assertClose(y2.array, y.array, tol: 1e-6, "with probabilities")
            XCTAssertEqual(p.shape, [b, heads, l, l])
            for row in 0..<(b * heads * l) {
                XCTAssertEqual((0..<l).reduce(Float(0)) { $0 + p[row * l + $1] }, 1, accuracy: 1e-5)
            }
        }
        gradCheck(inputs: [qkv], samples: 300, label: "hd 16, kept probabilities") { v in
            selfAttentionWithProbabilities(qkv: v[0], heads: heads, mask: mask).output
        }
        // Cross-attention, head width 32, keys and values from one tensor, a shared [Lq, Lk] mask.
        let (lq, lk, dc) = (6, 21, 64)
        let q = randn([b, lq, dc], seed: 23), kv = randn([b, lk, dc], seed: 24)
        let shared = Tensor.zeros([lq, lk])
        for i in 0..<lq { for j in 0..<lk where (i * 7 + j) % 5 == 2 { shared[i * lk + j] = -.infinity } }
        gradCheck(inputs: [q, kv], samples: 400, label: "hd 32, k = v") { t in attention(q: t[0], k: t[1], v: t[1], heads: 2, mask: shared) }
        let yc = attention(q: q.detach(), k: kv.detach(), v: kv.detach(), heads: 2, mask: shared)
        let refc = referenceAttention(q: q, qStride: dc, qOff: 0, k: kv, kStride: dc, kOff: 0, v: kv, vStride: dc, vOff: 0,
                                      b: b, lq: lq, lk: lk, d: dc, heads: 2, mask: shared)
        assertClose(yc.array, refc, tol: 1e-5, "tiled cross-attention values")
        // 130 tokens: P·V and the gradient products through the library.
        let long = randn([1, 130, 48], seed: 25)
        gradCheck(inputs: [long], samples: 300, label: "hd 16, 130 tokens") { v in selfAttention(qkv: v[0], heads: 1) }
        let yl = selfAttention(qkv: long.detach(), heads: 1)
        let refl = referenceAttention(q: long, qStride: 48, qOff: 0, k: long, kStride: 48, kOff: 16, v: long, vStride: 48,
                                      vOff: 32, b: 1, lq: 130, lk: 130, d: 16, heads: 1, mask: nil)
        assertClose(yl.array, refl, tol: 1e-5, "130-token values")
    }

    /// Backward recomputes the probabilities (from the kept row maxima and normalisers) when they
    /// would take more memory than q, k and v: heads · Lk > 3 · width, here 2 · 13 > 24, on the
    /// library's products (head width 4); the tiled products' recompute is the 130-token case above.
    func testRecomputedProbabilities() {
        let qkv = randn([2, 13, 24], seed: 26)
        let mask = saimMask(batch: 2, patches: 12, strict: true, seed: 27)
        gradCheck(inputs: [qkv], label: "recomputed") { v in selfAttention(qkv: v[0], heads: 2) }
        gradCheck(inputs: [qkv], label: "recomputed, query mask") { v in selfAttention(qkv: v[0], heads: 2, mask: mask) }
    }

    func testAttentionSameTensor() {
        let x = randn([b, l, d], seed: 10)
        gradCheck(inputs: [x], label: "q = k = v") { t in attention(q: t[0], k: t[0], v: t[0], heads: heads) }
        let mask = saimMask(batch: b, patches: l - 1, strict: true, seed: 11)
        gradCheck(inputs: [x], label: "q = k = v, query mask") { t in attention(q: t[0], k: t[0], v: t[0], heads: 4, mask: mask) }
        // The fused path and the separate path agree.
        let w = randn([3 * d, d], seed: 12)
        let qkv = linear(x, w)
        let parts = split(qkv, axis: 2, sizes: [d, d, d])
        let fused = selfAttention(qkv: qkv, heads: heads, mask: mask)
        let separate = attention(q: parts[0], k: parts[1], v: parts[2], heads: heads, mask: mask)
        assertClose(fused.array, separate.array, tol: 1e-6, "fused vs separate")
    }

    /// Without kept probabilities, backward rebuilds them from Q, K and each row's softmax stats.
    /// The gradients must equal, bit for bit, those of the path that keeps them, with masks
    /// (a fully masked row among them) and without, for the fused and the separate layouts.
    func testRecomputedProbabilitiesGiveTheKeptPathsGradients() {
        let lq = 5, lk = 7
        let mask = Tensor.zeros([b, lq, lk])
        for s in 0..<b { for i in 0..<lq { for j in 0..<lk where (i * 3 + j + s) % 4 == 0 { mask[(s * lq + i) * lk + j] = -.infinity } } }
        for j in 0..<lk { mask[(1 * lq + 2) * lk + j] = -.infinity }  // sample 1, row 2: nothing visible
        mask[3] = -0.4
        for m in [nil, mask] {
            func grads(keep: Bool) -> ([Float], [[Float]]) {
                let q = randn([b, lq, d], seed: 21).requiringGrad(), k = randn([b, lk, d], seed: 22).requiringGrad()
                let v = randn([b, lk, d], seed: 23).requiringGrad()
                let y = keep ? attentionWithProbabilities(q: q, k: k, v: v, heads: heads, mask: m).output
                             : attention(q: q, k: k, v: v, heads: heads, mask: m)
                sum(y * randn([b, lq, d], seed: 24)).backward()
                return (y.array, [q, k, v].map { $0.grad!.array })
            }
            let kept = grads(keep: true), recomputed = grads(keep: false)
            XCTAssertEqual(kept.0, recomputed.0, "outputs, mask \(m == nil ? "none" : "[B, Lq, Lk]")")
            XCTAssertEqual(kept.1, recomputed.1, "q, k, v gradients, mask \(m == nil ? "none" : "[B, Lq, Lk]")")
            XCTAssertFalse(recomputed.1.joined().contains { !$0.isFinite })
        }
        let selfMask = saimMask(batch: b, patches: l - 1, strict: true, seed: 25)  // cls row sees nothing
        func selfGrads(keep: Bool) -> [Float] {
            let qkv = randn([b, l, 3 * d], seed: 26).requiringGrad()
            let y = keep ? selfAttentionWithProbabilities(qkv: qkv, heads: heads, mask: selfMask).output
                         : selfAttention(qkv: qkv, heads: heads, mask: selfMask)
            sum(y * randn([b, l, d], seed: 27)).backward()
            return qkv.grad!.array
        }
        XCTAssertEqual(selfGrads(keep: true), selfGrads(keep: false), "fused qkv gradients")
        gradCheck(inputs: [randn([b, l, 3 * d], seed: 28)], label: "recomputed, query mask") { t in
            selfAttention(qkv: t[0], heads: heads, mask: selfMask)
        }
    }
}
