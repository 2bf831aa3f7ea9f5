import Foundation
import TesseraCore
import TesseraHDF5

/// OpenAI CLIP's image tower (`clip.model.VisionTransformer`, the `visual` part of a CLIP state dict),
/// as SemAIM* runs it for its targets (`engine_pretrain.forward_features_clip`): conv1 (no bias) →
/// prepend class_embedding → + positional_embedding → ln_pre → residual attention blocks (QuickGELU
/// MLP) → ln_post on **every** token → @ proj. Output [B, L+1, output_dim].
///
/// Parameter names are CLIP's without the `visual.` prefix (what tools/teacher_to_h5.py writes):
/// `conv1.weight`, `class_embedding`, `positional_embedding`, `ln_pre`, `transformer.resblocks.N.
/// {ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`,
/// `ln_post`, `proj`. LayerNorms use PyTorch's default eps 1e-5, as CLIP does.
public final class CLIPVisual: Module {
    public struct Shape: Equatable, Sendable {
        public var width: Int, layers: Int, heads: Int, patch: Int, grid: Int, outputDim: Int, inChans = 3
        public init(width: Int, layers: Int, heads: Int, patch: Int, grid: Int, outputDim: Int, inChans: Int = 3) {
            self.width = width; self.layers = layers; self.heads = heads; self.patch = patch; self.grid = grid
            self.outputDim = outputDim; self.inChans = inChans
        }
    }

    /// One `ResidualAttentionBlock`: x + attn(ln_1(x)), then x + c_proj(QuickGELU(c_fc(ln_2(x)))).
    public final class ResidualBlock: Module {
        public let ln1: LayerNorm, ln2: LayerNorm
        public let attention: Attention
        public let fc: Linear, projection: Linear

        init(width: Int, heads: Int) {
            ln1 = LayerNorm(width, eps: 1e-5)
            ln2 = LayerNorm(width, eps: 1e-5)
            attention = Attention(dim: width, heads: heads, layout: .fused)
            fc = Linear(width, 4 * width)
            projection = Linear(4 * width, width)
            super.init()
            child("ln_1", ln1)
            // nn.MultiheadAttention's names for the same fused [q; k; v] projection and the output.
            let attn = Module()
            attn.parameter("in_proj_weight", attention.qkv!.weight)
            attn.parameter("in_proj_bias", attention.qkv!.bias!)
            attn.child("out_proj", attention.proj)
            child("attn", attn)
            child("ln_2", ln2)
            let mlp = Module()
            mlp.child("c_fc", fc)
            mlp.child("c_proj", projection)
            child("mlp", mlp)
        }

        func callAsFunction(_ x: Tensor) -> Tensor {
            let h = x + attention(ln1(x))
            return h + projection(quickGelu(fc(ln2(h))))
        }
    }

    public let shape: Shape
    public let conv1: Tensor            // [W, C, p, p]
    public let classEmbedding: Tensor   // [W]
    public let positionalEmbedding: Tensor  // [L+1, W]
    public let lnPre: LayerNorm, lnPost: LayerNorm
    public let blocks: [ResidualBlock]
    public let proj: Tensor             // [W, output_dim]

    public init(_ s: Shape) {
        shape = s
        conv1 = Tensor.zeros([s.width, s.inChans, s.patch, s.patch])
        classEmbedding = Tensor.zeros([s.width])
        positionalEmbedding = Tensor.zeros([s.grid * s.grid + 1, s.width])
        lnPre = LayerNorm(s.width, eps: 1e-5)
        lnPost = LayerNorm(s.width, eps: 1e-5)
        blocks = (0..<s.layers).map { _ in ResidualBlock(width: s.width, heads: s.heads) }
        proj = Tensor.zeros([s.width, s.outputDim])
        super.init()
        let conv = Module()
        conv.parameter("weight", conv1)
        child("conv1", conv)
        parameter("class_embedding", classEmbedding)
        parameter("positional_embedding", positionalEmbedding)
        child("ln_pre", lnPre)
        let transformer = Module()
        transformer.child("resblocks", ModuleList(blocks))
        child("transformer", transformer)
        child("ln_post", lnPost)
        parameter("proj", proj)
    }

    /// Tokens [B, L+1, output_dim] for images [B, C, H, W] (normalised as the student's input).
    public func callAsFunction(_ images: Tensor) -> Tensor {
        let b = images.shape[0], w = shape.width, l = shape.grid * shape.grid
        let patches = patchEmbed(images, weight: conv1, bias: nil)
        let cls = expand(classEmbedding.reshaped([1, 1, w]), to: [b, 1, w])
        var x = concat([cls, patches], axis: 1) + positionalEmbedding.reshaped([1, l + 1, w])
        x = lnPre(x)
        for blk in blocks { x = blk(x) }
        return matmul(lnPost(x), proj)
    }
}

