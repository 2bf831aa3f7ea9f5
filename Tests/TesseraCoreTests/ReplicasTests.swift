import Dispatch
import XCTest
import TesseraCore

/// `Replicas.run`: replicas record on their own tapes, keep kernels on their own thread, and the
/// leaves' gradients after the run are the sums of the replicas' gradients.
final class ReplicasTests: TwoThreadsTestCase {
    /// A two-layer model on rows of x: the gradient of the summed loss over the split batch equals
    /// the whole-batch gradient.
    func testSplitGradientsSumToWholeBatch() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([9, 24], rng: &rng)
        let w1 = (Tensor.randn([32, 24], rng: &rng) * 0.2).requiringGrad(), b1 = Tensor.randn([32], rng: &rng).requiringGrad()
        let w2 = (Tensor.randn([5, 32], rng: &rng) * 0.2).requiringGrad()
        let leaves = [w1, b1, w2]
        func loss(_ rows: Tensor) -> Tensor { sum(gelu(linear(linear(rows, w1, b1), w2, nil)) * gelu(linear(linear(rows, w1, b1), w2, nil))) }

        loss(x).backward()
        let whole = leaves.map { $0.grad!.array }
        for t in leaves { t.grad = nil }

        for n in [2, 3] {
            var workers = [Int](repeating: 0, count: n), tapes = [Int](repeating: -1, count: n)
            workers.withUnsafeMutableBufferPointer { w in
                tapes.withUnsafeMutableBufferPointer { tp in
                    let (w, tp) = (w, tp)
                    Replicas.run(n, leaves: leaves) { r in
                        let lo = 9 * r / n, hi = 9 * (r + 1) / n
                        w[r] = Parallel.workers
                        tp[r] = Autograd.tapeLength        // nothing from another replica
                        loss(x.view([hi - lo, 24], start: lo * 24)).backward()
                    }
                }
            }
            XCTAssertEqual(workers, [Int](repeating: 1, count: n), "kernels inside a replica stay on its thread")
            XCTAssertEqual(tapes, [Int](repeating: 0, count: n))
            XCTAssertEqual(Autograd.tapeLength, 0)
            XCTAssertEqual(Parallel.workers, Parallel.threads, "outside replicas kernels use the configured threads again")
            for (i, t) in leaves.enumerated() {
                let g = t.grad!.array
                var num = 0.0, den = 0.0
                for j in 0..<g.count { num += Double(g[j] - whole[i][j]) * Double(g[j] - whole[i][j]); den += Double(whole[i][j] * whole[i][j]) }
                XCTAssertLessThan((num / den).squareRoot(), 1e-5, "leaf \(i), \(n) replicas")
                t.grad = nil
            }
        }
    }

    /// Gradients already in a leaf (accumulation over micro-batches) are kept and added to.
    func testAddsToExistingGradient() {
        let w = Tensor([1, 2, 3], shape: [3]).requiringGrad()
        w.grad = Tensor([10, 20, 30], shape: [3])
        Replicas.run(2, leaves: [w]) { r in sum(w * Float(r + 1)).backward() }
        XCTAssertEqual(w.grad!.array, [13, 23, 33])
    }

    /// A leaf's replica gradients are added into it as soon as both replicas' backward passes are
    /// past the leaf: when both passes are over (the replicas meet inside the run), nothing is left to
    /// merge. The result is, bit for bit, replica 0's gradient plus replica 1's, each computed alone.
    func testReplicaGradientsMergeDuringBackward() {
        var rng = RandomGenerator(seed: 5)
        let x = Tensor.randn([8, 16], rng: &rng)
        let w1 = (Tensor.randn([32, 16], rng: &rng) * 0.2).requiringGrad(), b1 = Tensor.randn([32], rng: &rng).requiringGrad()
        let w2 = (Tensor.randn([6, 32], rng: &rng) * 0.2).requiringGrad(), unused = Tensor.randn([3], rng: &rng).requiringGrad()
        let used = [w1, b1, w2], leaves = used + [unused]
        func loss(_ part: Int) -> Tensor {
            let h = gelu(linear(x.view([4, 16], start: part * 64), w1, b1))
            return sum(gelu(linear(h, w2, nil)) * linear(h, w2, nil))
        }
        // Each part's gradients alone, computed inside a replica as the run computes them.
        let alone: [[[Float]]] = (0..<2).map { part in
            Replicas.run(2, leaves: leaves) { r in if r == 0 { loss(part).backward() } }
            defer { for t in leaves { t.grad = nil } }
            return used.map { $0.grad!.array }
        }
        let arrived = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
        var met = [Bool](repeating: false, count: 2), left = [Int](repeating: -1, count: 2)
        met.withUnsafeMutableBufferPointer { m in
            left.withUnsafeMutableBufferPointer { l in
                let (m, l) = (m, l)
                Replicas.run(2, leaves: leaves) { r in
                    loss(r).backward()
                    arrived[r].signal()
                    m[r] = arrived[1 - r].wait(timeout: .now() + 30) == .success
                    l[r] = Replicas.unmergedGradientBytes
                }
            }
        }
        XCTAssertEqual(met, [true, true], "the replicas ran side by side")
        XCTAssertEqual(left, [0, 0], "replica gradients merged before the run ended")
        for (i, t) in used.enumerated() {
            XCTAssertEqual(t.grad!.array, zip(alone[0][i], alone[1][i]).map { $0 + $1 }, "leaf \(i)")
        }
        XCTAssertNil(unused.grad)
    }
}
