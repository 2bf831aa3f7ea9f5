import Foundation
import TesseraConfig
import TesseraCore

/// Context autoencoder (spec §6, Atten4Vis/CAE v1 `ContextAutoencoderViT`).
///
/// The encoder (BEiT blocks with layer scale, MoCo sin-cos positions, final norm) sees cls plus the
/// visible patches. A latent contextual regressor predicts the masked patches' latents from them:
/// mask tokens are queries; keys and values are the visible latents and the current queries; positions
/// go into queries and keys, not values. The alignment encoder — the same tensors as the encoder,
/// under `alignment_encoder.*` — encodes cls plus the masked patches without gradient (drop-path
/// active, as in the code) and gives the alignment target. A decoder of self-attention blocks over the
/// masked tokens only predicts their DALL-E dVAE ids (`target: dvae`) or, Tessera's extension, their
/// norm-pix pixels (`target: pixels`).
///
/// loss = loss_main (cross-entropy over the masked tokens, or their pixel MSE) + align_loss_weight ·
/// MSE(predicted latents, alignment target); loss_main, loss_align and the masked-token accuracy
/// (`mlm_acc`, dVAE only) are logged.
public final class CAE: Module, PretrainMethod {
    public struct Options: Sendable, Equatable {
        public enum Target: String, Sendable { case dvae, pixels }
        public var target: Target = .dvae
        public var regressorDepth = 4
        public var decoderWidth = 768, decoderDepth = 4, decoderHeads = 12
        /// Layer-scale init of the regressor and decoder blocks; 0 = none (regressor: fixed ones).
        public var decoderLayerScale: Float = 0.1
        public var maskCount = 98
        public var alignLossWeight: Float = 2
        public var blockMasks = true
        public var blockMinPatches = 16
        public var blockMinAspect: Double = 0.3
        /// Pixel targets: the per-patch normalisation.
        public var targetNorm: Patches.Norm = .unbiased
        public init() {}

        public init(_ spec: ExperimentSpec) {
            let m = spec.model
            target = m.caeTarget == .pixels ? .pixels : .dvae
            regressorDepth = m.regressorDepth
            decoderWidth = m.decoder.width
            decoderDepth = m.decoder.depth
            decoderHeads = m.decoder.heads
            decoderLayerScale = Float(m.decoderLayerScale)
            maskCount = m.numMaskPatches
            alignLossWeight = Float(m.alignLossWeight)
            blockMasks = m.maskGenerator == .block
            blockMinPatches = m.blockMinPatches
            blockMinAspect = m.blockMinAspect
            targetNorm = Registry.targetNorm(spec)
        }
    }

    /// One latent-regressor block (`RegressorBlock`): x = q + γ1 ⊙ CrossAttn(LN_q(q + pos_q),
    /// LN_k(kv + pos_k), LN_v(kv)); x = LN2(x); x = x + γ2 ⊙ MLP(x).
    public final class RegressorBlock: Module {
        let norm1Q: LayerNorm, norm1K: LayerNorm, norm1V: LayerNorm, norm2: LayerNorm
        let attention: Attention
        let mlp: Mlp
        let gamma1: Tensor, gamma2: Tensor
        var dropPath: Float

        init(dim: Int, heads: Int, mlpRatio: Float, layerScale: Float, dropPath: Float) {
            norm1Q = LayerNorm(dim); norm1K = LayerNorm(dim); norm1V = LayerNorm(dim); norm2 = LayerNorm(dim)
            attention = Attention(dim: dim, heads: heads, layout: .splitBEiT)
            mlp = Mlp(dim, hidden: Int(Float(dim) * mlpRatio))
            gamma1 = Tensor.full([dim], layerScale > 0 ? layerScale : 1)
            gamma2 = Tensor.full([dim], layerScale > 0 ? layerScale : 1)
            self.dropPath = dropPath
            super.init()
            child("norm1_q", norm1Q); child("norm1_k", norm1K); child("norm1_v", norm1V); child("norm2_cross", norm2)
            child("cross_attn", attention)
            child("mlp_cross", mlp)
            // With init 0 the original keeps fixed ones (requires_grad False), still in the state dict.
            if layerScale > 0 {
                parameter("gamma_1_cross", gamma1); parameter("gamma_2_cross", gamma2)
            } else {
                buffer("gamma_1_cross", gamma1); buffer("gamma_2_cross", gamma2)
            }
        }

