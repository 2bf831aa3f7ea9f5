import Foundation
import TesseraHDF5
import XCTest

/// A fresh temporary directory per test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tessera-hdf5-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory = directory { try? FileManager.default.removeItem(at: directory) }
    }

    func file(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Asserts that `body` throws an HDF5Error whose message contains every fragment.
    func assertHDF5Error(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                         _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an HDF5Error", file: file, line: line)
        } catch let error as HDF5Error {
            let message = error.description
            XCTAssertTrue(message.hasPrefix("tessera: "), message, file: file, line: line)
            XCTAssertFalse(message.contains("\n"), "message should be one line: \(message)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(message.contains(fragment), "'\(fragment)' not in: \(message)", file: file, line: line)
            }
        } catch {
            XCTFail("expected an HDF5Error, got \(error)", file: file, line: line)
        }
    }
}

final class HDF5RoundTripTests: TemporaryDirectoryTestCase {
    func testFloatRoundTripForManyShapes() throws {
        let path = file("floats.h5")
        let cases: [(String, [Int])] = [
            ("scalar", []),
            ("vector", [5]),
            ("matrix", [3, 4]),
            ("four_d", [2, 3, 4, 5]),
            ("empty", [0]),
            ("empty_3d", [2, 0, 3]),
            ("blocks.0.norm1.weight", [7]),
            ("grads/blocks.0.attn.qkv.weight", [6, 2]),
            ("a/b/c/deep.name.with.dots", [1, 1, 1]),
        ]
        let out = try HDF5File(creating: path)
        for (i, (name, shape)) in cases.enumerated() {
            let n = shape.reduce(1, *)
            let values = (0..<n).map { Float($0) * 0.25 - Float(i) }
            try out.write(name, floats: values, shape: shape)
        }
        out.close()
        out.close()   // idempotent

        let input = try HDF5File(reading: path)
        for (i, (name, shape)) in cases.enumerated() {
            let n = shape.reduce(1, *)
            let expected = (0..<n).map { Float($0) * 0.25 - Float(i) }
            let (values, readShape) = try input.readFloats(name)
            XCTAssertEqual(readShape, shape, name)
            XCTAssertEqual(values, expected, name)
            XCTAssertEqual(try input.shape(of: name), shape, name)
        }
    }

    func testSpecialFloatValuesSurviveBitExactly() throws {
        let path = file("special.h5")
        let values: [Float] = [.infinity, -.infinity, .greatestFiniteMagnitude, .leastNonzeroMagnitude, -0.0, 1e-30]
        let out = try HDF5File(creating: path)
        try out.write("v", floats: values, shape: [2, 3])
        try out.write("nan", floats: [.nan], shape: [])
        out.close()
        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.readFloats("v").values.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertTrue(try input.readFloats("nan").values[0].isNaN)
    }

    func testPointerWriteAndReadInto() throws {
        let path = file("pointer.h5")
        let values = (0..<24).map { Float($0) / 3 }
        let out = try HDF5File(creating: path)
        try values.withUnsafeBufferPointer { try out.write("p/x", floats: $0.baseAddress!, shape: [2, 3, 4]) }
        out.close()

        let input = try HDF5File(reading: path)
        var destination = [Float](repeating: -1, count: 24)
        try destination.withUnsafeMutableBufferPointer { try input.readFloats("p/x", into: $0.baseAddress!, count: 24) }
        XCTAssertEqual(destination, values)
        XCTAssertEqual(try input.shape(of: "p/x"), [2, 3, 4])

        var small = [Float](repeating: 0, count: 23)
        assertHDF5Error(["p/x", path, "24", "23"]) {
            try small.withUnsafeMutableBufferPointer { try input.readFloats("p/x", into: $0.baseAddress!, count: 23) }
        }
    }

