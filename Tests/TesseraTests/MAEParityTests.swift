import XCTest
import TesseraCore
import TesseraHDF5
import Tessera

/// ‖a − b‖ / ‖b‖
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
    return (num / max(den, 1e-30)).squareRoot()
}

func fixtureURL(_ name: String) -> URL {
    Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures")!
}

/// Reads every dataset under `group/` into tensors keyed by the name below the group.
func readTensors(_ f: HDF5File, group: String) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in try f.datasetNames(under: group) {
        let (v, shape) = try f.readFloats(name)
        out[String(name.dropFirst(group.count + 1))] = Tensor(v, shape: shape)
    }
    return out
}

final class MAEParityTests: XCTestCase {
    func check(variant: MAE.Options.Variant, file: String) throws {
        let f = try HDF5File(reading: fixtureURL(file).path)
        let model = smallMAE(variant)
        let params = try readTensors(f, group: "params")
        let report = try model.load(state: params, strict: false)
        // Only the fixed sin-cos tables are absent from the fixture; they are computed, not loaded.
        XCTAssertEqual(Set(report.missing), Set(model.namedBuffers().map(\.name)))
        XCTAssertTrue(report.unexpected.isEmpty, "\(report.unexpected)")
        XCTAssertTrue(report.misShaped.isEmpty, "\(report.misShaped)")
        XCTAssertEqual(Set(params.keys), Set(model.namedParameters().map(\.name)))

        let (iv, ishape) = try f.readFloats("images")
        let (nv, nshape) = try f.readFloats("noise")
        let out = model.forward(images: Tensor(iv, shape: ishape), draws: Tensor(nv, shape: nshape), ctx: Context(training: true))
        out.loss.backward()
        let refLoss = try f.readDoubles("f32/loss").values[0]
        XCTAssertEqual(Double(out.loss.item), refLoss, accuracy: 1e-5 * abs(refLoss))
        XCTAssertEqual(out.mask!, try f.readFloats("f32/mask").values)
        let refPred = try f.readFloats("f32/pred").values
        XCTAssertLessThan(relativeError(out.prediction!.array, refPred), 1e-5)
        for (name, p) in model.namedParameters() {
            let ref = try f.readFloats("f32/grads/\(name)").values
            guard let g = p.grad else { XCTFail("no gradient for \(name)"); continue }
            XCTAssertLessThan(relativeError(g.array, ref), 1e-4, name)
        }

        // The training step's loss-only pass (last decoder block, norm and head on the removed
        // patches only): the same loss and gradients, and no prediction.
        let lean = smallMAE(variant)
        _ = try lean.load(state: params, strict: false)
        let ctx = Context(training: true)
        ctx.lossOnly = true
        let o = lean.forward(images: Tensor(iv, shape: ishape), draws: Tensor(nv, shape: nshape), ctx: ctx)
        XCTAssertNil(o.prediction)
        o.loss.backward()
        XCTAssertEqual(Double(o.loss.item), refLoss, accuracy: 1e-5 * abs(refLoss))
        for (name, p) in lean.namedParameters() {
            let ref = try f.readFloats("f32/grads/\(name)").values
            guard let g = p.grad else { XCTFail("loss-only: no gradient for \(name)"); continue }
            XCTAssertLessThan(relativeError(g.array, ref), 1e-4, "loss-only: " + name)
        }
    }

    func testOfficialMAEMatchesPyTorch() throws { try check(variant: .official, file: "mae_official.h5") }
    func testMAEPrivMatchesPyTorch() throws { try check(variant: .priv, file: "mae_priv.h5") }
}
