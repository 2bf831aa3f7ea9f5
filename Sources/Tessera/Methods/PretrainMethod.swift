import Foundation
import TesseraCore
import TesseraHDF5

/// Everything one pre-training step receives: the whole batch.
public struct PretrainBatch {
    /// The network input [B, C, H, W] (normalised) first, then any further views a method reads
    /// (CAE's 112 px tokenizer view), each with the batch as its first axis.
    public var views: [Tensor]
    /// Class labels when the data set has them (no method trains on them; pictures may show them).
    public var labels: [Int]?
    /// The per-sample random draws [B, drawWidth] (`PretrainMethod.draw`): MAE's masking noise,
    /// SAIM's permutation noise, CAE's block masks.
    public var draws: Tensor

    public init(views: [Tensor], labels: [Int]? = nil, draws: Tensor) {
        precondition(!views.isEmpty, "tessera: a pre-training batch needs at least one view")
        let b = views[0].shape[0]
        for v in views { precondition(v.shape[0] == b, "tessera: view \(v.shape) does not have the batch's \(b) samples") }
        precondition(draws.rank == 2 && draws.shape[0] == b, "tessera: draws \(draws.shape) do not fit a batch of \(b)")
        self.views = views
        self.labels = labels
        self.draws = draws
    }

    public var images: Tensor { views[0] }
    public var count: Int { views[0].shape[0] }

    /// Samples `rows` of every view, the labels and the draws (views share storage; no copy).
    public func rows(_ rows: Range<Int>) -> PretrainBatch {
        PretrainBatch(views: views.map { $0.batchRows(rows) }, labels: labels.map { Array($0[rows]) }, draws: draws.batchRows(rows))
    }
}

extension Tensor {
    /// Rows `rows` of a batch-major tensor, sharing its storage (a replica's part of a batch).
    func batchRows(_ rows: Range<Int>) -> Tensor {
        view([rows.count] + shape.dropFirst(), start: rows.lowerBound * (count / shape[0]))
    }
}

/// `f` of contiguous shares of `x`'s rows (samples), gathered into one tensor in row order: a no-grad
/// forward (feature extraction, evaluation) split like a training batch. The shares run on `parts`
/// threads at once with their kernels on their own thread (`Replicas`); with `maxRows`, each thread
/// takes its rows in chunks of at most that many, so only one chunk's activations are alive per
/// thread. `f` must treat samples independently (no batch statistics); the result equals one pass up
/// to float rounding.
public func mapBatchRows(_ x: Tensor, parts: Int, maxRows: Int = .max, _ f: (Tensor) -> Tensor) -> Tensor {
    let b = x.shape[0], n = min(max(1, parts), b)
    let perPart = (b + n - 1) / n
    let chunksPerPart = max(1, (perPart + max(1, maxRows) - 1) / max(1, maxRows))
    let total = min(b, n * chunksPerPart)
    guard total > 1 else { return f(x) }
    precondition(!Autograd.isEnabled, "tessera: mapBatchRows runs under no-grad only")
    let ranges = (0..<total).map { c in (b * c / total)..<(b * (c + 1) / total) }
    var outs = [Tensor?](repeating: nil, count: total)
    outs.withUnsafeMutableBufferPointer { o in
        let o = o
        Replicas.run(n, leaves: []) { r in
            for c in stride(from: r, to: total, by: n) { o[c] = f(x.batchRows(ranges[c])) }
        }
    }
    let first = outs[0]!
    let y = Tensor(shape: [b] + first.shape.dropFirst())
    let rowSize = first.count / max(1, ranges[0].count)
    for (c, t) in outs.enumerated() {
        precondition(t!.shape[0] == ranges[c].count, "tessera: mapBatchRows: a part returned \(t!.shape[0]) rows for \(ranges[c].count)")
        (y.data + ranges[c].lowerBound * rowSize).update(from: t!.data, count: t!.count)
    }
    return y
}

/// What a pre-training forward pass returns.
public struct PretrainOutput {
    /// The scalar loss to back-propagate.
    public var loss: Tensor
    /// Named scalar terms logged beside the loss (CAE: loss_main, loss_align, accuracy). Each must be
    /// a mean of equal per-image parts, like the loss, so that a split batch combines them by weight.
    public var terms: [String: Float] = [:]
    /// Reconstruction [B, L, P] in the target's patch order and normalisation, when the method has one.
    public var prediction: Tensor?
    /// 1 = patch was hidden from the encoder, [B·L], when the method masks.
    public var mask: [Float]?

    public init(loss: Tensor, terms: [String: Float] = [:], prediction: Tensor? = nil, mask: [Float]? = nil) {
        self.loss = loss; self.terms = terms; self.prediction = prediction; self.mask = mask
    }
}

