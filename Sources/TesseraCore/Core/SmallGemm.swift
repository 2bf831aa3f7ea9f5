import Foundation

/// Register-tiled products for attention's per-head shapes (17–65 tokens, head width 32 or 64),
/// where a library call spends much of its time on set-up and packing: each product here reads its
/// operands in place, keeps a tile of C in registers, and streams op(A) and B through it once. On
/// AVX-512 hosts a tile is 4 rows × 64 columns (8 × 32 for narrow blocks) in sixteen 16-float
/// accumulators; on AVX2 hosts, with half the registers, 6 rows × 16 columns in twelve 8-float ones.
///
/// Every product attention needs has this form once the second operand of Q·Kᵀ and dO·Vᵀ is stored
/// transposed (`transposePadded`): C[m, n] = α · op(A) · B (+ C), with n a multiple of 16 (8). (Dot
/// products of Q's and K's rows in place, folded across lanes, measured at a half to a quarter of
/// this rate.)
public enum SmallGemm {
    public typealias Vector = SIMD16<Float>

    /// Whether the attention products of this head width can run here (the column count of P·V and
    /// of the gradients is the head width; Q·Kᵀ's is padded). Shape only: `attention` says whether
    /// they do.
    @inline(__always)
    public static func fits(headWidth hd: Int) -> Bool { hd % 16 == 0 && hd <= 128 }

    /// Whether attention uses these tiles at all; `TESSERA_SMALLGEMM=off` sends every per-head
    /// product to the library (for measurements, as `TESSERA_GEMM` forces a library). A `var` on
    /// purpose, like `BLAS.backend`: tests and benchmarks set it to compare both paths in one process.
    nonisolated(unsafe) public static var attention =
        ProcessInfo.processInfo.environment["TESSERA_SMALLGEMM"] != "off"

    /// `n` rounded up to the column multiple `multiply` takes here: 16, or 8 on hosts without
    /// AVX-512 (`wideVectors`), whose tiles are 8 floats wide.
    @inline(__always)
    public static func padded(_ n: Int) -> Int { wideVectors ? (n + 15) & ~15 : (n + 7) & ~7 }

    /// dst[hd, padded(rows)] = srcᵀ, with src `rows` rows of `hd` floats at stride `ld`; the padding
    /// columns are zero, so products against them give exact zeros.
    public static func transposePadded(_ src: UnsafePointer<Float>, ld: Int, rows: Int, width hd: Int,
                                       into dst: UnsafeMutablePointer<Float>) {
        let np = padded(rows)
        for c in 0..<hd {
            let out = dst + c * np
            for r in 0..<rows { out[r] = src[r * ld + c] }
            for r in rows..<np { out[r] = 0 }
        }
    }

