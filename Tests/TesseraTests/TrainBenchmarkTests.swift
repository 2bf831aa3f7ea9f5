import XCTest
import Tessera
import TesseraCore

/// `tessera bench train`: the arithmetic count behind its GFLOP/s column, the JSON line a child
/// process reports, and one real (tiny) measurement.
final class TrainBenchmarkTests: XCTestCase {
    func testTiny32FlopsPerImage() throws {
        // Forward multiply-adds × 2 by hand: 12 encoder blocks over 17 tokens (16 visible + cls) of
        // width 192, patch embedding of 64 patches, decoder_embed, 2 decoder blocks over 65 tokens of
        // width 128, the 48-wide prediction; backward counted as twice forward.
        let encoder = 12 * (2 * 17 * 12 * 192 * 192 + 4 * 17 * 17 * 192)
        let decoder = 2 * (2 * 65 * 12 * 128 * 128 + 4 * 65 * 65 * 128)
        let rest = 2 * 64 * 48 * 192 + 2 * 17 * 192 * 128 + 2 * 65 * 128 * 48
        XCTAssertEqual(try TrainBenchmark.preset("tiny32").flopsPerImage, Double(3 * (encoder + decoder + rest)))
        XCTAssertThrowsError(try TrainBenchmark.preset("vit-giant"))
        // SAIM: 12 content and 12 query blocks over 65 tokens, embedding of 64 patches, MLP head on 65 rows.
        let streams = 24 * (2 * 65 * 12 * 192 * 192 + 4 * 65 * 65 * 192)
        let saimRest = 2 * 64 * 48 * 192 + 2 * 65 * (192 * 768 + 768 * 48)
        XCTAssertEqual(try TrainBenchmark.preset("saim_tiny32").flopsPerImage, Double(3 * (streams + saimRest)))
        // SemAIM: SAIM's step plus one forward of the 12 content blocks and the embedding (the order pass).
        let orderPass = 12 * (2 * 65 * 12 * 192 * 192 + 4 * 65 * 65 * 192) + 2 * 64 * 48 * 192
        XCTAssertEqual(try TrainBenchmark.preset("semaim_tiny32").flopsPerImage, Double(3 * (streams + saimRest) + orderPass))
        XCTAssertEqual(try TrainBenchmark.preset("semaim_tiny32").torchScript, "bench_torch_semaim.py")
        // CAE: 12 encoder blocks over 33 tokens (trained) and over 33 (alignment, forward only), 4
        // regressor blocks (32 queries; q, proj and MLP on 32 rows, k and v on 64), 4 decoder blocks over
        // 32 tokens, the 48-wide pixel head on 32 rows; the patch embedding once per pass.
        func blk(_ t: Int, _ n: Int) -> Int { n * (2 * t * 12 * 192 * 192 + 4 * t * t * 192) }
        let regressor = 4 * (2 * (10 * 32 + 2 * 64) * 192 * 192 + 4 * 32 * 64 * 192)
        let embed = 2 * 64 * 48 * 192
        let cae = 3 * (embed + blk(33, 12) + regressor + blk(32, 4) + 2 * 32 * 192 * 48) + embed + blk(33, 12)
        XCTAssertEqual(try TrainBenchmark.preset("cae_tiny32").flopsPerImage, Double(cae))
        // Fine-tuning: 12 blocks over 65 tokens, the embedding, the 10-class head.
        XCTAssertEqual(try TrainBenchmark.preset("ft_tiny32").flopsPerImage, Double(3 * (blk(65, 12) + embed + 2 * 192 * 10)))
        XCTAssertEqual(try TrainBenchmark.preset("ft_tiny32").torchScript, "bench_torch_finetune.py")
        // Feature extraction: the forward pass alone.
        XCTAssertEqual(try InferBenchmark.preset("infer_tiny32").flopsPerImage, Double(blk(65, 12) + embed))
        XCTAssertThrowsError(try InferBenchmark.preset("tiny32"))
    }

    func testMeasurementJSONRoundTrip() throws {
        let line = #"{"images_per_s": 151.5, "step_seconds": [0.84, 0.85], "peak_bytes": 621805568, "threads": 2, "loss": 1.0}"#
        let m = try XCTUnwrap(TrainBenchmark.Measurement(json: line))
        XCTAssertEqual(m.imagesPerSecond, 151.5)
        XCTAssertEqual(m.stepSeconds, [0.84, 0.85])
        XCTAssertEqual(m.peakBytes, 621_805_568)
        let again = try XCTUnwrap(TrainBenchmark.Measurement(json: m.json))
        XCTAssertEqual(again.imagesPerSecond, m.imagesPerSecond)
        XCTAssertEqual(again.peakBytes, m.peakBytes)
        XCTAssertNil(TrainBenchmark.Measurement(json: "Traceback (most recent call last):"))
    }

