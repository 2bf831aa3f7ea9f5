import Foundation
import TesseraConfig
import TesseraCore

/// Stochastic autoregressive image modelling (spec §4, qiy20/SAIM `SaimViT`).
///
/// Two streams over all L patches. The content stream h (cls + patches, split-q/k/v blocks) lets a
/// patch see itself and the patches before it in a random order; the query stream g starts from the
/// fixed position table and, through one cross block after every depth/query_depth content blocks,
/// sees only the patches strictly before it, so query j predicts patch j from its position and its
/// predecessors. The loss regresses every patch of the (blurred, norm-pix) target.
///
/// Checkpoint names are the original's: `patch_embed`, `cls_token`, `pos_embed`, `blocks.N`
/// (split q/k/v), `query_blocks.N`, `norm` (the query stream's), `prediction_head`
/// (`fc1`/`fc2` or a Linear) and the blur kernel `gaussian_blur.weight`.
public final class SAIM: Module, PretrainMethod {
    public struct Options: Sendable, Equatable {
        /// Query-stream blocks; one runs after every depth/queryDepth content blocks.
        public var queryDepth = 12
        /// `query_blocks` are the content `blocks` (one set of tensors under both names).
        public var shareWeight = false
        public var head: PredictionHead = .mlp
        /// Side of the Gaussian blur of the target (odd); 0 = no blur.
        public var gaussianKernel = 0
        public var gaussianSigma: Float = 1
        public var loss: LossType = .l2
        /// Per-patch target normalisation (SAIM: unbiased variance, MAE's formula).
        public var targetNorm: Patches.Norm = .unbiased
        /// The query blocks' attention layout; nil = the content blocks' (SemAIM: split q/k/v under
        /// fused-qkv content blocks).
        public var queryLayout: AttentionLayout? = nil
        /// Width of the prediction head's output; nil = p²·C pixels (SemAIM's feature targets: the
        /// teacher's width).
        public var headWidth: Int? = nil
        public init() {}

        /// The `model:` keys of spec §4.
        public init(_ spec: ExperimentSpec) {
            let m = spec.model
            queryDepth = m.queryDepth
            shareWeight = m.shareWeight
            head = m.predictionHead
            gaussianKernel = m.gaussianKernelSize
            gaussianSigma = Float(m.gaussianSigma)
            loss = m.lossType
            targetNorm = Registry.targetNorm(spec)
        }
    }

    public let options: Options
    public let encoder: ViTEncoder
    public let queryBlocks: ModuleList<Block>
    /// The query stream's final norm (`norm`; the content stream has none).
    public let norm: LayerNorm
    public let headMlp: Mlp?
    public let headLinear: Linear?
    /// [C, 1, k, k] depthwise kernel (`gaussian_blur.weight`), when the target is blurred.
    public let blurKernel: Tensor?
    /// Content blocks per query block.
    public let step: Int

    public init(_ shape: ViTShape, _ style: ViTStyle, _ o: Options, rng: inout RandomGenerator) {
        precondition(o.queryDepth >= 1 && o.queryDepth <= shape.depth && shape.depth % o.queryDepth == 0,
                     "tessera: model.query_depth \(o.queryDepth) must divide model.depth \(shape.depth)")
        precondition(o.gaussianKernel == 0 || o.gaussianKernel % 2 == 1, "tessera: model.gaussian_kernel_size must be odd")
        precondition(style.clsToken, "tessera: SAIM needs a cls token")
        options = o
        var encoderStyle = style
        encoderStyle.finalNorm = false
        encoder = ViTEncoder(shape, encoderStyle)
        step = shape.depth / o.queryDepth
        let d = shape.width
        if o.shareWeight {
            queryBlocks = encoder.blocks
        } else {
            let rates = encoder.blocks.items.map(\.dropPath)
            queryBlocks = ModuleList((0..<o.queryDepth).map {
                Block(dim: d, heads: shape.heads, mlpRatio: shape.mlpRatio, layout: o.queryLayout ?? style.layout, dropPath: rates[$0])
            })
        }
        norm = LayerNorm(d)
        let out = o.headWidth ?? shape.patchSize * shape.patchSize * shape.inChans
        headMlp = o.head == .mlp ? Mlp(d, hidden: Int(Float(d) * shape.mlpRatio), out: out) : nil
        headLinear = o.head == .linear ? Linear(d, out) : nil
        blurKernel = o.gaussianKernel > 0
            ? concat(Array(repeating: gaussianKernel(size: o.gaussianKernel, sigma: o.gaussianSigma)
                .reshaped([1, 1, o.gaussianKernel, o.gaussianKernel]), count: shape.inChans), axis: 0)
            : nil
        super.init()
        inline(encoder)
        if o.shareWeight { alias("query_blocks", queryBlocks) } else { child("query_blocks", queryBlocks) }
        child("norm", norm)
        if let headMlp { child("prediction_head", headMlp) }
        if let headLinear { child("prediction_head", headLinear) }
        if let blurKernel {
            let blur = Module()
            blur.buffer("weight", blurKernel)
            child("gaussian_blur", blur)
        }
        initialize(rng: &rng)
    }