    func testDoublesIntsBytesAndStrings() throws {
        let path = file("types.h5")
        let doubles: [Double] = [1.0 / 3.0, -1e300, .leastNonzeroMagnitude, 0]
        let ints: [Int64] = [.min, -1, 0, 1, .max, 42]
        let bytes: [UInt8] = [0, 1, 127, 128, 254, 255]
        let out = try HDF5File(creating: path)
        try out.write("d", doubles: doubles, shape: [2, 2])
        try out.write("d_scalar", doubles: [Double.pi], shape: [])
        try out.write("d_empty", doubles: [], shape: [0, 4])
        try out.write("i", ints: ints, shape: [3, 2])
        try out.write("i_scalar", ints: [-5], shape: [])
        try out.write("i_empty", ints: [], shape: [0])
        try out.write("b", bytes: bytes, shape: [6])
        try out.write("b_image", bytes: Array(repeating: 9, count: 2 * 2 * 3), shape: [2, 2, 3])
        try out.write("b_empty", bytes: [], shape: [1, 0])
        try out.write("meta/args", string: "{\"lr\": 1.5e-4, \"name\": \"vit_base_patch16\"} ünïcödé ✓")
        try out.write("empty_string", string: "")
        out.close()

        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.readDoubles("d").values, doubles)
        XCTAssertEqual(try input.readDoubles("d").shape, [2, 2])
        XCTAssertEqual(try input.readDoubles("d_scalar").values, [Double.pi])
        XCTAssertEqual(try input.readDoubles("d_scalar").shape, [])
        XCTAssertEqual(try input.readDoubles("d_empty").values, [])
        XCTAssertEqual(try input.readDoubles("d_empty").shape, [0, 4])
        XCTAssertEqual(try input.readInts("i").values, ints)
        XCTAssertEqual(try input.readInts("i").shape, [3, 2])
        XCTAssertEqual(try input.readInts("i_scalar").values, [-5])
        XCTAssertEqual(try input.readInts("i_scalar").shape, [])
        XCTAssertEqual(try input.readInts("i_empty").shape, [0])
        XCTAssertEqual(try input.readBytes("b").values, bytes)
        XCTAssertEqual(try input.readBytes("b_image").shape, [2, 2, 3])
        XCTAssertEqual(try input.readBytes("b_empty").shape, [1, 0])
        XCTAssertEqual(try input.readString("meta/args"), "{\"lr\": 1.5e-4, \"name\": \"vit_base_patch16\"} ünïcödé ✓")
        XCTAssertEqual(try input.readString("empty_string"), "")
        XCTAssertEqual(try input.shape(of: "meta/args"), [])
    }

    func testConversionsOnRead() throws {
        let path = file("convert.h5")
        let out = try HDF5File(creating: path)
        try out.write("d", doubles: [0.1, -2.5, 1e10], shape: [3])
        try out.write("i", ints: [-3, 0, 1 << 20], shape: [3])
        try out.write("b", bytes: [0, 200], shape: [2])
        out.close()

        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.readFloats("d").values, [Float(0.1), -2.5, 1e10])
        XCTAssertEqual(try input.readFloats("i").values, [-3, 0, 1_048_576])
        XCTAssertEqual(try input.readDoubles("i").values, [-3, 0, 1_048_576])
        XCTAssertEqual(try input.readInts("b").values, [0, 200])
        XCTAssertEqual(try input.readFloats("b").values, [0, 200])
        var three = [Float](repeating: 0, count: 3)
        try three.withUnsafeMutableBufferPointer { try input.readFloats("d", into: $0.baseAddress!, count: 3) }
        XCTAssertEqual(three, [Float(0.1), -2.5, 1e10])
        // Floating-point data is not silently truncated into integers.
        assertHDF5Error(["'d'", path, "floating-point"]) { _ = try input.readInts("d") }
    }

    func testOverwritingADatasetReplacesIt() throws {
        let path = file("overwrite.h5")
        let out = try HDF5File(creating: path)
        try out.write("x", floats: [1, 2, 3], shape: [3])
        try out.write("x", floats: [4, 5, 6, 7], shape: [2, 2])
        try out.write("s", string: "old")
        try out.write("s", string: "new")
        XCTAssertEqual(try out.readFloats("x").shape, [2, 2])
        XCTAssertEqual(try out.readFloats("x").values, [4, 5, 6, 7])   // a writable file can be read too
        XCTAssertEqual(try out.readString("s"), "new")
    }

    func testCreatingTruncatesAnExistingFile() throws {
        let path = file("truncate.h5")
        let first = try HDF5File(creating: path)
        try first.write("old", floats: [1], shape: [1])
        first.close()
        let second = try HDF5File(creating: path)
        try second.write("new", floats: [2], shape: [1])
        second.close()
        XCTAssertEqual(try HDF5File(reading: path).datasetNames(), ["new"])
    }

    func testListingNamesAndContains() throws {
        let path = file("names.h5")
        let out = try HDF5File(creating: path)
        for name in ["params/blocks.1.mlp.fc1.weight", "params/blocks.0.attn.qkv.weight", "params/cls_token",
                     "grads/blocks.0.attn.qkv.weight", "epoch", "blocks.0.norm1.weight", "opt/state/0/exp_avg"] {
            try out.write(name, floats: [0], shape: [1])
        }
        try out.write("args", string: "x")
        out.close()

        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.datasetNames(), [
            "args", "blocks.0.norm1.weight", "epoch", "grads/blocks.0.attn.qkv.weight", "opt/state/0/exp_avg",
            "params/blocks.0.attn.qkv.weight", "params/blocks.1.mlp.fc1.weight", "params/cls_token",
        ])
        XCTAssertEqual(try input.datasetNames(under: "params"),
                       ["params/blocks.0.attn.qkv.weight", "params/blocks.1.mlp.fc1.weight", "params/cls_token"])
        XCTAssertEqual(try input.datasetNames(under: "/opt/"), ["opt/state/0/exp_avg"])
        XCTAssertEqual(try input.datasetNames(under: "opt/state"), ["opt/state/0/exp_avg"])

        XCTAssertTrue(input.contains("params/cls_token"))
        XCTAssertTrue(input.contains("/params/cls_token"))
        XCTAssertTrue(input.contains("params"))               // groups count as present
        XCTAssertTrue(input.contains("blocks.0.norm1.weight"))
        XCTAssertFalse(input.contains("blocks"))              // dots do not create groups
        XCTAssertFalse(input.contains("params/missing"))
        XCTAssertFalse(input.contains("nowhere/at/all"))
        XCTAssertFalse(input.contains("epoch/child"))          // path through a dataset

        assertHDF5Error(["'nope'", path, "no such group"]) { _ = try input.datasetNames(under: "nope") }
        assertHDF5Error(["'epoch'", path, "not a group"]) { _ = try input.datasetNames(under: "epoch") }

        let empty = try HDF5File(creating: file("empty.h5"))
        XCTAssertEqual(try empty.datasetNames(), [])
    }

    func testAttributes() throws {
        let path = file("attrs.h5")
        let out = try HDF5File(creating: path)
        try out.write("params/w", floats: [1, 2], shape: [2])
        try out.setAttribute("format", "tessera-checkpoint-v1")
        try out.setAttribute("source", "mae_pretrain_vit_base.pth", on: "")
        try out.setAttribute("source", "checkpoint-399.pth")          // replaces
        try out.setAttribute("unit", "logits ✓", on: "params/w")
        try out.setAttribute("kind", "weights", on: "params")
        try out.setAttribute("empty", "")
        assertHDF5Error(["'missing'", path, "no such"]) { try out.setAttribute("k", "v", on: "missing") }
        out.close()

        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.attribute("format"), "tessera-checkpoint-v1")
        XCTAssertEqual(try input.attribute("source", on: ""), "checkpoint-399.pth")
        XCTAssertEqual(try input.attribute("unit", on: "params/w"), "logits ✓")
        XCTAssertEqual(try input.attribute("kind", on: "/params"), "weights")
        XCTAssertEqual(try input.attribute("empty"), "")
        XCTAssertNil(try input.attribute("absent"))
        XCTAssertNil(try input.attribute("format", on: "params/w"))
        assertHDF5Error(["'missing'", path]) { _ = try input.attribute("k", on: "missing") }
        assertHDF5Error([path, "read-only"]) { try input.setAttribute("k", "v") }
        // Attributes are not datasets.
        XCTAssertEqual(try input.datasetNames(), ["params/w"])
    }
}

