import Foundation

/// `tessera bench ops`: throughput of linear, attention and a whole ViT block (forward + backward)
/// beside plain SGEMM on the same GEMM shapes, all measured in one run.
public enum OpsBenchmark {
    public struct Shape: Sendable {
        public var batch = 128, tokens = 65, width = 192, heads = 3, mlpRatio = 4
        public init() {}
    }

    /// Seconds per call: the median of `reps` timed calls after two warm-up calls.
    static func time(_ reps: Int, _ body: () -> Void) -> Double {
        body(); body()
        var ts: [Double] = []
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        ts.sort()
        return ts[ts.count / 2]
    }

    /// One GEMM of the model: C[m,n] = op(A)[m,k]·op(B)[k,n], repeated `count` times (e.g. per head).
    struct Gemm { let m, n, k: Int; let ta, tb: Bool; let count: Int }

    /// The GEMMs of a Linear(in → out) over n rows, forward and backward (dX and dW).
    static func linearGemms(rows n: Int, inF: Int, outF: Int) -> [Gemm] {
        [Gemm(m: n, n: outF, k: inF, ta: false, tb: true, count: 1),      // y = x·Wᵀ
         Gemm(m: n, n: inF, k: outF, ta: false, tb: false, count: 1),     // dx = g·W
         Gemm(m: outF, n: inF, k: n, ta: true, tb: false, count: 1)]      // dW = gᵀ·x
    }

    /// The per-(sample, head) GEMMs of attention, forward (2) and backward (4).
    static func attentionGemms(_ s: Shape) -> [Gemm] {
        let l = s.tokens, hd = s.width / s.heads, c = s.batch * s.heads
        return [Gemm(m: l, n: l, k: hd, ta: false, tb: true, count: c), Gemm(m: l, n: hd, k: l, ta: false, tb: false, count: c),
                Gemm(m: l, n: l, k: hd, ta: false, tb: true, count: c), Gemm(m: l, n: hd, k: l, ta: true, tb: false, count: c),
                Gemm(m: l, n: hd, k: l, ta: false, tb: false, count: c), Gemm(m: l, n: hd, k: l, ta: true, tb: false, count: c)]
    }

    static func flops(_ gs: [Gemm]) -> Double { gs.reduce(0) { $0 + 2 * Double($1.m * $1.n * $1.k * $1.count) } }

    /// Runs the GEMMs the way the ops do: large ones split over the pool, per-head ones one per task.
    static func runGemms(_ gs: [Gemm], _ buf: (a: Tensor, b: Tensor, c: Tensor)) {
        for g in gs {
            let lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n
            if g.count == 1 {
                BLAS.gemm(transA: g.ta, transB: g.tb, m: g.m, n: g.n, k: g.k, a: buf.a.data, lda: lda, b: buf.b.data, ldb: ldb,
                          c: buf.c.data, ldc: g.n)
            } else {
                let sa = g.m * g.k, sb = g.k * g.n, sc = g.m * g.n
                Parallel.forRange(g.count, costPerItem: 2 * g.m * g.n * g.k, minCost: 1 << 18) { r in
                    for i in r {
                        BLAS.gemm(transA: g.ta, transB: g.tb, m: g.m, n: g.n, k: g.k, a: buf.a.data + i * sa, lda: lda,
                                  b: buf.b.data + i * sb, ldb: ldb, c: buf.c.data + i * sc, ldc: g.n, parallel: false)
                    }
                }
            }
        }
    }

    static func buffers(_ gs: [Gemm]) -> (a: Tensor, b: Tensor, c: Tensor) {
        var rng = RandomGenerator(seed: 1)
        let na = gs.map { $0.m * $0.k * $0.count }.max()!, nb = gs.map { $0.k * $0.n * $0.count }.max()!
        let nc = gs.map { $0.m * $0.n * $0.count }.max()!
        return (Tensor.randn([na], rng: &rng), Tensor.randn([nb], rng: &rng), Tensor.zeros([nc]))
    }