    /// C[m, n] = α · op(A) · B + (accumulate ? C : 0). op(A) is [m, k]: A itself (rows at stride lda)
    /// or, with transA, the transpose of A stored [k, m] (rows at stride lda). B is [k, n] (rows at
    /// stride ldb), C [m, n] (rows at stride ldc); n must be a multiple of 16 (of 8 without AVX-512:
    /// `padded`), and C's rows are written in whole vectors. `wide` picks the tiles (tests run both
    /// kinds on any host; each is right on either, only slower off its own).
    public static func multiply(transA: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int, wide: Bool = wideVectors) {
        let multiple = wide ? 16 : 8
        precondition(n % multiple == 0, "tessera: SmallGemm needs a multiple of \(multiple) columns, got \(n)")
        if !wide {
            multiplyNarrow(transA: transA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                           accumulate: accumulate, c: c, ldc: ldc)
            return
        }
        var j = 0
        while j < n {
            let nv = min(4, (n - j) / 16)
            var i = 0
            // Narrow column blocks (head width 32) take 8 rows at a time, so that a tile still has
            // 16 accumulators for each load of B.
            if nv <= 2 {
                while i + 8 <= m {
                    let ai = transA ? a + i : a + i * lda
                    if nv == 2 { tile8(2, transA, k, alpha, ai, lda, b + j, ldb, accumulate, c + i * ldc + j, ldc) }
                    else { tile8(1, transA, k, alpha, ai, lda, b + j, ldb, accumulate, c + i * ldc + j, ldc) }
                    i += 8
                }
            }
            while i < m {
                let mr = min(4, m - i)
                let ai = transA ? a + i : a + i * lda
                let bj = b + j, cij = c + i * ldc + j
                switch (mr, nv) {
                case (4, 4): tile(4, 4, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (4, 2): tile(4, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (4, 3): tile(4, 3, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (4, _): tile(4, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (_, 4): tile(1, 4, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (_, 3): tile(1, 3, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (_, 2): tile(1, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                default: tile(1, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                }
                i += mr == 4 ? 4 : 1
            }
            j += 16 * nv
        }
    }

    /// Whether the tiles of 16-float vectors run here: they need AVX-512's 32 vector registers. With
    /// AVX2's 16 (Zen 3) their 16 accumulators spill, and they ran at 0.4–0.5× the library, so those
    /// hosts take `multiplyNarrow`'s 8-float tiles.
    public static let wideVectors = BLAS.avx512

    /// `multiply` for hosts with 16 vector registers of 8 floats: tiles of 6 rows × 16 columns, twelve
    /// accumulators with two registers for B's row and one for A's broadcast element (a last block of
    /// 8 columns takes tiles of 6 × 8).
    static func multiplyNarrow(transA: Bool, m: Int, n: Int, k: Int, alpha: Float,
                               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                               accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        var j = 0
        while j < n {
            let nv = min(2, (n - j) / 8)
            var i = 0
            while i < m {
                let mr = min(6, m - i)
                let ai = transA ? a + i : a + i * lda
                let bj = b + j, cij = c + i * ldc + j
                switch (mr, nv) {
                case (6, 2): tile6(6, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (5, 2): tile6(5, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (4, 2): tile6(4, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (3, 2): tile6(3, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (2, 2): tile6(2, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (_, 2): tile6(1, 2, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (6, _): tile6(6, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (5, _): tile6(5, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (4, _): tile6(4, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (3, _): tile6(3, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                case (2, _): tile6(2, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                default: tile6(1, 1, transA, k, alpha, ai, lda, bj, ldb, accumulate, cij, ldc)
                }
                i += mr
            }
            j += 8 * nv
        }
    }

    /// Writes α · v (+ the vector already there) to C at `p`: a tile's results.
    @inline(__always)
    static func storeVector<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>, _ alpha: Float, _ accumulate: Bool)
        where V.Scalar == Float {
        let raw = UnsafeMutableRawPointer(p)
        var out = v * alpha
        if accumulate { out += raw.loadUnaligned(as: V.self) }
        raw.storeBytes(of: out, as: V.self)
    }

    /// `mr` (1–6) rows × `nv` (1 or 2) vectors of 8 floats; called with literal sizes.
    @inline(__always)
    static func tile6(_ mr: Int, _ nv: Int, _ transA: Bool, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        typealias V = SIMD8<Float>
        var c00 = V(), c10 = V(), c20 = V(), c30 = V(), c40 = V(), c50 = V()
        var c01 = V(), c11 = V(), c21 = V(), c31 = V(), c41 = V(), c51 = V()
        let rowStep = transA ? 1 : lda, colStep = transA ? lda : 1
        for p in 0..<k {
            let bp = UnsafeRawPointer(b + p * ldb)
            let b0 = bp.loadUnaligned(as: V.self)
            let b1 = nv > 1 ? bp.loadUnaligned(fromByteOffset: 32, as: V.self) : V()
            let ap = a + p * colStep
            // Row r of the tile: its two accumulators take A(r, p) times B's row.
            @inline(__always) func update(_ r: Int, _ x0: inout V, _ x1: inout V) {
                guard mr > r else { return }
                let ar = V(repeating: ap[r * rowStep])
                x0 = x0.addingProduct(ar, b0)
                if nv > 1 { x1 = x1.addingProduct(ar, b1) }
            }
            update(0, &c00, &c01); update(1, &c10, &c11); update(2, &c20, &c21)
            update(3, &c30, &c31); update(4, &c40, &c41); update(5, &c50, &c51)
        }
        @inline(__always) func store(_ v: V, _ r: Int, _ q: Int) { storeVector(v, c + r * ldc + 8 * q, alpha, accumulate) }
        @inline(__always) func storeRow(_ r: Int, _ v0: V, _ v1: V) {
            if mr > r { store(v0, r, 0); if nv > 1 { store(v1, r, 1) } }
        }
        storeRow(0, c00, c01); storeRow(1, c10, c11); storeRow(2, c20, c21)
        storeRow(3, c30, c31); storeRow(4, c40, c41); storeRow(5, c50, c51)
    }

    /// One tile of `mr` (1 or 4) rows × `nv` (1–4) vectors; called with literal sizes, so each call
    /// site compiles to its own straight-line loop.
    @inline(__always)
    static func tile(_ mr: Int, _ nv: Int, _ transA: Bool, _ k: Int, _ alpha: Float,
                     _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                     _ accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        var c00 = Vector(), c01 = Vector(), c02 = Vector(), c03 = Vector()
        var c10 = Vector(), c11 = Vector(), c12 = Vector(), c13 = Vector()
        var c20 = Vector(), c21 = Vector(), c22 = Vector(), c23 = Vector()
        var c30 = Vector(), c31 = Vector(), c32 = Vector(), c33 = Vector()
        // A(r, p): row r's p-th element, or (transposed storage) column r of row p.
        let rowStep = transA ? 1 : lda, colStep = transA ? lda : 1
        for p in 0..<k {
            let bp = UnsafeRawPointer(b + p * ldb)
            let b0 = bp.loadUnaligned(as: Vector.self)
            let b1 = nv > 1 ? bp.loadUnaligned(fromByteOffset: 64, as: Vector.self) : Vector()
            let b2 = nv > 2 ? bp.loadUnaligned(fromByteOffset: 128, as: Vector.self) : Vector()
            let b3 = nv > 3 ? bp.loadUnaligned(fromByteOffset: 192, as: Vector.self) : Vector()
            let ap = a + p * colStep
            let a0 = Vector(repeating: ap[0])
            c00 = c00.addingProduct(a0, b0)
            if nv > 1 { c01 = c01.addingProduct(a0, b1) }
            if nv > 2 { c02 = c02.addingProduct(a0, b2) }
            if nv > 3 { c03 = c03.addingProduct(a0, b3) }
            if mr > 1 {
                let a1 = Vector(repeating: ap[rowStep])
                let a2 = Vector(repeating: ap[2 * rowStep])
                let a3 = Vector(repeating: ap[3 * rowStep])
                c10 = c10.addingProduct(a1, b0)
                c20 = c20.addingProduct(a2, b0)
                c30 = c30.addingProduct(a3, b0)
                if nv > 1 {
                    c11 = c11.addingProduct(a1, b1); c21 = c21.addingProduct(a2, b1); c31 = c31.addingProduct(a3, b1)
                }
                if nv > 2 {
                    c12 = c12.addingProduct(a1, b2); c22 = c22.addingProduct(a2, b2); c32 = c32.addingProduct(a3, b2)
                }
                if nv > 3 {
                    c13 = c13.addingProduct(a1, b3); c23 = c23.addingProduct(a2, b3); c33 = c33.addingProduct(a3, b3)
                }
            }
        }
        @inline(__always) func store(_ v: Vector, _ r: Int, _ q: Int) { storeVector(v, c + r * ldc + 16 * q, alpha, accumulate) }
        store(c00, 0, 0)
        if nv > 1 { store(c01, 0, 1) }
        if nv > 2 { store(c02, 0, 2) }
        if nv > 3 { store(c03, 0, 3) }
        if mr > 1 {
            store(c10, 1, 0); store(c20, 2, 0); store(c30, 3, 0)
            if nv > 1 { store(c11, 1, 1); store(c21, 2, 1); store(c31, 3, 1) }
            if nv > 2 { store(c12, 1, 2); store(c22, 2, 2); store(c32, 3, 2) }
            if nv > 3 { store(c13, 1, 3); store(c23, 2, 3); store(c33, 3, 3) }
        }
    }
    /// 8 rows × `nv` (1 or 2) vectors. A kernel of its own: folded into `tile` as rows 4–7 (unused by
    /// the 4-row calls), it slowed the 4 × 4-vector tile from 240 to 142 GFLOP/s (`bench gemm`, 65 × 64 × 65).
    @inline(__always)
    static func tile8(_ nv: Int, _ transA: Bool, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        var c00 = Vector(), c10 = Vector(), c20 = Vector(), c30 = Vector()
        var c40 = Vector(), c50 = Vector(), c60 = Vector(), c70 = Vector()
        var c01 = Vector(), c11 = Vector(), c21 = Vector(), c31 = Vector()
        var c41 = Vector(), c51 = Vector(), c61 = Vector(), c71 = Vector()
        let rowStep = transA ? 1 : lda, colStep = transA ? lda : 1
        for p in 0..<k {
            let bp = UnsafeRawPointer(b + p * ldb)
            let b0 = bp.loadUnaligned(as: Vector.self)
            let b1 = nv > 1 ? bp.loadUnaligned(fromByteOffset: 64, as: Vector.self) : Vector()
            let ap = a + p * colStep
            let a0 = Vector(repeating: ap[0]), a1 = Vector(repeating: ap[rowStep])
            let a2 = Vector(repeating: ap[2 * rowStep]), a3 = Vector(repeating: ap[3 * rowStep])
            let a4 = Vector(repeating: ap[4 * rowStep]), a5 = Vector(repeating: ap[5 * rowStep])
            let a6 = Vector(repeating: ap[6 * rowStep]), a7 = Vector(repeating: ap[7 * rowStep])
            c00 = c00.addingProduct(a0, b0); c10 = c10.addingProduct(a1, b0)
            c20 = c20.addingProduct(a2, b0); c30 = c30.addingProduct(a3, b0)
            c40 = c40.addingProduct(a4, b0); c50 = c50.addingProduct(a5, b0)
            c60 = c60.addingProduct(a6, b0); c70 = c70.addingProduct(a7, b0)
            if nv > 1 {
                c01 = c01.addingProduct(a0, b1); c11 = c11.addingProduct(a1, b1)
                c21 = c21.addingProduct(a2, b1); c31 = c31.addingProduct(a3, b1)
                c41 = c41.addingProduct(a4, b1); c51 = c51.addingProduct(a5, b1)
                c61 = c61.addingProduct(a6, b1); c71 = c71.addingProduct(a7, b1)
            }
        }
        @inline(__always) func store(_ v: Vector, _ r: Int, _ q: Int) { storeVector(v, c + r * ldc + 16 * q, alpha, accumulate) }
        store(c00, 0, 0); store(c10, 1, 0); store(c20, 2, 0); store(c30, 3, 0)
        store(c40, 4, 0); store(c50, 5, 0); store(c60, 6, 0); store(c70, 7, 0)
        if nv > 1 {
            store(c01, 0, 1); store(c11, 1, 1); store(c21, 2, 1); store(c31, 3, 1)
            store(c41, 4, 1); store(c51, 5, 1); store(c61, 6, 1); store(c71, 7, 1)
        }
    }
}
