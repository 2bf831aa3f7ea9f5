import Foundation
import TesseraCore
import TesseraHDF5

/// The DALL-E dVAE encoder (openai/DALL-E `dall_e.Encoder`, the `encoder.pkl` CAE tokenizes with):
/// a 7×7 input conv, `group_count` groups of `n_blk_per_group` residual blocks (id path + post_gain
/// × [ReLU, 3×3, ReLU, 3×3, ReLU, 3×3, ReLU, 1×1]) with 2×2 max-pooling after every group but the
/// last, then ReLU and a 1×1 conv to `vocab_size` logits. Frozen and forward only: `tokens` gives the
/// argmax ids, row-major [B, (H/8)·(W/8)].
///
/// Parameter names are the encoder's own (`blocks.input.w`, `blocks.group_1.block_1.id_path.w`,
/// `….res_path.conv_1.w`, `blocks.output.conv.b`), as tools/dalle_to_h5.py writes them.
public final class DALLEEncoder: Module {
    public struct Config: Equatable, Sendable {
        public var groupCount = 4, hidden = 256, blocksPerGroup = 2, inputChannels = 3, vocabSize = 8192
        public init(groupCount: Int = 4, hidden: Int = 256, blocksPerGroup: Int = 2, inputChannels: Int = 3, vocabSize: Int = 8192) {
            self.groupCount = groupCount; self.hidden = hidden; self.blocksPerGroup = blocksPerGroup
            self.inputChannels = inputChannels; self.vocabSize = vocabSize
        }
    }

    /// A dall_e Conv2d: `w` [out, in, k, k] and `b` [out], padding (k − 1)/2.
    final class Conv: Module {
        let w: Tensor, b: Tensor
        init(_ n: Int, _ out: Int, _ k: Int) {
            w = Tensor.zeros([out, n, k, k])
            b = Tensor.zeros([out])
            super.init()
            parameter("w", w)
            parameter("b", b)
        }
        func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: w, bias: b, padding: (w.shape[2] - 1) / 2) }
    }

    final class ResidualBlock: Module {
        let idPath: Conv?
        let convs: [Conv]
        let postGain: Float
        init(_ n: Int, _ out: Int, layers: Int) {
            let hid = out / 4
            idPath = n != out ? Conv(n, out, 1) : nil
            convs = [Conv(n, hid, 3), Conv(hid, hid, 3), Conv(hid, hid, 3), Conv(hid, out, 1)]
            postGain = 1 / Float(layers * layers)
            super.init()
            if let idPath { child("id_path", idPath) }
            let res = Module()
            for (i, c) in convs.enumerated() { res.child("conv_\(i + 1)", c) }
            child("res_path", res)
        }
        func callAsFunction(_ x: Tensor) -> Tensor {
            var r = x
            for c in convs { r = c(relu(r)) }
            let id = idPath.map { $0(x) } ?? x
            return id + r * postGain
        }
    }

    public let config: Config
    let input: Conv
    let groups: [[ResidualBlock]]
    let output: Conv

    public init(_ c: Config) {
        config = c
        let layers = c.groupCount * c.blocksPerGroup
        input = Conv(c.inputChannels, c.hidden, 7)
        var width = c.hidden
        groups = (0..<c.groupCount).map { g in
            let out = c.hidden << g
            return (0..<c.blocksPerGroup).map { i in
                defer { width = out }
                return ResidualBlock(i == 0 ? width : out, out, layers: layers)
            }
        }
        output = Conv(c.hidden << (c.groupCount - 1), c.vocabSize, 1)
        super.init()
        let blocks = Module()
        blocks.child("input", input)
        for (g, blks) in groups.enumerated() {
            let group = Module()
            for (i, b) in blks.enumerated() { group.child("block_\(i + 1)", b) }
            blocks.child("group_\(g + 1)", group)
        }
        let out = Module()
        out.child("conv", output)
        blocks.child("output", out)
        child("blocks", blocks)
    }

    /// Logits [B, vocab, H/2^(groups−1), W/2^(groups−1)] for a mapped view [B, C, H, W].
    public func logits(_ x: Tensor) -> Tensor {
        Autograd.noGrad {
            var h = input(x)
            for (g, blks) in groups.enumerated() {
                for b in blks { h = b(h) }
                if g < groups.count - 1 { h = maxPool2x2(h) }
            }
            return output(relu(h))
        }
    }

    /// The codebook ids: argmax over the vocabulary (first maximum on ties), flattened row-major,
    /// [B, h·w].
    public func tokens(_ x: Tensor) -> [Int32] {
        let z = logits(x)
        let (b, v, h, w) = (z.shape[0], z.shape[1], z.shape[2], z.shape[3])
        let n = h * w
        var out = [Int32](repeating: 0, count: b * n)
        let zp = z.data
        for bi in 0..<b { for j in 0..<n {
            var best = 0
            var top = zp[bi * v * n + j]
            for c in 1..<v {
                let val = zp[(bi * v + c) * n + j]
                if val > top { top = val; best = c }
            }
            out[bi * n + j] = Int32(best)
        } }
        return out
    }

    public static let howToConvert = "convert the DALL-E encoder with `python3 tools/dalle_to_h5.py encoder.pkl OUT.h5`"

    /// The encoder of `path` (tools/dalle_to_h5.py output), frozen; the configuration comes from the
    /// tensors. Errors name `configKey` and the file.
    public static func load(path: String, configKey: String) throws -> DALLEEncoder {
        guard FileManager.default.fileExists(atPath: path) else {
            throw CheckpointError(description: "tessera: \(configKey): \(path) does not exist; \(howToConvert)")
        }
        let ck: Checkpoint
        do { ck = try Checkpoint.read(path) } catch {
            throw CheckpointError(description: "tessera: \(configKey): \(path): \(error); \(howToConvert)")
        }
        guard let inW = ck.params["blocks.input.w"], inW.rank == 4, let outW = ck.params["blocks.output.conv.w"], outW.rank == 4 else {
            throw CheckpointError(description: "tessera: \(configKey): \(path) is not a DALL-E encoder: no blocks.input.w / blocks.output.conv.w; \(howToConvert)")
        }
        var groups = 0
        while ck.params.keys.contains(where: { $0.hasPrefix("blocks.group_\(groups + 1).") }) { groups += 1 }
        var perGroup = 0
        while ck.params.keys.contains(where: { $0.hasPrefix("blocks.group_1.block_\(perGroup + 1).") }) { perGroup += 1 }
        let c = Config(groupCount: groups, hidden: inW.shape[0], blocksPerGroup: perGroup, inputChannels: inW.shape[1], vocabSize: outW.shape[0])
        let m = DALLEEncoder(c)
        m.freeze()
        do { try m.load(state: ck.params, strict: true) } catch let e as StateDictMismatch {
            throw CheckpointError(description: "tessera: \(configKey): \(path) does not fit a DALL-E encoder: \(e.description.replacingOccurrences(of: "tessera: ", with: ""))")
        }
        return m
    }
}
