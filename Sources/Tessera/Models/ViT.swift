import TesseraCore

/// The size of a Vision Transformer.
public struct ViTShape: Sendable, Equatable {
    public var imgSize = 224, patchSize = 16, inChans = 3
    public var width = 768, depth = 12, heads = 12
    public var mlpRatio: Float = 4

    public init(imgSize: Int = 224, patchSize: Int = 16, inChans: Int = 3, width: Int = 768, depth: Int = 12,
                heads: Int = 12, mlpRatio: Float = 4) {
        self.imgSize = imgSize; self.patchSize = patchSize; self.inChans = inChans
        self.width = width; self.depth = depth; self.heads = heads; self.mlpRatio = mlpRatio
    }

    public var grid: Int { imgSize / patchSize }
    public var patches: Int { grid * grid }
}

/// How the encoder's blocks and tables are laid out and initialised (spec §1).
public struct ViTStyle: Sendable, Equatable {
    public var layout: AttentionLayout = .fused
    public var posLayout: SinCos.Layout = .mae
    public var clsToken = true
    public var layerScale: Float = 0
    public var dropPath: Float = 0
    /// A learnable position table (fine-tuning in MAE/SAIM/SemAIM) instead of a fixed buffer.
    public var learnablePos = false
    public var finalNorm = true

    public init(layout: AttentionLayout = .fused, posLayout: SinCos.Layout = .mae, clsToken: Bool = true,
                layerScale: Float = 0, dropPath: Float = 0, learnablePos: Bool = false, finalNorm: Bool = true) {
        self.layout = layout; self.posLayout = posLayout; self.clsToken = clsToken
        self.layerScale = layerScale; self.dropPath = dropPath; self.learnablePos = learnablePos; self.finalNorm = finalNorm
    }
}

/// Patch embedding, optional cls token, sin-cos position table, blocks and final norm, under the
/// timm names `patch_embed`, `cls_token`, `pos_embed`, `blocks.N`, `norm`.
public final class ViTEncoder: Module {
    public let shape: ViTShape
    public let style: ViTStyle
    public let patchEmbed: PatchEmbed
    public let clsToken: Tensor?
    /// [1, (cls ? 1 : 0) + L, D], zero cls row.
    public let posEmbed: Tensor
    public let blocks: ModuleList<Block>
    public let norm: LayerNorm?

    public init(_ shape: ViTShape, _ style: ViTStyle) {
        precondition(shape.imgSize % shape.patchSize == 0, "tessera: image size \(shape.imgSize) is not divisible by patch size \(shape.patchSize)")
        self.shape = shape
        self.style = style
        patchEmbed = PatchEmbed(inChannels: shape.inChans, dim: shape.width, patchSize: shape.patchSize)
        clsToken = style.clsToken ? Tensor.zeros([1, 1, shape.width]) : nil
        posEmbed = SinCos.table(dim: shape.width, gridH: shape.grid, gridW: shape.grid, cls: style.clsToken, layout: style.posLayout)
            .reshaped([1, shape.patches + (style.clsToken ? 1 : 0), shape.width])
        let rates = (0..<shape.depth).map { shape.depth > 1 ? style.dropPath * Float($0) / Float(shape.depth - 1) : 0 }
        blocks = ModuleList((0..<shape.depth).map {
            Block(dim: shape.width, heads: shape.heads, mlpRatio: shape.mlpRatio, layout: style.layout,
                  layerScale: style.layerScale, dropPath: rates[$0])
        })
        norm = style.finalNorm ? LayerNorm(shape.width) : nil
        super.init()
        child("patch_embed", patchEmbed)
        if let clsToken { parameter("cls_token", clsToken) }
        if style.learnablePos { parameter("pos_embed", posEmbed) } else { buffer("pos_embed", posEmbed) }
        child("blocks", blocks)
        if let norm { child("norm", norm) }
    }

    /// Patch tokens with their position embedding added: img [B, C, H, W] → [B, L, D].
    public func patchTokens(_ img: Tensor) -> Tensor { patchEmbed(img) + patchPositions }

    /// The position-table rows of the patches (without the cls slot), [1, L, D].
    var patchPositions: Tensor {
        style.clsToken ? slice(posEmbed, axis: 1, start: 1, length: shape.patches) : posEmbed
    }

    /// The patch tokens at `indices` only ([B·k] token indices, k per sample), with their position
    /// embedding: the same values and gradients as gathering `patchTokens(img)`, but the patch
    /// embedding runs on the k kept patches alone (MAE embeds all L and then drops the masked ones).
    public func patchTokens(_ img: Tensor, keeping indices: [Int], count k: Int) -> Tensor {
        let x = patchEmbed.embed(columns: gatherTokens(im2col(img, patch: shape.patchSize), indices, count: k))
        let pos = expand(patchPositions, to: [img.shape[0], shape.patches, shape.width])
        return x + gatherTokens(pos, indices, count: k)
    }

    /// cls_token + pos_embed[0], expanded to [B, 1, D].
    public func clsTokens(batch: Int) -> Tensor {
        guard let clsToken else { preconditionFailure("tessera: this encoder has no cls token") }
        let c = clsToken + slice(posEmbed, axis: 1, start: 0, length: 1)
        return expand(c, to: [batch, 1, shape.width])
    }

    /// Runs the blocks (with an optional additive attention mask).
    public func runBlocks(_ x: Tensor, mask: Tensor? = nil, ctx: Context) -> Tensor {
        var h = x
        for b in blocks.items { h = b(h, mask: mask, ctx: ctx) }
        return h
    }

    /// The full encoder on all patches: [B, (cls) + L, D], final norm applied when present.
    public func callAsFunction(_ img: Tensor, ctx: Context) -> Tensor {
        var x = patchTokens(img)
        if clsToken != nil { x = concat([clsTokens(batch: img.shape[0]), x], axis: 1) }
        x = runBlocks(x, ctx: ctx)
        if let norm { x = norm(x) }
        return x
    }

    /// MAE's initialisation (spec §1.4): xavier_uniform on every Linear (bias 0) and on the patch
    /// projection viewed as [D, C·p·p] (its bias keeps PyTorch's default), cls normal(0.02).
    /// With `torchDefaultPatch` the patch projection keeps PyTorch's default Conv2d init (MAE-priv),
    /// and with `clsTruncated` the cls token is truncated at ±1σ (MAE-priv, CAE).
    public func initialize(rng: inout RandomGenerator, torchDefaultPatch: Bool = false, clsTruncated: Bool = false) {
        if torchDefaultPatch {
            Init.torchDefault(weight: patchEmbed.weight, bias: patchEmbed.bias, rng: &rng)
        } else {
            Init.xavierUniform(patchEmbed.weight, rng: &rng)
            let fanIn = patchEmbed.weight.count / patchEmbed.weight.shape[0]
            let bound = 1 / Float(fanIn).squareRoot()
            rng.fillUniform(patchEmbed.bias.data, patchEmbed.bias.count, lo: -bound, hi: bound)
        }
        if let clsToken {
            if clsTruncated { Init.truncatedNormal(clsToken, std: 0.02, a: -0.02, b: 0.02, rng: &rng) }
            else { Init.normal(clsToken, std: 0.02, rng: &rng) }
        }
        for b in blocks.items { initXavier(b, rng: &rng) }
    }
}

/// xavier_uniform with zero bias on every Linear under `m`; LayerNorms stay at 1/0.
public func initXavier(_ m: Module, rng: inout RandomGenerator) {
    if let l = m as? Linear { l.initXavier(rng: &rng) }
    for (_, c) in m.childList { initXavier(c, rng: &rng) }
}
