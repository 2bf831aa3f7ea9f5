import CMPIShim
import Foundation

/// The processes of a data-parallel run. Under `mpirun -np N` (Open MPI sets OMPI_COMM_WORLD_SIZE)
/// `start()` initialises MPI and every process learns its rank; a process started any other way is
/// rank 0 of 1 and never touches MPI.
public enum Distributed {
    nonisolated(unsafe) public private(set) static var rank = 0
    nonisolated(unsafe) public private(set) static var size = 1
    nonisolated(unsafe) private static var started = false

    /// Starts MPI when this process is one of several launched by mpirun. Safe to call again.
    public static func start() {
        guard !started else { return }
        started = true
        guard let text = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"], let n = Int(text), n > 1 else { return }
        guard tessera_mpi_init() == 0 else {
            FileHandle.standardError.write("tessera: MPI_Init_thread failed\n".data(using: .utf8)!)
            exit(1)
        }
        rank = Int(tessera_mpi_rank())
        size = Int(tessera_mpi_size())
        atexit { tessera_mpi_finalize() }
    }

    /// Rank 0 alone writes logs, metrics, pictures and checkpoints.
    public static var isWriter: Bool { rank == 0 }
    public static var isDistributed: Bool { size > 1 }

    /// Element-wise sum over every rank, in place (every rank gets the same result).
    public static func sum(_ data: UnsafeMutablePointer<Float>, count: Int) {
        guard size > 1, count > 0 else { return }
        if tessera_mpi_allreduce_sum_f32(data, count) != 0 { abort("MPI_Allreduce failed") }
    }

    public static func sum(_ values: inout [Double]) {
        guard size > 1, !values.isEmpty else { return }
        let n = values.count
        let failed = values.withUnsafeMutableBufferPointer { tessera_mpi_allreduce_sum_f64($0.baseAddress, n) != 0 }
        if failed { abort("MPI_Allreduce failed") }
    }

    /// Rank 0's bytes on every rank (the other ranks' argument is ignored). Lets a run read what only
    /// rank 0 can see, such as its run directory's checkpoints on a machine of its own.
    public static func broadcast(_ bytes: [UInt8]) -> [UInt8] {
        guard size > 1 else { return bytes }
        var count = [Double(rank == 0 ? bytes.count : 0)]
        let countFailed = count.withUnsafeMutableBytes { tessera_mpi_bcast_bytes($0.baseAddress, 8) != 0 }
        if countFailed { abort("MPI_Bcast failed") }
        var out = rank == 0 ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        let n = out.count
        let failed = out.withUnsafeMutableBytes { n == 0 ? false : tessera_mpi_bcast_bytes($0.baseAddress, n) != 0 }
        if failed { abort("MPI_Bcast failed") }
        return out
    }

    /// Rank 0's flag on every rank.
    public static func broadcast(_ flag: Bool) -> Bool {
        guard size > 1 else { return flag }
        return broadcast([flag ? 1 : 0]) == [1]
    }

    /// Rank 0's string on every rank.
    public static func broadcast(_ text: String) -> String {
        guard size > 1 else { return text }
        return String(decoding: broadcast(Array(text.utf8)), as: UTF8.self)
    }

    /// Waits for every rank.
    public static func barrier() {
        guard size > 1 else { return }
        if tessera_mpi_barrier() != 0 { abort("MPI_Barrier failed") }
    }

    /// Prints `message` naming this rank and stops every rank of the run.
    public static func abort(_ message: String) -> Never {
        FileHandle.standardError.write("\(message.hasPrefix("tessera") ? "" : "tessera: ")\(message) (rank \(rank) of \(size))\n".data(using: .utf8)!)
        if size > 1 { tessera_mpi_abort(1) }
        exit(1)
    }
}
