import CBLAS
import CDNNLShim
import Foundation

/// Row-major SGEMM through OpenBLAS or oneDNN (both kept single-threaded); large products are split
/// into row or column blocks over `Parallel`.
public enum BLAS {
    /// Which library runs a product: `auto` picks per shape by a fixed rule (so every run, resumed
    /// or not, makes the same choices); `TESSERA_GEMM=openblas|onednn` forces one (for measurements).
    public enum Backend: String, Sendable { case auto, openblas, onednn }

    nonisolated(unsafe) public static var backend: Backend =
        ProcessInfo.processInfo.environment["TESSERA_GEMM"].flatMap(Backend.init(rawValue:)) ?? .auto

    /// Whether the CPU runs AVX-512F; the `auto` rule differs between the two kinds of host.
    public static let avx512 = tessera_cpu_has_avx512() != 0

    /// Whether the CPU is an Intel one with AVX-512F: the hosts the orientation rule was measured on.
    public static let intelAVX512 = avx512 && tessera_cpu_is_intel() != 0

    /// The `auto` rule, from `bench gemm` on the model's shapes (BENCHMARKS.md), fixed per kind of
    /// host so that every run on it, resumed or not, makes the same choices.
    /// - AVX2 hosts (Zen 3): oneDNN's JIT kernels are ahead on the per-head attention products
    ///   (1.2–1.7×) and on the small-K linear products (up to 1.3×); on the large weight-gradient
    ///   products (Aᵀ·B with K ≥ 1024 rows and an output of 192 × 768 or more) the two are level or
    ///   OpenBLAS is ahead, so OpenBLAS keeps those.
    /// - AVX-512 hosts (Zen 4): oneDNN is ahead on every linear product, the weight gradients
    ///   included (1.1–1.3×), but OpenBLAS's AVX-512 kernels are ahead on the per-head attention
    ///   products up to 65 tokens (3.4–4× at 17 × 17 × 64, MAE's encoder on tiny32; 1.2× at 65 × 65 × 64)
    ///   and on Q·Kᵀ at 197 tokens (1.00–1.08×), while oneDNN keeps P·V and Pᵀ·dO at 197 tokens
    ///   (1.06–1.37×). So A·Bᵀ products under 2²² multiply-adds and the others under 2²⁰ go to
    ///   OpenBLAS: attention products only, as every linear product is above both.
    /// - Zen 5 (AVX-512 at full width) takes the AVX-512 rule: oneDNN is 1.9–2.2× OpenBLAS on every
    ///   linear product there (Debian's OpenBLAS 0.3.21 runs its Haswell kernels on it). Attention
    ///   products with a head width that is a multiple of 16 do not come here on AVX-512 hosts: they
    ///   run in `SmallGemm` (up to 128 tokens; at 197 tokens Q·Kᵀ only). On AVX2 hosts SmallGemm
    ///   takes P·V and the gradient products up to 128 tokens, and Q·Kᵀ and dO·Vᵀ come here.
    @inline(__always)
    public static func prefersDNNL(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int) -> Bool {
        switch backend {
        case .openblas: return false
        case .onednn: return true
        case .auto: return autoPrefersDNNL(avx512: avx512, transA, transB, m, n, k)
        }
    }

    /// The library that runs this product here, as benchmark tables print it.
    public static func libraryName(transA: Bool, transB: Bool, m: Int, n: Int, k: Int) -> String {
        prefersDNNL(transA, transB, m, n, k) ? "oneDNN" : "OpenBLAS"
    }

    /// The `auto` rule for either kind of host (so both can be tested on one).
    @inline(__always)
    public static func autoPrefersDNNL(avx512: Bool, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int) -> Bool {
        if avx512 { return m * n * k >= (transB ? 1 << 22 : 1 << 20) }
        return !(transA && k >= 1024 && m * n >= 192 * 768)
    }

    /// Whether oneDNN may run a tall weight-gradient product the other way round on Intel AVX-512 hosts
    /// (`autoRunsTransposed`); `TESSERA_GEMM_SWAP=off` runs every product as called (for measurements).
    nonisolated(unsafe) public static var swapsTallProducts =
        ProcessInfo.processInfo.environment["TESSERA_GEMM_SWAP"] != "off"

