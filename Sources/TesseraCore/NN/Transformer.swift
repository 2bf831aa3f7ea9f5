/// Attention and pre-LN transformer blocks in the three parameter layouts of spec §1.3.

public enum AttentionLayout: String, Sendable {
    /// `attn.qkv` Linear(D → 3D) with bias (timm; MAE, SemAIM encoder).
    case fused
    /// `attn.q`, `attn.k`, `attn.v`, each Linear(D → D) with bias (SAIM, AIM query blocks).
    case split
    /// `attn.qkv.weight` without bias plus `attn.q_bias`, `attn.v_bias`; k has no bias (BEiT; MAE-priv, CAE).
    case beit
    /// `attn.q`, `attn.k`, `attn.v` without bias plus `q_bias`, `v_bias`; k has no bias (CAE's
    /// regressor cross-attention).
    case splitBEiT
}

public final class Attention: Module {
    public let layout: AttentionLayout
    public let heads: Int
    public let dim: Int
    public var qkv: Linear?
    public var q: Linear?, k: Linear?, v: Linear?
    public var qBias: Tensor?, vBias: Tensor?
    public let proj: Linear

    public init(dim: Int, heads: Int, layout: AttentionLayout, qkvBias: Bool = true) {
        precondition(dim % heads == 0, "tessera: attention width \(dim) is not divisible by \(heads) heads")
        self.layout = layout
        self.heads = heads
        self.dim = dim
        proj = Linear(dim, dim)
        super.init()
        switch layout {
        case .fused:
            qkv = child("qkv", Linear(dim, 3 * dim, bias: qkvBias))
        case .split:
            q = child("q", Linear(dim, dim, bias: qkvBias))
            k = child("k", Linear(dim, dim, bias: qkvBias))
            v = child("v", Linear(dim, dim, bias: qkvBias))
        case .splitBEiT:
            q = child("q", Linear(dim, dim, bias: false))
            k = child("k", Linear(dim, dim, bias: false))
            v = child("v", Linear(dim, dim, bias: false))
            if qkvBias {
                qBias = parameter("q_bias", Tensor.zeros([dim]))
                vBias = parameter("v_bias", Tensor.zeros([dim]))
            }
        case .beit:
            qkv = child("qkv", Linear(dim, 3 * dim, bias: false))
            if qkvBias {
                qBias = parameter("q_bias", Tensor.zeros([dim]))
                vBias = parameter("v_bias", Tensor.zeros([dim]))
            }
        }
        child("proj", proj)
    }

    /// The BEiT qkv bias [q_bias, 0, v_bias].
    private func beitBias() -> Tensor? {
        guard let qBias, let vBias else { return nil }
        return concat([qBias, Tensor.zeros([dim]), vBias], axis: 0)
    }

    /// Self-attention over x [B, L, D] with an optional additive mask [B, L, L] or [L, L]; a
    /// `residual` (x's shape) is added to the output in the projection's own pass.
    public func callAsFunction(_ x: Tensor, mask: Tensor? = nil, residual: Tensor? = nil) -> Tensor {
        forward(x, mask: mask, keepProbabilities: false, residual: residual).output
    }

    /// Self-attention that also returns the softmax probabilities [B, heads, L, L] (no gradient).
    public func withProbabilities(_ x: Tensor, mask: Tensor? = nil) -> (output: Tensor, probabilities: Tensor) {
        let r = forward(x, mask: mask, keepProbabilities: true)
        return (r.output, r.probabilities!)
    }

    private func forward(_ x: Tensor, mask: Tensor?, keepProbabilities keep: Bool,
                         residual: Tensor? = nil) -> (output: Tensor, probabilities: Tensor?) {
        let r: (output: Tensor, probabilities: Tensor?)
        switch layout {
        case .fused:
            r = selfAttentionCore(qkv: qkv!(x), heads: heads, mask: mask, keepProbabilities: keep)
        case .beit:
            r = selfAttentionCore(qkv: linear(x, qkv!.weight, beitBias()), heads: heads, mask: mask, keepProbabilities: keep)
        case .split:
            r = attentionCore(q: q!(x), k: k!(x), v: v!(x), heads: heads, mask: mask, keepProbabilities: keep)
        case .splitBEiT:
            r = attentionCore(q: linear(x, q!.weight, qBias), k: k!(x), v: linear(x, v!.weight, vBias), heads: heads, mask: mask,
                              keepProbabilities: keep)
        }
        return (linear(r.output, proj.weight, proj.bias, residual: residual), r.probabilities)
    }

    /// Cross-attention: queries from xq [B, Lq, D], keys and values from xkv [B, Lk, D].
    public func cross(_ xq: Tensor, _ xkv: Tensor, mask: Tensor? = nil) -> Tensor {
        cross(xq, keys: xkv, values: xkv, mask: mask)
    }

    /// Cross-attention with separate key and value inputs, xk and xv [B, Lk, D] (CAE normalises and
    /// positions them differently).
    public func cross(_ xq: Tensor, keys xk: Tensor, values xv: Tensor, mask: Tensor? = nil, residual: Tensor? = nil) -> Tensor {
        crossForward(xq, keys: xk, values: xv, mask: mask, keepProbabilities: false, residual: residual).output
    }

    /// `cross(_:keys:values:mask:)` that also returns the probabilities [B, heads, Lq, Lk] (no gradient).
    public func crossWithProbabilities(_ xq: Tensor, keys xk: Tensor, values xv: Tensor, mask: Tensor? = nil) -> (output: Tensor, probabilities: Tensor) {
        let r = crossForward(xq, keys: xk, values: xv, mask: mask, keepProbabilities: true)
        return (r.output, r.probabilities!)
    }

