import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraData

/// PNG pictures through zlib, and `tessera visualize`.
final class VisualizeTests: ScratchTestCase {
    /// The chunks of a PNG file, CRCs checked.
    private func chunks(_ png: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [(type: String, data: [UInt8])] {
        XCTAssertEqual(Array(png[0..<8]), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], file: file, line: line)
        var out: [(String, [UInt8])] = []
        var i = 8
        func be32(_ k: Int) -> Int { png[k..<(k + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while i + 12 <= png.count {
            let n = be32(i)
            let body = Array(png[(i + 4)..<(i + 8 + n)])
            XCTAssertEqual(UInt32(be32(i + 8 + n)), crc32(body), "CRC of \(String(decoding: body.prefix(4), as: UTF8.self))", file: file, line: line)
            out.append((String(decoding: body.prefix(4), as: UTF8.self), Array(body.dropFirst(4))))
            i += 12 + n
        }
        return out
    }

    /// Decodes an 8-bit RGB PNG written by `PNG.encode` (filters none and up).
    private func decode(_ png: [UInt8]) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        let c = chunks(png)
        XCTAssertEqual(c.map(\.type), ["IHDR", "IDAT", "IEND"])
        let h = c[0].data
        let width = h[0..<4].reduce(0) { $0 << 8 | Int($1) }, height = h[4..<8].reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(Array(h[8..<13]), [8, 2, 0, 0, 0])
        let raw = try zlibDecompress(c[1].data)
        let stride = width * 3
        XCTAssertEqual(raw.count, (stride + 1) * height)
        var rgb = [UInt8](repeating: 0, count: stride * height)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            XCTAssertTrue(filter == 0 || filter == 2)
            for x in 0..<stride {
                let above = y > 0 && filter == 2 ? rgb[(y - 1) * stride + x] : 0
                rgb[y * stride + x] = raw[y * (stride + 1) + 1 + x] &+ above
            }
        }
        return (width, height, rgb)
    }

    func testPNGRoundTripsAndCompresses() throws {
        var canvas = Canvas(width: 300, height: 200)
        for y in 0..<200 { for x in 0..<300 where (x / 10 + y / 10) % 3 == 0 { canvas.set(x, y, (UInt8(x % 256), UInt8(y), 200)) } }
        let png = PNG.encode(width: 300, height: 200, rgb: canvas.pixels)
        let back = try decode(png)
        XCTAssertEqual(back.width, 300)
        XCTAssertEqual(back.height, 200)
        XCTAssertEqual(back.rgb, canvas.pixels)
        XCTAssertLessThan(png.count, canvas.pixels.count / 5, "deflated, not stored")
    }

    /// A pre-training checkpoint and two JPEGs give the method's pictures; at 224 px the MAE
    /// reconstruction sheet is drawn at image size and deflated.
    func testVisualizeWritesReconstructions() throws {
        let yaml = """
        name: vis
        task: pretrain
        batch_size: 8
        epochs: 1
        output_dir: "\(scratch.path)"
        model: {method: mae, arch: custom, width: 32, depth: 1, heads: 2, patch_size: 16, img_size: 224,
                decoder: {width: 16, depth: 1, heads: 2}, mask_ratio: 0.75}
        data: {dataset: fashion-mnist, input_size: 224}
        """
        let spec = try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("vis.yaml").path)
        var rng = RandomGenerator(seed: 1)
        let method = try Registry.method("mae").build(spec, &rng)
        let weights = scratch.appendingPathComponent("w.h5").path
        try Checkpoint(params: Dictionary(uniqueKeysWithValues: method.stateDict().map { ($0.name, $0.tensor) })).write(to: weights)
        var images: [String] = []
        for i in 0..<2 {
            var pixels = [UInt8](repeating: 0, count: 300 * 260 * 3)
            for k in pixels.indices { pixels[k] = UInt8((k / 3 % 300 + k / 900 * (i + 1)) % 256) }
            let path = scratch.appendingPathComponent("img\(i).jpg").path
            try Data(encodeJPEG(Image(width: 300, height: 260, channels: 3, pixels: pixels), quality: 90)).write(to: URL(fileURLWithPath: path))
            images.append(path)
        }
        let out = scratch.appendingPathComponent("pictures").path
        let written = try Visualize.run(spec: spec, weights: weights, images: images, out: out)
        XCTAssertEqual(written.map { ($0 as NSString).lastPathComponent }, ["reconstruction.png"])
        let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: written[0])))
        let picture = try decode(png)
        XCTAssertEqual(picture.height, 2 * (224 + 2) + 2, "two rows at image size (no upscaling at 224 px)")
        let stored = (picture.width * 3 + 1) * picture.height
        print(String(format: "VisualizeTests: 224 px reconstruction sheet of 2 images, %d×%d: %.2f MB stored, %.2f MB deflated",
                     picture.width, picture.height, Double(stored) / 1e6, Double(png.count) / 1e6))
        XCTAssertLessThan(png.count, stored)

        XCTAssertThrowsError(try Visualize.run(spec: spec, weights: weights, images: [scratch.appendingPathComponent("none.jpg").path], out: out)) { e in
            XCTAssertTrue("\(e)".contains("none.jpg"), "\(e)")
        }
    }
}