        func callAsFunction(_ q: Tensor, kv: Tensor, posQ: Tensor, posK: Tensor, ctx: Context) -> Tensor {
            let a = attention.cross(norm1Q(q + posQ), keys: norm1K(kv + posK), values: norm1V(kv))
            let x = norm2(residualBranch(q, a, gamma: gamma1, dropPath: dropPath, ctx: ctx))
            return residualBranch(x, mlp(x), gamma: gamma2, dropPath: dropPath, ctx: ctx)
        }
    }

    public let options: Options
    public let encoder: ViTEncoder
    public let projection: Linear?, projectionNorm: LayerNorm?
    /// [1, L+1, d] MoCo sin-cos table of the regressor and decoder.
    public let rdPosEmbed: Tensor
    public let maskToken: Tensor
    public let regressorBlocks: ModuleList<RegressorBlock>
    public let regressorNorm: LayerNorm
    public let decoderBlocks: ModuleList<Block>
    public let decoderNorm: LayerNorm
    public let head: Linear
    public let tokenizer: DALLEEncoder?

    public init(_ shape: ViTShape, _ style: ViTStyle, _ o: Options, tokenizer: DALLEEncoder? = nil, rng: inout RandomGenerator) {
        precondition(o.maskCount > 0 && o.maskCount < shape.patches, "tessera: model.num_mask_patches \(o.maskCount) must leave visible patches out of \(shape.patches)")
        precondition((o.target == .dvae) == (tokenizer != nil), "tessera: CAE's dvae target needs a tokenizer (model.tokenizer), pixels none")
        precondition(style.clsToken, "tessera: CAE needs a cls token")
        options = o
        var encStyle = style
        encStyle.finalNorm = true
        encoder = ViTEncoder(shape, encStyle)
        let d = o.decoderWidth
        projection = d != shape.width ? Linear(shape.width, d) : nil
        projectionNorm = d != shape.width ? LayerNorm(d) : nil
        rdPosEmbed = SinCos.table(dim: d, gridH: shape.grid, gridW: shape.grid, cls: true, layout: style.posLayout)
            .reshaped([1, shape.patches + 1, d])
        maskToken = Tensor.zeros([1, 1, d])
        let rates = { (n: Int) in (0..<n).map { n > 1 ? style.dropPath * Float($0) / Float(n - 1) : 0 } }
        let rr = rates(o.regressorDepth), dr = rates(o.decoderDepth)
        regressorBlocks = ModuleList((0..<o.regressorDepth).map {
            RegressorBlock(dim: d, heads: o.decoderHeads, mlpRatio: shape.mlpRatio, layerScale: o.decoderLayerScale, dropPath: rr[$0])
        })
        regressorNorm = LayerNorm(d)
        decoderBlocks = ModuleList((0..<o.decoderDepth).map {
            Block(dim: d, heads: o.decoderHeads, mlpRatio: shape.mlpRatio, layout: .beit, layerScale: o.decoderLayerScale, dropPath: dr[$0])
        })
        decoderNorm = LayerNorm(d)
        head = Linear(d, tokenizer?.config.vocabSize ?? shape.patchSize * shape.patchSize * shape.inChans)
        self.tokenizer = tokenizer
        super.init()
        child("encoder", encoder)
        alias("alignment_encoder", encoder)
        if let projection, let projectionNorm {
            child("encoder_to_regresser", projection)
            child("encoder_to_regresser_norm", projectionNorm)
        }
        buffer("rd_pos_embed", rdPosEmbed)
        parameter("mask_token", maskToken)
        let regresser = Module()
        regresser.child("regressor_blocks", regressorBlocks)
        regresser.child("norm", regressorNorm)
        child("regresser", regresser)
        let decoder = Module()
        decoder.child("decoder_blocks", decoderBlocks)
        decoder.child("norm", decoderNorm)
        decoder.child("head", head)
        child("decoder", decoder)
        if let tokenizer { child("tokenizer", tokenizer.freeze()) }
        initialize(rng: &rng)
    }

