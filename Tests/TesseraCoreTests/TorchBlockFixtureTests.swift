import XCTest
import TesseraCore
import TesseraHDF5

/// Whole pre-LN ViT blocks composed from the public ops, against PyTorch (Fixtures/ops.h5, groups
/// blockA/B/C/Cross; D = 32, 4 heads, L = 9, B = 2): output and the gradient of the input and of
/// every parameter, under the PyTorch parameter names.
final class TorchBlockFixtureTests: XCTestCase {
    let heads = 4

    private func norm(_ x: Tensor, _ c: TorchCase, _ name: String) -> Tensor {
        layerNorm(x, weight: c[name + ".weight"], bias: c[name + ".bias"], eps: 1e-6)
    }

    private func mlp(_ x: Tensor, _ c: TorchCase) -> Tensor {
        linear(gelu(linear(x, c["mlp.fc1.weight"], c["mlp.fc1.bias"])), c["mlp.fc2.weight"], c["mlp.fc2.bias"])
    }

    private func proj(_ x: Tensor, _ c: TorchCase) -> Tensor { linear(x, c["attn.proj.weight"], c["attn.proj.bias"]) }

    /// Split q/k/v projections (SAIM layout); queries from xq, keys and values from xkv.
    private func splitAttention(_ xq: Tensor, _ xkv: Tensor, _ c: TorchCase, mask: Tensor?) -> Tensor {
        let q = linear(xq, c["attn.q.weight"], c["attn.q.bias"])
        let k = linear(xkv, c["attn.k.weight"], c["attn.k.bias"])
        let v = linear(xkv, c["attn.v.weight"], c["attn.v.bias"])
        return proj(attention(q: q, k: k, v: v, heads: heads, mask: mask), c)
    }

    /// (a) timm: fused qkv Linear(D, 3D) with bias.
    func testBlockATimmFusedQKV() throws {
        try checkAgainstTorch("blockA") { c in
            let x = c["x"]
            let qkv = linear(norm(x, c, "norm1"), c["attn.qkv.weight"], c["attn.qkv.bias"])
            let x1 = x + proj(selfAttention(qkv: qkv, heads: heads), c)
            return x1 + mlp(norm(x1, c, "norm2"), c)
        }
    }

    /// (b) SAIM: split q, k, v Linears with bias, SAIM content mask.
    func testBlockBSplitQKV() throws {
        try checkAgainstTorch("blockB") { c in
            let x = c["x"], mask = try c.const("mask")
            let h = norm(x, c, "norm1")
            let x1 = x + splitAttention(h, h, c, mask: mask)
            return x1 + mlp(norm(x1, c, "norm2"), c)
        }
    }

    /// (c) BEiT / MAE-priv / CAE: qkv weight without bias, bias [q_bias, 0, v_bias], layer scale.
    func testBlockCBEiT() throws {
        try checkAgainstTorch("blockC") { c in
            let x = c["x"]
            let d = x.shape[2]
            let bias = concat([c["attn.q_bias"], Tensor.zeros([d]), c["attn.v_bias"]], axis: 0)
            let qkv = linear(norm(x, c, "norm1"), c["attn.qkv.weight"], bias)
            let x1 = x + c["gamma_1"] * proj(selfAttention(qkv: qkv, heads: heads), c)
            return x1 + c["gamma_2"] * mlp(norm(x1, c, "norm2"), c)
        }
    }

    /// SAIM's query-stream block: queries from g, keys/values from h, norm1 on both, query mask.
    func testCrossAttentionBlock() throws {
        try checkAgainstTorch("blockCross") { c in
            let g = c["g"], h = c["h"], mask = try c.const("mask")
            let g1 = g + splitAttention(norm(g, c, "norm1"), norm(h, c, "norm1"), c, mask: mask)
            return g1 + mlp(norm(g1, c, "norm2"), c)
        }
    }

    /// The fixture holds every parameter of each layout, and a float64 gradient for each float32 one.
    func testFixtureCoversAllParameters() throws {
        let h5 = try OpsFixture.file.get()
        for (group, count) in [("blockA", 12), ("blockB", 16), ("blockC", 15), ("blockCross", 16)] {
            XCTAssertEqual(try h5.datasetNames(under: "\(group)/params").count, count, group)
            XCTAssertEqual(try h5.datasetNames(under: "\(group)/grads").count, try h5.datasetNames(under: "\(group)/grads64").count)
        }
    }
}