    public convenience init(_ spec: ExperimentSpec, rng: inout RandomGenerator) {
        self.init(Registry.vitShape(spec), Registry.vitStyle(spec), Options(spec), rng: &rng)
    }

    /// Spec §1.4 (as MAE): xavier_uniform on every Linear (bias 0), the patch projection viewed as
    /// [D, C·p·p] (default bias), cls normal(0.02), LayerNorms 1/0.
    func initialize(rng: inout RandomGenerator) {
        encoder.initialize(rng: &rng)
        if !options.shareWeight { for b in queryBlocks.items { initXavier(b, rng: &rng) } }
        if let headMlp { initXavier(headMlp, rng: &rng) }
        headLinear?.initXavier(rng: &rng)
    }

    // MARK: draw and masks

    /// The permutation noise: U[0, 1) per patch; the lowest-noise patch comes first.
    public var drawWidth: Int { encoder.shape.patches }

    public func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        rng.fillUniform(row, drawWidth)
    }

    /// The additive masks [B, L+1, L+1] of `generate_attention_mask` for scores [B, L] (lower = earlier):
    /// content `h` (patch i sees j iff score_j ≤ score_i, itself included) and query `g` (strictly
    /// earlier only). In both, cls sees only itself and every token sees cls.
    public static func attentionMasks(scores: Tensor) -> (content: Tensor, query: Tensor) {
        let (b, l) = (scores.shape[0], scores.shape[1])
        let n = l + 1
        let h = Tensor.zeros([b, n, n]), g = Tensor.zeros([b, n, n])
        let s = scores.data, hp = h.data, gp = g.data
        Parallel.forRange(b, costPerItem: n * n, minCost: 1 << 14) { r in
            for bi in r {
                let row = s + bi * l, hb = hp + bi * n * n, gb = gp + bi * n * n
                for j in 1..<n { hb[j] = -.infinity; gb[j] = -.infinity }
                for i in 0..<l {
                    let si = row[i]
                    let hr = hb + (i + 1) * n + 1, gr = gb + (i + 1) * n + 1
                    for j in 0..<l {
                        let sj = row[j]
                        hr[j] = si < sj ? -.infinity : 0
                        gr[j] = si <= sj ? -.infinity : 0
                    }
                }
            }
        }
        return (h, g)
    }

    // MARK: forward and loss

    /// The content stream's input: cls + pos[0], then the patch tokens + pos[1:], [B, L+1, D].
    func contentTokens(_ images: Tensor) -> Tensor {
        concat([encoder.clsTokens(batch: images.shape[0]), encoder.patchTokens(images)], axis: 1)
    }

    /// The two streams on images [B, C, H, W] with masks from `scores` [B, L]: prediction [B, L, p²C]
    /// (the cls row dropped).
    public func forwardStreams(_ images: Tensor, scores: Tensor, ctx: Context) -> Tensor {
        let b = images.shape[0], l = encoder.shape.patches, d = encoder.shape.width
        checkShapes(scores.shape, [b, l], "SAIM permutation noise")
        let masks = Self.attentionMasks(scores: scores)
        var h = contentTokens(images)
        var g = expand(encoder.posEmbed, to: [b, l + 1, d])
        for (i, blk) in encoder.blocks.items.enumerated() {
            h = blk(h, mask: masks.content, ctx: ctx)
            if (i + 1) % step == 0 { g = queryBlocks[i / step].cross(g, h, mask: masks.query, ctx: ctx) }
        }
        g = norm(g)
        let pred = headMlp.map { $0(g) } ?? headLinear!(g)
        return slice(pred, axis: 1, start: 1, length: l)
    }

    /// The regression target: the images blurred (depthwise Gaussian, zero padding), patchified in
    /// (row, col, channel) order, each patch normalised. [B, L, p²C], no gradient.
    public func target(_ images: Tensor) -> Tensor {
        let blurred = blurredImages(images)
        let t = Patches.patchify(blurred, patch: encoder.shape.patchSize, order: .hwc)
        Patches.normalize(t, options.targetNorm)
        return t
    }

    /// The images the prediction reconstructs: blurred when a kernel is set.
    func blurredImages(_ images: Tensor) -> Tensor {
        guard let blurKernel else { return images }
        let k = options.gaussianKernel
        return Autograd.noGrad { depthwiseBlur(images.detach(), kernel: blurKernel.view([k, k])) }
    }

    /// Loss: mean over all B·L·p²C elements of the squared (l2) or absolute (l1) error.
    public func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput {
        let pred = forwardStreams(batch.images, scores: batch.draws, ctx: ctx)
        let t = target(batch.images)
        let loss = options.loss == .l2 ? mseLoss(pred, t) : l1Loss(pred, t)
        return PretrainOutput(loss: loss, prediction: pred)
    }

    /// The content stream without masks (SAIM's attention figure): the last block's cls→patch
    /// attention, the mean over heads, [B, L]. No gradient.
    public func clsAttention(_ images: Tensor, ctx: Context) -> [Float] { unmaskedContent(images, ctx: ctx).clsAttention }

    /// The content stream on all patches without masks, under no-grad: the last block's output
    /// [B, L+1, D] (no norm) and that block's cls→patch attention, the mean over heads, [B·L].
    public func unmaskedContent(_ images: Tensor, ctx: Context) -> (tokens: Tensor, clsAttention: [Float]) {
        Autograd.noGrad {
            var h = contentTokens(images)
            for blk in encoder.blocks.items.dropLast() { h = blk(h, ctx: ctx) }
            let (out, probs) = encoder.blocks.items.last!.withAttention(h, ctx: ctx)   // probs [B, heads, L+1, L+1]
            return (out, meanClsRow(probs, batch: images.shape[0], patches: encoder.shape.patches))
        }
    }

    // MARK: pictures

    /// `saim<suffix>.png`: per image, the input | the prediction of every patch (norm-pix undone
    /// with the target's own statistics) | the order (warm = predicted first) | the last block's
    /// cls attention without masks (warm = high).
    public func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws {
        let images = batch.images
        let (b, c, hgt, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let p = encoder.shape.patchSize, l = encoder.shape.patches
        let pred = Autograd.noGrad { forwardStreams(images, scores: batch.draws, ctx: ctx) }
        let recon = Pictures.unnormalizedPrediction(pred, target: Patches.patchify(blurredImages(images), patch: p, order: .hwc),
                                                    patch: p, channels: c, order: .hwc, norm: options.targetNorm)
        let attention = clsAttention(images, ctx: ctx)
        let per = c * hgt * w
        let rows = (0..<b).map { bi -> [Pictures.Tile] in
            [.image(UnsafePointer(images.data + bi * per), channels: c, height: hgt, width: w),
             .image(UnsafePointer(recon.data + bi * per), channels: c, height: hgt, width: w),
             .map(orderMap(batch.draws, sample: bi), grid: encoder.shape.grid),
             .map(Array(attention[(bi * l)..<((bi + 1) * l)]), grid: encoder.shape.grid)]
        }
        try Pictures.grid(rows, side: Pictures.displaySide(w), mean: mean, std: std,
                          to: (dir as NSString).appendingPathComponent("saim\(suffix).png"))
    }
}

/// Per patch, L − 1 − its rank in the ascending order of `scores[sample]` (so the first is largest).
func orderMap(_ scores: Tensor, sample: Int) -> [Float] {
    let l = scores.shape[1]
    let row = scores.data + sample * l
    let order = (0..<l).sorted { row[$0] < row[$1] || (row[$0] == row[$1] && $0 < $1) }
    var out = [Float](repeating: 0, count: l)
    for (rank, idx) in order.enumerated() { out[idx] = Float(l - 1 - rank) }
    return out
}

/// The cls row of attention probabilities [B, heads, L+1, L+1] towards the patches, averaged over
/// heads: [B·L].
func meanClsRow(_ probs: Tensor, batch b: Int, patches l: Int) -> [Float] {
    let heads = probs.shape[1], n = l + 1
    var out = [Float](repeating: 0, count: b * l)
    for bi in 0..<b { for hi in 0..<heads {
        let row = probs.data + ((bi * heads + hi) * n) * n
        for j in 0..<l { out[bi * l + j] += row[1 + j] / Float(heads) }
    } }
    return out
}
