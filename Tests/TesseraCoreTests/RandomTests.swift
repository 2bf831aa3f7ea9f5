import XCTest
import TesseraCore

/// The generator's streams depend on the seed and the draw position only, never on the thread count.
final class RandomTests: XCTestCase {
    func draws(threads: Int) -> ([Float], [Float], RandomGenerator) {
        let saved = Parallel.threads
        Parallel.setThreads(threads)
        defer { Parallel.setThreads(saved) }
        var rng = RandomGenerator(seed: 42)
        let u = Tensor.uniform([300_000], rng: &rng)   // large enough to be split over threads
        let n = Tensor.randn([100_000], rng: &rng)
        return (u.array, n.array, rng)
    }

    func testStreamsIndependentOfThreadCount() {
        let one = draws(threads: 1), two = draws(threads: 2), three = draws(threads: 3)
        XCTAssertEqual(one.0, two.0)
        XCTAssertEqual(one.0, three.0)
        XCTAssertEqual(one.1, two.1)
        XCTAssertEqual(one.1, three.1)
        XCTAssertEqual(one.2, two.2)   // the same stream position afterwards
    }

    func testSeedsAndChildStreamsDiffer() {
        var a = RandomGenerator(seed: 1), b = RandomGenerator(seed: 2)
        XCTAssertNotEqual((0..<8).map { _ in a.uniform() }, (0..<8).map { _ in b.uniform() })
        let parent = RandomGenerator(seed: 7)
        var c1 = parent.derived(0, 1), c2 = parent.derived(1, 0)
        XCTAssertNotEqual(c1.nextWord(), c2.nextWord())
    }

    func testUniformAndNormalMoments() {
        var rng = RandomGenerator(seed: 3)
        let u = Tensor.uniform([200_000], rng: &rng).array, n = Tensor.randn([200_000], rng: &rng).array
        let um = u.reduce(0, +) / Float(u.count)
        let nm = n.reduce(0, +) / Float(n.count), nv = n.map { ($0 - nm) * ($0 - nm) }.reduce(0, +) / Float(n.count)
        XCTAssertEqual(um, 0.5, accuracy: 0.005)
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(nm, 0, accuracy: 0.01)
        XCTAssertEqual(nv, 1, accuracy: 0.02)
    }
}