final class HDF5ErrorTests: TemporaryDirectoryTestCase {
    func testMissingDatasetNamesPathAndDataset() throws {
        let path = file("one.h5")
        let out = try HDF5File(creating: path)
        try out.write("params/w", floats: [1], shape: [1])
        out.close()
        let input = try HDF5File(reading: path)

        do {
            _ = try input.readFloats("x")
            XCTFail("expected an error")
        } catch let error as HDF5Error {
            XCTAssertEqual(error.description, "tessera: cannot read dataset 'x' from \(path): no such dataset")
            XCTAssertEqual(error.path, path)
            XCTAssertEqual(error.dataset, "x")
        }
        assertHDF5Error(["'params/missing'", path, "no such dataset"]) { _ = try input.readInts("params/missing") }
        assertHDF5Error(["'a/b/c'", path, "no such dataset"]) { _ = try input.readDoubles("a/b/c") }
        assertHDF5Error(["'params/w/deeper'", path, "no such dataset"]) { _ = try input.readBytes("params/w/deeper") }
        assertHDF5Error(["'x'", path, "no such dataset"]) { _ = try input.shape(of: "x") }
        assertHDF5Error(["'x'", path, "no such dataset"]) { _ = try input.readString("x") }
        assertHDF5Error(["'params'", path, "group"]) { _ = try input.readFloats("params") }
        assertHDF5Error(["'params/w'", path, "string"]) { _ = try input.readString("params/w") }
        assertHDF5Error(["'params/w'", path, "read-only"]) { try input.write("params/w", floats: [2], shape: [1]) }
        input.close()
        assertHDF5Error(["'params/w'", path, "closed"]) { _ = try input.readFloats("params/w") }
        XCTAssertFalse(input.contains("params/w"))
    }

