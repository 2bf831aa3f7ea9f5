import Foundation
import TesseraHDF5
import XCTest

/// Reads Fixtures/h5py_sample.h5, written by tools/make_hdf5_fixture.py (h5py + numpy).
/// The package manifest does not declare the folder as a resource, so the file is located
/// relative to this source file.
final class H5pyFixtureTests: XCTestCase {
    static let fixturePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/h5py_sample.h5").path

    private func open() throws -> HDF5File {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.fixturePath),
                          "fixture missing: run python3 tools/make_hdf5_fixture.py")
        return try HDF5File(reading: Self.fixturePath)
    }

    func testNamesAndAttributes() throws {
        let f = try open()
        XCTAssertEqual(try f.datasetNames(), [
            "bool", "empty", "f16", "f32", "f64", "fixed_str", "i32", "i64_scalar",
            "params/blocks.0.attn.qkv.weight", "params/cls_token", "scalar_f64", "u8", "vlen_str",
        ])
        XCTAssertEqual(try f.datasetNames(under: "params"), ["params/blocks.0.attn.qkv.weight", "params/cls_token"])
        XCTAssertEqual(try f.attribute("format"), "tessera-checkpoint-v1")
        XCTAssertEqual(try f.attribute("epoch"), "7")
        XCTAssertEqual(try f.attribute("lr"), "0.5")
        XCTAssertEqual(try f.attribute("note", on: "f32"), "per-dataset attribute")
        XCTAssertNil(try f.attribute("nothing"))
    }

    func testNumbers() throws {
        let f = try open()
        XCTAssertEqual(try f.readFloats("f32").values, [0, 0.5, 1, 1.5, 2, 2.5])
        XCTAssertEqual(try f.readFloats("f32").shape, [2, 3])
        // float64 -> float32 on read
        XCTAssertEqual(try f.readFloats("f64").values, [Float(1.0 / 3.0), -2.25, Float(1e-40)])
        XCTAssertEqual(try f.readDoubles("f64").values, [1.0 / 3.0, -2.25, 1e-40])
        // float16 -> float32 on read
        XCTAssertEqual(try f.readFloats("f16").values, [0.5, -1, 65504, 0.099975586])
        XCTAssertEqual(try f.readInts("i32").values, [1, -2, 3, -4])
        XCTAssertEqual(try f.readInts("i32").shape, [2, 2])
        XCTAssertEqual(try f.readFloats("i32").values, [1, -2, 3, -4])
        XCTAssertEqual(try f.readInts("u8").values, [0, 1, 127, 128, 255])
        XCTAssertEqual(try f.readBytes("u8").values, [0, 1, 127, 128, 255])
        XCTAssertEqual(try f.readInts("i64_scalar").values, [-9_000_000_000])
        XCTAssertEqual(try f.readInts("i64_scalar").shape, [])
        // numpy bool is an HDF5 enum
        XCTAssertEqual(try f.readInts("bool").values, [1, 0, 1])
        XCTAssertEqual(try f.readBytes("bool").values, [1, 0, 1])
        XCTAssertEqual(try f.readFloats("bool").values, [1, 0, 1])
        XCTAssertEqual(try f.readDoubles("scalar_f64").values, [2.5])
        XCTAssertEqual(try f.readDoubles("scalar_f64").shape, [])
        XCTAssertEqual(try f.readFloats("empty").values, [])
        XCTAssertEqual(try f.readFloats("empty").shape, [0, 3])
        XCTAssertEqual(try f.readFloats("params/blocks.0.attn.qkv.weight").values, [1, 2, 3, 4])
        XCTAssertEqual(try f.shape(of: "params/cls_token"), [1, 1, 4])
        var token = [Float](repeating: 0, count: 4)
        try token.withUnsafeMutableBufferPointer { try f.readFloats("params/cls_token", into: $0.baseAddress!, count: 4) }
        XCTAssertEqual(token, [7, 7, 7, 7])
    }

    func testStrings() throws {
        let f = try open()
        XCTAssertEqual(try f.readString("vlen_str"), "héllo wörld")
        XCTAssertEqual(try f.readString("fixed_str"), "fixed-ascii")
    }
}
