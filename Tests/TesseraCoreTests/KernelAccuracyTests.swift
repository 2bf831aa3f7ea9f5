import Foundation
import XCTest
import TesseraCore

/// The scalar approximations inside the kernels against libm in Double.
final class KernelAccuracyTests: XCTestCase {
    func testExp() {
        var worst = 0.0
        var x: Float = -87
        while x <= 88.3 {
            let e = abs(Double(Kernels.exp(x)) / Foundation.exp(Double(x)) - 1)
            worst = max(worst, e)
            x += 0.0137
        }
        print(String(format: "KERNEL exp relative error on [-87, 88.3]: %.2e", worst))
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(Kernels.exp(-.infinity), 0)
        XCTAssertEqual(Kernels.exp(-100), 0)
        XCTAssertEqual(Kernels.exp(0), 1)
        // Above 88.3 the input is clamped: large but finite.
        XCTAssertEqual(Kernels.exp(100), Kernels.exp(88.3))
        XCTAssertTrue(Kernels.exp(100).isFinite)
    }

    func testErfAndGelu() {
        var worstErf = 0.0, worstGelu = 0.0, worstDerivative = 0.0
        var x: Float = -6
        while x <= 6 {
            let xd = Double(x)
            worstErf = max(worstErf, abs(Double(Kernels.erf(x)) - Foundation.erf(xd)))
            let cdf = 0.5 * (1 + Foundation.erf(xd / 2.0.squareRoot()))
            worstGelu = max(worstGelu, abs(Double(Kernels.gelu(x)) - xd * cdf))
            let pdf = Foundation.exp(-xd * xd / 2) / (2 * Double.pi).squareRoot()
            worstDerivative = max(worstDerivative, abs(Double(Kernels.geluDerivative(x)) - (cdf + xd * pdf)))
            let (v, dv) = Kernels.geluWithDerivative(x)
            worstGelu = max(worstGelu, abs(Double(v) - xd * cdf))
            worstDerivative = max(worstDerivative, abs(Double(dv) - (cdf + xd * pdf)))
            x += 0.001
        }
        print(String(format: "KERNEL erf abs error %.2e, gelu %.2e, gelu' %.2e on [-6, 6]", worstErf, worstGelu, worstDerivative))
        XCTAssertLessThan(worstErf, 1e-6)  // A&S 7.1.26 is 1.5e-7 in exact arithmetic; float32 adds a few ulp
        XCTAssertLessThan(worstGelu, 1e-6)
        XCTAssertLessThan(worstDerivative, 1e-6)
    }

    /// Column sums in blocks of four rows, with a remainder, overwriting and accumulating.
    func testSumRows() {
        for rows in [1, 3, 4, 7, 130] {
            let cols = 37
            let x = (0..<(rows * cols)).map { Float(($0 * 7919) % 23) - 11 }
            var out = [Float](repeating: 5, count: cols)
            x.withUnsafeBufferPointer { xp in
                Kernels.sumRows(xp.baseAddress!, rows: rows, cols: cols, into: &out, accumulate: false)
            }
            for j in 0..<cols {
                let expected = (0..<rows).reduce(Float(0)) { $0 + x[$1 * cols + j] }
                XCTAssertEqual(out[j], expected, "rows \(rows) column \(j)")
            }
            let before = out
            x.withUnsafeBufferPointer { xp in
                Kernels.sumRows(xp.baseAddress!, rows: rows, cols: cols, into: &out, accumulate: true)
            }
            for j in 0..<cols { XCTAssertEqual(out[j], 2 * before[j], "accumulate, rows \(rows) column \(j)") }
        }
    }

    /// The SIMD reductions behind softmax (maximum, dot) and the softmax row itself, for every length
    /// around the 8- and 16-wide blocks, against a Double computation; a fully masked row gives zeros.
    func testSoftmaxRowAndItsReductions() {
        for n in 0...41 {
            let x = (0..<n).map { Float(($0 * 7919 + n) % 29) * 0.37 - 5 }
            let y = (0..<n).map { Float(($0 * 104_729) % 17) * 0.21 - 1.5 }
            var row = x
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    XCTAssertEqual(Kernels.maximum(xp.baseAddress!, n), x.max() ?? -.infinity, "max, n \(n)")
                    let dot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    XCTAssertEqual(Double(Kernels.dot(xp.baseAddress!, yp.baseAddress!, n)), dot, accuracy: 1e-4, "dot, n \(n)")
                }
            }
            guard n > 0 else { continue }
            row.withUnsafeMutableBufferPointer { Kernels.softmaxRow($0.baseAddress!, n) }
            let m = Double(x.max()!)
            let z = x.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }
            for j in 0..<n { XCTAssertEqual(Double(row[j]), Foundation.exp(Double(x[j]) - m) / z, accuracy: 1e-6, "softmax, n \(n), j \(j)") }
        }
        var masked = [Float](repeating: -.infinity, count: 19)
        masked.withUnsafeMutableBufferPointer { Kernels.softmaxRow($0.baseAddress!, 19) }
        XCTAssertEqual(masked, [Float](repeating: 0, count: 19))
    }
}
