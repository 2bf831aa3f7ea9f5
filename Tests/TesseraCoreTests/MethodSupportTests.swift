import Foundation
import XCTest
import TesseraCore

/// What the method interface relies on in the core: alias and frozen modules, fully masked attention
/// rows, attention probabilities, no-grad inside replicas, and the hot-path ops (per-sample scale,
/// hard-label cross-entropy, BatchNorm1d and L2 normalisation on their parallel paths).
final class MethodSupportTests: TwoThreadsTestCase {
    /// A block list visible under two names: one set of parameters, both names in the state dict.
    func testAliasIsOneSetOfTensorsUnderTwoNames() throws {
        let root = Module()
        let blocks = ModuleList([Linear(3, 2), Linear(2, 2)])
        root.child("blocks", blocks)
        root.alias("query_blocks", blocks)
        XCTAssertEqual(root.namedParameters().map(\.name), ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias"])
        let state = root.stateDict()
        XCTAssertEqual(state.count, 8)
        XCTAssertEqual(root.aliasNames(), Set(state.map(\.name).filter { $0.hasPrefix("query_blocks.") }))
        // Alias names may be absent from a checkpoint; the primary names' values are loaded.
        var values: [String: Tensor] = [:]
        for (n, t) in root.namedParameters() { values[n] = Tensor.full(t.shape, 2) }
        try root.load(state: values, strict: true)
        XCTAssertEqual(blocks[1].weight.array, [2, 2, 2, 2])
        // A mis-shaped alias entry is still reported.
        values["query_blocks.0.weight"] = Tensor.zeros([5])
        XCTAssertThrowsError(try root.load(state: values, strict: true)) { XCTAssertTrue("\($0)".contains("query_blocks.0.weight"), "\($0)") }
    }

    /// A frozen child: no gradient, not a parameter, not in the state dict; it loads on its own.
    func testFrozenModuleIsOutOfParametersStateAndGradients() throws {
        let root = Module()
        let trained = root.child("head", Linear(4, 2))
        let teacher = root.child("teacher", Linear(4, 4)).freeze()
        XCTAssertEqual(root.namedParameters().map(\.name), ["head.weight", "head.bias"])
        XCTAssertEqual(root.stateDict().map(\.name), ["head.bias", "head.weight"])
        XCTAssertEqual(teacher.namedParameters().count, 2, "the frozen module itself still lists its tensors")
        try teacher.load(state: ["weight": Tensor.full([4, 4], 0.5), "bias": Tensor.zeros([4])])
        let x = randn([3, 4], seed: 1).requiringGrad()
        sum(trained(teacher(x))).backward()
        XCTAssertNil(teacher.weight.grad)
        XCTAssertNotNil(trained.weight.grad)
        XCTAssertNotNil(x.grad, "gradients still flow through a frozen module to its input")
    }

    /// A fully masked attention row gives zero weights and a zero output, with finite gradients.
    func testFullyMaskedRowGivesZerosNotNaN() {
        let q = randn([2, 3, 8], seed: 2).requiringGrad(), k = randn([2, 4, 8], seed: 3).requiringGrad()
        let v = randn([2, 4, 8], seed: 4).requiringGrad()
        let mask = Tensor.zeros([2, 3, 4])
        for j in 0..<4 { mask.data[(1 * 3 + 2) * 4 + j] = -.infinity }   // sample 1, query 2 sees nothing
        let (y, probs) = attentionWithProbabilities(q: q, k: k, v: v, heads: 2, mask: mask)
        XCTAssertTrue(y.array.allSatisfy(\.isFinite))
        for c in 0..<8 { XCTAssertEqual(y.data[(1 * 3 + 2) * 8 + c], 0) }
        for h in 0..<2 { for j in 0..<4 { XCTAssertEqual(probs.data[((1 * 2 + h) * 3 + 2) * 4 + j], 0) } }
        // Probabilities of the other rows sum to one.
        for row in 0..<(2 * 2 * 3) where row != (1 * 2 + 0) * 3 + 2 && row != (1 * 2 + 1) * 3 + 2 {
            XCTAssertEqual((0..<4).reduce(Float(0)) { $0 + probs.data[row * 4 + $1] }, 1, accuracy: 1e-6)
        }
        sum(y * y).backward()
        for t in [q, k, v] { XCTAssertTrue(t.grad!.array.allSatisfy(\.isFinite)) }
        gradCheck(inputs: [randn([2, 3, 8], seed: 5), randn([2, 4, 8], seed: 6), randn([2, 4, 8], seed: 7)], label: "masked row") { t in
            attention(q: t[0], k: t[1], v: t[2], heads: 2, mask: mask)
        }
    }

    /// Separate key and value inputs, and the probabilities a block returns.
    func testCrossAttentionWithSeparateKeysAndValues() {
        let attn = Attention(dim: 8, heads: 2, layout: .split)
        var rng = RandomGenerator(seed: 9)
        for (_, p) in attn.namedParameters() { rng.fillNormal(p.data, p.count, std: 0.3) }
        let xq = randn([2, 3, 8], seed: 10), xk = randn([2, 5, 8], seed: 11), xv = randn([2, 5, 8], seed: 12)
        let (y, probs) = attn.crossWithProbabilities(xq, keys: xk, values: xv)
        let expected = attn.proj(attention(q: attn.q!(xq), k: attn.k!(xk), v: attn.v!(xv), heads: 2))
        assertClose(y.array, expected.array, tol: 1e-6, "cross keys/values")
        XCTAssertEqual(probs.shape, [2, 2, 3, 5])
        let block = Block(dim: 8, heads: 2, layout: .fused)
        let (out, p) = block.withAttention(xk, ctx: Context(training: false))
        assertClose(out.array, block(xk, ctx: Context(training: false)).array, tol: 1e-7, "withAttention output")
        XCTAssertEqual(p.shape, [2, 2, 5, 5])
    }

    /// CAE's regressor layout: bias-free q/k/v plus q_bias and v_bias (k has none); its names, its
    /// values against the plain split layout with those biases, and its gradients.
    func testSplitBEiTCrossAttention() {
        let attn = Attention(dim: 8, heads: 2, layout: .splitBEiT)
        XCTAssertEqual(Set(attn.namedParameters().map(\.name)),
                       ["q.weight", "k.weight", "v.weight", "q_bias", "v_bias", "proj.weight", "proj.bias"])
        var rng = RandomGenerator(seed: 13)
        for (_, p) in attn.namedParameters() { rng.fillNormal(p.data, p.count, std: 0.3) }
        let xq = randn([2, 3, 8], seed: 14), xk = randn([2, 5, 8], seed: 15), xv = randn([2, 5, 8], seed: 16)
        let y = attn.cross(xq, keys: xk, values: xv)
        let q = linear(xq, attn.q!.weight, attn.qBias), k = linear(xk, attn.k!.weight), v = linear(xv, attn.v!.weight, attn.vBias)
        assertClose(y.array, attn.proj(attention(q: q, k: k, v: v, heads: 2)).array, tol: 1e-6, "split-beit cross")
        gradCheck(inputs: [xq, xk, xv], label: "split-beit cross") { t in attn.cross(t[0], keys: t[1], values: t[2]) }
        gradCheck(inputs: [xk], label: "split-beit self") { t in attn(t[0]) }
    }

    /// No-grad around `Replicas.run` holds in every replica; no-grad inside a replica holds there
    /// and leaves the replica's own recording on afterwards.
    func testNoGradHoldsInEveryReplica() {
        let w = randn([4, 4], seed: 13).requiringGrad()
        let x = randn([6, 4], seed: 14)
        var taped = [Int](repeating: -1, count: 2), inner = [Int](repeating: -1, count: 2)
        taped.withUnsafeMutableBufferPointer { t in
            let t = t
            Autograd.noGrad {
                Replicas.run(2, leaves: [w]) { r in
                    _ = linear(x.view([3, 4], start: r * 12), w)
                    t[r] = Autograd.tapeLength
                }
            }
        }
        XCTAssertEqual(taped, [0, 0])
        inner.withUnsafeMutableBufferPointer { t in
            let t = t
            Replicas.run(2, leaves: [w]) { r in
                let part = x.view([3, 4], start: r * 12)
                _ = Autograd.noGrad { linear(part, w) }      // SemAIM's eval pass before the training forward
                t[r] = Autograd.tapeLength
                sum(linear(part, w)).backward()
            }
        }
        XCTAssertEqual(inner, [0, 0])
        XCTAssertNotNil(w.grad)
    }

    func testScaleSamples() {
        gradCheck(inputs: [randn([4, 3, 5], seed: 15)], label: "per-sample scale") { v in scaleSamples(v[0], [0, 1.25, 2, 0]) }
        let y = scaleSamples(Tensor([1, 2, 3, 4], shape: [2, 2]), [0, 3])
        XCTAssertEqual(y.array, [0, 0, 9, 12])
        // Large enough for the parallel path, and accumulating into an existing gradient.
        let x = randn([64, 1100], seed: 16).requiringGrad()
        let f = (0..<64).map { Float($0 % 3) }
        sum(scaleSamples(x, f) + x).backward()
        for i in [0, 1, 2, 65, 64 * 1100 - 1] { XCTAssertEqual(x.grad!.data[i], f[i / 1100] + 1) }
        // dropPath uses it: survivors scaled by 1/(1 − p), dropped samples zero.
        var rng = RandomGenerator(seed: 4)
        let d = dropPath(Tensor.full([8, 2], 1), p: 0.5, training: true, rng: &rng)
        XCTAssertTrue(d.array.allSatisfy { $0 == 0 || $0 == 2 })
    }

    func testOpsOnTheirParallelPaths() {
        // Hard-label cross-entropy, 4·C·N above the split threshold; against the soft-target form.
        let logits = randn([300, 64], seed: 17, std: 2)
        let labels = (0..<300).map { ($0 * 7) % 64 }
        for eps: Float in [0, 0.1] {
            let q = Tensor.full([300, 64], eps / 64)
            for (i, y) in labels.enumerated() { q.data[i * 64 + y] += 1 - eps }
            // A mean over 300 rows moves too little under a finite difference for float32; the dense soft-target
            // form (finite-difference checked in ConvLossGradTests) is the reference instead.
            let a = logits.clone().requiringGrad(), b = logits.clone().requiringGrad()
            let ha = crossEntropy(a, labels: labels, smoothing: eps)
            ha.backward()      // one pass per tape
            let hb = crossEntropy(b, softTargets: q)
            hb.backward()
            XCTAssertEqual(ha.item, hb.item, accuracy: 1e-5)
            assertClose(a.grad!.array, b.grad!.array, tol: 1e-5, "CE parallel gradient ε \(eps)")
            gradCheck(inputs: [randn([6, 64], seed: 21, std: 2)], label: "CE ε \(eps)") { v in crossEntropy(v[0], labels: Array(labels.prefix(6)), smoothing: eps) }
        }
        let rm = Tensor.zeros([200]), rv = Tensor.full([200], 1)
        gradCheck(inputs: [randn([120, 200], seed: 18, std: 2)], samples: 24, label: "BN parallel") { v in
            batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: true)
        }
        gradCheck(inputs: [randn([120, 200], seed: 19)], samples: 24, label: "BN eval parallel") { v in
            batchNorm1d(v[0], runningMean: rm, runningVar: rv, training: false)
        }
        gradCheck(inputs: [randn([200, 120], seed: 20, std: 3)], samples: 24, label: "l2 parallel") { v in l2Normalize(v[0]) }
    }
}