    public convenience init(_ spec: ExperimentSpec, rng: inout RandomGenerator) throws {
        let o = Options(spec)
        var tokenizer: DALLEEncoder? = nil
        if o.target == .dvae {
            guard let path = spec.model.tokenizer else {
                throw CheckpointError(description: "tessera: model.tokenizer: CAE's dvae target needs the DALL-E encoder; \(DALLEEncoder.howToConvert), or set model.target: pixels")
            }
            tokenizer = try DALLEEncoder.load(path: path, configKey: "model.tokenizer")
        }
        self.init(Registry.vitShape(spec), Registry.vitStyle(spec), o, tokenizer: tokenizer, rng: &rng)
    }

    /// The original's `_init_weights` after its parts' own: xavier-uniform Linears (bias 0),
    /// LayerNorms 1/0, the patch projection and cls / mask tokens truncated normal (std 0.02, cut at
    /// ±0.02), patch bias 0, q/v biases 0, layer scales at their init value.
    func initialize(rng: inout RandomGenerator) {
        initXavier(self, rng: &rng)
        Init.truncatedNormal(encoder.patchEmbed.weight, std: 0.02, a: -0.02, b: 0.02, rng: &rng)
        Init.constant(encoder.patchEmbed.bias, 0)
        if let cls = encoder.clsToken { Init.truncatedNormal(cls, std: 0.02, a: -0.02, b: 0.02, rng: &rng) }
        Init.truncatedNormal(maskToken, std: 0.02, a: -0.02, b: 0.02, rng: &rng)
    }

    // MARK: draw

    /// The mask: 1 = masked, exactly `maskCount` per image (BEiT block masks or uniformly random).
    public var drawWidth: Int { encoder.shape.patches }

    public var maskGenerator: BlockMaskGenerator {
        BlockMaskGenerator(height: encoder.shape.grid, width: encoder.shape.grid, count: options.maskCount,
                           minPatches: options.blockMinPatches, minAspect: options.blockMinAspect)
    }