/// A pre-training method: its modules (a `Module` tree with the original code's checkpoint names),
/// its per-sample random draw, its forward pass and loss, and its pictures. The step, the thread
/// replicas, the training loop, `tessera step`, checkpoints and downstream tasks handle every method
/// through this protocol alone. See docs/ADDING_A_METHOD.md.
///
/// Frozen modules (teachers, tokenizers) are children that called `Module.freeze()`: they are left
/// out of the parameters (never stepped, clipped, decayed or a replica leaf) and out of checkpoints,
/// and load their own file (`loadFrozenWeights`). Shared modules are registered once with `child` and
/// once more with `Module.alias`: stepped once, saved under both names.
public protocol PretrainMethod: Module {
    /// The encoder whose weights downstream protocols use.
    var encoder: ViTEncoder { get }
    /// Floats in one sample's random draw.
    var drawWidth: Int { get }
    /// One sample's draw from that sample's own generator, a function of (seed, epoch, index) alone
    /// (`Draws.generator`), so thread parts, processes and resumed runs see the same values.
    func draw(into row: UnsafeMutablePointer<Float>, rng: inout RandomGenerator)
    /// The batch's draws before a step (default: as drawn). MAE-priv's batched shuffle gives every
    /// sample sample 0's noise here, before the batch is split over threads.
    func batchDraws(_ draws: Tensor) -> Tensor
    /// True when the loss and every term are the mean of equal per-image parts, so a batch may be cut
    /// into parts whose image-weighted results equal the whole-batch pass (`PretrainStep`).
    var splitsByImage: Bool { get }
    /// The loss (and terms) of one batch.
    func forward(_ batch: PretrainBatch, ctx: Context) -> PretrainOutput
    /// Writes the method's pictures of `batch` (a few evaluation-transformed images) into `dir`,
    /// file names ending in `suffix` (e.g. "-3" after epoch 3). `mean`/`std` undo the normalisation.
    func writePictures(_ batch: PretrainBatch, ctx: Context, to dir: String, suffix: String, mean: [Float], std: [Float]) throws
    /// Runs after every optimizer step of `epoch` (default: nothing); SemAIM's EMA update.
    func afterOptimizerStep(epoch: Int)
}

extension PretrainMethod {
    public func batchDraws(_ draws: Tensor) -> Tensor { draws }
    public var splitsByImage: Bool { true }
    public func afterOptimizerStep(epoch: Int) {}

    /// `forward` on images alone, with the given draws or those of samples 0..<B at epoch 0.
    public func forward(images: Tensor, draws: Tensor? = nil, seed: UInt64 = 0, ctx: Context) -> PretrainOutput {
        let d = draws ?? Draws.make(self, indices: Array(0..<images.shape[0]), epoch: 0, seed: seed)
        return forward(PretrainBatch(views: [images], draws: d), ctx: ctx)
    }
}

/// The per-sample draws of a batch.
public enum Draws {
    /// Sample `index`'s generator in `epoch`: derived from the run seed alone, so the draw does not
    /// depend on the batch it lands in, the thread that runs it or the process that loads it.
    public static func generator(seed: UInt64, epoch: Int, index: Int) -> RandomGenerator {
        RandomGenerator(seed: seed).derived(0x4452_4157, UInt64(truncatingIfNeeded: epoch)).derived(UInt64(truncatingIfNeeded: index))
    }

    /// [B, drawWidth]: each row drawn by `method.draw` from its sample's generator, then `batchDraws`.
    public static func make(_ method: PretrainMethod, indices: [Int], epoch: Int, seed: UInt64) -> Tensor {
        let w = method.drawWidth
        let t = Tensor.zeros([indices.count, w])
        let p = t.data
        Parallel.forRange(indices.count, costPerItem: 16 * max(w, 1), minCost: 1 << 14) { r in
            for i in r {
                var g = generator(seed: seed, epoch: epoch, index: indices[i])
                method.draw(into: p + i * w, rng: &g)
            }
        }
        return method.batchDraws(t)
    }
}

/// Loads a frozen module's weights (a teacher or tokenizer) from its own HDF5 file (`params/<name>`,
/// as tools/pth_to_h5.py writes), strictly; the error names the config key, the file and how to make
/// one.
public func loadFrozenWeights(_ module: Module, from path: String, configKey: String, howToConvert: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
        throw CheckpointError(description: "tessera: \(configKey): \(path) does not exist; \(howToConvert)")
    }
    let ck: Checkpoint
    do { ck = try Checkpoint.read(path) } catch {
        throw CheckpointError(description: "tessera: \(configKey): \(path): \(error); \(howToConvert)")
    }
    do { try module.load(state: ck.params, strict: true) } catch let m as StateDictMismatch {
        throw CheckpointError(description: "tessera: \(configKey): \(path) does not fit: \(m.description.replacingOccurrences(of: "tessera: ", with: ""))")
    }
}