    func testRateUsesTheMedianStep() throws {
        // One 10 s stall among fast steps moves the mean rate, not the median one.
        let m = try XCTUnwrap(TrainBenchmark.Measurement(json: #"{"images_per_s": 2.6, "step_seconds": [1.0, 0.5, 10.0], "peak_bytes": 1}"#))
        XCTAssertEqual(TrainBenchmark.rate(m, batch: 10), 10)
        let even = try XCTUnwrap(TrainBenchmark.Measurement(json: #"{"images_per_s": 1, "step_seconds": [1.0, 0.5, 10.0, 0.25], "peak_bytes": 1}"#))
        XCTAssertEqual(TrainBenchmark.rate(even, batch: 3), 4)
        let none = try XCTUnwrap(TrainBenchmark.Measurement(json: #"{"images_per_s": 7.5, "peak_bytes": 1}"#))
        XCTAssertEqual(TrainBenchmark.rate(none, batch: 3), 7.5)
    }

    func testTableRatiosAreTakenWithinEachRound() throws {
        // Two rounds. Batch 10, step times chosen so the rates are 10/20 (tessera), 5/4 (eager), 8/16 (compile).
        func m(_ seconds: Double) throws -> TrainBenchmark.Measurement {
            try XCTUnwrap(TrainBenchmark.Measurement(json: "{\"images_per_s\": 0, \"step_seconds\": [\(seconds)], \"peak_bytes\": 1048576}"))
        }
        let frameworks = ["tessera", "torch eager", "torch compile"]
        let results = ["tessera": [try m(1), try m(0.5)], "torch eager": [try m(2), try m(2.5)], "torch compile": [try m(1.25), try m(0.625)]]
        let probes = [100.0, 250.0]
        let lines = TrainBenchmark.tableLines(name: "x", frameworks: frameworks, results: results,
                                              roundSGEMM: Dictionary(uniqueKeysWithValues: frameworks.map { ($0, probes) }),
                                              probes: probes, batch: 10, flopsPerImage: 1e9)
        // The faster mode is compile in both rounds: 10/8 and 20/16; eager alone gives 2 and 5.
        XCTAssertTrue(lines.contains("  tessera ÷ the faster PyTorch mode per round: 1.25 1.25  (median 1.25)"), lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains("  tessera ÷ torch eager per round: 2.00 5.00  (median 3.50)"), lines.joined(separator: "\n"))
        // %SGEMM is each round's 10 and 20 GFLOP/s over that round's probe (10 % and 8 %), median 9 %,
        // not the best rate over one probe (20 % of the first).
        let row = try XCTUnwrap(lines.first { $0.hasPrefix("x") && $0.contains("tessera") })
        XCTAssertTrue(row.contains("    9 %"), row)
        XCTAssertTrue(lines.contains("  SGEMM (\(Parallel.threads) threads) probed at the start of each round: 100.0 250.0 GFLOP/s"))
        // A framework without measurements reads "failed" and no ratio is printed against it.
        let partial = TrainBenchmark.tableLines(name: "x", frameworks: frameworks, results: ["tessera": results["tessera"]!],
                                                roundSGEMM: ["tessera": probes], probes: probes, batch: 10, flopsPerImage: 1e9)
        XCTAssertTrue(partial.contains { $0.hasSuffix("failed") })
        XCTAssertFalse(partial.contains { $0.contains(" ÷ ") })
    }

    func testMeasureTesseraRunsSteps() throws {
        let p = TrainBenchmark.Preset(name: "unit", width: 32, depth: 1, heads: 2, img: 16, patch: 4,
                                      decWidth: 16, decDepth: 1, decHeads: 2, batch: 4)
        for dataParallel in [true, false] {
            let m = try TrainBenchmark.measureTessera(p, steps: 2, warmup: 1, dataParallel: dataParallel)
            XCTAssertEqual(m.stepSeconds.count, 2)
            XCTAssertGreaterThan(m.imagesPerSecond, 0)
            XCTAssertTrue(m.stepSeconds.allSatisfy { $0 > 0 })
        }
        let saim = TrainBenchmark.Preset(saim: "unit_saim", width: 32, depth: 2, heads: 2, img: 16, patch: 4, queryDepth: 1, batch: 4)
        XCTAssertEqual(try TrainBenchmark.measureTessera(saim, steps: 2, warmup: 1).stepSeconds.count, 2)
        let finetune = TrainBenchmark.Preset(finetune: "unit_ft", width: 32, depth: 1, heads: 2, img: 16, patch: 4, numClasses: 5, batch: 4)
        XCTAssertEqual(try TrainBenchmark.measureTessera(finetune, steps: 2, warmup: 1).stepSeconds.count, 2)
    }
}
