import Foundation
import TesseraCore

/// Pictures written into run directories: MAE reconstructions and loss / lr curves.
public enum Pictures {
    /// One row per image: original | masked (removed patches grey) | reconstruction | reconstruction
    /// with the visible patches pasted back. Norm-pix targets are undone with each patch's own mean and
    /// std, then the data normalisation with `mean`/`std`.
    public static func reconstructions(model: PretrainModel, images: Tensor, rng: RandomGenerator, to path: String,
                                       mean: [Float], std: [Float], scale: Int = 4) throws {
        let out = Autograd.noGrad { model.forward(images: images, noise: nil, ctx: Context(training: false, rng: rng)) }
        guard let pred = out.prediction, let mask = out.mask else { return }
        let p = model.encoder.shape.patchSize, c = model.encoder.shape.inChans
        let order = model.targetOrder
        let target = Patches.patchify(images, patch: p, order: order)
        let stats = Patches.stats(target, model.targetNorm)
        let pv = pred.clone()
        let k = pv.shape[2]
        if model.targetNorm != .none {
            for r in 0..<(pv.count / k) { for j in 0..<k { pv.data[r * k + j] = pv.data[r * k + j] * stats.std[r] + stats.mean[r] } }
        }
        let recon = Patches.unpatchify(pv, patch: p, channels: c, order: order)
        let b = images.shape[0], h = images.shape[2], w = images.shape[3]
        let g = w / p
        let tile = w * scale
        var canvas = Canvas(width: 4 * tile + 5 * 2, height: b * (h * scale + 2) + 2)
        func pixel(_ t: Tensor, _ bi: Int, _ y: Int, _ x: Int) -> (UInt8, UInt8, UInt8) {
            var rgb: [UInt8] = [0, 0, 0]
            for ch in 0..<3 {
                let cc = min(ch, c - 1)
                let v = t.data[((bi * c + cc) * h + y) * w + x] * std[cc] + mean[cc]
                rgb[ch] = UInt8(max(0, min(255, (v * 255).rounded())))
            }
            return (rgb[0], rgb[1], rgb[2])
        }
        for bi in 0..<b {
            for y in 0..<(h * scale) { for x in 0..<(w * scale) {
                let sy = y / scale, sx = x / scale
                let removed = mask[bi * g * g + (sy / p) * g + sx / p] > 0
                let oy = 2 + bi * (h * scale + 2) + y
                let orig = pixel(images, bi, sy, sx), rec = pixel(recon, bi, sy, sx)
                canvas.set(2 + x, oy, orig)
                canvas.set(4 + tile + x, oy, removed ? (128, 128, 128) : orig)
                canvas.set(6 + 2 * tile + x, oy, rec)
                canvas.set(8 + 3 * tile + x, oy, removed ? rec : orig)
            } }
        }
        try canvas.write(path)
    }

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
