import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore

/// Data-parallel runs over processes: the tessera executable under `mpirun -np 2` against one
/// process with the same effective batch.
final class DistributedTests: ScratchTestCase {
    /// The tessera executable built beside the test bundle.
    private var tessera: String {
        let dir = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
        return (dir as NSString).appendingPathComponent("tessera")
    }

    private var mpirun: String? {
        ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private func config(_ name: String, task: String = "pretrain", batch: Int, extra: String = "") throws -> String {
        let yaml = """
        name: \(name)
        task: \(task)
        seed: 4
        batch_size: \(batch)
        epochs: 1
        threads: 1
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        log:
          every: 1
          pictures: false
        \(extra)
        """
        let path = scratch.appendingPathComponent("\(name).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `tessera train CONFIG` on `processes` processes (mpirun for more than one).
    @discardableResult
    private func train(_ config: String, processes: Int, _ overrides: [String] = [],
                       file: StaticString = #filePath, line: UInt = #line) throws -> Subprocess.Output {
        let args = ["train", config] + overrides.flatMap { ["--set", $0] }
        var command = [tessera] + args
        if processes > 1 {
            guard let mpirun else {
                XCTFail("mpirun not found: tools/setup.sh installs openmpi-bin", file: file, line: line)
                throw XCTSkip("no mpirun")
            }
            command = ["OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none",
                       mpirun, "-np", "\(processes)", "--oversubscribe", "--bind-to", "none"] + command
        }
        let out = try XCTUnwrap(Subprocess.run(command), file: file, line: line)
        XCTAssertTrue(out.succeeded, "exit \(out.status): \(out.stderr.suffix(2000))", file: file, line: line)
        return out
    }

    private func losses(_ name: String) throws -> [Double] {
        let text = try String(contentsOfFile: scratch.appendingPathComponent(name + "/metrics.jsonl").path, encoding: .utf8)
        // Training lines (evaluation lines carry val_* instead).
        return try text.split(separator: "\n").compactMap { line in
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return (obj["loss"] as? NSNumber)?.doubleValue
        }
    }

    /// 2 processes × batch 16 equal 1 process × batch 32 step by step (within 1e-5 relative, the
    /// summation order differs), and two 2-process runs are identical. Only rank 0 writes.
    func testTwoProcessesEqualOneAtTheSameEffectiveBatch() throws {
        try train(try config("one", batch: 32), processes: 1)
        try train(try config("two", batch: 16), processes: 2)
        try train(try config("again", batch: 16), processes: 2)
        let one = try losses("one"), two = try losses("two"), again = try losses("again")
        XCTAssertEqual(one.count, 8)
        XCTAssertEqual(two.count, one.count, "each rank reads half of every batch's samples")
        for (i, (a, b)) in zip(one, two).enumerated() {
            XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "step \(i + 1)")
        }
        XCTAssertEqual(two, again, "two runs with the same process count are identical")
        let summary = try JSONSerialization.jsonObject(
            with: Data(contentsOf: scratch.appendingPathComponent("two/summary.json"))) as! [String: Any]
        XCTAssertEqual(summary["effective_batch"] as? Int, 32)
        XCTAssertEqual(summary["processes"] as? Int, 2)
    }

    /// Fine-tuning too (without drop path and mixup, whose draws depend on a sample's place in the
    /// batch): the training loss step by step, and the validation accuracy, which counts every
    /// validation image exactly once.
    func testFineTuningOverTwoProcessesEqualsOne() throws {
        let sets = ["model.drop_path=0", "augment.mixup=0", "augment.cutmix=0", "data.val_limit=100"]
        try train(try config("ft1", task: "finetune", batch: 32), processes: 1, sets)
        try train(try config("ft2", task: "finetune", batch: 16), processes: 2, sets)
        let one = try losses("ft1"), two = try losses("ft2")
        XCTAssertEqual(one.count, 8)
        XCTAssertEqual(two.count, one.count)
        for (i, (a, b)) in zip(one, two).enumerated() { XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "step \(i + 1)") }
        func summary(_ name: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: scratch.appendingPathComponent(name + "/summary.json"))) as! [String: Any]
        }
        XCTAssertEqual(try summary("ft2")["top1"] as? Double, try summary("ft1")["top1"] as? Double)
    }

    /// The linear probe's BatchNorm: with `sync_bn` the statistics are those of the global batch, so
    /// 2 processes × 16 equal 1 × 32 step by step; without it each process normalises its own half
    /// (PyTorch DDP without SyncBatchNorm), which changes the losses.
    func testSyncBatchNormOverTwoProcessesEqualsOne() throws {
        let sets = ["data.val_limit=64", "optim.lr=0.05"]
        try train(try config("lp1", task: "linprobe", batch: 32), processes: 1, sets)
        try train(try config("lp2", task: "linprobe", batch: 16), processes: 2, sets + ["sync_bn=true"])
        try train(try config("lp2local", task: "linprobe", batch: 16), processes: 2, sets)
        let one = try losses("lp1"), two = try losses("lp2"), local = try losses("lp2local")
        XCTAssertEqual(one.count, 8)
        XCTAssertEqual(two.count, one.count)
        for (i, (a, b)) in zip(one, two).enumerated() { XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "step \(i + 1)") }
        XCTAssertEqual(local.count, one.count)
        let gap = zip(local, one).map { abs($0 - $1) / abs($1) }.max() ?? 0
        XCTAssertGreaterThan(gap, 1e-3, "per-process statistics give other losses than the global ones: \(local) vs \(one)")
    }

    /// The attentive probe trains a block before its BatchNorm, so this also checks the synchronised
    /// backward pass (Σg and Σg·x̂ summed over the processes): 2 × 16 equal 1 × 32 step by step.
    func testSyncBatchNormBackwardInTheAttentiveProbe() throws {
        let sets = ["data.val_limit=64"]
        try train(try config("ap1", task: "attentive", batch: 32), processes: 1, sets)
        try train(try config("ap2", task: "attentive", batch: 16), processes: 2, sets + ["sync_bn=true"])
        let one = try losses("ap1"), two = try losses("ap2")
        XCTAssertEqual(one.count, 8)
        XCTAssertEqual(two.count, one.count)
        for (i, (a, b)) in zip(one, two).enumerated() { XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "step \(i + 1)") }
    }

    /// kill -9 of one rank: mpirun stops the other within seconds, naming the rank; the same command
    /// then resumes from the last checkpoint and ends bit for bit where an uninterrupted run ends.
    func testKilledRankStopsTheRunAndTheRerunResumesExactly() throws {
        guard let mpirun else { return XCTFail("mpirun not found: tools/setup.sh installs openmpi-bin") }
        let sets = ["data.limit=2048", "epochs=4", "checkpoint.every=1", "log.every=8"]
        try train(try config("straight", batch: 16), processes: 2, sets)
        let path = try config("killed", batch: 16)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = ["-np", "2", "--oversubscribe", "--bind-to", "none", tessera, "train", path] + sets.flatMap { ["--set", $0] }
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let first = scratch.appendingPathComponent("killed/checkpoint-1.h5").path
        let deadline = Date(timeIntervalSinceNow: 120)
        while !FileManager.default.fileExists(atPath: first) && Date() < deadline && p.isRunning { usleep(20_000) }
        let ranks = try XCTUnwrap(Subprocess.run(["pgrep", "-P", "\(p.processIdentifier)"])).stdout
            .split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(ranks.count, 2, "two rank processes under mpirun")
        let killedAt = Date()
        kill(try XCTUnwrap(ranks.last), SIGKILL)
        p.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 20, "the other rank must not hang")
        XCTAssertNotEqual(p.terminationStatus, 0)
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(message.contains("rank") && message.contains("signal 9"), message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("killed/summary.json").path))

        let rerun = try train(path, processes: 2, sets)
        XCTAssertTrue(rerun.stdout.contains("resumed from"), rerun.stdout.suffix(500).description)
        XCTAssertEqual(try losses("killed"), try losses("straight"))
        let a = try Checkpoint.read(scratch.appendingPathComponent("straight/checkpoint-4.h5").path)
        let b = try Checkpoint.read(scratch.appendingPathComponent("killed/checkpoint-4.h5").path)
        XCTAssertEqual(Set(a.params.keys), Set(b.params.keys))
        for (name, t) in a.params { XCTAssertTrue(t.array.map(\.bitPattern) == b.params[name]!.array.map(\.bitPattern), name) }
    }

    /// Machines without a shared file system, played by giving rank 1 an output directory of its own
    /// (an MPMD launch, rank 0's command `:` rank 1's): rank 1 never sees rank 0's run directory, yet a
    /// run extended from 1 to 2 epochs resumes from rank 0's checkpoint on both ranks and equals the
    /// same extension in one shared directory; a linear probe whose `init` exists only for rank 0 trains like one where
    /// both see it; k-NN, whose feature cache only rank 0 has, finishes on both ranks.
    func testRanksNeedNotSeeRankZerosFiles() throws {
        guard let mpirun else { return XCTFail("mpirun not found: tools/setup.sh installs openmpi-bin") }
        let elsewhere = scratch.appendingPathComponent("rank1").path
        func split(_ config: String, _ sets: [String]) throws -> Subprocess.Output {
            let zero = [tessera, "train", config] + sets.flatMap { ["--set", $0] }
            let one = [tessera, "train", config] + (sets + ["output_dir=\(elsewhere)"]).map { $0.hasPrefix("init=") ? "init=/nowhere/x.h5" : $0 }
                .flatMap { ["--set", $0] }
            let out = try XCTUnwrap(Subprocess.run(["OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                                    "OMPI_MCA_btl_vader_single_copy_mechanism=none", mpirun, "--oversubscribe",
                                                    "--bind-to", "none", "-np", "1"] + zero + [":", "-np", "1"] + one))
            XCTAssertTrue(out.succeeded, "exit \(out.status): \(out.stderr.suffix(2000))")
            return out
        }
        let whole = try config("whole", batch: 16)
        try train(whole, processes: 2, ["epochs=1"])
        try train(whole, processes: 2, ["epochs=2"])
        let apart = try config("apart", batch: 16)
        _ = try split(apart, ["epochs=1"])
        let resumed = try split(apart, ["epochs=2"])
        XCTAssertTrue(resumed.stdout.contains("resumed from"), resumed.stdout.suffix(500).description)
        XCTAssertFalse(FileManager.default.fileExists(atPath: elsewhere + "/apart/checkpoint-last.h5"), "rank 1 writes nothing")
        XCTAssertEqual(try losses("apart"), try losses("whole"))

        let weights = "init=" + scratch.appendingPathComponent("whole/checkpoint-last.h5").path
        try train(try config("probe_shared", task: "linprobe", batch: 16), processes: 2, [weights, "data.val_limit=64"])
        _ = try split(try config("probe_apart", task: "linprobe", batch: 16), [weights, "data.val_limit=64"])
        XCTAssertEqual(try losses("probe_apart"), try losses("probe_shared"))

        let knn = try config("knn_apart", task: "knn", batch: 32)
        _ = try split(knn, ["data.val_limit=64", "eval.knn_k=[5]"])
        let again = try split(knn, ["data.val_limit=64", "eval.knn_k=[5, 10]"])
        XCTAssertTrue(again.stdout.contains("@10"), again.stdout.suffix(500).description)
    }

    /// k-NN over two processes: features extracted in shares and gathered give the one-process result.
    func testKNNOverTwoProcessesEqualsOne() throws {
        let sets = ["data.val_limit=100", "eval.knn_k=[5, 10]"]
        try train(try config("knn1", task: "knn", batch: 32), processes: 1, sets)
        try train(try config("knn2", task: "knn", batch: 32), processes: 2, sets)
        func knn(_ name: String) throws -> [String: Double] {
            let s = try JSONSerialization.jsonObject(with: Data(contentsOf: scratch.appendingPathComponent(name + "/summary.json"))) as! [String: Any]
            return (s["knn"] as! [String: Any]).mapValues { ($0 as! NSNumber).doubleValue }
        }
        let a = try knn("knn1"), b = try knn("knn2")
        XCTAssertEqual(Set(a.keys), ["top1@5", "top5@5", "top1@10", "top5@10"])
        for (k, v) in a { XCTAssertEqual(b[k]!, v, accuracy: 1e-9, k) }
    }
}