    public func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        if options.blockMasks {
            maskGenerator.generate(into: row) { rng.uniform() }
        } else {
            BlockMaskGenerator.random(into: row, patches: drawWidth, count: options.maskCount) { rng.uniform() }
        }
    }

    /// Masked and visible patch indices per sample, ascending (row-major), [B·M] and [B·(L−M)].
    func split(_ mask: Tensor) -> (masked: [Int], visible: [Int]) {
        let (b, l) = (mask.shape[0], mask.shape[1])
        var masked: [Int] = [], visible: [Int] = []
        masked.reserveCapacity(b * options.maskCount)
        for bi in 0..<b {
            var n = 0
            for j in 0..<l {
                if mask.data[bi * l + j] != 0 { masked.append(j); n += 1 } else { visible.append(j) }
            }
            precondition(n == options.maskCount, "tessera: CAE mask of sample \(bi) hides \(n) patches, not model.num_mask_patches \(options.maskCount)")
        }
        return (masked, visible)
    }

    // MARK: forward

    /// cls plus the patches at `indices` (k per sample) through the encoder and, when d ≠ D, the
    /// projection: [B, 1 + k, d].
    func encode(_ images: Tensor, _ indices: [Int], count k: Int, ctx: Context) -> Tensor {
        let b = images.shape[0]
        var x = concat([encoder.clsTokens(batch: b), encoder.patchTokens(images, keeping: indices, count: k)], axis: 1)
        x = encoder.runBlocks(x, ctx: ctx)
        x = encoder.norm!(x)
        if let projection, let projectionNorm { x = projectionNorm(projection(x)) }
        return x
    }

    public struct Streams {
        /// Decoder output for the masked tokens [B·M, vocab or p²C].
        public var logits: Tensor
        /// The regressor's prediction of the masked latents [B, M, d] and the alignment target.
        public var latentPredict: Tensor, latentTarget: Tensor
        public var masked: [Int]
    }

    public func forwardStreams(_ images: Tensor, mask: Tensor, ctx: Context) -> Streams {
        let b = images.shape[0], l = encoder.shape.patches, m = options.maskCount, d = options.decoderWidth
        checkShapes(mask.shape, [b, l], "CAE mask")
        let (masked, visible) = split(mask)
        let x = encode(images, visible, count: l - m, ctx: ctx)
        let target = Autograd.noGrad {
            slice(encode(images, masked, count: m, ctx: ctx), axis: 1, start: 1, length: m).detach()
        }
        let xu = slice(x, axis: 1, start: 1, length: l - m)
        let pos = expand(slice(rdPosEmbed, axis: 1, start: 1, length: l), to: [b, l, d])
        let posM = gatherTokens(pos, masked, count: m), posU = gatherTokens(pos, visible, count: l - m)
        let posK = concat([posU, posM], axis: 1)
        var q = expand(maskToken, to: [b, m, d])
        for blk in regressorBlocks.items { q = blk(q, kv: concat([xu, q], axis: 1), posQ: posM, posK: posK, ctx: ctx) }
        let z = regressorNorm(q)
        var y = z + posM
        for blk in decoderBlocks.items { y = blk(y, ctx: ctx) }
        let logits = head(decoderNorm(y))
        return Streams(logits: logits.reshaped([b * m, logits.shape[2]]), latentPredict: z, latentTarget: target, masked: masked)
    }

    public func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
        let images = batch.images
        let s = forwardStreams(images, mask: batch.draws, ctx: ctx)
        let b = images.shape[0], l = encoder.shape.patches, m = options.maskCount
        let lossMain: Tensor
        var terms: [String: Float] = [:]
        switch options.target {
        case .dvae:
            precondition(batch.views.count > 1, "tessera: CAE's dvae target needs the tokenizer view (augment.tokenizer_size)")
            let ids = tokenizer!.tokens(batch.views[1])
            precondition(ids.count == b * l, "tessera: the tokenizer gives \(ids.count / b) ids per image for \(l) patches; augment.tokenizer_size must be 8 × the patch grid")
            let labels = (0..<(b * m)).map { Int(ids[($0 / m) * l + s.masked[$0]]) }
            lossMain = crossEntropy(s.logits, labels: labels)
            terms["mlm_acc"] = Self.accuracy(s.logits, labels)
        case .pixels:
            let p = encoder.shape.patchSize
            let t = Patches.patchify(images.detach(), patch: p, order: .hwc)
            Patches.normalize(t, options.targetNorm)
            let targets = gatherTokens(t, s.masked, count: m).reshaped([b * m, t.shape[2]])
            lossMain = mseLoss(s.logits, targets)
        }
        let lossAlign = mseLoss(s.latentPredict, s.latentTarget) * options.alignLossWeight
        terms["loss_main"] = lossMain.item
        terms["loss_align"] = lossAlign.item
        return PretrainOutput(loss: lossMain + lossAlign, terms: terms, prediction: s.logits)
    }

    /// Share of rows whose first argmax is the label.
    static func accuracy(_ logits: Tensor, _ labels: [Int]) -> Float {
        let c = logits.shape[1]
        var hits = 0
        for (r, y) in labels.enumerated() {
            let row = logits.data + r * c
            var best = 0
            for j in 1..<c where row[j] > row[best] { best = j }
            if best == y { hits += 1 }
        }
        return Float(hits) / Float(max(labels.count, 1))
    }

    // MARK: pictures

    /// `cae<suffix>.png`: per image, the input with its masked patches grey | the mask.
    public func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {
        let images = batch.images
        let (b, c, hgt, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let l = encoder.shape.patches, p = encoder.shape.patchSize, g = encoder.shape.grid
        let per = c * hgt * w
        let shown = images.clone()
        for bi in 0..<b { for j in 0..<l where batch.draws.data[bi * l + j] != 0 {
            let (r, col) = (j / g, j % g)
            for ch in 0..<c { for y in 0..<p { for x in 0..<p {
                shown.data[bi * per + (ch * hgt + r * p + y) * w + col * p + x] = -mean[min(ch, mean.count - 1)] / std[min(ch, std.count - 1)] + 0.5 / std[min(ch, std.count - 1)]
            } } }
        } }
        let rows = (0..<b).map { bi -> [Pictures.Tile] in
            [.image(UnsafePointer(images.data + bi * per), channels: c, height: hgt, width: w),
             .image(UnsafePointer(shown.data + bi * per), channels: c, height: hgt, width: w),
             .map(Array(UnsafeBufferPointer(start: batch.draws.data + bi * l, count: l)), grid: g)]
        }
        try Pictures.grid(rows, side: Pictures.displaySide(w), mean: mean, std: std,
                          to: (dir as NSString).appendingPathComponent("cae\(suffix).png"))
    }
}
