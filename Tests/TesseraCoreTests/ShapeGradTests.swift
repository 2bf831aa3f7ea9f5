import XCTest
import TesseraCore

/// Gradient checks for reductions, reshape/permute, concat/slice/split and token gather/scatter.
final class ShapeGradTests: XCTestCase {
    func testSumMeanAll() {
        gradCheck(inputs: [randn([2, 3, 4], seed: 1)], label: "sum") { v in sum(v[0]) }
        gradCheck(inputs: [randn([2, 3, 4], seed: 2)], label: "mean") { v in mean(v[0]) }
        XCTAssertEqual(sum(Tensor([1, 2, 3, 4], shape: [2, 2])).item, 10)
        XCTAssertEqual(mean(Tensor([1, 2, 3, 4], shape: [2, 2])).item, 2.5)
    }

    func testSumMeanAxis() {
        let x = randn([2, 3, 4], seed: 3)
        for axis in [0, 1, 2, -1] {
            for keep in [false, true] {
                gradCheck(inputs: [x], label: "sum axis \(axis) keepDim \(keep)") { v in sum(v[0], axis: axis, keepDim: keep) }
                gradCheck(inputs: [x], label: "mean axis \(axis) keepDim \(keep)") { v in mean(v[0], axis: axis, keepDim: keep) }
            }
        }
        let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(sum(t, axis: 0).array, [5, 7, 9])
        XCTAssertEqual(sum(t, axis: 1, keepDim: true).shape, [2, 1])
        XCTAssertEqual(mean(t, axis: 1).array, [2, 5])
    }

    func testReshape() {
        gradCheck(inputs: [randn([2, 3, 4], seed: 4)], label: "reshape -1") { v in v[0].reshaped([6, -1]) * v[0].reshaped([6, 4]) }
        // A reshape feeding a second op that also uses the source.
        gradCheck(inputs: [randn([2, 6], seed: 5)], label: "reshape + original") { v in
            sum(v[0].reshaped([2, 2, 3]), axis: 1).reshaped([2, 3]) + slice(v[0], axis: 1, start: 0, length: 3)
        }
    }

    func testPermuteTranspose() {
        let x = randn([2, 3, 4, 5], seed: 6)
        for perm in [[0, 2, 1, 3], [3, 2, 1, 0], [1, 3, 0, 2], [0, 1, 2, 3]] {
            gradCheck(inputs: [x], label: "permute \(perm)") { v in v[0].permuted(perm) }
        }
        gradCheck(inputs: [x], label: "transpose -1 -2") { v in v[0].transposed(-1, -2) }
        gradCheck(inputs: [x], label: "transpose 0 2") { v in v[0].transposed(0, 2) }
        let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(t.transposed(0, 1).array, [1, 4, 2, 5, 3, 6])
    }

    func testConcat() {
        for axis in [0, 1, 2, -1] {
            let ax = axis < 0 ? 3 + axis : axis
            var sa = [2, 3, 4], sb = [2, 3, 4]
            sa[ax] = 2; sb[ax] = 3
            gradCheck(inputs: [randn(sa, seed: 7), randn(sb, seed: 8), randn(sa, seed: 9)], label: "axis \(axis)") { v in
                concat([v[0], v[1], v[2]], axis: axis)
            }
        }
        gradCheck(inputs: [randn([2, 3], seed: 10)], label: "same tensor twice") { v in concat([v[0], v[0]], axis: 1) }
        XCTAssertEqual(concat([Tensor([1, 2], shape: [2, 1]), Tensor([3, 4, 5, 6], shape: [2, 2])], axis: 1).array,
                       [1, 3, 4, 2, 5, 6])
    }

    func testSlice() {
        let x = randn([3, 4, 5], seed: 11)
        gradCheck(inputs: [x], label: "axis 0") { v in slice(v[0], axis: 0, start: 1, length: 2) }
        gradCheck(inputs: [x], label: "axis 1") { v in slice(v[0], axis: 1, start: 1, length: 2) }
        gradCheck(inputs: [x], label: "axis -1") { v in slice(v[0], axis: -1, start: 2, length: 3) }
        gradCheck(inputs: [x], label: "overlapping slices") { v in
            slice(v[0], axis: 1, start: 0, length: 3) * slice(v[0], axis: 1, start: 1, length: 3)
        }
        XCTAssertEqual(slice(Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), axis: 1, start: 1, length: 2).array, [2, 3, 5, 6])
    }

    func testSplit() {
        let x = randn([2, 7, 3], seed: 12)
        gradCheck(inputs: [x], label: "3 pieces") { v in
            let p = split(v[0], axis: 1, sizes: [2, 4, 1])
            return concat([p[2] * 2, p[0], p[1] * p[1]], axis: 1)
        }
        gradCheck(inputs: [x], label: "last axis") { v in
            let p = split(v[0], axis: -1, sizes: [1, 2])
            return p[0] * slice(p[1], axis: 2, start: 1, length: 1)
        }
    }

    func testGatherTokens() {
        // Repeated indices must add their gradients.
        let index = [3, 0, 0, 1, 4, 2]
        gradCheck(inputs: [randn([2, 5, 3], seed: 13)]) { v in gatherTokens(v[0], index, count: 3) }
        let x = Tensor((0..<12).map(Float.init), shape: [2, 3, 2])
        XCTAssertEqual(gatherTokens(x, [2, 0, 1, 1], count: 2).array, [4, 5, 0, 1, 8, 9, 8, 9])
    }

    func testScatterTokens() {
        let index = [3, 0, 1, 4, 2, 0]
        gradCheck(inputs: [randn([2, 3, 3], seed: 14)], label: "no base") { v in scatterTokens(v[0], index, length: 5) }
        gradCheck(inputs: [randn([2, 3, 3], seed: 15), randn([2, 5, 3], seed: 16)], label: "with base") { v in
            scatterTokens(v[0], index, length: 5, base: v[1])
        }
        let src = Tensor([1, 2, 3, 4], shape: [2, 1, 2])
        let base = Tensor.full([2, 2, 2], 9)
        XCTAssertEqual(scatterTokens(src, [1, 0], length: 2, base: base).array, [9, 9, 1, 2, 3, 4, 9, 9])
        XCTAssertEqual(scatterTokens(src, [1, 0], length: 2).array, [0, 0, 1, 2, 3, 4, 0, 0])
    }
}