    /// The orientation rule, from single-threaded calls on an Intel AVX-512 host (BENCHMARKS.md; AMD
    /// AVX-512 hosts were not measured, so they keep every product as called):
    /// C = Aᵀ·B with K ≥ 1024 (a weight gradient dW = gᵀ·x over a batch's rows, M the layer's
    /// outputs and N its inputs) runs as Cᵀ = Bᵀ·A into scratch, then C (+)= the transposed scratch,
    /// when C is at least four times as tall as it is wide, or twice as tall and at most 256 wide.
    /// oneDNN runs those shapes 1.15–1.35× faster the other way round with the transpose counted
    /// (MAE's decoder qkv and fc1 weight gradients on tiny32 and ViT-S/16, ViT-B/16's decoder fc1);
    /// qkv at width 384–512 (three times as tall) and anything with K under 1024 were level or slower,
    /// as the transpose then weighs more against the product. The same products are summed, so the
    /// result differs from the direct call by rounding at most. Fixed per shape, like the library rule.
    @inline(__always)
    public static func autoRunsTransposed(intelAVX512: Bool, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int) -> Bool {
        intelAVX512 && transA && !transB && k >= 1024 && (m >= 4 * n || (n <= 256 && m >= 2 * n))
    }

    /// C = alpha · Aᵀ·B + beta · C computed as Cᵀ = alpha · Bᵀ·A in scratch and written back
    /// transposed; false (C untouched) if oneDNN refused the product. Public for tests, which run it
    /// on any host.
    public static func transposedDNNL(_ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                                       _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Bool {
        let t = Storage(count: m * n)
        return withExtendedLifetime(t) {
            guard tessera_dnnl_sgemm(0x54, 0x4E, n, m, k, alpha, b, ldb, a, lda, 0, t.ptr, m) == 0 else { return false }
            tessera_transpose(t.ptr, n, m, m, c, ldc, beta)
            return true
        }
    }

    /// C[M,N] = alpha · op(A) · op(B) + beta · C, all row-major.
    /// op(A) is [M,K]: A is [M,K] (lda ≥ K) or, transposed, [K,M] (lda ≥ M).
    /// op(B) is [K,N]: B is [K,N] (ldb ≥ N) or, transposed, [N,K] (ldb ≥ K).
    public static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
                            parallel: Bool = true) {
        if m == 0 || n == 0 { return }
        let flops = 2 * m * n * k
        let parts = parallel ? min(Parallel.workers, max(1, flops / (1 << 22))) : 1
        if parts <= 1 {
            serial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if m >= n || m >= 64 * parts {
            // Split rows of C (and of op(A)).
            Parallel.run(parts) { p in
                let lo = m * p / parts, hi = m * (p + 1) / parts
                guard lo < hi else { return }
                let aOff = transA ? lo : lo * lda
                serial(transA, transB, hi - lo, n, k, alpha, a + aOff, lda, b, ldb, beta, c + lo * ldc, ldc)
            }
        } else {
            // Split columns of C (and of op(B)).
            Parallel.run(parts) { p in
                let lo = n * p / parts, hi = n * (p + 1) / parts
                guard lo < hi else { return }
                let bOff = transB ? lo * ldb : lo
                serial(transA, transB, m, hi - lo, k, alpha, a, lda, b + bOff, ldb, beta, c + lo, ldc)
            }
        }
    }

    @inline(__always)
    static func serial(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                       _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                       _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if k == 0 {
            // C = beta·C (BLAS may not touch C when k is zero).
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        if prefersDNNL(transA, transB, m, n, k) {
            if swapsTallProducts, autoRunsTransposed(intelAVX512: intelAVX512, transA, transB, m, n, k),
               transposedDNNL(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
                return
            }
            if tessera_dnnl_sgemm(transA ? 0x54 : 0x4E, transB ? 0x54 : 0x4E, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0 {
                return
            }
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