    /// The host's SGEMM rate on a ViT's linear shapes (tiny32: 64 × 65 rows, width 192, the fused
    /// qkv, projection and both MLP layers, forward and both backward products), in GFLOP/s: one
    /// thread, and `threads` single-threaded GEMMs at once on their own buffers (how the training
    /// replicas use the cores). The ceiling a training row's arithmetic rate is read against.
    public static func sgemmRate(threads: Int = Parallel.threads, reps: Int = 5) -> (one: Double, all: Double) {
        let n = 64 * 65, d = 192
        let gs = linearGemms(rows: n, inF: d, outF: 3 * d) + linearGemms(rows: n, inF: d, outF: d)
            + linearGemms(rows: n, inF: d, outF: 4 * d) + linearGemms(rows: n, inF: 4 * d, outF: d)
        let f = flops(gs)
        let bufs = (0..<max(1, threads)).map { _ in buffers(gs) }
        func serial(_ b: (a: Tensor, b: Tensor, c: Tensor)) {
            for g in gs {
                BLAS.gemm(transA: g.ta, transB: g.tb, m: g.m, n: g.n, k: g.k, a: b.a.data, lda: g.ta ? g.m : g.k,
                          b: b.b.data, ldb: g.tb ? g.k : g.n, c: b.c.data, ldc: g.n, parallel: false)
            }
        }
        let one = time(reps) { serial(bufs[0]) }
        let all = threads <= 1 ? one : time(reps) {
            DispatchQueue.concurrentPerform(iterations: bufs.count) { serial(bufs[$0]) }
        }
        return (f / one * 1e-9, f * Double(bufs.count) / all * 1e-9)
    }

