import Foundation
import TesseraCore
import TesseraHDF5

/// A training checkpoint in HDF5:
/// - `params/<name>`: every parameter and buffer under its PyTorch name (spec §10);
/// - `optimizer/<name>/<slot>`: optimizer state (exp_avg, exp_avg_sq, momentum_buffer, mu);
/// - `config`: the resolved YAML; root attributes `format`, `epoch` (completed epochs), `step`
///   (iterations done), `optimizer_steps`, `seed`, `method`, `version`.
/// Files are written to a temporary name and renamed, so a half-written file never replaces a good one.
public struct Checkpoint {
    public static let format = "tessera-checkpoint-v1"
    public var params: [String: Tensor]
    public var optimizer: [String: Tensor] = [:]
    public var epoch = 0
    public var step = 0
    public var optimizerSteps = 0
    public var seed: UInt64 = 0
    public var method = ""
    public var config = ""

    public init(params: [String: Tensor]) { self.params = params }

    public func write(to path: String) throws {
        try HDF5.writeAtomically(to: path) { f in
            for (name, t) in params.sorted(by: { $0.key < $1.key }) {
                try f.write("params/" + name, floats: UnsafePointer(t.data), shape: t.shape)
            }
            for (key, t) in optimizer.sorted(by: { $0.key < $1.key }) {
                try f.write("optimizer/" + key, floats: UnsafePointer(t.data), shape: t.shape)
            }
            try f.write("config", string: config)
            try f.setAttribute("format", Checkpoint.format)
            try f.setAttribute("epoch", String(epoch))
            try f.setAttribute("step", String(step))
            try f.setAttribute("optimizer_steps", String(optimizerSteps))
            try f.setAttribute("seed", String(seed))
            try f.setAttribute("method", method)
            try f.setAttribute("version", TesseraVersion.string)
        }
    }

    /// Reads a Tessera checkpoint, or a converted PyTorch one (only `params/` is required).
    public static func read(_ path: String) throws -> Checkpoint {
        try read(try HDF5File(reading: path), path: path)
    }

    /// Reads a checkpoint that rank 0 can see, on every rank: rank 0 reads the file's bytes and
    /// sends them to the others, so the machines of a run need no shared file system. One process:
    /// `read(path)`. Rank 0's errors stop every rank (the caller's failure aborts the run).
    public static func readOnEveryRank(_ path: String) throws -> Checkpoint {
        guard Distributed.isDistributed else { return try read(path) }
        var bytes: [UInt8] = []
        if Distributed.isWriter {
            do { bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
                Distributed.abort("tessera: cannot read \(path): \(error.localizedDescription)")
            }
        }
        return try read(try HDF5File(image: Distributed.broadcast(bytes), path: path), path: path)
    }

    static func read(_ f: HDF5File, path: String) throws -> Checkpoint {
        defer { f.close() }
        func tensors(_ group: String) throws -> [String: Tensor] {
            guard f.contains(group) else { return [:] }
            var out: [String: Tensor] = [:]
            for name in try f.datasetNames(under: group) {
                let (v, shape) = try f.readFloats(name)
                out[String(name.dropFirst(group.count + 1))] = Tensor(v, shape: shape)
            }
            return out
        }
        guard f.contains("params") else {
            throw CheckpointError(description: "tessera: \(path): not a checkpoint (no 'params' group)")
        }
        var c = Checkpoint(params: try tensors("params"))
        c.optimizer = try tensors("optimizer")
        c.epoch = Int(try f.attribute("epoch") ?? "0") ?? 0
        c.step = Int(try f.attribute("step") ?? "0") ?? 0
        c.optimizerSteps = Int(try f.attribute("optimizer_steps") ?? "0") ?? 0
        c.seed = UInt64(try f.attribute("seed") ?? "0") ?? 0
        c.method = try f.attribute("method") ?? ""
        c.config = f.contains("config") ? try f.readString("config") : ""
        return c
    }
}

