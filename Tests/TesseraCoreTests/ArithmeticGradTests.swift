import XCTest
import TesseraCore

/// Gradient checks for linear, matmul, broadcasting arithmetic, scalar ops and expand.
final class ArithmeticGradTests: XCTestCase {
    func testGradCheckCanFail() {
        // x.detach() · x hides one of the two product-rule terms: the tape sees d/dx = x, the
        // differences see 2x. A checker that passes this is broken.
        let c = compareGradients(inputs: [randn([3, 4], seed: 1)], eps: 1e-2) { v in v[0].detach() * v[0] }
        XCTAssertGreaterThan(c.worst, 0.3)
        // And the honest version passes.
        let ok = compareGradients(inputs: [randn([3, 4], seed: 1)], eps: 1e-2) { v in v[0] * v[0] }
        XCTAssertLessThan(ok.worst, 1e-3)
    }

    func testLinear() {
        gradCheck(inputs: [randn([2, 3, 5], seed: 1), randn([4, 5], seed: 2), randn([4], seed: 3)], label: "bias") { v in
            linear(v[0], v[1], v[2])
        }
        gradCheck(inputs: [randn([3, 5], seed: 4), randn([4, 5], seed: 5)], label: "no bias") { v in linear(v[0], v[1]) }
        // The gradient accumulates when a weight is used twice.
        gradCheck(inputs: [randn([3, 4], seed: 6), randn([4, 4], seed: 7), randn([4], seed: 8)], label: "reused weight") { v in
            linear(linear(v[0], v[1], v[2]), v[1], v[2])
        }
    }

    /// The skip connection added in the product's pass: with and without a bias, an intermediate
    /// residual, one read by another op as well, and the residual being the input itself.
    func testLinearResidual() {
        let x = randn([2, 3, 5], seed: 12), w = randn([5, 5], seed: 13), b = randn([5], seed: 14), r = randn([2, 3, 5], seed: 15)
        gradCheck(inputs: [x, w, b, r], label: "bias") { v in linear(v[0], v[1], v[2], residual: v[3]) }
        gradCheck(inputs: [x, w, r], label: "no bias") { v in linear(v[0], v[1], residual: v[2]) }
        gradCheck(inputs: [x, w, b, r], label: "intermediate, read twice") { v in
            let u = v[3] * 2
            return linear(v[0], v[1], v[2], residual: u) * u
        }
        gradCheck(inputs: [x, w, b], label: "input as residual") { v in linear(v[0], v[1], v[2], residual: v[0]) }
        assertClose(linear(x, w, b, residual: r).array, (linear(x, w, b) + r).array, tol: 1e-6, "residual forward")
        assertClose(linear(x, w, residual: r).array, (linear(x, w) + r).array, tol: 1e-6, "residual forward, no bias")
    }

