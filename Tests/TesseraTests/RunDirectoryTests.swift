import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore

/// The run-directory rules (README "Run directories"): a finished run is never redone, one process
/// at a time, changed settings stop with a diff, restart moves aside, stale temporaries go, a
/// truncated last checkpoint falls back, a full disk is an error and not a crash.
final class RunDirectoryTests: ScratchTestCase {
    private func yaml(_ name: String, epochs: Int = 2) -> String {
        """
        name: \(name)
        task: pretrain
        seed: 3
        batch_size: 32
        epochs: \(epochs)
        output_dir: "\(scratch.path)"
        \(tinyMAEModelAndData)
        checkpoint:
          every: 1
        log:
          every: 4
          pictures: false
        """
    }

    private func spec(_ name: String, epochs: Int = 2, _ overrides: [String] = []) throws -> ExperimentSpec {
        try ConfigLoader.load(yaml: yaml(name, epochs: epochs), file: scratch.appendingPathComponent("c.yaml").path, overrides: overrides)
    }

    private func train(_ s: ExperimentSpec, stopAfter: Int? = nil) throws -> RunSummary {
        let r = try PretrainRunner(spec: s)
        r.echo = false
        r.stopAfterIterations = stopAfter
        return try r.train()
    }

    private func dir(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    /// Every file of a directory (but the lock) with its bytes.
    private func snapshot(_ path: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) where name != ".lock" {
            out[name] = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).appendingPathComponent(name)))
        }
        return out
    }

    private func error(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    func testRerunOfAFinishedRunChangesNothing() throws {
        let first = try train(try spec("done"))
        XCTAssertFalse(first.alreadyComplete)
        let before = try snapshot(dir("done"))
        let again = try train(try spec("done", ["threads=1"]))  // a safe change alone does not reopen a finished run
        XCTAssertTrue(again.alreadyComplete)
        XCTAssertEqual(again.finalLoss, first.finalLoss, accuracy: 1e-9)
        XCTAssertEqual(again.steps, 16)
        XCTAssertEqual(try snapshot(dir("done")), before, "a rerun must leave every file as it was")
        let summary = try JSONSerialization.jsonObject(with: before["summary.json"]!) as! [String: Any]
        XCTAssertEqual(summary["effective_batch"] as? Int, 32)
        XCTAssertNotNil(summary["peak_memory_mib"] as? Double)
    }

    /// Extending a finished run (more epochs) continues from its last checkpoint; the finished
    /// summary is kept beside the new one and the change is recorded.
    func testExtendingAFinishedRunKeepsItsSummary() throws {
        _ = try train(try spec("ext"))
        let extended = try train(try spec("ext", epochs: 3))
        XCTAssertFalse(extended.alreadyComplete)
        XCTAssertEqual(extended.steps, 24)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir("ext") + "/summary-2-epochs.json"))
        let changes = try String(contentsOfFile: dir("ext") + "/changes.txt", encoding: .utf8)
        XCTAssertTrue(changes.contains("epochs: 2 → 3"), changes)
        XCTAssertTrue(try String(contentsOfFile: dir("ext") + "/config.yaml", encoding: .utf8).contains("epochs: 3"))
        let log = try String(contentsOfFile: dir("ext") + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("resumed from") && log.contains("at epoch 2"), log)
    }

    /// A second holder gets one line naming the first one's PID and host, and writes nothing.
    func testASecondProcessIsRefused() throws {
        let holder = RunDirectory(path: dir("busy"))
        XCTAssertEqual(try holder.open(spec: try spec("busy"), overrides: [], echo: false), .fresh)
        let m = error { _ = try train(try spec("busy")) }
        XCTAssertTrue(m.contains("is in use by PID \(getpid()) on host"), m)
        XCTAssertEqual(m.split(separator: "\n").count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir("busy") + "/metrics.jsonl"))
        holder.release()
        XCTAssertFalse(try train(try spec("busy")).alreadyComplete, "the released directory is free again")
    }

    /// A changed optimizer or learning rate stops with the diff and both ways forward; nothing is
    /// written. `restart` then moves the old run aside and starts afresh.
    func testChangedSettingsStopAndRestartMovesAside() throws {
        _ = try train(try spec("chg"), stopAfter: 12)  // killed in epoch 2, checkpoint after epoch 1
        let before = try snapshot(dir("chg"))
        let m = error { _ = try train(try spec("chg", ["optim.name=sgd", "optim.lr=0.01"])) }
        XCTAssertTrue(m.contains("optim.name: adamw → sgd") && m.contains("optim.lr:") && m.contains("resume=restart")
                      && m.contains("new name"), m)
        XCTAssertEqual(m.split(separator: "\n").count, 1)
        XCTAssertEqual(try snapshot(dir("chg")), before)

        let m2 = error { _ = try train(try spec("chg", ["resume=none"])) }
        XCTAssertTrue(m2.contains("already holds a run") && m2.contains("resume=restart"), m2)
        XCTAssertEqual(try snapshot(dir("chg")), before)

        let fresh = try train(try spec("chg", ["optim.name=sgd", "optim.lr=0.01", "resume=restart"]))
        XCTAssertEqual(fresh.steps, 16)
        XCTAssertEqual(try snapshot(dir("chg") + ".restart-1"), before, "the old run is kept, byte for byte")
        let log = try String(contentsOfFile: dir("chg") + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("moved the previous run to \(dir("chg")).restart-1"), log)
        XCTAssertFalse(log.contains("resumed from"), log)
    }

    /// Temporaries of a write killed midway are removed when the run starts again; a truncated
    /// checkpoint-last.h5 falls back to the newest intact numbered checkpoint and says so.
    func testStaleTemporariesAndTruncatedLastCheckpoint() throws {
        _ = try train(try spec("trunc", epochs: 3), stopAfter: 20)  // epochs 1 and 2 done
        let stale = dir("trunc") + "/checkpoint-3.h5.tmp-99999"
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: stale))
        let last = dir("trunc") + "/checkpoint-last.h5"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: last))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: last))
        let done = try train(try spec("trunc", epochs: 3))
        XCTAssertEqual(done.steps, 24)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        let log = try String(contentsOfFile: dir("trunc") + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("removed 1 stale temporary file"), log)
        XCTAssertTrue(log.contains("cannot be read") && log.contains("resuming from \(dir("trunc"))/checkpoint-2.h5"), log)
        XCTAssertEqual(try Checkpoint.read(last).epoch, 3, "the next epoch replaced the truncated file")

        // With no intact checkpoint at all the error says what to do.
        for c in ["checkpoint-1.h5", "checkpoint-2.h5", "checkpoint-3.h5", "checkpoint-last.h5", "summary.json"] {
            try Data([0x89, 0x48]).write(to: URL(fileURLWithPath: dir("trunc") + "/" + c))
        }
        try? FileManager.default.removeItem(atPath: dir("trunc") + "/summary.json")
        let m = error { _ = try train(try spec("trunc", epochs: 3)) }
        XCTAssertTrue(m.contains("no intact numbered checkpoint") && m.contains("resume=restart"), m)
    }

    /// `checkpoint.keep_last: 2` keeps the two newest numbered files, and always checkpoint-last.h5.
    func testKeepLastPrunesOldNumberedCheckpoints() throws {
        _ = try train(try spec("keep", epochs: 4, ["checkpoint.keep_last=2"]))
        let names = try FileManager.default.contentsOfDirectory(atPath: dir("keep")).filter { $0.hasPrefix("checkpoint-") }.sorted()
        XCTAssertEqual(names, ["checkpoint-3.h5", "checkpoint-4.h5", "checkpoint-last.h5"])
    }

    /// Errors that used to arrive after the run directory existed now come first: nothing is created.
    func testValidationComesBeforeTheRunDirectory() throws {
        let m = error { _ = try train(try spec("small", ["batch_size=512"])) }
        XCTAssertTrue(m.contains("256 images") && m.contains("batch"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir("small")), "no run directory for a run that cannot start")

        let broken = scratch.appendingPathComponent("broken.h5").path
        try Data(repeating: 0, count: 100).write(to: URL(fileURLWithPath: broken))
        let m2 = error { _ = try train(try spec("badresume", ["resume=\(broken)"])) }
        XCTAssertTrue(m2.contains("broken.h5"), m2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir("badresume")))
    }

    /// JSON files are written by JSONSerialization: control characters escaped, full precision.
    func testJSONEscapingAndPrecision() throws {
        let run = RunDirectory(path: dir("json"))
        XCTAssertEqual(try run.open(spec: try spec("json"), overrides: [], echo: false), .fresh)
        defer { run.release() }
        run.logMetrics([("note", "tab\there\nnew \"line\""), ("loss", 0.123456789012345), ("lr", Float(1e-4)), ("bad", Double.nan)])
        run.closeLogs()
        let line = try String(contentsOfFile: run.file("metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(line.split(separator: "\n").count, 1)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(obj["note"] as? String, "tab\there\nnew \"line\"")
        XCTAssertEqual(obj["loss"] as? Double, 0.123456789012345)
        XCTAssertEqual((obj["lr"] as? NSNumber).map { Float($0.doubleValue) }, Float(1e-4))
        XCTAssertTrue(obj["bad"] is NSNull)
        XCTAssertTrue(line.hasPrefix("{\"note\": "), "keys keep their order: \(line)")
    }

    /// Runs `body` with a directory that is (nearly) full: a 512 KiB tmpfs filled up where this
    /// process may mount one, else a scratch folder under a 64 KiB file-size limit (writes past it
    /// fail with EFBIG, SIGXFSZ ignored), the same failure of write(2) that a full disk gives.
    private func withFullDisk(_ body: (String, _ fill: () throws -> Void) throws -> Void) throws {
        let point = scratch.appendingPathComponent("disk").path
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        if getuid() == 0, Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", point])?.succeeded == true {
            defer { _ = Subprocess.run(["umount", point]) }
            try body(point) {
                // Leave a few KiB: enough to open a file, not to write a checkpoint.
                XCTAssertTrue(FileManager.default.createFile(atPath: point + "/filler", contents: nil))
                let filler = try XCTUnwrap(FileHandle(forWritingAtPath: point + "/filler"))
                let block = Data(repeating: 0, count: 4096)
                while (try? filler.write(contentsOf: block)) != nil {}
                try? filler.close()
            }
        } else {
            var old = rlimit()
            getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
            let oldHandler = signal(SIGXFSZ, SIG_IGN)
            defer {
                setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
                signal(SIGXFSZ, oldHandler)
            }
            try body(point) {
                var limit = rlimit(rlim_cur: 64 << 10, rlim_max: old.rlim_max)
                setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
            }
        }
    }

    /// A checkpoint write that runs out of space is a one-line error naming the file, never a signal;
    /// the previous checkpoint survives intact and no temporary is left.
    func testFullDiskIsAnErrorAndTheLastCheckpointSurvives() throws {
        try withFullDisk { point, fill in
            let target = point + "/checkpoint-last.h5"
            var small = Checkpoint(params: ["w": Tensor(Array(repeating: 1, count: 1000), shape: [1000])])
            small.epoch = 1
            try small.write(to: target)
            let before = try Data(contentsOf: URL(fileURLWithPath: target))
            try fill()
            var big = Checkpoint(params: ["w": Tensor(Array(repeating: 2, count: 200_000), shape: [200_000])])
            big.epoch = 2
            XCTAssertThrowsError(try big.write(to: target)) { e in
                XCTAssertTrue("\(e)".contains(target), "\(e)")
                XCTAssertEqual("\(e)".split(separator: "\n").count, 1, "\(e)")
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), before)
            XCTAssertEqual(try Checkpoint.read(target).epoch, 1)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: point).filter { $0.contains(".tmp-") }, [])

            let run = RunDirectory(path: point)
            XCTAssertThrowsError(try run.write("summary.json", String(repeating: "x", count: 200_000))) { e in
                XCTAssertTrue("\(e)".contains(point + "/summary.json") && "\(e)".contains("cannot write"), "\(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: point + "/summary.json"))
        }
    }
}
