import Foundation
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// `tessera step`: one forward and backward pass on exactly the given batch, for number-by-number
/// comparison with a PyTorch implementation.
public enum StepCommand {
    /// batch.h5: `images` [B, C, H, W] (normalised), optional `noise` [B, L]; weights: a checkpoint or
    /// converted state dict (`params/<name>`). Writes `loss` and `grads/<name>` to `out`.
    public static func run(spec: ExperimentSpec, weights: String, batch: String, out: String) throws {
        var rng = RandomGenerator(seed: UInt64(spec.seed))
        let model = try Registry.method(spec.model.method.rawValue).build(spec, &rng)
        let ck = try Checkpoint.read(weights)
        // Weights for another image size: resize their position tables to this model's grid (spec §10).
        var params = ck.params
        adaptPositionTables(&params, to: model)
        // Fixed tables (pos embeds) may be absent from a converted state dict; everything trainable must fit.
        let report = try model.load(state: params, strict: false)
        let buffers = Set(model.namedBuffers().map(\.name))
        let missingTrainable = report.missing.filter { !buffers.contains($0) }
        if !missingTrainable.isEmpty || !report.misShaped.isEmpty {
            var r = report
            r.missing = missingTrainable
            throw r
        }
        let f = try HDF5File(reading: batch)
        let (iv, ishape) = try f.readFloats("images")
        let noise = f.contains("noise") ? try f.readFloats("noise") : nil
        f.close()
        let ctx = Context(training: true, rng: rng)
        let output = model.forward(images: Tensor(iv, shape: ishape), noise: noise.map { Tensor($0.values, shape: $0.shape) }, ctx: ctx)
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
