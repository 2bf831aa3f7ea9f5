import Dispatch
import Foundation

/// Child processes (helper scripts, git) run to completion with their output captured.
public enum Subprocess {
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        /// Empty when standard error was passed through.
        public let stderr: String
        public var succeeded: Bool { status == 0 }
    }

    /// Runs `arguments` (the program, looked up on PATH through /usr/bin/env, then its arguments).
    /// Both streams are drained while the child runs, so neither can fill its pipe and stall it.
    /// nil when the program cannot be started.
    public static func run(_ arguments: [String], passStandardError: Bool = false) -> Output? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = passStandardError ? FileHandle.standardError : err
        do { try p.run() } catch { return nil }
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let drained = DispatchGroup()
        if !passStandardError {
            DispatchQueue.global().async(group: drained) { errBox.data = err.fileHandleForReading.readDataToEndOfFile() }
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errBox.data, as: UTF8.self))
    }
}
