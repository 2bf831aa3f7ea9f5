import TesseraCore

/// Patch-level views of an image batch used as reconstruction targets (spec §1.5).
public enum Patches {
    /// Order of the values inside one patch vector.
    public enum Order: String, Sendable {
        /// (row, col, channel), channel fastest: MAE, SAIM, SemAIM.
        case hwc
        /// (channel, row, col): MAE-priv.
        case chw
    }

    /// How each patch vector is normalised.
    public enum Norm: String, Sendable {
        case none
        /// (t − mean) / √(var_unbiased + 1e-6): MAE's norm_pix_loss.
        case unbiased
        /// layer_norm without affine, biased variance, eps 1e-6: MAE-priv's normlize_target.
        case layernorm
    }

    /// img [B, C, H, W] → [B, L, p·p·C] (no autograd: targets only).
    public static func patchify(_ img: Tensor, patch p: Int, order: Order) -> Tensor {
        let (b, c, h, w) = (img.shape[0], img.shape[1], img.shape[2], img.shape[3])
        let gh = h / p, gw = w / p, l = gh * gw, k = c * p * p
        let out = Tensor(shape: [b, l, k])
        for bi in 0..<b { for pi in 0..<l {
            let pr = pi / gw, pc = pi % gw
            let dst = out.data + (bi * l + pi) * k
            for ch in 0..<c { for i in 0..<p { for j in 0..<p {
                let v = img.data[((bi * c + ch) * h + pr * p + i) * w + pc * p + j]
                switch order {
                case .hwc: dst[(i * p + j) * c + ch] = v
                case .chw: dst[(ch * p + i) * p + j] = v
                }
            } } }
        } }
        return out
    }

    /// The inverse of `patchify`: [B, L, p·p·C] → [B, C, H, W].
    public static func unpatchify(_ x: Tensor, patch p: Int, channels c: Int, order: Order) -> Tensor {
        let (b, l) = (x.shape[0], x.shape[1])
        let g = Int(Double(l).squareRoot().rounded())
        precondition(g * g == l, "tessera: unpatchify needs a square grid, got \(l) patches")
        let h = g * p, k = c * p * p
        let img = Tensor(shape: [b, c, h, h])
        for bi in 0..<b { for pi in 0..<l {
            let pr = pi / g, pc = pi % g
            let src = x.data + (bi * l + pi) * k
            for ch in 0..<c { for i in 0..<p { for j in 0..<p {
                img.data[((bi * c + ch) * h + pr * p + i) * h + pc * p + j] =
                    order == .hwc ? src[(i * p + j) * c + ch] : src[(ch * p + i) * p + j]
            } } }
        } }
        return img
    }

    /// Normalises every patch vector of x [B, L, P] in place with its own mean and std (see `stats`).
    public static func normalize(_ x: Tensor, _ norm: Norm, eps: Float = 1e-6) {
        guard norm != .none else { return }
        let p = x.shape.last!
        let (mean, std) = stats(x, norm, eps: eps)
        for r in 0..<(x.count / p) {
            let v = x.data + r * p, m = mean[r], inv = 1 / std[r]
            for j in 0..<p { v[j] = (v[j] - m) * inv }
        }
    }

    /// Per-patch mean and √(var + eps) (unbiased or biased variance by `norm`), computed in Double;
    /// `normalize` divides by them and pictures multiply them back.
    public static func stats(_ x: Tensor, _ norm: Norm, eps: Float = 1e-6) -> (mean: [Float], std: [Float]) {
        let p = x.shape.last!, rows = x.count / p
        var means = [Float](repeating: 0, count: rows), stds = [Float](repeating: 1, count: rows)
        for r in 0..<rows {
            let v = x.data + r * p
            var mean: Double = 0
            for j in 0..<p { mean += Double(v[j]) }
            mean /= Double(p)
            var ss: Double = 0
            for j in 0..<p { let d = Double(v[j]) - mean; ss += d * d }
            let variance = norm == .unbiased ? ss / Double(p - 1) : ss / Double(p)
            means[r] = Float(mean)
            stds[r] = Float((variance + Double(eps)).squareRoot())
        }
        return (means, stds)
    }
}

/// Random masking by noise argsort (spec §2.2): the lowest-noise patches are kept.
public struct RandomMasking {
    /// Per sample: all patch indices in ascending-noise order ([B·L]).
    public let shuffle: [Int]
    /// Per sample: the inverse permutation ([B·L]).
    public let restore: [Int]
    /// 1 = removed, 0 = kept, in patch order ([B·L]).
    public let mask: [Float]
    public let keep: Int
    public let batch: Int
    public let length: Int

    /// noise [B, L]; ties are broken by patch index. `sharedRow0` reuses sample 0's order for the whole
    /// batch (MAE-priv's batched_shuffle).
    /// `keepCount` overrides the number of kept patches (MAE-priv keeps L − int(ratio·L)).
    public init(noise: Tensor, maskRatio: Double, sharedRow0: Bool = false, keepCount: Int? = nil) {
        let b = noise.shape[0], l = noise.shape[1]
        batch = b; length = l
        keep = keepCount ?? Int(Double(l) * (1 - maskRatio))
        var sh = [Int](repeating: 0, count: b * l), rs = sh
        var m = [Float](repeating: 1, count: b * l)
        for bi in 0..<b {
            let row = sharedRow0 ? 0 : bi
            let order = (0..<l).sorted { i, j in
                let a = noise.data[row * l + i], c = noise.data[row * l + j]
                return a < c || (a == c && i < j)
            }
            for (rank, idx) in order.enumerated() {
                sh[bi * l + rank] = idx
                rs[bi * l + idx] = rank
                if rank < keep { m[bi * l + idx] = 0 }
            }
        }
        shuffle = sh; restore = rs; mask = m
    }

    /// The kept indices, [B·keep].
    public var keptIndices: [Int] {
        var out: [Int] = []
        out.reserveCapacity(batch * keep)
        for bi in 0..<batch { out += shuffle[(bi * length)..<(bi * length + keep)] }
        return out
    }

    /// The removed indices in ascending patch order, [B·(L − keep)]: the rows the loss reads.
    public var removedIndices: [Int] {
        var out: [Int] = []
        out.reserveCapacity(batch * (length - keep))
        for bi in 0..<batch { out += shuffle[(bi * length + keep)..<((bi + 1) * length)].sorted() }
        return out
    }
}
