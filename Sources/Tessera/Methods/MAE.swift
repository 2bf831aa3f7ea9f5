import TesseraCore

/// What a pre-training forward pass returns.
public struct PretrainOutput {
    /// The scalar loss to back-propagate.
    public var loss: Tensor
    /// Named scalar terms for the log (e.g. "loss_main", "loss_align").
    public var terms: [String: Float] = [:]
    /// Reconstruction [B, L, P] in the target's patch order and normalisation, when the method has one.
    public var prediction: Tensor?
    /// 1 = patch was hidden from the encoder, [B·L], when the method masks.
    public var mask: [Float]?
}

/// A pre-training model: a module with a loss on an image batch.
public protocol PretrainModel: Module {
    /// images [B, C, H, W], normalised. `noise` [B, L] replaces the drawn masking/permutation noise.
    func forward(images: Tensor, noise: Tensor?, ctx: Context) -> PretrainOutput
    /// The encoder whose weights downstream protocols use.
    var encoder: ViTEncoder { get }
    /// How targets are patchified and normalised (for pictures).
    var targetOrder: Patches.Order { get }
    var targetNorm: Patches.Norm { get }
    /// For a pass split over replicas (`PretrainStep`): draws the whole batch's noise from `ctx.rng`
    /// as `forward` would and returns the noise of a range of images. Nil when the method's loss is
    /// not a mean of equal per-image terms, so the batch cannot be split.
    func splitNoise(batch: Int, ctx: Context) -> ((Range<Int>) -> Tensor)?
}

extension PretrainModel {
    public func splitNoise(batch: Int, ctx: Context) -> ((Range<Int>) -> Tensor)? { nil }
}

/// Masked autoencoder (spec §2) with MAE-priv's variants (spec §3) as options.
public final class MAE: Module, PretrainModel {
    public struct Options: Sendable, Equatable {
        public enum Variant: String, Sendable { case official, priv }
        public var variant: Variant = .official
        public var maskRatio: Double = 0.75
        public var decoderWidth = 512, decoderDepth = 8, decoderHeads = 16
        public var targetNorm: Patches.Norm = .unbiased
        public var patchOrder: Patches.Order = .hwc
        /// One mask for the whole batch (MAE-priv's batched_shuffle).
        public var sharedMask = false
        public init() {}
    }

    public let options: Options
    public let encoder: ViTEncoder
    public let decoderEmbed: Linear
    public let maskToken: Tensor
    /// [1, (cls ? 1 : 0) + L, Dd]: official MAE's table has a cls row, MAE-priv's has none.
    public let decoderPosEmbed: Tensor
    public let decoderBlocks: ModuleList<Block>
    public let decoderNorm: LayerNorm
    public let decoderPred: Linear
    public var targetOrder: Patches.Order { options.patchOrder }
    public var targetNorm: Patches.Norm { options.targetNorm }

    public init(_ shape: ViTShape, _ style: ViTStyle, _ o: Options, rng: inout RandomGenerator) {
        precondition(o.maskRatio >= 0 && o.maskRatio < 1, "tessera: mask ratio \(o.maskRatio) must be in [0, 1)")
        options = o
        encoder = ViTEncoder(shape, style)
        let official = o.variant == .official
        let dd = o.decoderWidth
        decoderEmbed = Linear(shape.width, dd, bias: official)
        maskToken = Tensor.zeros([1, 1, dd])
        let decoderCls = official
        decoderPosEmbed = SinCos.table(dim: dd, gridH: shape.grid, gridW: shape.grid, cls: decoderCls, layout: style.posLayout)
            .reshaped([1, shape.patches + (decoderCls ? 1 : 0), dd])
        decoderBlocks = ModuleList((0..<o.decoderDepth).map { _ in
            Block(dim: dd, heads: o.decoderHeads, mlpRatio: shape.mlpRatio, layout: style.layout, layerScale: style.layerScale)
        })
        decoderNorm = LayerNorm(dd)
        decoderPred = Linear(dd, shape.patchSize * shape.patchSize * shape.inChans)
        super.init()
        if official {
            inline(encoder)
            child("decoder_embed", decoderEmbed)
            parameter("mask_token", maskToken)
            buffer("decoder_pos_embed", decoderPosEmbed)
            child("decoder_blocks", decoderBlocks)
            child("decoder_norm", decoderNorm)
            child("decoder_pred", decoderPred)
        } else {
            child("encoder", encoder)
            child("encoder_to_decoder", decoderEmbed)
            parameter("mask_token", maskToken)
            buffer("decoder_pos_embed", decoderPosEmbed)
            let dec = Module()
            dec.child("blocks", decoderBlocks)
            dec.child("norm", decoderNorm)
            dec.child("head", decoderPred)
            child("decoder", dec)
        }
        initialize(rng: &rng)
    }

