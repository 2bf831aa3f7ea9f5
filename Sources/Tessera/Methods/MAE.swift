import Foundation
import TesseraConfig
import TesseraCore

/// Masked autoencoder (spec §2) with MAE-priv's variants (spec §3) as options.
public final class MAE: Module, PretrainMethod {
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

        /// The `model:` keys of spec §2 and §3.
        public init(_ spec: ExperimentSpec, variant: Variant) {
            let m = spec.model
            self.variant = variant
            maskRatio = m.maskRatio
            decoderWidth = m.decoder.width
            decoderDepth = m.decoder.depth
            decoderHeads = m.decoder.heads
            targetNorm = Registry.targetNorm(spec)
            patchOrder = m.patchOrder == .hwc ? .hwc : .chw
            sharedMask = m.sharedMask
        }
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

    public convenience init(_ spec: ExperimentSpec, variant: Options.Variant, rng: inout RandomGenerator) {
        self.init(Registry.vitShape(spec), Registry.vitStyle(spec), Options(spec, variant: variant), rng: &rng)
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

    /// The masking noise: U[0, 1) per patch (the lowest-noise patches are kept).
    public var drawWidth: Int { encoder.shape.patches }

    public func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        rng.fillUniform(row, drawWidth)
    }

    /// MAE-priv's batched shuffle: every sample takes sample 0's noise (so a split batch keeps one mask).
    public func batchDraws(_ draws: Tensor) -> Tensor {
        guard options.sharedMask, draws.shape[0] > 1 else { return draws }
        let l = draws.shape[1]
        for r in 1..<draws.shape[0] { (draws.data + r * l).update(from: draws.data, count: l) }
        return draws
    }

    /// Reconstruction pictures (original | masked | reconstruction | reconstruction with the visible
    /// patches pasted back), `reconstruction<suffix>.png`.
    public func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {
        let out = Autograd.noGrad { forward(batch, ctx: ctx) }
        guard let pred = out.prediction, let mask = out.mask else { return }
        try Pictures.reconstructions(images: batch.images, prediction: pred, mask: mask, patch: encoder.shape.patchSize,
                                     order: options.patchOrder, norm: options.targetNorm, mean: mean, std: std,
                                     to: (dir as NSString).appendingPathComponent("reconstruction\(suffix).png"))
    }

    /// images [B, C, H, W] and noise draws [B, L] → loss over the removed patches, prediction
    /// [B, L, p²C], mask [B·L].
    public func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
        let images = batch.images, n = batch.draws
        let b = images.shape[0], l = encoder.shape.patches
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
        let blocks = decoderBlocks.items
        if ctx.lossOnly, let last = blocks.last, k < l {
            // Only the removed patches' rows reach the loss: the last block attends from those rows
            // to all of them (its keys and values still cover every token), and the norm and head
            // run on those rows alone.
            for blk in blocks.dropLast() { z = blk(z, ctx: ctx) }
            let removed = masking.removedIndices, m = l - k
            let rows = clsOut ? removed.map { $0 + 1 } : removed
            let out = last.cross(gatherTokens(z, rows, count: m), z, ctx: ctx)
            let pred = decoderPred(decoderNorm(out))
            let loss = maskedPatchMSE(pred, gatherTokens(target(images), removed, count: m),
                                      mask: [Float](repeating: 1, count: b * m))
            return PretrainOutput(loss: loss, prediction: nil, mask: masking.mask)
        }
        for blk in blocks { z = blk(z, ctx: ctx) }
        var pred = decoderPred(decoderNorm(z))
        if clsOut { pred = slice(pred, axis: 1, start: 1, length: l) }

        let loss = maskedPatchMSE(pred, target(images), mask: masking.mask)
        return PretrainOutput(loss: loss, prediction: pred, mask: masking.mask)
    }
}