extension Tensor {
    /// True when every element is a finite number.
    var allFinite: Bool {
        let p = data
        var ok = true
        for i in 0..<count where !p[i].isFinite { ok = false; break }
        return ok
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
}

public enum TesseraVersion {
    public static let string = "0.1.0"
}

/// Resizes the patch part of a position table [1, extra + s·s, D] to a t×t grid with bicubic
/// interpolation (PyTorch's, A = −0.75, align_corners = False, border-clamped), keeping the
/// `extra` leading (cls) rows, as `interpolate_pos_embed` in the MAE family does.
public func interpolatePosEmbed(_ pos: Tensor, extraTokens: Int, newGrid t: Int) -> Tensor {
    let d = pos.shape[2], n = pos.shape[1] - extraTokens
    let s = Int(Double(n).squareRoot().rounded())
    precondition(s * s == n, "tessera: position table with \(n) patch rows is not a square grid")
    if s == t { return pos.clone() }
    let out = Tensor(shape: [1, extraTokens + t * t, d])
    out.data.update(from: pos.data, count: extraTokens * d)
    func cubic(_ x: Double) -> [Double] {
        let a = -0.75
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return [far(x + 1), near(x), near(1 - x), far(2 - x)]
    }
    let scale = Double(s) / Double(t)
    var taps: [(base: Int, w: [Double])] = []
    for i in 0..<t {
        let src = (Double(i) + 0.5) * scale - 0.5
        let f = src.rounded(.down)
        taps.append((Int(f), cubic(src - f)))
    }
    let src = pos.data + extraTokens * d, dst = out.data + extraTokens * d
    for oy in 0..<t { for ox in 0..<t {
        let (by, wy) = taps[oy], (bx, wx) = taps[ox]
        for c in 0..<d {
            var acc = 0.0
            for u in 0..<4 {
                let yy = min(max(by - 1 + u, 0), s - 1)
                for v in 0..<4 {
                    let xx = min(max(bx - 1 + v, 0), s - 1)
                    acc += wy[u] * wx[v] * Double(src[(yy * s + xx) * d + c])
                }
            }
            dst[(oy * t + ox) * d + c] = Float(acc)
        }
    } }
    return out
}

/// The position tables a checkpoint may carry: MAE's `pos_embed` and `decoder_pos_embed`, MAE-priv's
/// `encoder.pos_embed` (its decoder table is `decoder_pos_embed` too).
public let positionTableNames = ["pos_embed", "decoder_pos_embed", "encoder.pos_embed"]

/// Resizes, in `state`, every position table whose row count differs from the same-named table of
/// `model` to the model's grid (bicubic, spec §10), keeping the leading cls row when both have one.
///
/// Where it applies: loading weights into a model built for another image size (downstream `init`,
/// `tessera step` weights). Exact resume does not adapt anything: a resumed run must be the same model,
/// and a different grid is reported by the strict load as a mis-shaped `pos_embed`.
/// Tables whose width differs, that are not `[1, extra + s², D]` with extra 0 or 1, or whose extra rows
/// differ from the model's are left alone for `load(state:strict:)` to report.
public func adaptPositionTables(_ state: inout [String: Tensor], to model: Module) {
    var own: [String: Tensor] = [:]
    for (name, t) in model.stateDict() where positionTableNames.contains(name) { own[name] = t }
    for name in positionTableNames {
        guard let src = state[name], let dst = own[name], src.rank == 3, dst.rank == 3,
              src.shape[0] == 1, dst.shape[0] == 1, src.shape[2] == dst.shape[2], src.shape[1] != dst.shape[1],
              let from = squareGrid(rows: src.shape[1]), let to = squareGrid(rows: dst.shape[1]),
              from.extra == to.extra else { continue }
        state[name] = interpolatePosEmbed(src, extraTokens: from.extra, newGrid: to.side)
    }
}

/// Splits a position table's row count into extra (cls) rows, 0 or 1, and a square grid side.
func squareGrid(rows: Int) -> (extra: Int, side: Int)? {
    for extra in 0...1 where rows - extra > 0 {
        let n = rows - extra, s = Int(Double(n).squareRoot().rounded())
        if s * s == n { return (extra, s) }
    }
    return nil
}

/// Loads a checkpoint's weights into `model`: the one rule of every consumer (downstream encoders,
/// k-NN, `tessera step`). `map` turns the checkpoint's names into the model's (downstream: the
/// encoder's part of a pre-training checkpoint); position tables are resized to the model's grid.
/// Every parameter must arrive with its shape, except those `exempt` names (a new head); buffers may
/// be absent (fixed sin-cos tables are computed). Returns what did not fit without failing: the
/// checkpoint keys the model does not have, and the absent buffers.
@discardableResult
public func loadWeights(into model: Module, from path: String, map: ([String: Tensor]) -> [String: Tensor] = { $0 },
                        exempt: (String) -> Bool = { _ in false }) throws -> StateDictMismatch {
    let ck = try Checkpoint.readOnEveryRank(path)
    var state = map(ck.params)
    let broken = state.filter { !$0.value.allFinite }.keys.sorted()
    if !broken.isEmpty {
        throw CheckpointError(description: "tessera: \(path): tensor(s) \(broken.prefix(5).joined(separator: ", "))"
                              + "\(broken.count > 5 ? " and \(broken.count - 5) more" : "") hold NaN or infinite values")
    }
    adaptPositionTables(&state, to: model)
    let report = try model.load(state: state, strict: false)
    let params = Set(model.namedParameters().map(\.name))
    let missing = report.missing.filter { params.contains($0) && !exempt($0) }.sorted()
    if !missing.isEmpty {
        throw CheckpointError(description: "tessera: \(path): the checkpoint lacks parameter(s) \(missing.joined(separator: ", ")) "
                              + "(loaded \(state.count) of its \(ck.params.count) tensors; check model.method/block/cls_token/arch against the config that wrote it)")
    }
    if !report.misShaped.isEmpty {
        throw CheckpointError(description: "tessera: \(path): tensor shapes differ from the model: \(report.misShaped.joined(separator: "; "))")
    }
    return report
}
