import TesseraConfig
import TesseraCore

/// The autoregression orders of SAIM and SemAIM (spec §5.2, skyoux/SemAIM `generate_attention_mask`):
/// each permutation type turns one sample's draw (and, for the attention types, its attention map)
/// into a score per patch; the patch with the lowest score is predicted first, and the attention masks
/// follow from the scores (`SAIM.attentionMasks`).
///
/// One sample's draw is `drawWidth(patches:)` = L + 2 uniforms in [0, 1): u[0..<L], one per patch (the
/// random part of stochastic, center2out, stochastic_center, attention_guided and the 1e-3 tie-break of
/// attention_center), then u[L] and u[L+1], stochastic_center's centre row and column. The official
/// code draws exactly these numbers, in this order, with `torch.rand`.
///
/// **On the 14×14 grid** every type is the official function, including its hard-coded parts. **On
/// any other grid** the same rule is scaled to the grid (written out at each type, and in
/// docs/SEMAIM.md):
/// - the nested boxes of center2out keep the official sides 2, 6 and 10 of 14 in proportion
///   (`ringSide`), centred on the grid;
/// - the boxes of stochastic_center / attention_guided are boxes of the same scaled sides around the
///   centre, shifted to stay inside the grid (`centreBoxes`); on 14×14 they are the official
///   `split_matrix` table instead, which that rule reproduces for centres 0, 1 and 3–8 but not for
///   centre 2 (the table's innermost box is [0, 2), the rule's [1, 3)) and 9–13 (the table ends
///   every box at 13, leaving the last row and column out of all boxes);
/// - raster's odd rows run from w−1 down to 0 (the official `13 − i` is w−1−i on 14×14 only).
public enum Orders {
    /// Floats in one sample's draw: one per patch, then the stochastic centre's row and column.
    public static func drawWidth(patches l: Int) -> Int { l + 2 }

    /// True for the types that need an attention map.
    public static func needsAttention(_ type: Permutation) -> Bool {
        type == .attention || type == .attentionCenter || type == .attentionGuided
    }

    /// Scores [B, L] (lower = earlier) for draws [B, L+2] and, for the attention types, attention [B, L].
    public static func scores(_ type: Permutation, grid w: Int, draws: Tensor, attention: Tensor? = nil) -> Tensor {
        let b = draws.shape[0], l = w * w
        precondition(draws.shape == [b, drawWidth(patches: l)], "tessera: draws \(draws.shape) do not fit a \(w)×\(w) grid")
        if needsAttention(type) {
            precondition(attention?.shape == [b, l], "tessera: the \(type.rawValue) order needs an attention map [\(b), \(l)]")
        }
        let out = Tensor.zeros([b, l])
        for i in 0..<b {
            score(type, grid: w, draw: draws.data + i * (l + 2), attention: attention.map { UnsafePointer($0.data + i * l) },
                  into: out.data + i * l)
        }
        return out
    }

    /// One sample's scores [L] into `out`.
    public static func score(_ type: Permutation, grid w: Int, draw u: UnsafePointer<Float>, attention a: UnsafePointer<Float>?,
                             into out: UnsafeMutablePointer<Float>) {
        let l = w * w
        switch type {
        case .stochastic:
            for j in 0..<l { out[j] = u[j] }
        case .zigzag:
            // Plain raster order 0, 1, …, L−1.
            for j in 0..<l { out[j] = Float(j) }
        case .raster:
            // Snake order: even rows left to right, odd rows right to left.
            for r in 0..<w { for c in 0..<w { out[r * w + c] = Float(r * w + (r % 2 == 0 ? c : w - 1 - c)) } }
        case .center2out:
            // U[0,1), minus one inside each of three nested centred boxes: rings from the centre out,
            // random inside a ring.
            for j in 0..<l { out[j] = u[j] }
            for side in [2, 6, 10].map({ ringSide($0, grid: w) }) {
                let lo = (w - side) / 2
                subtractOne(out, grid: w, rows: lo..<(lo + side), cols: lo..<(lo + side))
            }
        case .stochasticCenter:
            // A random centre (row, col) = (⌊u·(w−1)⌋, ⌊u'·(w−1)⌋), so never the last row or column,
            // as the official code; then U[0,1) minus one inside each of three boxes around it.
            let row = Int(u[l] * Float(w - 1)), col = Int(u[l + 1] * Float(w - 1))
            boxedAroundCentre(u, row: row, col: col, grid: w, into: out)
        case .attentionGuided:
            let (row, col) = argmaxCell(a!, grid: w)
            boxedAroundCentre(u, row: row, col: col, grid: w, into: out)
        case .attention:
            // The most attended patch first.
            for j in 0..<l { out[j] = 1 - a![j] }
        case .attentionCenter:
            // Distance to the most attended patch, plus 1e-3·U to break ties among equal distances.
            let (r0, c0) = argmaxCell(a!, grid: w)
            for r in 0..<w { for c in 0..<w {
                let dr = Float(r - r0), dc = Float(c - c0)
                out[r * w + c] = (dr * dr + dc * dc).squareRoot() + u[r * w + c] * 1e-3
            } }
        }
    }