    private func crossForward(_ xq: Tensor, keys xk: Tensor, values xv: Tensor, mask: Tensor?,
                              keepProbabilities keep: Bool, residual: Tensor? = nil) -> (output: Tensor, probabilities: Tensor?) {
        let qx: Tensor, kx: Tensor, vx: Tensor
        switch layout {
        case .split:
            qx = q!(xq); kx = k!(xk); vx = v!(xv)
        case .splitBEiT:
            qx = linear(xq, q!.weight, qBias); kx = k!(xk); vx = linear(xv, v!.weight, vBias)
        case .fused, .beit:
            // Slice the fused weight into its q, k and v parts.
            let w = qkv!.weight
            let bias = layout == .fused ? qkv!.bias : beitBias()
            func part(_ i: Int, _ x: Tensor) -> Tensor {
                linear(x, slice(w, axis: 0, start: i * dim, length: dim), bias.map { slice($0, axis: 0, start: i * dim, length: dim) })
            }
            qx = part(0, xq); kx = part(1, xk); vx = part(2, xv)
        }
        let r = attentionCore(q: qx, k: kx, v: vx, heads: heads, mask: mask, keepProbabilities: keep)
        return (linear(r.output, proj.weight, proj.bias, residual: residual), r.probabilities)
    }
}

/// x + DropPath(γ ⊙ branch): the residual step of every block (γ optional; drop-path only in training).
public func residualBranch(_ x: Tensor, _ branch: Tensor, gamma: Tensor?, dropPath: Float, ctx: Context) -> Tensor {
    var y = branch
    if let gamma { y = y * gamma }
    if dropPath > 0 && ctx.training { y = TesseraCore.dropPath(y, p: dropPath, training: true, rng: &ctx.rng) }
    return x + y
}

/// Pre-LN block: x + DropPath(γ1 ⊙ Attn(LN1(x))), then x + DropPath(γ2 ⊙ MLP(LN2(x))).
public final class Block: Module {
    public let norm1: LayerNorm
    public let attn: Attention
    public let norm2: LayerNorm
    public let mlp: Mlp
    public let gamma1: Tensor?, gamma2: Tensor?
    public var dropPath: Float

    public init(dim: Int, heads: Int, mlpRatio: Float = 4, layout: AttentionLayout, qkvBias: Bool = true,
                layerScale: Float = 0, dropPath: Float = 0) {
        norm1 = LayerNorm(dim)
        attn = Attention(dim: dim, heads: heads, layout: layout, qkvBias: qkvBias)
        norm2 = LayerNorm(dim)
        mlp = Mlp(dim, hidden: Int(Float(dim) * mlpRatio))
        gamma1 = layerScale > 0 ? Tensor.full([dim], layerScale) : nil
        gamma2 = layerScale > 0 ? Tensor.full([dim], layerScale) : nil
        self.dropPath = dropPath
        super.init()
        child("norm1", norm1)
        child("attn", attn)
        child("norm2", norm2)
        child("mlp", mlp)
        if let gamma1 { parameter("gamma_1", gamma1) }
        if let gamma2 { parameter("gamma_2", gamma2) }
    }

    private func residual(_ x: Tensor, _ branch: Tensor, _ gamma: Tensor?, _ ctx: Context) -> Tensor {
        residualBranch(x, branch, gamma: gamma, dropPath: dropPath, ctx: ctx)
    }

    /// No layer scale and no active drop path: each skip connection is a plain addition, which the
    /// branch's last product can take on (`linear(_:_:_:residual:)`; same values, two passes over
    /// the tokens fewer per branch).
    private func plainSkips(_ ctx: Context) -> Bool {
        gamma1 == nil && gamma2 == nil && !(dropPath > 0 && ctx.training)
    }

    /// Self-attention block over x [B, L, D].
    public func callAsFunction(_ x: Tensor, mask: Tensor? = nil, ctx: Context) -> Tensor {
        if plainSkips(ctx) {
            let h = attn(norm1(x), mask: mask, residual: x)
            return mlp(norm2(h), residual: h)
        }
        let h = residual(x, attn(norm1(x), mask: mask), gamma1, ctx)
        return residual(h, mlp(norm2(h)), gamma2, ctx)
    }

    /// The block that also returns its attention probabilities [B, heads, L, L] (no gradient).
    public func withAttention(_ x: Tensor, mask: Tensor? = nil, ctx: Context) -> (output: Tensor, probabilities: Tensor) {
        let a = attn.withProbabilities(norm1(x), mask: mask)
        let h = residual(x, a.output, gamma1, ctx)
        return (residual(h, mlp(norm2(h)), gamma2, ctx), a.probabilities)
    }

    /// Cross-attention block (SAIM query stream): g attends to h; the same norm1 normalises both.
    public func cross(_ g: Tensor, _ h: Tensor, mask: Tensor? = nil, ctx: Context) -> Tensor {
        if plainSkips(ctx) {
            let hn = norm1(h)
            let y = attn.cross(norm1(g), keys: hn, values: hn, mask: mask, residual: g)
            return mlp(norm2(y), residual: y)
        }
        let y = residual(g, attn.cross(norm1(g), norm1(h), mask: mask), gamma1, ctx)
        return residual(y, mlp(norm2(y)), gamma2, ctx)
    }
}