    func testMissingAndInvalidFiles() throws {
        let missing = file("does-not-exist.h5")
        assertHDF5Error([missing, "no such file"]) { _ = try HDF5File(reading: missing) }

        let text = file("not-hdf5.h5")
        try "this is not an HDF5 file\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertHDF5Error([text, "not an HDF5 file"]) { _ = try HDF5File(reading: text) }

        let empty = file("zero-bytes.h5")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        assertHDF5Error([empty, "not an HDF5 file"]) { _ = try HDF5File(reading: empty) }

        assertHDF5Error([directory.path]) { _ = try HDF5File(reading: directory.path) }

        let noDirectory = file("no/such/dir/out.h5")
        assertHDF5Error([noDirectory]) { _ = try HDF5File(creating: noDirectory) }
    }

    func testBadWrites() throws {
        let path = file("bad.h5")
        let out = try HDF5File(creating: path)
        assertHDF5Error(["'x'", path, "shape"]) { try out.write("x", floats: [1, 2, 3], shape: [2, 2]) }
        assertHDF5Error(["'x'", path, "shape"]) { try out.write("x", ints: [1, 2], shape: []) }
        assertHDF5Error(["'y'", path, "negative"]) { try out.write("y", bytes: [], shape: [-1]) }
        try out.write("g/leaf", floats: [1], shape: [1])
        assertHDF5Error(["'g'", path, "group"]) { try out.write("g", floats: [1], shape: [1]) }
        assertHDF5Error(["'g/leaf/child'", path]) { try out.write("g/leaf/child", floats: [1], shape: [1]) }
        assertHDF5Error([path]) { try out.write("", floats: [1], shape: [1]) }
        XCTAssertFalse(out.contains("x"), "a failed write leaves nothing behind")
        XCTAssertEqual(try out.datasetNames(), ["g/leaf"])
    }
}

final class HDF5AtomicWriteTests: TemporaryDirectoryTestCase {
    struct Boom: Error {}

