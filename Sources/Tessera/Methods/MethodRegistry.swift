import TesseraConfig
import TesseraCore
import TesseraData

/// Maps config names to builders: methods (here, beside the methods), optimizers, schedules, and data
/// sets and transforms (Data/DataFactory.swift). `tessera list` prints it.
public enum Registry {
    /// A model builder for one `model.method`.
    public struct MethodEntry {
        public let name: String
        public let summary: String
        public let build: (ExperimentSpec, inout RandomGenerator) throws -> PretrainMethod
    }

    public static let methods: [MethodEntry] = [
        MethodEntry(name: "mae", summary: "MAE (facebookresearch/mae): random masking, pixel decoder, loss on removed patches",
                    build: { spec, rng in MAE(spec, variant: .official, rng: &rng) }),
        MethodEntry(name: "mae_priv", summary: "MAE-priv (BUPT-PRIV): BEiT blocks, optional cls, layer-norm targets, one mask per batch",
                    build: { spec, rng in MAE(spec, variant: .priv, rng: &rng) }),
        MethodEntry(name: "saim", summary: "SAIM (qiy20/SAIM): two-stream autoregression over a random order, blurred pixel targets, loss on every patch",
                    build: { spec, rng in SAIM(spec, rng: &rng) }),
        MethodEntry(name: "semaim", summary: "SemAIM (skyoux/SemAIM): SAIM's two streams in a semantic order from an eval-mode encoder pass (or a CLIP/DINO teacher, SemAIM*)",
                    build: { spec, rng in try SemAIM(spec, rng: &rng) }),
        MethodEntry(name: "cae", summary: "CAE (Atten4Vis/CAE v1): encoder on visible patches, latent regressor + alignment to the masked latents, dVAE token (or pixel) decoder",
                    build: { spec, rng in try CAE(spec, rng: &rng) }),
    ]

    public static let optimizers = ["adamw", "sgd", "lars", "lars_timm"]
    public static let schedules = ["mae (per-iteration warmup + half-cosine on fractional epochs)",
                                   "beit (precomputed per-iteration array, linspace warmup)"]
    public static let datasets = ["fashion-mnist", "imagefolder", "idx", "images"]
    public static let maskGenerators = ["random (MAE noise argsort)", "shared (MAE-priv batched_shuffle)",
                                        "permutation (SAIM: U[0,1) noise order, content/query attention masks)",
                                        "block (CAE/BEiT: boxes of at least block_min_patches until num_mask_patches), random (CAE: a uniform subset)",
                                        "orders (SemAIM: stochastic, zigzag, raster, center2out, stochastic_center, attention, attention_center, attention_guided)"]

    public struct UnsupportedError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func method(_ name: String) throws -> MethodEntry {
        guard let m = methods.first(where: { $0.name == name }) else {
            throw UnsupportedError(description: "tessera: model.method '\(name)' is not implemented yet; available: \(methods.map(\.name).joined(separator: ", "))")
        }
        return m
    }

    /// What `tessera list` prints.
    public static func listing() -> String {
        var s = "methods:\n"
        for m in methods { s += "  \(m.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(m.summary)\n" }
        s += "block layouts:\n  fused (attn.qkv with bias), split (attn.q/k/v), beit (attn.qkv + q_bias/v_bias)\n"
        s += "position tables:\n  mae ([sin col, cos col, sin row, cos row]), moco ([sin row, cos row, sin col, cos col])\n"
        s += "mask generators:\n" + maskGenerators.map { "  \($0)\n" }.joined()
        s += "optimizers:\n  " + optimizers.joined(separator: ", ") + "\n"
        s += "schedules:\n" + schedules.map { "  \($0)\n" }.joined()
        s += "datasets:\n  " + datasets.joined(separator: ", ") + "\n"
        s += "tasks:\n  pretrain, linprobe, finetune, knn, step (one forward/backward on a given batch)\n"
        return s
    }

    // MARK: spec → model pieces

    public static func vitShape(_ spec: ExperimentSpec) -> ViTShape {
        let m = spec.model
        return ViTShape(imgSize: m.imgSize, patchSize: m.patchSize, inChans: m.inChans, width: m.width, depth: m.depth,
                        heads: m.heads, mlpRatio: Float(m.mlpRatio))
    }

    /// The per-patch target normalisation of `model.norm_pix_loss` and `model.target_norm`.
    public static func targetNorm(_ spec: ExperimentSpec) -> Patches.Norm {
        spec.model.normPixLoss ? (spec.model.targetNorm == .unbiased ? .unbiased : .layernorm) : .none
    }

    public static func vitStyle(_ spec: ExperimentSpec) -> ViTStyle {
        let m = spec.model
        let layout: AttentionLayout = m.block == .fused ? .fused : (m.block == .split ? .split : .beit)
        return ViTStyle(layout: layout, posLayout: m.posEmbed == .mae ? .mae : .moco, clsToken: m.clsToken,
                        layerScale: Float(m.layerScale), dropPath: Float(m.dropPath))
    }

}