/// A frozen teacher of SemAIM* (spec §5.4): CLIP's image tower or a DINO ViT (timm names, final norm
/// on every token). Its shape is read from the HDF5 file tools/teacher_to_h5.py writes.
public enum Teacher {
    case clip(CLIPVisual)
    case dino(ViTEncoder)

    public var module: Module {
        switch self {
        case .clip(let m): return m
        case .dino(let m): return m
        }
    }

    /// Width of the teacher's tokens (the student's head width for these targets).
    public var outputWidth: Int {
        switch self {
        case .clip(let m): return m.shape.outputDim
        case .dino(let m): return m.shape.width
        }
    }

    /// Tokens [B, L+1, outputWidth], no gradient.
    public func tokens(_ images: Tensor) -> Tensor {
        Autograd.noGrad {
            switch self {
            case .clip(let m): return m(images)
            case .dino(let m): return m(images, ctx: Context(training: false))
            }
        }
    }

    public static let howToConvert = "convert the PyTorch weights with `python3 tools/teacher_to_h5.py --kind clip|dino IN.pth OUT.h5`"

    /// Builds the teacher of kind `kind` ("clip" or "dino") from `path`, frozen, with its weights; the
    /// shape comes from the tensors (heads from the file's `teacher_config`, else width/64 as CLIP
    /// ViT-B/16 and DINO ViT-S/B have). Errors name `configKey`, the file and the missing or
    /// mis-shaped keys.
    public static func load(kind: String, path: String, configKey: String, imageSize: Int) throws -> Teacher {
        guard FileManager.default.fileExists(atPath: path) else {
            throw CheckpointError(description: "tessera: \(configKey): \(path) does not exist; \(howToConvert)")
        }
        let ck: Checkpoint
        do { ck = try Checkpoint.read(path) } catch {
            throw CheckpointError(description: "tessera: \(configKey): \(path): \(error); \(howToConvert)")
        }
        func need(_ name: String, rank: Int) throws -> [Int] {
            guard let t = ck.params[name] else {
                throw CheckpointError(description: "tessera: \(configKey): \(path) is not a \(kind) teacher: no `\(name)`; \(howToConvert)")
            }
            guard t.rank == rank else {
                throw CheckpointError(description: "tessera: \(configKey): \(path): `\(name)` has shape \(t.shape), expected rank \(rank)")
            }
            return t.shape
        }
        func count(_ prefix: String) -> Int {
            var n = 0
            while ck.params.keys.contains(where: { $0.hasPrefix("\(prefix)\(n).") }) { n += 1 }
            return n
        }
        let heads = headsAttribute(path)
        let teacher: Teacher
        switch kind {
        case "clip":
            let conv = try need("conv1.weight", rank: 4), proj = try need("proj", rank: 2)
            let pos = try need("positional_embedding", rank: 2)
            let width = conv[0], patch = conv[2]
            let grid = imageSize / patch
            guard pos[0] == grid * grid + 1 else {
                throw CheckpointError(description: "tessera: \(configKey): \(path): positional_embedding has \(pos[0]) rows, but \(imageSize) px images in \(patch) px patches need \(grid * grid + 1)")
            }
            let s = CLIPVisual.Shape(width: width, layers: count("transformer.resblocks."), heads: heads ?? max(width / 64, 1),
                                     patch: patch, grid: grid, outputDim: proj[1], inChans: conv[1])
            teacher = .clip(CLIPVisual(s))
        case "dino":
            let conv = try need("patch_embed.proj.weight", rank: 4), pos = try need("pos_embed", rank: 3)
            let width = conv[0], patch = conv[2]
            let grid = imageSize / patch
            guard pos[1] == grid * grid + 1 else {
                throw CheckpointError(description: "tessera: \(configKey): \(path): pos_embed has \(pos[1]) rows, but \(imageSize) px images in \(patch) px patches need \(grid * grid + 1)")
            }
            let shape = ViTShape(imgSize: imageSize, patchSize: patch, inChans: conv[1], width: width, depth: count("blocks."),
                                 heads: heads ?? max(width / 64, 1), mlpRatio: 4)
            teacher = .dino(ViTEncoder(shape, ViTStyle(layout: .fused, posLayout: .mae, clsToken: true, learnablePos: true, finalNorm: true)))
        default:
            throw CheckpointError(description: "tessera: \(configKey): unknown teacher kind \(kind)")
        }
        teacher.module.freeze()
        do { try teacher.module.load(state: ck.params, strict: true) } catch let m as StateDictMismatch {
            throw CheckpointError(description: "tessera: \(configKey): \(path) does not fit a \(kind) teacher: \(m.description.replacingOccurrences(of: "tessera: ", with: ""))")
        }
        return teacher
    }

    /// `heads` from the file's `teacher_config` attribute (JSON), when present.
    static func headsAttribute(_ path: String) -> Int? {
        guard let f = try? HDF5File(reading: path) else { return nil }
        defer { f.close() }
        guard let text = try? f.attribute("teacher_config"), let data = text.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return (obj["heads"] as? NSNumber)?.intValue
    }
}
