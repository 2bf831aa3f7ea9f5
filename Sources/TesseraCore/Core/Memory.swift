import Foundation

/// The process's memory as the kernel reports it.
public enum Memory {
    /// Resident set size now, in bytes (/proc/self/statm; 0 where it does not exist).
    public static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = s.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Peak resident set size of the process so far, in bytes.
    public static func peakResidentBytes() -> Int {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return u.ru_maxrss * 1024
    }

    /// Peak resident set size in MiB, rounded to 0.1.
    public static func peakResidentMiB() -> Double { (Double(peakResidentBytes()) / 104_857.6).rounded() / 10 }
}
