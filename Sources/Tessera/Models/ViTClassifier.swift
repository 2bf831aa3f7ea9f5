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
        /// CAE's attentive probe: a learned query attends over all `norm`-ed tokens (one
        /// `AttentiveBlock`, no residual, no MLP), then BatchNorm without affine.
        case attentive
    }

    /// CAE's `AttentiveBlock` (spec §7.4): proj(CrossAttn(LN_q(query), LN_k(x), LN_v(x))), with
    /// bias-free q/k/v plus q_bias, v_bias; the position terms are 0.
    public final class AttentiveBlock: Module {
        public let normQ: LayerNorm, normK: LayerNorm, normV: LayerNorm
        public let attention: Attention
        init(dim: Int, heads: Int) {
            normQ = LayerNorm(dim); normK = LayerNorm(dim); normV = LayerNorm(dim)
            attention = Attention(dim: dim, heads: heads, layout: .splitBEiT)
            super.init()
            child("norm_q", normQ); child("norm_k", normK); child("norm_v", normV)
            child("cross_attn", attention)
        }
        public func callAsFunction(_ q: Tensor, _ x: Tensor) -> Tensor {
            attention.cross(normQ(q), keys: normK(x), values: normV(x))
        }
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
    /// The attentive probe's learned query [1, 1, D] and block.
    public let queryToken: Tensor?
    public let attentiveBlock: AttentiveBlock?
    /// Attentive probe at evaluation: normalise with the batch's statistics (CAE's released code,
    /// whose `is_train` stays true) instead of the running ones.
    public var batchStatisticsAtEval = false
    /// Training under several processes: BatchNorm statistics over the global batch (`sync_bn`).
    public var syncBatchNorm = false

    /// `numClasses` 0 builds no head (feature extraction for k-NN).
    /// Names: the encoder's timm names at the top level, `fc_norm.*`, `head.*` (with a BatchNorm the
    /// head is MAE's `head.0` (running stats) + `head.1` (Linear)).
    public init(_ shape: ViTShape, _ style: ViTStyle, pool: Pool, featureNorm: FeatureNorm, numClasses: Int) {
        var s = style
        s.finalNorm = pool == .cls || pool == .attentive
        encoder = ViTEncoder(shape, s)
        queryToken = pool == .attentive ? Tensor.zeros([1, 1, shape.width]) : nil
        attentiveBlock = pool == .attentive ? AttentiveBlock(dim: shape.width, heads: shape.heads) : nil
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
        if let queryToken, let attentiveBlock {
            // CAE's names: query_token, attentive_blocks.0, fc_norm (LP_BatchNorm), head.
            parameter("query_token", queryToken)
            child("attentive_blocks", ModuleList([attentiveBlock]))
            if let bnMean, let bnVar {
                let bn = Module()
                bn.buffer("running_mean", bnMean)
                bn.buffer("running_var", bnVar)
                child("fc_norm", bn)
            }
            if let head { child("head", head) }
        } else if let head {
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

    /// Samples per chunk of a no-grad forward split over the threads (`mapBatchRows`): about 8192
    /// tokens, so the activations alive at once stay small whatever the batch and the GEMMs stay large.
    public var inferenceChunk: Int { max(1, 8192 / (encoder.shape.patches + 1)) }

    /// The pooled, normalised feature [B, D] (what the head sees).
    public func features(_ img: Tensor, ctx: Context) -> Tensor {
        if pool == .attentive { return attentiveFeatures(tokens(img, ctx: ctx), ctx: ctx) }
        return normalizeFeatures(pooledFeatures(img, ctx: ctx), ctx: ctx)
    }

    /// The pooled feature [B, D] before the feature norm: each sample's on its own.
    public func pooledFeatures(_ img: Tensor, ctx: Context) -> Tensor {
        precondition(pool != .attentive, "tessera: the attentive probe pools with attentiveFeatures")
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
        case .attentive:
            preconditionFailure("unreachable")
        }
        return f
    }

    /// The feature norm over pooled features [B, D]: fc_norm, or the probe's BatchNorm (batch
    /// statistics in training).
    public func normalizeFeatures(_ pooled: Tensor, ctx: Context) -> Tensor {
        var f = pooled
        switch featureNorm {
        case .none: break
        case .layerNorm: f = fcNorm!(f)
        case .batchNorm(let eps):
            f = batchNorm1d(f, runningMean: bnMean!, runningVar: bnVar!, training: ctx.training, eps: eps, overRanks: syncBatchNorm)
        }
        return f
    }

    /// The encoder's `norm`-ed tokens [B, 1 + L, D] (the attentive probe's input).
    public func tokens(_ img: Tensor, ctx: Context) -> Tensor {
        let x = concat([encoder.clsTokens(batch: img.shape[0]), encoder.patchTokens(img)], axis: 1)
        return encoder.norm!(encoder.runBlocks(x, ctx: ctx))
    }

    /// The attentive probe's feature for tokens [B, N, D]: the query's attention output, then
    /// BatchNorm (batch statistics in training, and at evaluation with `batchStatisticsAtEval`).
    public func attentiveFeatures(_ tokens: Tensor, ctx: Context) -> Tensor {
        let b = tokens.shape[0], d = tokens.shape[2]
        let q = attentiveBlock!(expand(queryToken!, to: [b, 1, d]), tokens).reshaped([b, d])
        guard case .batchNorm(let eps) = featureNorm else { return q }
        if !ctx.training && batchStatisticsAtEval {
            // Batch statistics without touching the running ones.
            let m = Tensor.zeros([d]), v = Tensor.full([d], 1)
            return batchNorm1d(q, runningMean: m, runningVar: v, training: true, eps: eps)
        }
        return batchNorm1d(q, runningMean: bnMean!, runningVar: bnVar!, training: ctx.training, eps: eps, overRanks: syncBatchNorm)
    }

    /// Logits [B, classes].
    public func callAsFunction(_ img: Tensor, ctx: Context) -> Tensor {
        guard let head else { preconditionFailure("tessera: this ViTClassifier has no head (numClasses 0)") }
        return head(features(img, ctx: ctx))
    }

    /// The head and fc_norm are new in a downstream model: a pre-training checkpoint does not hold them.
    public static func isNewInDownstream(_ name: String) -> Bool {
        name.hasPrefix("head.") || name.hasPrefix("fc_norm.") || name == "query_token" || name.hasPrefix("attentive_blocks.")
    }

    /// Maps a pre-training checkpoint's names onto this model (spec §10): keeps `encoder.`-prefixed
    /// or top-level encoder keys (stripping `encoder.`, `module.`, `backbone.`), drops decoder, mask
    /// token and head keys (`loadWeights` then resizes position tables to this model's grid).
    /// The checkpoint's encoder tensors (`blocks.*`, `patch_embed.*`, `cls_token`, after the prefixes
    /// `encoderState` strips) that this model has no place for: extra blocks, layer scales or another
    /// attention layout. Loading would silently drop them.
    public func unusedEncoderTensors(in state: [String: Tensor]) -> [String] {
        let own = Set(namedParameters().map(\.name) + namedBuffers().map(\.name))
        var out: [String] = []
        for k in state.keys {
            var name = k
            for prefix in ["module.", "encoder.", "backbone."] where name.hasPrefix(prefix) { name = String(name.dropFirst(prefix.count)) }
            let encoderTensor = name.hasPrefix("blocks.") || name.hasPrefix("patch_embed.") || name == "cls_token"
            if encoderTensor && !own.contains(name) { out.append(name) }
        }
        return out.sorted()
    }

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
