import Foundation
import TesseraCore

/// Pictures written into run directories: reconstructions, per-patch maps (orders, attention) and
/// loss / lr curves. Methods call these from their `writePictures`.
public enum Pictures {
    /// One tile of a picture row: an image [C, H, W] (normalised) or a per-patch map on a g×g grid
    /// (values scaled to the map's own min–max, cold to warm).
    public enum Tile {
        case image(UnsafePointer<Float>, channels: Int, height: Int, width: Int)
        case map([Float], grid: Int)
    }

    /// Rows of tiles, each tile drawn `side` pixels wide (nearest-neighbour), 2-pixel gaps.
    /// `mean`/`std` undo the data normalisation of image tiles.
    public static func grid(_ rows: [[Tile]], side: Int, mean: [Float], std: [Float], to path: String) throws {
        let cols = rows.map(\.count).max() ?? 0
        var canvas = Canvas(width: cols * (side + 2) + 2, height: rows.count * (side + 2) + 2)
        for (ri, row) in rows.enumerated() {
            for (ci, tile) in row.enumerated() {
                let x0 = 2 + ci * (side + 2), y0 = 2 + ri * (side + 2)
                switch tile {
                case let .image(p, c, h, w):
                    for y in 0..<side { for x in 0..<side {
                        let sy = y * h / side, sx = x * w / side
                        var rgb: [UInt8] = [0, 0, 0]
                        for ch in 0..<3 {
                            let cc = min(ch, c - 1)
                            let v = p[(cc * h + sy) * w + sx] * std[min(cc, std.count - 1)] + mean[min(cc, mean.count - 1)]
                            rgb[ch] = UInt8(max(0, min(255, (v * 255).rounded())))
                        }
                        canvas.set(x0 + x, y0 + y, (rgb[0], rgb[1], rgb[2]))
                    } }
                case let .map(values, g):
                    let lo = values.min() ?? 0, hi = values.max() ?? 1
                    for y in 0..<side { for x in 0..<side {
                        let v = values[(y * g / side) * g + x * g / side]
                        canvas.set(x0 + x, y0 + y, heat(hi > lo ? (v - lo) / (hi - lo) : 0.5))
                    } }
                }
            }
        }
        try canvas.write(path)
    }

    /// A cold-to-warm colour for t in [0, 1]: dark blue, cyan, yellow, red.
    static func heat(_ t: Float) -> (UInt8, UInt8, UInt8) {
        let stops: [(Float, Float, Float)] = [(0.05, 0.05, 0.45), (0.1, 0.75, 0.9), (0.98, 0.9, 0.2), (0.85, 0.1, 0.05)]
        let x = max(0, min(1, t)) * Float(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Float(i)
        let a = stops[i], b = stops[i + 1]
        func c(_ u: Float, _ v: Float) -> UInt8 { UInt8(max(0, min(255, ((u + (v - u) * f) * 255).rounded()))) }
        return (c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
    }

    /// The prediction [B, L, P] as images [B, C, H, W]: norm-pix targets are undone with each patch's
    /// own mean and std of `target` (the patchified images, before normalisation).
    public static func unnormalizedPrediction(_ prediction: Tensor, target: Tensor, patch p: Int, channels c: Int,
                                              order: Patches.Order, norm: Patches.Norm) -> Tensor {
        let pv = prediction.clone()
        let k = pv.shape[2]
        if norm != .none {
            let stats = Patches.stats(target, norm)
            for r in 0..<(pv.count / k) { for j in 0..<k { pv.data[r * k + j] = pv.data[r * k + j] * stats.std[r] + stats.mean[r] } }
        }
        return Patches.unpatchify(pv, patch: p, channels: c, order: order)
    }

    /// One row per image: original | masked (removed patches grey) | reconstruction | reconstruction
    /// with the visible patches pasted back. Without a mask (every patch predicted, SAIM): original |
    /// reconstruction. Norm-pix is undone with the per-patch statistics of the images.
    public static func reconstructions(images: Tensor, prediction: Tensor, mask: [Float]?, patch p: Int,
                                       order: Patches.Order, norm: Patches.Norm, mean: [Float], std: [Float], to path: String) throws {
        let (b, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let recon = unnormalizedPrediction(prediction, target: Patches.patchify(images, patch: p, order: order), patch: p,
                                           channels: c, order: order, norm: norm)
        let per = c * h * w, g = w / p
        // The masked and pasted views, built in normalised space: grey is the normalised value of 0.5.
        let masked = images.clone(), pasted = recon.clone()
        if let mask {
            for bi in 0..<b { for ch in 0..<c { for y in 0..<h { for x in 0..<w where mask[bi * g * g + (y / p) * g + x / p] > 0 {
                let i = bi * per + (ch * h + y) * w + x
                masked.data[i] = (0.5 - mean[min(ch, mean.count - 1)]) / std[min(ch, std.count - 1)]
            } } } }
            for bi in 0..<b { for ch in 0..<c { for y in 0..<h { for x in 0..<w where mask[bi * g * g + (y / p) * g + x / p] == 0 {
                let i = bi * per + (ch * h + y) * w + x
                pasted.data[i] = images.data[i]
            } } } }
        }
        func tile(_ t: Tensor, _ bi: Int) -> Tile { .image(UnsafePointer(t.data + bi * per), channels: c, height: h, width: w) }
        let rows = (0..<b).map { bi -> [Tile] in
            mask == nil ? [tile(images, bi), tile(recon, bi)] : [tile(images, bi), tile(masked, bi), tile(recon, bi), tile(pasted, bi)]
        }
        try grid(rows, side: displaySide(w), mean: mean, std: std, to: path)
    }

    /// Tile side for an image of side `w`: small inputs are enlarged to about 128 pixels, 224 px ones
    /// stay as they are.
    public static func displaySide(_ w: Int) -> Int { w >= 128 ? w : w * max(1, 128 / w) }

    /// Loss (top) and learning rate (bottom) against the iteration, from metrics.jsonl.
    public static func curves(metrics: String, to path: String) throws {
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        var pts: [(step: Double, loss: Double, lr: Double)] = []
        for line in text.split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = obj["step"] as? Double ?? (obj["step"] as? Int).map(Double.init),
                  let l = obj["loss"] as? Double, let lr = obj["lr"] as? Double else { continue }
            pts.append((s, l, lr))
        }
        guard pts.count >= 2 else { return }
        var canvas = Canvas(width: 640, height: 420)
        func panel(_ top: Int, _ values: [Double], _ color: (UInt8, UInt8, UInt8)) {
            let x0 = 20, x1 = 620, y0 = top, y1 = top + 180
            canvas.line(x0, y0, x1, y0, (0, 0, 0)); canvas.line(x0, y1, x1, y1, (0, 0, 0))
            canvas.line(x0, y0, x0, y1, (0, 0, 0)); canvas.line(x1, y0, x1, y1, (0, 0, 0))
            let lo = values.min()!, hi = values.max()!
            let smin = pts.first!.step, smax = pts.last!.step
            var prev: (Int, Int)?
            for (i, v) in values.enumerated() {
                let x = x0 + Int(Double(x1 - x0) * (pts[i].step - smin) / max(smax - smin, 1e-12))
                let y = y1 - Int(Double(y1 - y0) * (v - lo) / max(hi - lo, 1e-12))
                if let prev { canvas.line(prev.0, prev.1, x, y, color) }
                prev = (x, y)
            }
        }
        panel(20, pts.map(\.loss), (200, 40, 40))
        panel(220, pts.map(\.lr), (40, 80, 200))
        try canvas.write(path)
    }
}
