import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// SemAIM's permutation types (Orders) against the official `generate_attention_mask` on 14×14
/// (fixture from tools/make_semaim_order_fixture.py), and the scaled rule on other grids.
final class SemAIMOrderTests: XCTestCase {
    /// The fixture's per-sample torch.rand values as Tessera draws [B, L+2]: the per-patch uniforms
    /// first, then stochastic_center's centre row and column.
    func draws(_ f: HDF5File, _ type: String, batch b: Int, patches l: Int) throws -> Tensor {
        let d = Tensor.zeros([b, l + 2])
        let names = try f.datasetNames(under: "\(type)/uniform").sorted()
        for name in names {
            let k = Int(name.split(separator: "/").last!)!
            let v = try f.readFloats(name).values
            for bi in 0..<b {
                if v.count == b * l {
                    for j in 0..<l { d.data[bi * (l + 2) + j] = v[bi * l + j] }
                } else {
                    XCTAssertEqual(v.count, b, name)
                    d.data[bi * (l + 2) + l + (k - 1)] = v[bi]
                }
            }
        }
        return d
    }

    func testEveryTypeGivesTheOfficialScoresOn14x14() throws {
        let f = try HDF5File(reading: fixtureURL("semaim_orders.h5").path)
        defer { f.close() }
        let types = try JSONSerialization.jsonObject(with: (try f.attribute("types") ?? "[]").data(using: .utf8)!) as! [String]
        XCTAssertEqual(Set(types), Set(Permutation.allCases.map(\.rawValue)), "the fixture covers every type")
        let (b, l) = (6, 196)
        for name in types {
            let type = Permutation(rawValue: name)!
            let want = try f.readFloats("\(name)/score").values
            let attention = f.contains("\(name)/attention") ? Tensor(try f.readFloats("\(name)/attention").values, shape: [b, l]) : nil
            let got = Orders.scores(type, grid: 14, draws: try draws(f, name, batch: b, patches: l), attention: attention)
            if type == .attentionCenter {
                // torch's float32 pow(·, 0.5) may be 1 ulp off the correctly rounded sqrt: the scores
                // agree to 1e-5 and the orders exactly.
                XCTAssertLessThan(zip(got.array, want).map { abs($0 - $1) }.max()!, 1e-5, name)
                for bi in 0..<b {
                    XCTAssertEqual(order(got.array, bi, l), order(want, bi, l), "\(name) sample \(bi)")
                }
            } else {
                XCTAssertEqual(got.array, want, name)
            }
        }
    }

    func order(_ s: [Float], _ bi: Int, _ l: Int) -> [Int] {
        (0..<l).sorted { s[bi * l + $0] < s[bi * l + $1] || (s[bi * l + $0] == s[bi * l + $1] && $0 < $1) }
    }

    /// The scaled rule: ring sides 2, 6, 10 of 14 in proportion; on 14×14 exactly the official ones.
    func testRingSidesScaleWithTheGrid() {
        XCTAssertEqual([2, 6, 10].map { Orders.ringSide($0, grid: 14) }, [2, 6, 10])
        XCTAssertEqual([2, 6, 10].map { Orders.ringSide($0, grid: 8) }, [2, 4, 6])
        XCTAssertEqual([2, 6, 10].map { Orders.ringSide($0, grid: 7) }, [1, 3, 5])
        XCTAssertEqual([2, 6, 10].map { Orders.ringSide($0, grid: 16) }, [2, 6, 12])
        // the official split_matrix on 14×14, e.g. centre 7: [6,8), [4,10), [2,12)
        XCTAssertEqual(Orders.centreBoxes(7, grid: 14), [6..<8, 4..<10, 2..<12])
        XCTAssertEqual(Orders.centreBoxes(13, grid: 14), [11..<13, 7..<13, 3..<13])
    }