    func testLinearForward() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let w = Tensor([1, 0, -1, 2, 1, 0], shape: [2, 3])
        let y = linear(x, w, Tensor([10, 20], shape: [2]))
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.array, [8, 24, 8, 33])
    }

    func testMatmulShared() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = randn(ta ? [2, 4, 3] : [2, 3, 4], seed: 10)
            let b = randn(tb ? [5, 4] : [4, 5], seed: 11)
            gradCheck(inputs: [a, b], label: "transA \(ta) transB \(tb)") { v in matmul(v[0], v[1], transA: ta, transB: tb) }
        }
    }

    func testMatmulBatched() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = randn(ta ? [2, 2, 4, 3] : [2, 2, 3, 4], seed: 12)
            let b = randn(tb ? [2, 2, 5, 4] : [2, 2, 4, 5], seed: 13)
            gradCheck(inputs: [a, b], label: "transA \(ta) transB \(tb)") { v in matmul(v[0], v[1], transA: ta, transB: tb) }
        }
        // a · aᵀ: both operands are the same tensor.
        gradCheck(inputs: [randn([2, 3, 4], seed: 14)], label: "a·aᵀ") { v in matmul(v[0], v[0], transB: true) }
    }

    func testMatmulForward() {
        // [[1,2],[3,4]] · [[5,6],[7,8]] and its transposes.
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([5, 6, 7, 8], shape: [2, 2])
        XCTAssertEqual(matmul(a, b).array, [19, 22, 43, 50])
        XCTAssertEqual(matmul(a, b, transA: true).array, [26, 30, 38, 44])
        XCTAssertEqual(matmul(a, b, transB: true).array, [17, 23, 39, 53])
        XCTAssertEqual(matmul(a, b, transA: true, transB: true).array, [23, 31, 34, 46])
    }

    /// Operand shapes exercising every broadcasting path: equal, trailing block ([D] and [1, 1, D]),
    /// general ([B, 1, D] with [1, L, 1]), scalar-like ([1] and []), and an operand in first position
    /// that is the smaller one.
    let broadcastCases: [(String, [Int], [Int])] = [
        ("same", [2, 3, 4], [2, 3, 4]),
        ("suffix [D]", [2, 3, 4], [4]),
        ("suffix [1,1,D]", [2, 3, 4], [1, 1, 4]),
        ("suffix [L,D] first", [3, 4], [2, 3, 4]),
        ("general [B,1,D]·[1,L,1]", [2, 1, 4], [1, 3, 1]),
        ("general [B,1,1]", [2, 3, 4], [2, 1, 1]),
        ("general [L,1]", [2, 3, 4], [3, 1]),
        ("scalar-like [1]", [2, 3, 4], [1]),
        ("scalar []", [], [2, 3]),
    ]

    func testAddBroadcast() {
        for (i, (name, sa, sb)) in broadcastCases.enumerated() {
            gradCheck(inputs: [randn(sa, seed: UInt64(20 + i)), randn(sb, seed: UInt64(40 + i))], label: name) { v in v[0] + v[1] }
        }
    }

    func testSubBroadcast() {
        for (i, (name, sa, sb)) in broadcastCases.enumerated() {
            gradCheck(inputs: [randn(sa, seed: UInt64(20 + i)), randn(sb, seed: UInt64(40 + i))], label: name) { v in v[0] - v[1] }
        }
    }

    func testMulBroadcast() {
        for (i, (name, sa, sb)) in broadcastCases.enumerated() {
            gradCheck(inputs: [randn(sa, seed: UInt64(20 + i)), randn(sb, seed: UInt64(40 + i))], label: name) { v in v[0] * v[1] }
        }
        gradCheck(inputs: [randn([2, 3], seed: 60)], label: "x·x") { v in v[0] * v[0] }
        gradCheck(inputs: [randn([2, 3], seed: 61)], label: "x·x·x - x") { v in v[0] * v[0] * v[0] - v[0] }
    }

    func testBroadcastForward() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 1, 3])
        let b = Tensor([10, 20], shape: [1, 2, 1])
        let s = a + b
        XCTAssertEqual(s.shape, [2, 2, 3])
        XCTAssertEqual(s.array, [11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26])
        XCTAssertEqual((b - a).array, [9, 8, 7, 19, 18, 17, 6, 5, 4, 16, 15, 14])
        XCTAssertEqual((a * b).array, [10, 20, 30, 20, 40, 60, 40, 50, 60, 80, 100, 120])
        XCTAssertEqual((Tensor([2], shape: [1]) - Tensor([1, 2, 3], shape: [3])).array, [1, 0, -1])
    }

    func testScalarOps() {
        let x = randn([2, 5], seed: 70)
        gradCheck(inputs: [x], label: "affine") { v in affine(v[0], scale: -1.7, shift: 0.3) }
        gradCheck(inputs: [x], label: "x*s") { v in v[0] * 2.5 }
        gradCheck(inputs: [x], label: "s*x") { v in 0.5 * v[0] }
        gradCheck(inputs: [x], label: "x+s") { v in v[0] + 1.5 }
        gradCheck(inputs: [x], label: "x-s") { v in v[0] - 1.5 }
        gradCheck(inputs: [x], label: "-x") { v in -v[0] }
        let y = affine(Tensor([1, -2], shape: [2]), scale: 3, shift: 1)
        XCTAssertEqual(y.array, [4, -5])
    }

    func testExpand() {
        gradCheck(inputs: [randn([1, 1, 4], seed: 80)], label: "[1,1,D]→[B,L,D]") { v in expand(v[0], to: [2, 3, 4]) }
        gradCheck(inputs: [randn([2, 1, 4], seed: 81)], label: "[B,1,D]→[B,L,D]") { v in expand(v[0], to: [2, 3, 4]) }
        gradCheck(inputs: [randn([3, 1], seed: 82)], label: "[L,1]→[B,L,D]") { v in expand(v[0], to: [2, 3, 4]) }
        XCTAssertEqual(expand(Tensor([1, 2], shape: [2, 1]), to: [2, 3]).array, [1, 1, 1, 2, 2, 2])
    }
}
