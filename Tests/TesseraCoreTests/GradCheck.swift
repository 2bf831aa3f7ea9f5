import Foundation
import XCTest
import TesseraCore

// Finite-difference gradient checking.
//
// For an op f and inputs x₁…xₙ the check builds the scalar L = Σᵢ rᵢ · f(x)ᵢ with a fixed random r
// (seeded by `seed`), so ∂L/∂f = r. The analytic gradient comes from `f(x).backward(r)`. The numerical
// gradient perturbs one element at a time by ±eps, evaluates f in Float, accumulates L in Double and
// forms (L₊ − L₋) / (x₊ − x₋) in Double, with x± the Float values actually used.

/// A tensor of N(0, std²) values from a fixed seed.
func randn(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor.randn(shape, std: std, rng: &g)
}

/// A tensor of values uniform on [lo, hi) from a fixed seed.
func uniform(_ shape: [Int], seed: UInt64, lo: Float, hi: Float) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor.uniform(shape, lo: lo, hi: hi, rng: &g)
}

/// ‖a − b‖₂ / max(‖a‖₂, ‖b‖₂, tiny).
func relativeError(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "relativeError: \(a.count) vs \(b.count) values")
    var d = 0.0, na = 0.0, nb = 0.0
    for i in 0..<a.count {
        d += (a[i] - b[i]) * (a[i] - b[i])
        na += a[i] * a[i]
        nb += b[i] * b[i]
    }
    return d.squareRoot() / max(na.squareRoot(), nb.squareRoot(), 1e-30)
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    relativeError(a.map(Double.init), b.map(Double.init))
}

/// Σ rᵢ yᵢ in Double.
private func weightedSum(_ y: Tensor, _ r: [Double]) -> Double {
    precondition(y.count == r.count, "gradCheck: the op's output changed size between evaluations")
    var s = 0.0
    for i in 0..<y.count { s += r[i] * Double(y[i]) }
    return s
}

struct GradientComparison {
    /// Tape gradient per input (starting from no gradient), the tape gradient when the inputs already
    /// held a gradient (the accumulate paths, minus that starting value), and central differences.
    /// With sampling, only the sampled elements of each.
    var analytic: [[Double]]
    var accumulated: [[Double]]
    var numeric: [[Double]]
    /// Relative error per input: the worse of the fresh and the accumulating tape gradient.
    var errors: [Double]
    var worst: Double { errors.max() ?? 0 }
}

/// Analytic (tape) and numerical (central differences) gradients of L = Σ r ⊙ f(inputs).
/// Every input is made a gradient-requiring leaf; an input whose gradient stays nil counts as zero.
/// The tape runs twice: once from empty gradients (ops overwrite) and once with a random gradient
/// already in every input (ops must add to it). `samples` limits the numerical check to that many
/// evenly spread elements per input, for large shapes.
func compareGradients(inputs: [Tensor], eps: Float, seed: UInt64 = 0x5EED, samples: Int? = nil,
                      _ f: ([Tensor]) -> Tensor) -> GradientComparison {
    let picks: [[Int]] = inputs.map { x in
        guard let s = samples, s < x.count else { return Array(0..<x.count) }
        return (0..<s).map { ($0 * x.count + x.count / 2) / s }
    }
    for x in inputs { x.requiringGrad() }
    var rt: Tensor? = nil
    func tapeGradients(preload: Bool) -> [[Double]] {
        let before = inputs.enumerated().map { i, x in randn(x.shape, seed: seed &+ 100 &+ UInt64(i)) }
        for (x, g0) in zip(inputs, before) { x.grad = preload ? g0.clone() : nil }
        Autograd.reset()
        let y = f(inputs)
        precondition(y.requiresGrad, "gradCheck: the op's output is not on the tape")
        if rt == nil { rt = randn(y.shape, seed: seed) }
        y.backward(rt!)
        return inputs.enumerated().map { i, x in
            guard let g = x.grad else { return [Double](repeating: preload ? .nan : 0, count: picks[i].count) }
            return picks[i].map { Double(g[$0]) - (preload ? Double(before[i][$0]) : 0) }
        }
    }
    let analytic = tapeGradients(preload: false)
    let accumulated = tapeGradients(preload: true)
    for x in inputs { x.grad = nil }
    let r = rt!.array.map(Double.init)
    var numeric: [[Double]] = []
    Autograd.noGrad {
        for (i, x) in inputs.enumerated() {
            var n: [Double] = []
            for j in picks[i] {
                let v = x[j]
                let up = v + eps, down = v - eps
                x[j] = up
                let lp = weightedSum(f(inputs), r)
                x[j] = down
                let lm = weightedSum(f(inputs), r)
                x[j] = v
                n.append((lp - lm) / (Double(up) - Double(down)))
            }
            numeric.append(n)
        }
    }
    Autograd.reset()
    let errors = inputs.indices.map { i in
        max(relativeError(analytic[i], numeric[i]), relativeError(accumulated[i], numeric[i]))
    }
    return GradientComparison(analytic: analytic, accumulated: accumulated, numeric: numeric, errors: errors)
}

/// Asserts that the tape's gradient of every input agrees with central differences to within `tol`
/// (relative, over each input's whole gradient vector) and prints the achieved errors. Returns them.
@discardableResult
func gradCheck(inputs: [Tensor], eps: Float = 1e-2, tol: Double = 1e-2, samples: Int? = nil, label: String = "",
               function: String = #function, file: StaticString = #filePath, line: UInt = #line,
               _ f: ([Tensor]) -> Tensor) -> [Double] {
    let c = compareGradients(inputs: inputs, eps: eps, samples: samples, f)
    let name = function.replacingOccurrences(of: "()", with: "") + (label.isEmpty ? "" : " [\(label)]")
    let shown = c.errors.map { String(format: "%.2e", $0) }.joined(separator: ", ")
    print("GRADCHECK \(name): max \(String(format: "%.2e", c.worst)) per input [\(shown)]")
    for (i, e) in c.errors.enumerated() {
        // NaN fails this too.
        XCTAssertTrue(e < tol, "\(name): input \(i) (shape \(inputs[i].shape)) relative gradient error \(e) ≥ \(tol)",
                      file: file, line: line)
    }
    return c.errors
}

/// Asserts two float arrays agree to a relative error below `tol`; returns the error.
@discardableResult
func assertClose(_ a: [Float], _ b: [Float], tol: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) -> Double {
    XCTAssertEqual(a.count, b.count, "\(what): sizes differ", file: file, line: line)
    guard a.count == b.count else { return .infinity }
    let e = relativeError(a, b)
    XCTAssertLessThan(e, tol, "\(what): relative error", file: file, line: line)
    return e
}

/// Runs each test with at least two compute threads (whatever the machine has), so the threaded
/// code paths are the ones exercised; the previous count is restored afterwards.
class TwoThreadsTestCase: XCTestCase {
    private var savedThreads = 1

    override func setUp() {
        savedThreads = Parallel.threads
        Parallel.setThreads(max(savedThreads, 2))
    }

    override func tearDown() { Parallel.setThreads(savedThreads) }
}
