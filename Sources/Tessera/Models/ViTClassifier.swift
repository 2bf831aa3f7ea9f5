import TesseraCore

/// The downstream ViT (timm VisionTransformer as the MAE family fine-tunes and probes it, spec §3.4,
/// §7): encoder, a pooled feature, an optional feature norm, and a linear head.
public final class ViTClassifier: Module {
    /// How the token sequence becomes one feature vector.
    public enum Pool: String, Sendable {
        /// cls token after the encoder's final `norm` (MAE/SAIM/SemAIM `--cls_token`, MAE linear probe).
        case cls
        /// `fc_norm(mean of patch tokens)` without the final `norm` (MAE/SemAIM `global_pool`).
        case mean
        /// raw last-block cls token, no norm (MAE-priv with cls).
        case rawCls
        /// raw mean of all tokens, no norm (MAE-priv GAP: there is no cls token to exclude).
        case rawMean
    }

    /// What normalises the pooled feature before the head.
    public enum FeatureNorm: Sendable, Equatable {
        case none
        /// `fc_norm` LayerNorm (eps 1e-6, affine).
        case layerNorm
        /// BatchNorm1d without affine (linear probing; eps 1e-6 in MAE, 1e-5 in MAE-priv).
        case batchNorm(eps: Float)
    }

    public let encoder: ViTEncoder
    public let pool: Pool
    public let featureNorm: FeatureNorm
    public let fcNorm: LayerNorm?
    public let bnMean: Tensor?, bnVar: Tensor?
    public let head: Linear?
    public let numClasses: Int

    /// `numClasses` 0 builds no head (feature extraction for k-NN).
    /// Names: the encoder's timm names at the top level, `fc_norm.*`, `head.*` (with a BatchNorm the
    /// head is MAE's `head.0` (running stats) + `head.1` (Linear)).
    public init(_ shape: ViTShape, _ style: ViTStyle, pool: Pool, featureNorm: FeatureNorm, numClasses: Int) {
        var s = style
        s.finalNorm = pool == .cls
        encoder = ViTEncoder(shape, s)
        self.pool = pool
        self.featureNorm = featureNorm
        self.numClasses = numClasses
        fcNorm = featureNorm == .layerNorm ? LayerNorm(shape.width) : nil
        if case .batchNorm = featureNorm {
            bnMean = Tensor.zeros([shape.width]); bnVar = Tensor.full([shape.width], 1)
        } else { bnMean = nil; bnVar = nil }
        head = numClasses > 0 ? Linear(shape.width, numClasses) : nil
        super.init()
        inline(encoder)
        if let fcNorm { child("fc_norm", fcNorm) }
        if let head {
            if let bnMean, let bnVar {
                let bn = Module()
                bn.buffer("running_mean", bnMean)
                bn.buffer("running_var", bnVar)
                let h = Module()
                h.child("0", bn)
                h.child("1", head)
                child("head", h)
            } else {
                child("head", head)
            }
        }
    }

    /// The pooled, normalised feature [B, D] (what the head sees).
    public func features(_ img: Tensor, ctx: Context) -> Tensor {
        var x = encoder.patchTokens(img)
        let hasCls = encoder.clsToken != nil
        if hasCls { x = concat([encoder.clsTokens(batch: img.shape[0]), x], axis: 1) }
        x = encoder.runBlocks(x, ctx: ctx)
        let l = encoder.shape.patches, d = encoder.shape.width
        var f: Tensor
        switch pool {
        case .cls:
            precondition(hasCls, "tessera: cls pooling needs a cls token")
            f = slice(encoder.norm!(x), axis: 1, start: 0, length: 1).reshaped([-1, d])
        case .rawCls:
            precondition(hasCls, "tessera: cls pooling needs a cls token")
            f = slice(x, axis: 1, start: 0, length: 1).reshaped([-1, d])
        case .mean:
            f = mean(hasCls ? slice(x, axis: 1, start: 1, length: l) : x, axis: 1)
        case .rawMean:
            f = mean(x, axis: 1)
        }
        switch featureNorm {
        case .none: break
        case .layerNorm: f = fcNorm!(f)
        case .batchNorm(let eps):
            f = batchNorm1d(f, runningMean: bnMean!, runningVar: bnVar!, training: ctx.training, eps: eps)
        }
        return f
    }

    /// Logits [B, classes].
    public func callAsFunction(_ img: Tensor, ctx: Context) -> Tensor {
        guard let head else { preconditionFailure("tessera: this ViTClassifier has no head (numClasses 0)") }
        return head(features(img, ctx: ctx))
    }

    /// The head and fc_norm are new in a downstream model: a pre-training checkpoint does not hold them.
    public static func isNewInDownstream(_ name: String) -> Bool { name.hasPrefix("head.") || name.hasPrefix("fc_norm.") }

    /// Maps a pre-training checkpoint's names onto this model (spec §10): keeps `encoder.`-prefixed
    /// or top-level encoder keys (stripping `encoder.`, `module.`, `backbone.`), drops decoder, mask
    /// token and head keys (`loadWeights` then resizes position tables to this model's grid).
    public func encoderState(from state: [String: Tensor]) -> [String: Tensor] {
        let own = Set(namedParameters().map(\.name) + namedBuffers().map(\.name))
        var out: [String: Tensor] = [:]
        for (k, v) in state {
            var name = k
            for prefix in ["module.", "encoder.", "backbone."] where name.hasPrefix(prefix) { name = String(name.dropFirst(prefix.count)) }
            guard own.contains(name), !Self.isNewInDownstream(name) else { continue }
            out[name] = v
        }
        return out
    }
}