    /// `bench gemm`: every GEMM shape of the tiny32 and ViT-S/16 steps (one replica's rows: 64 × 65
    /// and 16 × 197 tokens; MAE's encoder and decoder rows, and ViT-B/16's), single-threaded, in
    /// OpenBLAS and in oneDNN, alternated call by call; GFLOP/s of the best of `reps` calls of each.
    /// Weight gradients (Aᵀ·B) also run through oneDNN the other way round (Cᵀ = Bᵀ·A, then written
    /// back transposed, the transpose timed). The `auto` rule of `BLAS.backend` and the orientation
    /// rule (`BLAS.autoRunsTransposed`) come from it.
    public static func gemmComparison(reps: Int = 20) -> String {
        var shapes: [(String, Gemm)] = []
        // All tokens (the decoder's rows, fine-tuning, feature extraction) and MAE's encoder rows
        // (one token in four, plus the class token).
        for (tag, rows, d) in [("tiny32", 64 * 65, 192), ("tiny32 enc", 64 * 17, 192), ("tiny32 dec", 64 * 65, 128),
                               ("vits16", 16 * 197, 384), ("vits16 enc", 16 * 50, 384), ("vits16 dec", 16 * 197, 192),
                               ("vitb16 enc", 8 * 50, 768), ("vitb16 dec", 8 * 197, 512)] {
            for (name, out, inF) in [("qkv", 3 * d, d), ("proj", d, d), ("fc1", 4 * d, d), ("fc2", d, 4 * d)] {
                for g in linearGemms(rows: rows, inF: inF, outF: out) {
                    let kind = g.tb ? "fwd" : (g.ta ? "dW" : "dX")
                    shapes.append(("\(tag) \(name) \(kind)", g))
                }
            }
        }
        // Per-head products: all tokens (feature extraction, fine-tuning), MAE's encoder with three
        // quarters of the patches masked, and the decoders' head widths.
        for (tag, l, hd) in [("tiny32", 65, 64), ("tiny32 enc", 17, 64), ("tiny32 dec", 65, 32),
                             ("vits16", 197, 64), ("vits16 enc", 50, 64), ("vitb16 dec", 197, 32)] {
            shapes.append(("\(tag) attn q·kᵀ", Gemm(m: l, n: l, k: hd, ta: false, tb: true, count: 1)))
            shapes.append(("\(tag) attn p·v", Gemm(m: l, n: hd, k: l, ta: false, tb: false, count: 1)))
            shapes.append(("\(tag) attn pᵀ·g", Gemm(m: l, n: hd, k: l, ta: true, tb: false, count: 1)))
        }
        let saved = (BLAS.backend, BLAS.swapsTallProducts)
        defer { (BLAS.backend, BLAS.swapsTallProducts) = saved }
        BLAS.swapsTallProducts = false
        var out = "Single-threaded SGEMM, best of \(reps) alternated calls, GFLOP/s\n\n"
        out += "| product | M×N×K | op | OpenBLAS | oneDNN | oneDNN ÷ OpenBLAS | oneDNN as Cᵀ = Bᵀ·A | auto picks |\n"
        out += "|---|---|---|---:|---:|---:|---:|---|\n"
        var total = (blas: 0.0, dnnl: 0.0, auto: 0.0, flops: 0.0)
        for (name, g) in shapes {
            let bufs = buffers([g])
            let lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n
            let calls = max(1, (1 << 27) / max(1, 2 * g.m * g.n * g.k))  // ~0.1 GFLOP per timing
            /// Seconds per call of `product`, over `calls` calls.
            func perCall(_ product: () -> Void) -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<calls { product() }
                return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(calls)
            }
            func once(_ backend: BLAS.Backend) -> Double {
                BLAS.backend = backend
                return perCall {
                    BLAS.gemm(transA: g.ta, transB: g.tb, m: g.m, n: g.n, k: g.k, a: bufs.a.data, lda: lda, b: bufs.b.data, ldb: ldb,
                              c: bufs.c.data, ldc: g.n, parallel: false)
                }
            }
            // The other way round (weight gradients only): Cᵀ = Bᵀ·A, then C from its transpose.
            let swappable = g.ta && !g.tb
            func swapped() -> Double {
                perCall { _ = BLAS.transposedDNNL(g.m, g.n, g.k, 1, bufs.a.data, lda, bufs.b.data, ldb, 0, bufs.c.data, g.n) }
            }
            _ = once(.openblas); _ = once(.onednn)
            if swappable { _ = swapped() }
            var best = (blas: Double.infinity, dnnl: Double.infinity, swapped: Double.infinity)
            for _ in 0..<reps {
                best.blas = min(best.blas, once(.openblas))
                best.dnnl = min(best.dnnl, once(.onednn))
                if swappable { best.swapped = min(best.swapped, swapped()) }
            }
            BLAS.backend = .auto
            let dnnl = BLAS.prefersDNNL(g.ta, g.tb, g.m, g.n, g.k)
            let turned = dnnl && BLAS.autoRunsTransposed(intelAVX512: BLAS.intelAVX512, g.ta, g.tb, g.m, g.n, g.k)
            let picks = turned ? "oneDNN as Cᵀ" : dnnl ? "oneDNN" : "OpenBLAS"
            let f = 2 * Double(g.m * g.n * g.k)
            total.flops += f; total.blas += best.blas; total.dnnl += best.dnnl
            total.auto += turned ? best.swapped : dnnl ? best.dnnl : best.blas
            out += String(format: "| %@ | %d×%d×%d | %@ | %.1f | %.1f | %.2f | %@ | %@ |\n", name, g.m, g.n, g.k,
                          (g.ta ? "T" : "N") + (g.tb ? "T" : "N"), f / best.blas * 1e-9, f / best.dnnl * 1e-9, best.blas / best.dnnl,
                          swappable ? String(format: "%.1f", f / best.swapped * 1e-9) : "–", picks)
        }
        out += String(format: "\nAll shapes once each: OpenBLAS %.1f GFLOP/s, oneDNN %.1f, auto %.1f (CPU: %@)\n",
                      total.flops / total.blas * 1e-9, total.flops / total.dnnl * 1e-9, total.flops / total.auto * 1e-9, cpuModel)
        return out + "\n" + attentionComparison(reps: reps)
    }

    /// The per-head attention products through `BLAS.gemm` (the auto rule's library) against
    /// `SmallGemm`, alternated call by call, single-threaded: GFLOP/s of the best of `reps` timings.
    /// Q·Kᵀ's SmallGemm time includes transposing K into its padded layout.
    static func attentionComparison(reps: Int) -> String {
        var out = "Per-head attention products: library (auto rule) against SmallGemm, GFLOP/s\n\n"
        out += "| product | M×N×K | op | library | SmallGemm | SmallGemm ÷ library |\n|---|---|---|---:|---:|---:|\n"
        var rng = RandomGenerator(seed: 3)
        for (tag, l, hd) in [("tiny32", 65, 64), ("tiny32 enc", 17, 64), ("tiny32 dec", 65, 32),
                             ("vits16", 197, 64), ("vits16 enc", 50, 64), ("vitb16 dec", 197, 32)] {
            let lp = SmallGemm.padded(l)
            // Token-major operands as attention reads them: one head's columns of rows 9 head widths
            // wide (the fused q, k and v of three heads).
            let ld = 9 * hd
            let x = Tensor.randn([l * ld], rng: &rng), y = Tensor.randn([l * ld], rng: &rng)
            let p = Tensor.randn([l * lp], rng: &rng), c = Tensor.zeros([l * max(lp, ld)]), t = Tensor.zeros([hd * lp])
            let calls = max(1, (1 << 25) / (2 * l * l * hd))
            func timed(_ body: () -> Void) -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<calls { body() }
                return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(calls)
            }
            let cases: [(String, String, () -> Void, () -> Void)] = [
                ("q·kᵀ", "NT", {
                    BLAS.gemm(transB: true, m: l, n: l, k: hd, a: x.data, lda: ld, b: y.data, ldb: ld, c: c.data, ldc: l, parallel: false)
                }, {
                    SmallGemm.transposePadded(y.data, ld: ld, rows: l, width: hd, into: t.data)
                    SmallGemm.multiply(transA: false, m: l, n: lp, k: hd, alpha: 1, a: x.data, lda: ld, b: t.data, ldb: lp,
                                       accumulate: false, c: c.data, ldc: lp)
                }),
                ("p·v", "NN", {
                    BLAS.gemm(m: l, n: hd, k: l, a: p.data, lda: lp, b: y.data, ldb: ld, c: c.data, ldc: ld, parallel: false)
                }, {
                    SmallGemm.multiply(transA: false, m: l, n: hd, k: l, alpha: 1, a: p.data, lda: lp, b: y.data, ldb: ld,
                                       accumulate: false, c: c.data, ldc: ld)
                }),
                ("pᵀ·g", "TN", {
                    BLAS.gemm(transA: true, m: l, n: hd, k: l, a: p.data, lda: lp, b: y.data, ldb: ld, beta: 1, c: c.data, ldc: ld, parallel: false)
                }, {
                    SmallGemm.multiply(transA: true, m: l, n: hd, k: l, alpha: 1, a: p.data, lda: lp, b: y.data, ldb: ld,
                                       accumulate: true, c: c.data, ldc: ld)
                }),
            ]
            for (name, op, lib, small) in cases {
                _ = timed(lib); _ = timed(small)
                var best = (lib: Double.infinity, small: Double.infinity)
                for _ in 0..<reps { best.lib = min(best.lib, timed(lib)); best.small = min(best.small, timed(small)) }
                let f = 2 * Double(l * l * hd)
                let dims = op == "NT" ? "\(l)×\(l)×\(hd)" : "\(l)×\(hd)×\(l)"
                out += String(format: "| %@ attn %@ | %@ | %@ | %.1f | %.1f | %.2f |\n", tag, name, dims, op,
                              f / best.lib * 1e-9, f / best.small * 1e-9, best.lib / best.small)
            }
        }
        return out
    }

    /// The CPU model from /proc/cpuinfo ("unknown CPU" elsewhere), with its family, model and stepping:
    /// virtual machines often name only the vendor line ("AMD EPYC"), and the numbers still tell the
    /// generation (AMD family 25 model 0–15 is Zen 3, the EPYC 7003 "Milan" parts).
    public static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        let lines = text.split(separator: "\n")
        func field(_ key: String) -> String? {
            guard let line = lines.first(where: { $0.hasPrefix(key) && $0.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).first == ":" }),
                  let colon = line.firstIndex(of: ":") else { return nil }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let name = field("model name") else { return "unknown CPU" }
        guard let family = field("cpu family").flatMap({ Int($0) }), let model = field("model").flatMap({ Int($0) }) else { return name }
        var detail = "family \(family), model \(model)" + (field("stepping").map { ", stepping \($0)" } ?? "")
        if field("vendor_id") == "AuthenticAMD" {
            switch (family, model) {
            case (23, 0..<0x30): detail += "; Zen/Zen+"
            case (23, _): detail += "; Zen 2"
            case (25, 0..<0x10), (25, 0x20..<0x60): detail += "; Zen 3"
            case (25, _): detail += "; Zen 4"
            case (26, _): detail += "; Zen 5"
            default: break
            }
        }
        return "\(name) (\(detail))"
    }

    public struct Row {
        public let name: String
        public let flops: Double
        public let seconds: Double
        public let sgemmSeconds: Double
        public var gflops: Double { flops / seconds * 1e-9 }
        public var sgemmGflops: Double { flops / sgemmSeconds * 1e-9 }
        public var ratio: Double { sgemmSeconds / seconds }
    }

    /// Measures every row; `reps` timed repetitions each.
    public static func run(_ s: Shape = Shape(), reps: Int = 10) -> (rows: [Row], activationBytes: Int, blockParamsBytes: Int) {
        let n = s.batch * s.tokens, d = s.width, hidden = d * s.mlpRatio
        var rng = RandomGenerator(seed: 0)
        var rows: [Row] = []

        // Linear D → 4D, forward + backward.
        do {
            let gs = linearGemms(rows: n, inF: d, outF: hidden)
            let bufs = buffers(gs)
            let base = time(reps) { runGemms(gs, bufs) }
            let lin = Linear(d, hidden)
            lin.initXavier(rng: &rng)
            let x = Tensor.randn([s.batch, s.tokens, d], rng: &rng).requiringGrad()
            let t = time(reps) {
                let y = lin(x)
                y.backward(Tensor.full(y.shape, 1e-3))
                lin.zeroGrad(); x.grad = nil
            }
            rows.append(Row(name: "linear \(d)→\(hidden) fwd+bwd", flops: flops(gs), seconds: t, sgemmSeconds: base))
        }
        // Attention over a fused qkv, forward + backward.
        do {
            let gs = attentionGemms(s)
            let bufs = buffers(gs)
            let base = time(reps) { runGemms(gs, bufs) }
            let qkv = Tensor.randn([s.batch, s.tokens, 3 * d], rng: &rng).requiringGrad()
            let t = time(reps) {
                let y = selfAttention(qkv: qkv, heads: s.heads)
                y.backward(Tensor.full(y.shape, 1e-3))
                qkv.grad = nil
            }
            rows.append(Row(name: "attention \(s.heads)×\(s.tokens)×\(d / s.heads) fwd+bwd", flops: flops(gs), seconds: t, sgemmSeconds: base))
        }
        // Whole block.
        var activation = 0, paramBytes = 0
        do {
            let gs = linearGemms(rows: n, inF: d, outF: 3 * d) + linearGemms(rows: n, inF: d, outF: d)
                + linearGemms(rows: n, inF: d, outF: hidden) + linearGemms(rows: n, inF: hidden, outF: d) + attentionGemms(s)
            let bufs = buffers(gs)
            let base = time(reps) { runGemms(gs, bufs) }
            let block = Block(dim: d, heads: s.heads, layout: .fused)
            for (_, p) in block.namedParameters() where p.rank == 2 { Init.xavierUniform(p, rng: &rng) }
            paramBytes = block.parameterCount * 4
            let ctx = Context(training: true)
            let x = Tensor.randn([s.batch, s.tokens, d], rng: &rng).requiringGrad()
            let t = time(reps) {
                let y = block(x, ctx: ctx)
                y.backward(Tensor.full(y.shape, 1e-3))
                block.zeroGrad(); x.grad = nil
            }
            // Activation memory: what the forward pass leaves alive for backward (output included).
            let before = BufferPool.shared.liveBytes
            let y = block(x, ctx: ctx)
            activation = BufferPool.shared.liveBytes - before
            y.backward(Tensor.full(y.shape, 1e-3))
            block.zeroGrad(); x.grad = nil
            rows.append(Row(name: "ViT block (fused qkv) fwd+bwd", flops: flops(gs), seconds: t, sgemmSeconds: base))
        }
        return (rows, activation, paramBytes)
    }

    /// The benchmark as a markdown table.
    public static func report(_ s: Shape = Shape(), reps: Int = 10, torchActivationBytes: Int? = nil) -> String {
        let (rows, act, _) = run(s, reps: reps)
        var out = "ViT shapes: batch \(s.batch), \(s.tokens) tokens, width \(s.width), \(s.heads) heads; \(Parallel.threads) threads\n\n"
        out += "| op | GFLOP | ms | GFLOP/s | SGEMM same shapes GFLOP/s | ratio |\n|---|---:|---:|---:|---:|---:|\n"
        for r in rows {
            out += String(format: "| %@ | %.2f | %.2f | %.1f | %.1f | %.0f%% |\n", r.name, r.flops * 1e-9, r.seconds * 1e3,
                          r.gflops, r.sgemmGflops, r.ratio * 100)
        }
        out += String(format: "\nViT block activation memory (forward, kept for backward, output included): %.1f MiB", Double(act) / 1048576)
        if let torchActivationBytes {
            out += String(format: "; PyTorch eager, same block: %.1f MiB", Double(torchActivationBytes) / 1048576)
        }
        return out + "\n"
    }
}
