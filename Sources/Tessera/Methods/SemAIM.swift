import Foundation
import TesseraConfig
import TesseraCore

/// Semantic-aware autoregressive image modelling (spec §5, skyoux/SemAIM `AimViT` and
/// `engine_pretrain.train_one_epoch`).
///
/// The two-stream model of SAIM (`SAIM`, reused as is) with fused-qkv content blocks (timm names)
/// and split q/k/v query blocks. What differs is where the order comes from: before every training
/// forward the online model (or its EMA, or a frozen teacher) runs its encoder in eval mode under
/// no-grad on the same batch, turns the tokens into a per-patch attention map (`attention_type`) and
/// the map into a score per patch (`Orders`, `permutation_type`); the masks follow from the score as
/// in SAIM. The target is the blurred norm-pix image (as SAIM) or, for SemAIM*, a teacher's tokens
/// (`predict_feature`), regressed with the normalised feature loss.
///
/// Checkpoint names: the online model's as in the original (`patch_embed`, `cls_token`, `pos_embed`,
/// `blocks.N.attn.qkv`, `query_blocks.N.attn.q/k/v`, `norm` — shared by the query stream and the
/// encoder pass — `prediction_head`, `gaussian_blur.weight`); the EMA model's under `ema.` (the
/// original's `ema_state_dict`). The teacher is frozen and not saved: it is loaded from its own file
/// (`model.teacher`) every run.
public final class SemAIM: Module, PretrainMethod {
    public struct Options: Sendable, Equatable {
        /// The two-stream model: query depth, head, blur, loss, target normalisation.
        public var model = SAIM.Options()
        public var permutation: Permutation = .attentionCenter
        public var attentionType: AttentionType = .cls
        public var predictFeature: PredictFeature = .none
        public var useEma = false
        public init() { model.queryLayout = .split }

        /// The `model:` keys of spec §5.
        public init(_ spec: ExperimentSpec) {
            model = SAIM.Options(spec)
            model.queryLayout = .split
            let m = spec.model
            permutation = m.permutation
            attentionType = m.attentionType
            predictFeature = m.predictFeature
            useEma = m.useEma
        }

        /// Feature targets turn the target blur off (as the original).
        var featureTargets: Bool { predictFeature != .none }
    }

    public let options: Options
    /// The online two-stream model (its names at the top level).
    public let model: SAIM
    /// The EMA copy (`ema.*`): saved and resumed, never trained (timm ModelEma).
    public let ema: SAIM?
    /// The frozen teacher of predict_feature clip/dino.
    public let teacher: Teacher?

    public var encoder: ViTEncoder { model.encoder }

    public init(_ shape: ViTShape, _ style: ViTStyle, _ o: Options, teacher: Teacher? = nil, rng: inout RandomGenerator) {
        precondition(!o.model.shareWeight, "tessera: model.share_weight is not available for semaim")
        precondition((o.predictFeature == .clip || o.predictFeature == .dino) == (teacher != nil),
                     "tessera: predict_feature \(o.predictFeature.rawValue) \(teacher == nil ? "needs" : "takes no") teacher (model.teacher)")
        precondition(o.predictFeature != .ema || o.useEma, "tessera: predict_feature ema needs model.use_ema")
        options = o
        var m = o.model
        m.queryLayout = .split
        if o.featureTargets {
            m.gaussianKernel = 0
            m.headWidth = teacher?.outputWidth ?? shape.width
        }
        var encoderStyle = style
        encoderStyle.layout = .fused
        model = SAIM(shape, encoderStyle, m, rng: &rng)
        if o.useEma {
            var unused = RandomGenerator(seed: 0)
            let copy = SAIM(shape, encoderStyle, m, rng: &unused)
            for ((_, dst), (_, src)) in zip(copy.stateDict(), model.stateDict()) { dst.copy(from: src) }
            ema = copy
        } else {
            ema = nil
        }
        self.teacher = teacher
        super.init()
        inline(model)
        if let ema { child("ema", ema.keepAsState()) }
        if let teacher { child("teacher", teacher.module.freeze()) }
    }

    /// From a config; a clip/dino teacher is loaded from `model.teacher` (a one-line error names the
    /// key and the file when it is missing or does not fit).
    public convenience init(_ spec: ExperimentSpec, rng: inout RandomGenerator) throws {
        let o = Options(spec)
        var teacher: Teacher? = nil
        if o.predictFeature == .clip || o.predictFeature == .dino {
            guard let path = spec.model.teacher else {
                throw CheckpointError(description: "tessera: model.teacher: predict_feature \(o.predictFeature.rawValue) needs a teacher file; \(Teacher.howToConvert)")
            }
            teacher = try Teacher.load(kind: o.predictFeature.rawValue, path: path, configKey: "model.teacher", imageSize: spec.model.imgSize)
        }
        self.init(Registry.vitShape(spec), Registry.vitStyle(spec), o, teacher: teacher, rng: &rng)
    }