    /// (row, col) of the first maximum of an attention map [w·w] (torch.max's index on CPU).
    public static func argmaxCell(_ a: UnsafePointer<Float>, grid w: Int) -> (row: Int, col: Int) {
        var best = 0
        for j in 1..<(w * w) where a[j] > a[best] { best = j }
        return (best / w, best % w)
    }

    /// The side of the grid-centred box that has side `official` (2, 6 or 10) on 14×14, scaled to a
    /// w×w grid: the integer of w's parity (so the box is centred) nearest to w·official/14, ties to
    /// the smaller, at least 2 (even w) or 1 (odd w) and at most w. Exactly 2, 6, 10 on 14×14.
    public static func ringSide(_ official: Int, grid w: Int) -> Int {
        let x = Double(w * official) / 14
        let parity = w % 2
        var best = parity == 0 ? 2 : 1
        var n = best
        while n <= w {
            if abs(Double(n) - x) < abs(Double(best) - x) { best = n }
            n += 2
        }
        return min(best, w)
    }

    /// The three boxes [lo, hi) along one axis around centre index `c`: on 14×14 the official
    /// `split_matrix[c]`; elsewhere boxes of sides `ringSide`-scaled 2, 6, 10 (any parity: the
    /// nearest integer, at least 1), starting at c − ⌊side/2⌋ and shifted to lie inside [0, w).
    public static func centreBoxes(_ c: Int, grid w: Int) -> [Range<Int>] {
        if w == 14 {
            let row = splitMatrix14[c]
            return (0..<3).map { row.starts[$0]..<row.ends[$0] }
        }
        return [2, 6, 10].map { official in
            let side = min(w, max(1, Int((Double(w * official) / 14).rounded())))
            let lo = min(max(c - side / 2, 0), w - side)
            return lo..<(lo + side)
        }
    }

    /// SemAIM's hard-coded `split_matrix` (models_semaim.py): per centre index 0…13, the starts and
    /// ends of four boxes along one axis, of which the first three are used. Half-open with 13 as the
    /// largest end, so index 13 lies in no box.
    static let splitMatrix14: [(starts: [Int], ends: [Int])] = {
        let edge = ([0, 0, 0, 0], [2, 6, 10, 13]), far = ([11, 7, 3, 0], [13, 13, 13, 13])
        return [edge, edge, edge,
                ([2, 0, 0, 0], [4, 6, 10, 13]), ([3, 1, 0, 0], [5, 7, 10, 13]), ([4, 2, 0, 0], [6, 8, 10, 13]),
                ([5, 3, 1, 0], [7, 9, 11, 13]), ([6, 4, 2, 0], [8, 10, 12, 13]), ([7, 5, 3, 0], [9, 11, 13, 13]),
                ([8, 6, 3, 0], [10, 12, 13, 13]), ([9, 7, 3, 0], [11, 13, 13, 13]),
                far, far, far].map { (starts: $0.0, ends: $0.1) }
    }()

    static func boxedAroundCentre(_ u: UnsafePointer<Float>, row: Int, col: Int, grid w: Int, into out: UnsafeMutablePointer<Float>) {
        for j in 0..<(w * w) { out[j] = u[j] }
        let rows = centreBoxes(row, grid: w), cols = centreBoxes(col, grid: w)
        for k in 0..<3 { subtractOne(out, grid: w, rows: rows[k], cols: cols[k]) }
    }

    static func subtractOne(_ out: UnsafeMutablePointer<Float>, grid w: Int, rows: Range<Int>, cols: Range<Int>) {
        for r in rows { for c in cols { out[r * w + c] -= 1 } }
    }
}