    private func directoryListing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    func testAtomicWriteCreatesAndReplaces() throws {
        let path = file("ckpt.h5")
        try HDF5.writeAtomically(to: path) { f in
            try f.write("params/w", floats: [1, 2, 3], shape: [3])
            try f.setAttribute("format", "tessera-checkpoint-v1")
        }
        XCTAssertEqual(try directoryListing(), ["ckpt.h5"])
        XCTAssertEqual(try HDF5File(reading: path).readFloats("params/w").values, [1, 2, 3])

        try HDF5.writeAtomically(to: path) { f in
            XCTAssertTrue(f.path.hasPrefix(path + ".tmp-"))
            try f.write("params/w", floats: [4], shape: [1])
        }
        let input = try HDF5File(reading: path)
        XCTAssertEqual(try input.readFloats("params/w").values, [4])
        XCTAssertNil(try input.attribute("format"))
        XCTAssertEqual(try directoryListing(), ["ckpt.h5"])
    }

    func testThrowingBodyLeavesOldFileIntactAndRemovesTemporary() throws {
        let path = file("ckpt.h5")
        try HDF5.writeAtomically(to: path) { f in try f.write("epoch", ints: [3], shape: []) }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))

        var temporaryPath = ""
        XCTAssertThrowsError(try HDF5.writeAtomically(to: path) { f in
            temporaryPath = f.path
            try f.write("epoch", ints: [4], shape: [])
            // The file is built in memory: nothing is on disk before its bytes are complete.
            XCTAssertFalse(FileManager.default.fileExists(atPath: temporaryPath))
            throw Boom()
        }) { error in XCTAssertTrue(error is Boom) }

        XCTAssertEqual(temporaryPath, path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporaryPath))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try HDF5File(reading: path).readInts("epoch").values, [3])
        XCTAssertEqual(try directoryListing(), ["ckpt.h5"])

        // An HDF5 error inside the body behaves the same way.
        XCTAssertThrowsError(try HDF5.writeAtomically(to: path) { f in
            try f.write("x", floats: [1, 2], shape: [3])
        }) { error in XCTAssertTrue(error is HDF5Error) }
        XCTAssertEqual(try directoryListing(), ["ckpt.h5"])
        XCTAssertEqual(try HDF5File(reading: path).readInts("epoch").values, [3])
    }

    func testThrowingBodyWithoutAnExistingFileLeavesNothing() throws {
        let path = file("fresh.h5")
        XCTAssertThrowsError(try HDF5.writeAtomically(to: path) { _ in throw Boom() })
        XCTAssertEqual(try directoryListing(), [])
    }

    func testAtomicWriteIntoMissingDirectoryFails() {
        let path = file("missing-dir/ckpt.h5")
        assertHDF5Error(["missing-dir"]) { try HDF5.writeAtomically(to: path) { _ in } }
    }
}

final class HDF5ConcurrencyTests: TemporaryDirectoryTestCase {
    func testOneFilePerThread() throws {
        let count = 8
        let paths = (0..<count).map { file("thread-\($0).h5") }
        let failures = NSLock()
        var errors: [String] = []
        DispatchQueue.concurrentPerform(iterations: count) { i in
            do {
                for round in 0..<5 {
                    let values = (0..<1000).map { Float($0 + i * 1000 + round) }
                    try HDF5.writeAtomically(to: paths[i]) { f in
                        try f.write("params/blocks.\(i).w", floats: values, shape: [10, 100])
                        try f.setAttribute("round", String(round))
                    }
                    let input = try HDF5File(reading: paths[i])
                    let (read, shape) = try input.readFloats("params/blocks.\(i).w")
                    let attribute = try input.attribute("round")
                    if read != values || shape != [10, 100] || attribute != String(round) {
                        throw NSError(domain: "mismatch", code: i)
                    }
                    // Errors from several threads at once stay well-formed.
                    do { _ = try input.readFloats("missing") } catch let e as HDF5Error {
                        if !e.description.hasSuffix("no such dataset") { throw e }
                    }
                }
            } catch {
                failures.lock(); errors.append("\(i): \(error)"); failures.unlock()
            }
        }
        XCTAssertEqual(errors, [])
    }
}