    // MARK: draw

    /// L + 2 uniforms per sample (`Orders.drawWidth`): one per patch, then stochastic_center's centre.
    public var drawWidth: Int { Orders.drawWidth(patches: encoder.shape.patches) }

    public func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        rng.fillUniform(row, drawWidth)
    }

    // MARK: the order

    /// `forward_encoder`: the content stream without masks through the shared final norm, in eval mode
    /// under no-grad. Returns the tokens [B, L+1, D], the feature attention [B, L] of `attentionType`
    /// cls or gap (softmax over patches of the cosine to cls or to the patch mean) and the last block's
    /// cls→patch attention, the mean over heads [B, L].
    public func encoderPass(_ net: SAIM, _ images: Tensor) -> (tokens: Tensor, feature: Tensor, selfAttention: Tensor) {
        let eval = Context(training: false)
        let (h, attn) = net.unmaskedContent(images, ctx: eval)
        let tokens = Autograd.noGrad { net.norm(h) }
        let b = images.shape[0], l = encoder.shape.patches
        let feature = Self.featureAttention(tokens, reference: options.attentionType == .gap ? .patchMean : .cls)
        return (tokens, feature, Tensor(attn, shape: [b, l]))
    }

    /// What the order and the targets of one batch come from.
    public struct Guide {
        /// Per-patch scores [B, L]; lower = predicted earlier.
        public var scores: Tensor
        /// The attention map the scores came from [B, L], for the attention-based types.
        public var attention: Tensor?
        /// The last block's cls attention of the pass that ran, [B, L], when an encoder pass ran.
        public var selfAttention: Tensor?
        /// Feature targets [B, L, W] (cls dropped), for predict_feature ≠ none.
        public var targets: Tensor?
    }

    /// The engine's per-iteration order pass (spec §5.2, §5.4) for images and draws [B, L+2].
    public func guide(_ images: Tensor, draws: Tensor) -> Guide {
        let l = encoder.shape.patches
        var g = Guide(scores: Tensor.zeros([0]))
        func patchRows(_ tokens: Tensor) -> Tensor { slice(tokens, axis: 1, start: 1, length: l).detach() }
        func pick(_ pass: (tokens: Tensor, feature: Tensor, selfAttention: Tensor)) -> Tensor {
            options.attentionType == .selfAttention ? pass.selfAttention : pass.feature
        }
        switch options.predictFeature {
        case .clip, .dino:
            let tokens = teacher!.tokens(images)
            g.attention = Self.similarity(tokens)
            g.targets = patchRows(tokens)
        case .inference, .ema:
            let pass = encoderPass(options.predictFeature == .ema ? ema! : model, images)
            g.attention = pick(pass)
            g.selfAttention = pass.selfAttention
            g.targets = patchRows(pass.tokens)
        case .none:
            if Orders.needsAttention(options.permutation) {
                let pass = encoderPass(options.useEma ? ema! : model, images)
                g.attention = pick(pass)
                g.selfAttention = pass.selfAttention
            }
        }
        g.scores = Orders.scores(options.permutation, grid: encoder.shape.grid, draws: draws,
                                 attention: Orders.needsAttention(options.permutation) ? g.attention : nil)
        return g
    }

    // MARK: forward and loss

    /// Pixels: SAIM's loss (blurred, normalised target; L2 or L1; mean over every patch). Features:
    /// the mean over B·L of Σ(p̂ − t̂)², p̂ and t̂ L2-normalised.
    public func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
        let images = batch.images
        let g = guide(images, draws: batch.draws)
        let pred = model.forwardStreams(images, scores: g.scores, ctx: ctx)
        let loss: Tensor
        if let targets = g.targets {
            loss = Self.featureLoss(pred, targets)
        } else {
            let t = model.target(images)
            loss = options.model.loss == .l2 ? mseLoss(pred, t) : l1Loss(pred, t)
        }
        return PretrainOutput(loss: loss, prediction: pred)
    }

    /// mean over rows of Σ_dim (p̂ − t̂)² with p̂, t̂ the L2-normalised prediction and target.
    public static func featureLoss(_ pred: Tensor, _ targets: Tensor) -> Tensor {
        let t = Autograd.noGrad { l2Normalize(targets) }
        return mseLoss(l2Normalize(pred), t) * Float(pred.shape.last!)
    }

    // MARK: attention maps (no gradient)

    public enum Reference { case cls, patchMean }

    /// Softmax over the patches of cos(reference, patch_j) for tokens [B, L+1, W] (cls first).
    public static func featureAttention(_ tokens: Tensor, reference: Reference) -> Tensor {
        let cos = cosines(tokens, reference: reference)
        let l = cos.shape[1]
        for bi in 0..<cos.shape[0] { Kernels.softmaxRow(cos.data + bi * l, l) }
        return cos
    }

    /// `calculate_similarity`: cos(cls, patch_j) min-max scaled per sample, (s − min)/(max − min + 1e-6).
    public static func similarity(_ tokens: Tensor) -> Tensor {
        let s = cosines(tokens, reference: .cls)
        let l = s.shape[1]
        for bi in 0..<s.shape[0] {
            let row = s.data + bi * l
            var lo = row[0], hi = row[0]
            for j in 1..<l { lo = min(lo, row[j]); hi = max(hi, row[j]) }
            for j in 0..<l { row[j] = (row[j] - lo) / (hi - lo + 1e-6) }
        }
        return s
    }

    /// [B, L] cosines between each patch token and the cls token or the mean of the patch tokens.
    static func cosines(_ tokens: Tensor, reference: Reference) -> Tensor {
        let (b, n, w) = (tokens.shape[0], tokens.shape[1], tokens.shape[2])
        let l = n - 1
        let x = tokens
        let out = Tensor.zeros([b, l])
        func unit(_ p: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>) {
            var s: Float = 0
            for k in 0..<w { s += p[k] * p[k] }
            let inv = 1 / max(s.squareRoot(), 1e-12)
            for k in 0..<w { u[k] = p[k] * inv }
        }
        let ref = UnsafeMutablePointer<Float>.allocate(capacity: w), tok = UnsafeMutablePointer<Float>.allocate(capacity: w)
        defer { ref.deallocate(); tok.deallocate() }
        for bi in 0..<b {
            let base = x.data + bi * n * w
            switch reference {
            case .cls:
                unit(base, into: ref)
            case .patchMean:
                let mean = UnsafeMutablePointer<Float>.allocate(capacity: w)
                defer { mean.deallocate() }
                for k in 0..<w { mean[k] = 0 }
                for j in 1...l { for k in 0..<w { mean[k] += base[j * w + k] } }
                for k in 0..<w { mean[k] /= Float(l) }
                unit(mean, into: ref)
            }
            for j in 0..<l {
                unit(base + (j + 1) * w, into: tok)
                var d: Float = 0
                for k in 0..<w { d += ref[k] * tok[k] }
                out.data[bi * l + j] = d
            }
        }
        return out
    }

    // MARK: EMA

    /// timm ModelEma's decay in `epoch` (SemAIM's ramp): 0.999 + epoch/100·(0.9999 − 0.999) for the
    /// first 100 epochs, then 0.9999.
    public static func emaDecay(epoch: Int) -> Double {
        epoch < 100 ? 0.999 + Double(epoch) / 100 * (0.9999 - 0.999) : 0.9999
    }

    /// ModelEma.update after each optimizer step: every state entry (parameters and buffers)
    /// e ← e·decay + (1 − decay)·online.
    public func afterOptimizerStep(epoch: Int) {
        guard let ema else { return }
        let decay = Self.emaDecay(epoch: epoch)
        let a = Float(decay), c = Float(1 - decay)
        for ((_, e), (_, o)) in zip(ema.stateDict(), model.stateDict()) {
            let ep = e.data, op = o.data
            Parallel.forRange(e.count, costPerItem: 2, minCost: 1 << 16) { r in
                for i in r { ep[i] = ep[i] * a + c * op[i] }
            }
        }
    }

    // MARK: pictures

    /// `semaim<suffix>.png`: per image, the input | the last block's cls attention | the attention map
    /// the order came from (the feature attention or the teacher's similarity) | the order (warm =
    /// predicted first).
    public func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {
        let images = batch.images
        let (b, c, hgt, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let l = encoder.shape.patches
        let g = guide(images, draws: batch.draws)
        let pass = encoderPass(options.useEma ? ema! : model, images)
        let selfMap = g.selfAttention ?? pass.selfAttention
        let semantic = g.attention ?? pass.feature
        let per = c * hgt * w
        func row(_ t: Tensor, _ i: Int) -> [Float] { Array(UnsafeBufferPointer(start: t.data + i * l, count: l)) }
        let rows = (0..<b).map { bi -> [Pictures.Tile] in
            [.image(UnsafePointer(images.data + bi * per), channels: c, height: hgt, width: w),
             .map(row(selfMap, bi), grid: encoder.shape.grid),
             .map(row(semantic, bi), grid: encoder.shape.grid),
             .map(orderMap(g.scores, sample: bi), grid: encoder.shape.grid)]
        }
        try Pictures.grid(rows, side: Pictures.displaySide(w), mean: mean, std: std,
                          to: (dir as NSString).appendingPathComponent("semaim\(suffix).png"))
    }
}