    /// Spec §1.4: MAE xavier everywhere (patch bias default, tokens normal 0.02); MAE-priv keeps the
    /// default init for the patch projection and encoder_to_decoder, tokens truncated at ±1σ.
    func initialize(rng: inout RandomGenerator) {
        let priv = options.variant == .priv
        encoder.initialize(rng: &rng, torchDefaultPatch: priv, clsTruncated: priv)
        if priv {
            Init.torchDefault(weight: decoderEmbed.weight, bias: decoderEmbed.bias, rng: &rng)
            Init.truncatedNormal(maskToken, std: 0.02, a: -0.02, b: 0.02, rng: &rng)
        } else {
            decoderEmbed.initXavier(rng: &rng)
            Init.normal(maskToken, std: 0.02, rng: &rng)
        }
        for b in decoderBlocks.items { initXavier(b, rng: &rng) }
        decoderPred.initXavier(rng: &rng)
    }

    /// The reconstruction target: patchified, then normalised per patch.
    public func target(_ images: Tensor) -> Tensor {
        let t = Patches.patchify(images, patch: encoder.shape.patchSize, order: options.patchOrder)
        Patches.normalize(t, options.targetNorm)
        return t
    }

    /// Every image hides the same number of patches, so the loss (a mean over hidden patches) is the
    /// image-weighted mean of the parts' losses. With a shared mask each part gets sample 0's noise row.
    public func splitNoise(batch b: Int, ctx: Context) -> ((Range<Int>) -> Tensor)? {
        let l = encoder.shape.patches
        let full = Tensor.uniform([b, l], rng: &ctx.rng)
        let shared = options.sharedMask
        return { rows in
            let part = Tensor(shape: [rows.count, l])
            part.data.update(from: full.data + rows.lowerBound * l, count: rows.count * l)
            if shared { part.data.update(from: full.data, count: l) }
            return part
        }
    }

    /// images [B, C, H, W] → loss over the removed patches, prediction [B, L, p²C], mask [B·L].
    public func forward(images: Tensor, noise: Tensor?, ctx: Context) -> PretrainOutput {
        let b = images.shape[0], l = encoder.shape.patches
        let n = noise ?? Tensor.uniform([b, l], rng: &ctx.rng)
        checkShapes(n.shape, [b, l], "MAE noise")
        let priv = options.variant == .priv
        let masking = RandomMasking(noise: n, maskRatio: options.maskRatio, sharedRow0: options.sharedMask,
                                    keepCount: priv ? l - Int(options.maskRatio * Double(l)) : nil)
        let k = masking.keep
        let hasCls = encoder.clsToken != nil

        // Encoder on cls + the kept patches.
        var x = encoder.patchTokens(images, keeping: masking.keptIndices, count: k)
        if hasCls { x = concat([encoder.clsTokens(batch: b), x], axis: 1) }
        x = encoder.runBlocks(x, ctx: ctx)
        if priv && hasCls { x = slice(x, axis: 1, start: 1, length: k) }   // MAE-priv drops cls before the norm
        if let norm = encoder.norm { x = norm(x) }

        // Decoder over all L positions (+ cls in official MAE).
        let y = decoderEmbed(x)
        let clsOut = !priv && hasCls
        let visible = clsOut ? slice(y, axis: 1, start: 1, length: k) : y
        let dd = options.decoderWidth
        let tokens = concat([visible, expand(maskToken, to: [b, l - k, dd])], axis: 1)
        var z = gatherTokens(tokens, masking.restore, count: l)
        if clsOut { z = concat([slice(y, axis: 1, start: 0, length: 1), z], axis: 1) }
        z = z + decoderPosEmbed
        for blk in decoderBlocks.items { z = blk(z, ctx: ctx) }
        var pred = decoderPred(decoderNorm(z))
        if clsOut { pred = slice(pred, axis: 1, start: 1, length: l) }

        let loss = maskedPatchMSE(pred, target(images), mask: masking.mask)
        return PretrainOutput(loss: loss, prediction: pred, mask: masking.mask)
    }
}
