import XCTest
import TesseraCore

/// The per-shape choice between OpenBLAS and oneDNN, and that both give the same products.
final class GemmBackendTests: XCTestCase {
    /// The linear products of one replica of a model's step: forward (NT), input gradient (NN) and
    /// weight gradient (TN), as (transA, transB, m, n, k).
    private func linearShapes(rows: Int, width: Int) -> [(Bool, Bool, Int, Int, Int)] {
        var out: [(Bool, Bool, Int, Int, Int)] = []
        for (o, i) in [(3 * width, width), (width, width), (4 * width, width), (width, 4 * width)] {
            out += [(false, true, rows, o, i), (false, false, rows, i, o), (true, false, o, i, rows)]
        }
        return out
    }

    private func attentionShapes(l: Int, hd: Int) -> [(Bool, Bool, Int, Int, Int)] {
        [(false, true, l, l, hd), (false, false, l, hd, l), (true, false, l, hd, l)]
    }

    func testAutoRuleOnBothKindsOfHost() {
        let linears = linearShapes(rows: 64 * 65, width: 192) + linearShapes(rows: 64 * 17, width: 192)
            + linearShapes(rows: 16 * 197, width: 384) + linearShapes(rows: 16 * 50, width: 384)
            + linearShapes(rows: 8 * 50, width: 768) + linearShapes(rows: 8 * 197, width: 512)
        // AVX-512: every linear product to oneDNN, every attention product up to 65 tokens to
        // OpenBLAS, and at 197 tokens only Q·Kᵀ.
        for s in linears {
            XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: true, s.0, s.1, s.2, s.3, s.4), "AVX-512, linear \(s)")
        }
        for (l, hd) in [(17, 64), (50, 64), (65, 64), (65, 32)] {
            for s in attentionShapes(l: l, hd: hd) {
                XCTAssertFalse(BLAS.autoPrefersDNNL(avx512: true, s.0, s.1, s.2, s.3, s.4), "AVX-512, attention \(s)")
            }
        }
        for hd in [64, 32] {
            let s = attentionShapes(l: 197, hd: hd)
            XCTAssertFalse(BLAS.autoPrefersDNNL(avx512: true, s[0].0, s[0].1, s[0].2, s[0].3, s[0].4))
            XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: true, s[1].0, s[1].1, s[1].2, s[1].3, s[1].4))
            XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: true, s[2].0, s[2].1, s[2].2, s[2].3, s[2].4))
        }
        // AVX2: oneDNN except the large weight gradients, which OpenBLAS keeps.
        for (l, hd) in [(17, 64), (65, 64), (197, 64)] {
            for s in attentionShapes(l: l, hd: hd) {
                XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: false, s.0, s.1, s.2, s.3, s.4), "AVX2, attention \(s)")
            }
        }
        XCTAssertFalse(BLAS.autoPrefersDNNL(avx512: false, true, false, 768, 192, 4160))
        XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: false, false, true, 4160, 768, 192))
        XCTAssertTrue(BLAS.autoPrefersDNNL(avx512: false, true, false, 192, 192, 4160))
    }

    /// SmallGemm against a plain triple loop, with both kinds of tile (16-float vectors for AVX-512
    /// hosts, 8-float ones for AVX2 hosts): both storages of A, row counts off the 4-, 6- and 8-row
    /// tiles, 1 to 5 column vectors (and odd multiples of 8 columns for the narrow tiles), α,
    /// accumulation onto C, strided operands; and the padded transpose.
    func testSmallGemmMatchesAPlainProduct() {
        var rng = RandomGenerator(seed: 9)
        for (ta, m, n, k) in [(false, 17, 32, 64), (true, 17, 64, 17), (false, 65, 80, 32), (true, 6, 48, 21),
                              (false, 3, 16, 5), (true, 4, 16, 1), (false, 9, 64, 130),
                              (false, 13, 24, 64), (true, 11, 8, 19), (false, 65, 72, 32)] {
          for wide in n % 16 == 0 ? [true, false] : [false] {
            let lda = (ta ? m : k) + 3, ldb = n + 16, ldc = n + 32
            let a = Tensor.randn([(ta ? k : m) * lda], rng: &rng), b = Tensor.randn([k * ldb], rng: &rng)
            let c0 = Tensor.randn([m * ldc], rng: &rng)
            for accumulate in [false, true] {
                let c = Tensor(shape: [m * ldc])
                c.data.update(from: c0.data, count: m * ldc)
                SmallGemm.multiply(transA: ta, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
                                   accumulate: accumulate, c: c.data, ldc: ldc, wide: wide)
                for i in 0..<m {
                    for j in 0..<ldc {
                        var want = Double(c0.data[i * ldc + j])
                        if j < n {
                            var s: Double = 0
                            for p in 0..<k { s += Double(ta ? a.data[p * lda + i] : a.data[i * lda + p]) * Double(b.data[p * ldb + j]) }
                            want = 0.5 * s + (accumulate ? want : 0)
                        }
                        XCTAssertEqual(Double(c.data[i * ldc + j]), want, accuracy: 1e-4 * Double(k).squareRoot() + 1e-5,
                                       "\(wide ? "wide" : "narrow") \(ta ? "T" : "N") \(m)×\(n)×\(k) accumulate \(accumulate) at (\(i), \(j))")
                    }
                }
            }
          }
        }
        let np = SmallGemm.padded(19)
        XCTAssertEqual(np, SmallGemm.wideVectors ? 32 : 24)
        let src = Tensor.randn([19 * 40], rng: &rng), t = Tensor.randn([16 * 32], rng: &rng)
        SmallGemm.transposePadded(src.data + 3, ld: 40, rows: 19, width: 16, into: t.data)
        for c in 0..<16 { for r in 0..<np { XCTAssertEqual(t.data[c * np + r], r < 19 ? src.data[r * 40 + 3 + c] : 0) } }
    }

    /// Both libraries, on strided operands as attention passes them (a head's columns of a [L, 3D]
    /// tensor) and with beta = 1, match a plain triple loop.
    func testBothBackendsMatchAPlainProduct() {
        let saved = BLAS.backend
        defer { BLAS.backend = saved }
        var rng = RandomGenerator(seed: 7)
        for (ta, tb, m, n, k) in attentionShapes(l: 17, hd: 64) + attentionShapes(l: 65, hd: 32) + [(true, false, 96, 48, 1100)] {
            let lda = (ta ? m : k) + 5, ldb = (tb ? k : n) + 3, ldc = n + 2
            let a = Tensor.randn([(ta ? k : m) * lda], rng: &rng), b = Tensor.randn([(tb ? n : k) * ldb], rng: &rng)
            let c0 = Tensor.randn([m * ldc], rng: &rng)
            var want = [Float](repeating: 0, count: m * ldc)
            for i in 0..<m {
                for j in 0..<ldc {
                    guard j < n else { want[i * ldc + j] = c0.data[i * ldc + j]; continue }
                    var s: Double = 0
                    for p in 0..<k {
                        let x = ta ? a.data[p * lda + i] : a.data[i * lda + p]
                        let y = tb ? b.data[j * ldb + p] : b.data[p * ldb + j]
                        s += Double(x) * Double(y)
                    }
                    want[i * ldc + j] = Float(0.5 * s + Double(c0.data[i * ldc + j]))
                }
            }
            for backend in [BLAS.Backend.openblas, .onednn] {
                BLAS.backend = backend
                let c = Tensor(shape: [m * ldc])
                c.data.update(from: c0.data, count: m * ldc)
                BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
                          beta: 1, c: c.data, ldc: ldc, parallel: false)
                for i in 0..<(m * ldc) {
                    XCTAssertEqual(c.data[i], want[i], accuracy: 1e-4 * Float(k).squareRoot() + 1e-5,
                                   "\(backend) \(ta ? "T" : "N")\(tb ? "T" : "N") \(m)×\(n)×\(k) at \(i)")
                    if abs(c.data[i] - want[i]) > 1e-3 * Float(k).squareRoot() { return }
                }
            }
        }
    }

    /// The orientation rule picks the tall weight gradients only, and the product run the other way
    /// round matches a plain triple loop: sizes off the 8 × 8 transpose tiles, strided operands, α,
    /// and beta 0 (C is not read: it starts as NaN) or 1.
    func testTallWeightGradientsRunTheOtherWayRound() {
        // MAE's decoder qkv and fc1 weight gradients (tiny32, ViT-S/16), ViT-B/16's decoder fc1, and
        // tiny32's encoder qkv (K = 1088, just over the bound).
        for (m, n, k) in [(384, 128, 4160), (512, 128, 4160), (576, 192, 3152), (768, 192, 3152), (2048, 512, 1576), (576, 192, 1088)] {
            XCTAssertTrue(BLAS.autoRunsTransposed(intelAVX512: true, true, false, m, n, k), "\(m)×\(n)×\(k)")
            XCTAssertFalse(BLAS.autoRunsTransposed(intelAVX512: false, true, false, m, n, k), "not Intel AVX-512 \(m)×\(n)×\(k)")
            XCTAssertFalse(BLAS.autoRunsTransposed(intelAVX512: true, false, false, m, n, k), "NN \(m)×\(n)×\(k)")
            XCTAssertFalse(BLAS.autoRunsTransposed(intelAVX512: true, false, true, m, n, k), "NT \(m)×\(n)×\(k)")
        }
        // Level or slower there: qkv at width 384–512, fc2 (wide), K under 1024 (MAE's encoders).
        for (m, n, k) in [(1536, 512, 1576), (1152, 384, 3152), (192, 768, 4160), (1536, 384, 800), (576, 192, 1000)] {
            XCTAssertFalse(BLAS.autoRunsTransposed(intelAVX512: true, true, false, m, n, k), "\(m)×\(n)×\(k)")
        }
        var rng = RandomGenerator(seed: 11)
        for (m, n, k) in [(130, 60, 1030), (264, 64, 1100), (17, 5, 9)] {
            let lda = m + 3, ldb = n + 5, ldc = n + 7
            let a = Tensor.randn([k * lda], rng: &rng), b = Tensor.randn([k * ldb], rng: &rng)
            let c0 = Tensor.randn([m * ldc], rng: &rng)
            for beta: Float in [0, 1] {
                let c = Tensor(shape: [m * ldc])
                for i in 0..<(m * ldc) { c.data[i] = beta == 0 && i % ldc < n ? .nan : c0.data[i] }
                XCTAssertTrue(BLAS.transposedDNNL(m, n, k, 0.5, a.data, lda, b.data, ldb, beta, c.data, ldc))
                var worst: Float = 0
                for i in 0..<m {
                    for j in 0..<ldc {
                        var want = Double(c0.data[i * ldc + j])
                        if j < n {
                            var s: Double = 0
                            for p in 0..<k { s += Double(a.data[p * lda + i]) * Double(b.data[p * ldb + j]) }
                            want = 0.5 * s + Double(beta) * want
                        }
                        let got = c.data[i * ldc + j]
                        worst = max(worst, got.isNaN ? .infinity : abs(got - Float(want)))
                    }
                }
                XCTAssertLessThan(worst, 1e-4 * Float(k).squareRoot() + 1e-5, "\(m)×\(n)×\(k) beta \(beta)")
            }
        }
    }
}
