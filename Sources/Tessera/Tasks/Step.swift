import Foundation
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// `tessera step`: one forward and backward pass on exactly the given batch, for number-by-number
/// comparison with a PyTorch implementation.
public enum StepCommand {
    /// batch.h5: `images` [B, C, H, W] (normalised); optionally `views/1`, `views/2`, … (further
    /// views a method reads), `labels` [B], and the method's per-sample draws as `draws` [B, W] (or
    /// `noise`, its older name); without them the draws of samples 0..<B at epoch 0 are used. weights:
    /// a checkpoint or converted state dict (`params/<name>`). Writes `loss`, `terms/<name>`, `mask`,
    /// `prediction` and `grads/<name>` to `out`.
    public static func run(spec: ExperimentSpec, weights: String, batch: String, out: String) throws {
        try MemoryBound.check(spec)
        var rng = RandomGenerator(seed: UInt64(spec.seed))
        let model = try Registry.method(spec.model.method.rawValue).build(spec, &rng)
        // Fixed tables (pos embeds, blur kernels) may be absent from a converted state dict; everything trainable must fit.
        let report = try loadWeights(into: model, from: weights)
        let f = try HDF5File(reading: batch)
        let (iv, ishape) = try f.readFloats("images")
        var views = [Tensor(iv, shape: ishape)]
        while f.contains("views/\(views.count)") {
            let (v, shape) = try f.readFloats("views/\(views.count)")
            views.append(Tensor(v, shape: shape))
        }
        let labels = f.contains("labels") ? try f.readDoubles("labels").values.map { Int($0) } : nil
        let drawName = f.contains("draws") ? "draws" : (f.contains("noise") ? "noise" : nil)
        let draws = try drawName.map { name -> Tensor in
            let (v, shape) = try f.readFloats(name)
            return model.batchDraws(Tensor(v, shape: shape))
        } ?? Draws.make(model, indices: Array(0..<ishape[0]), epoch: 0, seed: UInt64(spec.seed))
        f.close()
        let ctx = Context(training: true, rng: rng)
        let output = model.forward(PretrainBatch(views: views, labels: labels, draws: draws), ctx: ctx)
        output.loss.backward()
        try HDF5.writeAtomically(to: out) { o in
            try o.write("loss", doubles: [Double(output.loss.item)], shape: [])
            for (k, v) in output.terms { try o.write("terms/\(k)", doubles: [Double(v)], shape: []) }
            if let m = output.mask { try o.write("mask", floats: m, shape: [ishape[0], m.count / ishape[0]]) }
            if let p = output.prediction { try o.write("prediction", floats: UnsafePointer(p.data), shape: p.shape) }
            for (name, p) in model.namedParameters() {
                if let g = p.grad { try o.write("grads/" + name, floats: UnsafePointer(g.data), shape: g.shape) }
            }
        }
        if !report.unexpected.isEmpty {
            FileHandle.standardError.write("tessera: ignored keys not in the model: \(report.unexpected.joined(separator: ", "))\n".data(using: .utf8)!)
        }
    }
}