    /// On grids other than 14×14 every type orders all patches (distinct scores for the random and
    /// fixed types) and follows the written rule.
    func testEveryTypeFollowsTheScaledRuleOnOtherGrids() {
        for w in [4, 7, 8, 16] {
            let l = w * w, b = 5
            var rng = RandomGenerator(seed: UInt64(w))
            let draws = Tensor.uniform([b, l + 2], rng: &rng)
            let attention = softmaxRows(Tensor.randn([b, l], rng: &rng), b, l)
            for type in Permutation.allCases {
                let s = Orders.scores(type, grid: w, draws: draws, attention: Orders.needsAttention(type) ? attention : nil).array
                for bi in 0..<b {
                    let row = Array(s[(bi * l)..<((bi + 1) * l)])
                    XCTAssertTrue(row.allSatisfy(\.isFinite), "\(type) \(w)")
                    // 1 − attention ties where the attention ties; distance + 1e-3·U keeps only
                    // about 2^-9 of U's resolution at distances near 16 in float32, as in the original.
                    if type != .attention && type != .attentionCenter {
                        XCTAssertEqual(Set(row).count, l, "\(type) on \(w)×\(w): tied scores")
                    }
                    check(type, row, grid: w, draw: Array(draws.array[(bi * (l + 2))..<((bi + 1) * (l + 2))]),
                          attention: Array(attention.array[(bi * l)..<((bi + 1) * l)]))
                }
            }
            // the centre boxes are nested and inside the grid for every centre
            for c in 0..<w {
                let boxes = Orders.centreBoxes(c, grid: w)
                for k in 0..<3 { XCTAssertTrue(boxes[k].lowerBound >= 0 && boxes[k].upperBound <= w && !boxes[k].isEmpty, "\(w) \(c)") }
                for k in 0..<2 { XCTAssertTrue(boxes[k + 1].contains(boxes[k].lowerBound) && boxes[k].upperBound <= boxes[k + 1].upperBound, "\(w) \(c)") }
                XCTAssertTrue(boxes[0].contains(c) || c == w - 1 && boxes[0].upperBound == w, "centre \(c) in its innermost box on \(w)")
            }
        }
    }

    func check(_ type: Permutation, _ s: [Float], grid w: Int, draw u: [Float], attention a: [Float]) {
        let l = w * w
        func rc(_ j: Int) -> (Int, Int) { (j / w, j % w) }
        let ranked = (0..<l).sorted { s[$0] < s[$1] }
        switch type {
        case .stochastic:
            XCTAssertEqual(s, Array(u[0..<l]))
        case .zigzag:
            XCTAssertEqual(ranked, Array(0..<l))
        case .raster:
            // row by row, odd rows reversed
            XCTAssertEqual(ranked, (0..<w).flatMap { r in (0..<w).map { r * w + (r % 2 == 0 ? $0 : w - 1 - $0) } })
        case .center2out:
            // a patch inside more centred boxes comes before every patch inside fewer
            let sides = [2, 6, 10].map { Orders.ringSide($0, grid: w) }
            func depth(_ j: Int) -> Int {
                let (r, c) = rc(j)
                return sides.filter { side in let lo = (w - side) / 2; return (lo..<(lo + side)).contains(r) && (lo..<(lo + side)).contains(c) }.count
            }
            for i in 0..<(l - 1) { XCTAssertGreaterThanOrEqual(depth(ranked[i]), depth(ranked[i + 1]), "center2out \(w)") }
            XCTAssertEqual(depth(ranked[0]), 3, "center2out starts in the centre box on \(w)")
        case .stochasticCenter, .attentionGuided:
            let centre: (Int, Int)
            if type == .stochasticCenter {
                centre = (Int(u[l] * Float(w - 1)), Int(u[l + 1] * Float(w - 1)))
            } else {
                let m = a.indices.max { a[$0] < a[$1] || (a[$0] == a[$1] && $0 > $1) }!
                centre = rc(m)
            }
            let rows = Orders.centreBoxes(centre.0, grid: w), cols = Orders.centreBoxes(centre.1, grid: w)
            func depth(_ j: Int) -> Int { let (r, c) = rc(j); return (0..<3).filter { rows[$0].contains(r) && cols[$0].contains(c) }.count }
            for i in 0..<(l - 1) { XCTAssertGreaterThanOrEqual(depth(ranked[i]), depth(ranked[i + 1]), "\(type) \(w)") }
            for j in 0..<l { XCTAssertEqual(s[j], u[j] - Float(depth(j)), "\(type) \(w) patch \(j)") }
        case .attention:
            for i in 0..<(l - 1) { XCTAssertGreaterThanOrEqual(a[ranked[i]], a[ranked[i + 1]], "attention \(w)") }
        case .attentionCenter:
            // the most attended patch first, then by distance to it
            let m = a.indices.max { a[$0] < a[$1] || (a[$0] == a[$1] && $0 > $1) }!
            XCTAssertEqual(ranked[0], m)
            func d2(_ j: Int) -> Int { let (r, c) = rc(j), (r0, c0) = rc(m); return (r - r0) * (r - r0) + (c - c0) * (c - c0) }
            for i in 0..<(l - 1) { XCTAssertLessThanOrEqual(d2(ranked[i]), d2(ranked[i + 1]), "attention_center \(w)") }
        }
    }

    func softmaxRows(_ x: Tensor, _ b: Int, _ l: Int) -> Tensor {
        let y = x.clone()
        for bi in 0..<b { Kernels.softmaxRow(y.data + bi * l, l) }
        return y
    }
}
