import Foundation
import XCTest
import TesseraCore
import TesseraHDF5

/// One case of Fixtures/ops.h5 (written by tools/make_op_fixtures.py): its differentiable inputs and
/// parameters as gradient leaves, its constants, its integer arrays, and the PyTorch results.
struct TorchCase {
    let file: HDF5File
    let group: String
    /// Inputs and parameters by name (PyTorch names for block parameters), all requiring a gradient.
    let leaves: [String: Tensor]
    /// Leaf names in file order.
    let leafNames: [String]

    init(file: HDF5File, group: String) throws {
        self.file = file
        self.group = group
        var leaves: [String: Tensor] = [:]
        var names: [String] = []
        for sub in ["inputs", "params"] where file.contains("\(group)/\(sub)") {
            for full in try file.datasetNames(under: "\(group)/\(sub)") {
                let name = String(full.dropFirst("\(group)/\(sub)/".count))
                leaves[name] = try TorchCase.read(file, full).requiringGrad()
                names.append(name)
            }
        }
        self.leaves = leaves
        self.leafNames = names
    }

    static func read(_ file: HDF5File, _ name: String) throws -> Tensor {
        let (values, shape) = try file.readFloats(name)
        return Tensor(values, shape: shape)
    }

    subscript(_ name: String) -> Tensor {
        guard let t = leaves[name] else { fatalError("\(group): no input or parameter named \(name)") }
        return t
    }

    func const(_ name: String) throws -> Tensor { try TorchCase.read(file, "\(group)/consts/\(name)") }
    func ints(_ name: String) throws -> [Int] { try file.readInts("\(group)/ints/\(name)").values.map { Int($0) } }
    func floats(_ name: String) throws -> [Float] { try file.readFloats("\(group)/\(name)").values }
    func doubles(_ name: String) throws -> [Double] { try file.readDoubles("\(group)/\(name)").values }
}

/// The ops fixture file, opened once.
enum OpsFixture {
    static let file: Result<HDF5File, Error> = Result {
        guard let url = Bundle.module.url(forResource: "ops", withExtension: "h5", subdirectory: "Fixtures") else {
            throw NSError(domain: "TesseraCoreTests", code: 1,
                          userInfo: [NSLocalizedDescriptionKey: "Fixtures/ops.h5 is missing; run tools/make_op_fixtures.py"])
        }
        return try HDF5File(reading: url.path)
    }
}

/// Relative errors of one compared tensor: ours vs the float32 reference, ours vs float64, and
/// float32 torch vs float64 torch.
struct FixtureErrors {
    var vs32: Double
    var vs64: Double
    var torch32vs64: Double
}

/// Runs `f` on the case's leaves, compares the output with PyTorch's, back-propagates the stored
/// upstream gradient and compares the gradient of every input and parameter. Every comparison must
/// be within `tol` of the float32 reference. Prints all errors; returns the worst per quantity.
@discardableResult
func checkAgainstTorch(_ group: String, tol: Double = 1e-4, file: StaticString = #filePath, line: UInt = #line,
                       _ f: (TorchCase) throws -> Tensor) throws -> [String: FixtureErrors] {
    let h5 = try OpsFixture.file.get()
    let c = try TorchCase(file: h5, group: group)
    Autograd.reset()
    let y = try f(c)
    var report: [String: FixtureErrors] = [:]
    let gy = try TorchCase.read(h5, "\(group)/gy")
    let gyNorm = gy.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    func compare(_ what: String, _ ours: [Float], _ ref32: [Float], _ ref64: [Double]) {
        let mine = ours.map(Double.init)
        XCTAssertEqual(mine.count, ref32.count, "\(group) \(what): sizes differ", file: file, line: line)
        guard mine.count == ref32.count, mine.count == ref64.count else { return }
        let norm64 = ref64.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm64 < 1e-9 * max(gyNorm, 1) {
            // An exactly zero gradient (a key bias: softmax ignores a per-row constant). Relative
            // errors would compare rounding noise; both sides must just be negligible.
            let n32 = ref32.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let mineNorm = mine.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let nums = String(format: "exactly zero in float64; norm ours %.2e, torch32 %.2e, upstream %.2e", mineNorm, n32, gyNorm)
            print("FIXTURE \(group) \(what): \(nums)")
            XCTAssertTrue(mineNorm < 1e-6 * max(gyNorm, 1), "\(group) \(what): should be zero, norm \(mineNorm)", file: file, line: line)
            return
        }
        let e = FixtureErrors(vs32: relativeError(mine, ref32.map(Double.init)), vs64: relativeError(mine, ref64),
                              torch32vs64: relativeError(ref32.map(Double.init), ref64))
        report[what] = e
        let nums = String(format: "ours-vs-torch32 %.2e  ours-vs-torch64 %.2e  torch32-vs-torch64 %.2e", e.vs32, e.vs64, e.torch32vs64)
        print("FIXTURE \(group) \(what): \(nums)")
        XCTAssertTrue(e.vs32 < tol, "\(group) \(what): relative error \(e.vs32) against float32 PyTorch", file: file, line: line)
    }
    let ref = try c.floats("out")
    XCTAssertEqual(y.shape, try h5.shape(of: "\(group)/out"), "\(group): output shape", file: file, line: line)
    compare("out", y.array, ref, try c.doubles("out64"))
    y.backward(gy.reshaped(y.shape))
    for name in c.leafNames {
        let g = c[name].grad?.array ?? [Float](repeating: 0, count: c[name].count)
        compare("grad \(name)", g, try c.floats("grads/\(name)"), try c.doubles("grads64/\(name)"))
    }
    return report
}
