// TesseraHDF5: a small, typed, thread-guarded wrapper over the HDF5 C library, used for
// checkpoints and test fixtures.
//
// Conventions
// * Dataset names are paths relative to the root group. A leading "/" is accepted and ignored.
//   '/' separates groups (missing intermediate groups are created on write); dots are ordinary
//   characters ("blocks.0.norm1.weight" is one dataset in the root group).
// * Shapes are row-major (C order, as in numpy/h5py). Scalars have shape [].
// * Numeric data is stored little-endian: float32, float64, int64, uint8.
// * Every call into libhdf5 happens under one process-wide lock, so separate HDF5File objects
//   may be used from separate threads.

import CHDF5
import CHDF5Shim
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// An HDF5 failure, described in one line that names the file and the dataset/object involved,
/// e.g. `tessera: cannot read dataset 'x' from /path/f.h5: no such dataset`.
public struct HDF5Error: Error, CustomStringConvertible {
    /// The file the operation was about.
    public let path: String
    /// The dataset, group or attribute name involved, if any.
    public let dataset: String?
    /// What went wrong (without the "tessera: cannot ..." prefix).
    public let reason: String
    /// The full one-line message.
    public let description: String

    init(path: String, dataset: String?, action: String, reason: String) {
        self.path = path
        self.dataset = dataset
        self.reason = reason
        self.description = "tessera: cannot \(action): \(reason)"
    }
}

// MARK: - Global lock

/// libhdf5 (even its "thread-safe" builds, as far as the error stack is concerned) must not be
/// entered concurrently from Swift code; every call goes through here.
private let hdf5Lock = NSRecursiveLock()

@inline(__always)
private func withHDF5<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    // The auto-print setting lives on the (per-thread) error stack in thread-safe builds, so this
    // is done once per thread rather than once per process.
    tessera_h5_silence_errors_once_per_thread()
    return try body()
}

/// The innermost message on HDF5's error stack (then clears the stack); "" if none.
private func takeLibraryMessage() -> String {
    var buffer = [CChar](repeating: 0, count: 512)
    let found = buffer.withUnsafeMutableBufferPointer { tessera_h5_take_error_message($0.baseAddress, $0.count) }
    guard found != 0 else { return "" }
    return String(cString: buffer).replacingOccurrences(of: "\n", with: " ")
}

/// `reason`, followed by the library's own message in parentheses when it has one.
private func withLibraryDetail(_ reason: String) -> String {
    let detail = takeLibraryMessage()
    return detail.isEmpty ? reason : "\(reason) (hdf5: \(detail))"
}

private final class NameCollector {
    var names: [String] = []
}

private enum ObjectKind: Int32 {
    case missing = 0, group = 1, dataset = 2, other = 3
}

// MARK: - File

public final class HDF5File: @unchecked Sendable {
    public let path: String
    /// The HDF5 file id, or -1 once closed. Only touched under `hdf5Lock`.
    private var fileID: hid_t = -1
    private let writable: Bool

    /// Creates `path` (truncating any existing file) for writing.
    public init(creating path: String) throws {
        self.path = path
        self.writable = true
        let directory = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        if !directory.isEmpty,
           !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw HDF5Error(path: path, dataset: nil, action: "create HDF5 file \(path)",
                            reason: "no such directory \(directory)")
        }
        let id: hid_t = withHDF5 {
            H5Fcreate(path, tessera_h5f_acc_trunc(), tessera_h5p_default(), tessera_h5p_default())
        }
        guard id >= 0 else {
            let reason = withHDF5 { withLibraryDetail("unable to create the file") }
            throw HDF5Error(path: path, dataset: nil, action: "create HDF5 file \(path)", reason: reason)
        }
        fileID = id
    }

    /// Creates an HDF5 file held in memory only (the core driver without a backing store); `path`
    /// names it in errors. `closeIntoImage()` returns its bytes: HDF5 itself never writes to disk, so
    /// a failing disk cannot leave the library with a half-closed file.
    init(creatingInMemory path: String) throws {
        self.path = path
        self.writable = true
        let id: hid_t = withHDF5 {
            let fapl = H5Pcreate(tessera_h5p_file_access())
            defer { H5Pclose(fapl) }
            guard fapl >= 0, H5Pset_fapl_core(fapl, 16 << 20, false) >= 0 else { return -1 }
            return H5Fcreate(path, tessera_h5f_acc_trunc(), tessera_h5p_default(), fapl)
        }
        guard id >= 0 else {
            let reason = withHDF5 { withLibraryDetail("unable to create the in-memory file") }
            throw HDF5Error(path: path, dataset: nil, action: "create HDF5 file \(path)", reason: reason)
        }
        fileID = id
    }

    /// Flushes an in-memory file, copies out its bytes and closes it.
    fileprivate func closeIntoImage() throws -> [UInt8] {
        try withHDF5 {
            guard fileID >= 0 else { throw HDF5Error(path: path, dataset: nil, action: "finish writing \(path)", reason: "file is closed") }
            defer { _ = H5Fclose(fileID); fileID = -1 }
            let size = H5Fflush(fileID, H5F_SCOPE_GLOBAL) >= 0 ? H5Fget_file_image(fileID, nil, 0) : -1
            guard size > 0 else {
                throw HDF5Error(path: path, dataset: nil, action: "finish writing \(path)", reason: withLibraryDetail("no file image"))
            }
            var bytes = [UInt8](repeating: 0, count: size)
            let got = bytes.withUnsafeMutableBytes { H5Fget_file_image(fileID, $0.baseAddress, size) }
            guard got == size else {
                throw HDF5Error(path: path, dataset: nil, action: "finish writing \(path)", reason: withLibraryDetail("file image incomplete"))
            }
            return bytes
        }
    }

    /// Opens an existing HDF5 file read-only.
    public init(reading path: String) throws {
        self.path = path
        self.writable = false
        let action = "open HDF5 file \(path) for reading"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw HDF5Error(path: path, dataset: nil, action: action, reason: "no such file")
        }
        if isDirectory.boolValue {
            throw HDF5Error(path: path, dataset: nil, action: action, reason: "it is a directory")
        }
        let id: hid_t = withHDF5 { H5Fopen(path, tessera_h5f_acc_rdonly(), tessera_h5p_default()) }
        guard id >= 0 else {
            let reason = withHDF5 { withLibraryDetail("not an HDF5 file, or unreadable") }
            throw HDF5Error(path: path, dataset: nil, action: action, reason: reason)
        }
        fileID = id
    }

    /// Opens the bytes of an HDF5 file held in memory (`image`, as read from disk elsewhere) read-only;
    /// `path` names it in errors.
    public init(image: [UInt8], path: String) throws {
        self.path = path
        self.writable = false
        let id: hid_t = withHDF5 {
            let fapl = H5Pcreate(tessera_h5p_file_access())
            defer { H5Pclose(fapl) }
            guard fapl >= 0, H5Pset_fapl_core(fapl, 1 << 20, false) >= 0,
                  image.withUnsafeBytes({ H5Pset_file_image(fapl, UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }) >= 0
            else { return -1 }
            // The core driver refuses an image under the name of a file that exists, so the image
            // gets a name of its own that no file has.
            return H5Fopen("/nonexistent/tessera-file-image-\(getpid())/" + path, tessera_h5f_acc_rdonly(), fapl)
        }
        guard id >= 0 else {
            let reason = withHDF5 { withLibraryDetail("not an HDF5 file, or unreadable") }
            throw HDF5Error(path: path, dataset: nil, action: "open HDF5 file \(path) for reading", reason: reason)
        }
        fileID = id
    }

    deinit { close() }

    /// Closes the file. Safe to call more than once; later operations throw.
    public func close() {
        withHDF5 {
            if fileID >= 0 {
                _ = H5Fclose(fileID)
                fileID = -1
            }
        }
    }

    // MARK: Writing

    public func write(_ name: String, floats: [Float], shape: [Int]) throws {
        try floats.withUnsafeBytes { raw in
            try writeNumeric(name, memType: tessera_h5t_native_float(), fileType: tessera_h5t_ieee_f32le(),
                             count: floats.count, shape: shape, data: raw.baseAddress)
        }
    }

    /// Writes `shape.reduce(1, *)` floats straight from `floats` (no copy).
    public func write(_ name: String, floats: UnsafePointer<Float>, shape: [Int]) throws {
        let count = try elementCount(of: shape, name: name, action: "write dataset '\(name)' to \(path)")
        try writeNumeric(name, memType: tessera_h5t_native_float(), fileType: tessera_h5t_ieee_f32le(),
                         count: count, shape: shape, data: UnsafeRawPointer(floats))
    }

    public func write(_ name: String, doubles: [Double], shape: [Int]) throws {
        try doubles.withUnsafeBytes { raw in
            try writeNumeric(name, memType: tessera_h5t_native_double(), fileType: tessera_h5t_ieee_f64le(),
                             count: doubles.count, shape: shape, data: raw.baseAddress)
        }
    }

    public func write(_ name: String, ints: [Int64], shape: [Int]) throws {
        try ints.withUnsafeBytes { raw in
            try writeNumeric(name, memType: tessera_h5t_native_int64(), fileType: tessera_h5t_std_i64le(),
                             count: ints.count, shape: shape, data: raw.baseAddress)
        }
    }

    public func write(_ name: String, bytes: [UInt8], shape: [Int]) throws {
        try bytes.withUnsafeBytes { raw in
            try writeNumeric(name, memType: tessera_h5t_native_uint8(), fileType: tessera_h5t_std_u8le(),
                             count: bytes.count, shape: shape, data: raw.baseAddress)
        }
    }

    /// Writes a scalar variable-length UTF-8 string dataset (what h5py writes for `f[name] = "text"`).
    public func write(_ name: String, string: String) throws {
        let name = Self.normalized(name)
        let action = "write dataset '\(name)' to \(path)"
        try withHDF5 {
            let fid = try openFileID(action: action, name: name, forWriting: true)
            let type = try makeVariableStringType(action: action, name: name)
            defer { H5Tclose(type) }
            let space = H5Screate(H5S_SCALAR)
            defer { H5Sclose(space) }
            let dset = try createDataset(fid, name, type: type, space: space, action: action)
            defer { H5Dclose(dset) }
            let status: herr_t = string.withCString { cString in
                var pointer: UnsafePointer<CChar>? = cString
                return withUnsafeMutablePointer(to: &pointer) { H5Dwrite(dset, type, tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(), $0) }
            }
            if status < 0 { throw failure(action, name, withLibraryDetail("write failed")) }
        }
    }

    // MARK: Reading

    /// Reads any numeric dataset (float16/32/64, any integer, bool) converted to Float.
    public func readFloats(_ name: String) throws -> (values: [Float], shape: [Int]) {
        try readNumeric(name, memType: tessera_h5t_native_float(), allowFloat: true, fromInt: { Float($0) })
    }

    /// Reads a numeric dataset converted to Float into `into`, which must hold exactly `count`
    /// elements; throws if the dataset's element count differs.
    public func readFloats(_ name: String, into: UnsafeMutablePointer<Float>, count: Int) throws {
        try withDataset(name) { dset, shape, name, action in
            let n = shape.reduce(1, *)
            guard n == count else {
                throw failure(action, name, "dataset has \(n) elements (shape \(shape)), but the destination holds \(count)")
            }
            guard n > 0 else { return }
            let ftype = H5Dget_type(dset)
            defer { H5Tclose(ftype) }
            switch H5Tget_class(ftype) {
            case H5T_FLOAT, H5T_INTEGER:
                if H5Dread(dset, tessera_h5t_native_float(), tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(), into) < 0 {
                    throw failure(action, name, withLibraryDetail("read failed"))
                }
            case H5T_ENUM:
                let ints = try readEnumAsInts(dset, ftype, count: n, name: name, action: action)
                for i in 0..<n { into[i] = Float(ints[i]) }
            default:
                throw failure(action, name, "dataset has \(typeDescription(ftype)) elements, expected numbers")
            }
        }
    }

    /// Reads any numeric dataset (float16/32/64, any integer, bool) converted to Double.
    public func readDoubles(_ name: String) throws -> (values: [Double], shape: [Int]) {
        try readNumeric(name, memType: tessera_h5t_native_double(), allowFloat: true, fromInt: { Double($0) })
    }

    /// Reads an integer dataset (any width or signedness, or bool) as Int64. Floating-point datasets
    /// are rejected rather than silently truncated.
    public func readInts(_ name: String) throws -> (values: [Int64], shape: [Int]) {
        try readNumeric(name, memType: tessera_h5t_native_int64(), allowFloat: false, fromInt: { $0 })
    }

    /// Reads an integer dataset as UInt8 (values outside 0...255 are clamped by libhdf5).
    public func readBytes(_ name: String) throws -> (values: [UInt8], shape: [Int]) {
        try readNumeric(name, memType: tessera_h5t_native_uint8(), allowFloat: false,
                        fromInt: { UInt8(clamping: $0) })
    }

    /// Reads a string dataset holding one string (scalar or one element), fixed or variable length.
    public func readString(_ name: String) throws -> String {
        try withDataset(name) { dset, shape, name, action in
            guard shape.reduce(1, *) == 1 else {
                throw failure(action, name, "expected a single string, but the dataset has shape \(shape)")
            }
            let ftype = H5Dget_type(dset)
            defer { H5Tclose(ftype) }
            return try readSingleString(ftype, name: name, action: action) { memType, buffer in
                H5Dread(dset, memType, tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(), buffer)
            }
        }
    }

    /// The dataset's shape ([] for a scalar).
    public func shape(of name: String) throws -> [Int] {
        try withDataset(name, verb: "read the shape of dataset", preposition: "in") { _, shape, _, _ in shape }
    }

    /// True if `name` exists (a dataset or a group; "" is the root group). False on a closed file.
    public func contains(_ name: String) -> Bool {
        let name = Self.normalized(name)
        return withHDF5 {
            guard fileID >= 0 else { return false }
            if name.isEmpty { return true }
            return objectKind(fileID, name) != .missing
        }
    }

    /// Full names (no leading "/") of every dataset below `group` (recursively), sorted.
    public func datasetNames(under group: String = "") throws -> [String] {
        let group = Self.normalized(group)
        let action = group.isEmpty ? "list datasets in \(path)" : "list datasets under '\(group)' in \(path)"
        return try withHDF5 {
            let fid = try openFileID(action: action, name: group, forWriting: false)
            if !group.isEmpty {
                switch objectKind(fid, group) {
                case .group: break
                case .missing: throw failure(action, group, "no such group")
                case .dataset: throw failure(action, group, "it is a dataset, not a group")
                case .other: throw failure(action, group, "it is not a group")
                }
            }
            let gid = H5Gopen2(fid, group.isEmpty ? "/" : group, tessera_h5p_default())
            guard gid >= 0 else { throw failure(action, group, withLibraryDetail("cannot open the group")) }
            defer { H5Gclose(gid) }
            let collector = NameCollector()
            let status = withExtendedLifetime(collector) { () -> herr_t in
                let context = Unmanaged.passUnretained(collector).toOpaque()
                return tessera_h5_visit_datasets(gid, { cName, ctx in
                    guard let cName = cName, let ctx = ctx else { return }
                    Unmanaged<NameCollector>.fromOpaque(ctx).takeUnretainedValue().names.append(String(cString: cName))
                }, context)
            }
            if status < 0 { throw failure(action, group, withLibraryDetail("iteration failed")) }
            let prefix = group.isEmpty ? "" : group + "/"
            return collector.names.map { prefix + $0 }.sorted()
        }
    }

    // MARK: Attributes

    /// Sets a string attribute (variable-length UTF-8, replacing any existing one) on a group or
    /// dataset; "" is the root group.
    public func setAttribute(_ key: String, _ value: String, on object: String = "") throws {
        let object = Self.normalized(object)
        let action = "set attribute '\(key)' on \(Self.objectLabel(object)) in \(path)"
        try withHDF5 {
            let fid = try openFileID(action: action, name: object, forWriting: true)
            let oid = try openObject(fid, object, action: action)
            defer { H5Oclose(oid) }
            let exists = H5Aexists(oid, key)
            if exists < 0 { throw failure(action, object, withLibraryDetail("invalid attribute name")) }
            if exists > 0 && H5Adelete(oid, key) < 0 {
                throw failure(action, object, withLibraryDetail("cannot replace the existing attribute"))
            }
            let type = try makeVariableStringType(action: action, name: object)
            defer { H5Tclose(type) }
            let space = H5Screate(H5S_SCALAR)
            defer { H5Sclose(space) }
            let aid = H5Acreate2(oid, key, type, space, tessera_h5p_default(), tessera_h5p_default())
            guard aid >= 0 else { throw failure(action, object, withLibraryDetail("cannot create the attribute")) }
            defer { H5Aclose(aid) }
            let status: herr_t = value.withCString { cString in
                var pointer: UnsafePointer<CChar>? = cString
                return withUnsafeMutablePointer(to: &pointer) { H5Awrite(aid, type, $0) }
            }
            if status < 0 { throw failure(action, object, withLibraryDetail("write failed")) }
        }
    }

    /// A string attribute of a group or dataset ("" = root group), or nil if the object has no
    /// such attribute. Numeric scalar attributes (e.g. written by h5py) are returned formatted.
    /// Throws if the object itself does not exist.
    public func attribute(_ key: String, on object: String = "") throws -> String? {
        let object = Self.normalized(object)
        let action = "read attribute '\(key)' of \(Self.objectLabel(object)) from \(path)"
        return try withHDF5 {
            let fid = try openFileID(action: action, name: object, forWriting: false)
            let oid = try openObject(fid, object, action: action)
            defer { H5Oclose(oid) }
            let exists = H5Aexists(oid, key)
            if exists < 0 { throw failure(action, object, withLibraryDetail("invalid attribute name")) }
            if exists == 0 { return nil }
            let aid = H5Aopen(oid, key, tessera_h5p_default())
            guard aid >= 0 else { throw failure(action, object, withLibraryDetail("cannot open the attribute")) }
            defer { H5Aclose(aid) }
            let space = H5Aget_space(aid)
            defer { H5Sclose(space) }
            let count = H5Sget_simple_extent_npoints(space)
            guard count == 1 else {
                throw failure(action, object, "attribute holds \(count) values, expected one")
            }
            let atype = H5Aget_type(aid)
            defer { H5Tclose(atype) }
            switch H5Tget_class(atype) {
            case H5T_STRING:
                return try readSingleString(atype, name: object, action: action) { memType, buffer in
                    H5Aread(aid, memType, buffer)
                }
            case H5T_ENUM:
                // Bool and other enums: the raw base integer.
                return try String(readEnumAsInts(attributeID: aid, atype, name: object, action: action))
            case H5T_INTEGER:
                var value: Int64 = 0
                if H5Aread(aid, tessera_h5t_native_int64(), &value) < 0 {
                    throw failure(action, object, withLibraryDetail("read failed"))
                }
                return String(value)
            case H5T_FLOAT:
                var value: Double = 0
                if H5Aread(aid, tessera_h5t_native_double(), &value) < 0 {
                    throw failure(action, object, withLibraryDetail("read failed"))
                }
                return String(value)
            default:
                throw failure(action, object, "attribute has \(typeDescription(atype)) type, expected a string")
            }
        }
    }

    // MARK: - Internals (all called with hdf5Lock held)

    private static func normalized(_ name: String) -> String {
        var s = Substring(name)
        while s.hasPrefix("/") { s = s.dropFirst() }
        while s.hasSuffix("/") { s = s.dropLast() }
        return String(s)
    }

    private static func objectLabel(_ object: String) -> String {
        object.isEmpty ? "the root group" : "'\(object)'"
    }

    private func failure(_ action: String, _ name: String?, _ reason: String) -> HDF5Error {
        HDF5Error(path: path, dataset: name, action: action, reason: reason)
    }

    private func openFileID(action: String, name: String?, forWriting: Bool) throws -> hid_t {
        guard fileID >= 0 else { throw failure(action, name, "the file is closed") }
        if forWriting && !writable { throw failure(action, name, "the file is open read-only") }
        return fileID
    }

    private func objectKind(_ fid: hid_t, _ name: String) -> ObjectKind {
        ObjectKind(rawValue: tessera_h5_object_kind(fid, name)) ?? .other
    }

    private func elementCount(of shape: [Int], name: String, action: String) throws -> Int {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw failure(action, name, "negative dimension in shape \(shape)") }
            let (product, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else { throw failure(action, name, "shape \(shape) is too large") }
            n = product
        }
        return n
    }

    private func openDataset(_ fid: hid_t, _ name: String, action: String) throws -> hid_t {
        guard !name.isEmpty else { throw failure(action, name, "empty dataset name") }
        switch objectKind(fid, name) {
        case .dataset: break
        case .missing: throw failure(action, name, "no such dataset")
        case .group: throw failure(action, name, "it is a group, not a dataset")
        case .other: throw failure(action, name, "it is not a dataset")
        }
        let dset = H5Dopen2(fid, name, tessera_h5p_default())
        guard dset >= 0 else { throw failure(action, name, withLibraryDetail("cannot open the dataset")) }
        return dset
    }

    private func openObject(_ fid: hid_t, _ name: String, action: String) throws -> hid_t {
        if !name.isEmpty && objectKind(fid, name) == .missing {
            throw failure(action, name, "no such dataset or group")
        }
        let oid = H5Oopen(fid, name.isEmpty ? "/" : name, tessera_h5p_default())
        guard oid >= 0 else { throw failure(action, name, withLibraryDetail("cannot open the object")) }
        return oid
    }

    private func datasetShape(_ dset: hid_t, name: String, action: String) throws -> [Int] {
        let space = H5Dget_space(dset)
        guard space >= 0 else { throw failure(action, name, withLibraryDetail("cannot get the dataspace")) }
        defer { H5Sclose(space) }
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: return []
        case H5S_NULL: return [0]    // h5py.Empty: no data at all
        default: break
        }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 else { throw failure(action, name, withLibraryDetail("cannot get the rank")) }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        if rank > 0 && H5Sget_simple_extent_dims(space, &dims, nil) < 0 {
            throw failure(action, name, withLibraryDetail("cannot get the dimensions"))
        }
        return dims.prefix(rank).map { Int($0) }
    }

    private func createDataset(_ fid: hid_t, _ name: String, type: hid_t, space: hid_t, action: String) throws -> hid_t {
        guard !name.isEmpty else { throw failure(action, name, "empty dataset name") }
        switch objectKind(fid, name) {
        case .missing: break
        case .dataset:
            // Overwrite: unlink the old dataset (its space is not reclaimed until the file is rewritten).
            if H5Ldelete(fid, name, tessera_h5p_default()) < 0 {
                throw failure(action, name, withLibraryDetail("cannot replace the existing dataset"))
            }
        case .group: throw failure(action, name, "a group with this name exists")
        case .other: throw failure(action, name, "a non-dataset object with this name exists")
        }
        // libhdf5's own message for "an intermediate component is a dataset" is cryptic.
        var prefix = ""
        for component in name.split(separator: "/").dropLast() {
            prefix += prefix.isEmpty ? String(component) : "/" + component
            let kind = objectKind(fid, prefix)
            if kind == .missing { break }
            if kind != .group { throw failure(action, name, "'\(prefix)' is a dataset, not a group") }
        }
        let lcpl = H5Pcreate(tessera_h5p_link_create())
        defer { H5Pclose(lcpl) }
        _ = H5Pset_create_intermediate_group(lcpl, 1)
        _ = H5Pset_char_encoding(lcpl, H5T_CSET_UTF8)
        let dcpl = H5Pcreate(tessera_h5p_dataset_create())
        defer { H5Pclose(dcpl) }
        if H5Tget_class(type) != H5T_STRING {
            // Everything is overwritten right away. (libhdf5 rejects "never fill" for
            // variable-length types, hence not for strings.)
            _ = H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER)
        }
        let dset = H5Dcreate2(fid, name, type, space, lcpl, dcpl, tessera_h5p_default())
        guard dset >= 0 else { throw failure(action, name, withLibraryDetail("cannot create the dataset")) }
        return dset
    }

    private func writeNumeric(_ rawName: String, memType: hid_t, fileType: hid_t, count: Int, shape: [Int],
                              data: UnsafeRawPointer?) throws {
        let name = Self.normalized(rawName)
        let action = "write dataset '\(name)' to \(path)"
        let expected = try elementCount(of: shape, name: name, action: action)
        guard expected == count else {
            throw failure(action, name, "\(count) values do not fit shape \(shape) (\(expected) elements)")
        }
        try withHDF5 {
            let fid = try openFileID(action: action, name: name, forWriting: true)
            let space: hid_t
            if shape.isEmpty {
                space = H5Screate(H5S_SCALAR)
            } else {
                let dims = shape.map { hsize_t($0) }
                space = H5Screate_simple(Int32(dims.count), dims, nil)
            }
            guard space >= 0 else { throw failure(action, name, withLibraryDetail("cannot create the dataspace")) }
            defer { H5Sclose(space) }
            let dset = try createDataset(fid, name, type: fileType, space: space, action: action)
            defer { H5Dclose(dset) }
            // Zero-size datasets: nothing to write (and H5Dwrite rejects a NULL buffer).
            if count > 0 {
                if H5Dwrite(dset, memType, tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(), data) < 0 {
                    throw failure(action, name, withLibraryDetail("write failed"))
                }
            }
        }
    }

    /// Opens dataset `rawName` for reading under the library lock and runs `body` with it, its shape,
    /// the normalised name and the action text for error messages ("<verb> '<name>' <preposition> <path>").
    private func withDataset<R>(_ rawName: String, verb: String = "read dataset", preposition: String = "from",
                                _ body: (_ dset: hid_t, _ shape: [Int], _ name: String, _ action: String) throws -> R) throws -> R {
        let name = Self.normalized(rawName)
        let action = "\(verb) '\(name)' \(preposition) \(path)"
        return try withHDF5 {
            let fid = try openFileID(action: action, name: name, forWriting: false)
            let dset = try openDataset(fid, name, action: action)
            defer { H5Dclose(dset) }
            return try body(dset, try datasetShape(dset, name: name, action: action), name, action)
        }
    }

    private func readNumeric<T>(_ rawName: String, memType: hid_t, allowFloat: Bool,
                                fromInt: (Int64) -> T) throws -> (values: [T], shape: [Int]) {
        try withDataset(rawName) { dset, shape, name, action in
            let n = shape.reduce(1, *)
            let ftype = H5Dget_type(dset)
            defer { H5Tclose(ftype) }
            let cls = H5Tget_class(ftype)
            switch cls {
            case H5T_INTEGER, H5T_FLOAT:
                if cls == H5T_FLOAT && !allowFloat {
                    throw failure(action, name, "dataset has floating-point elements, expected integers")
                }
                if n == 0 { return ([], shape) }
                var status: herr_t = 0
                let values = [T](unsafeUninitializedCapacity: n) { buffer, initialized in
                    status = H5Dread(dset, memType, tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(),
                                     buffer.baseAddress)
                    // On failure the contents are garbage but still plain bits of a trivial type.
                    initialized = n
                }
                if status < 0 { throw failure(action, name, withLibraryDetail("read failed")) }
                return (values, shape)
            case H5T_ENUM:
                if n == 0 { return ([], shape) }
                let ints = try readEnumAsInts(dset, ftype, count: n, name: name, action: action)
                return (ints.map(fromInt), shape)
            default:
                throw failure(action, name, "dataset has \(typeDescription(ftype)) elements, expected numbers")
            }
        }
    }

    /// Enums (h5py stores numpy bool as an int8 enum) cannot be converted to plain integers by
    /// libhdf5, so read the raw base integers and widen them here.
    private func readEnumAsInts(_ dset: hid_t, _ ftype: hid_t, count: Int, name: String, action: String) throws -> [Int64] {
        try enumInts(ftype, count: count, name: name, action: action) { memType, buffer in
            H5Dread(dset, memType, tessera_h5s_all(), tessera_h5s_all(), tessera_h5p_default(), buffer)
        }
    }

    private func readEnumAsInts(attributeID aid: hid_t, _ atype: hid_t, name: String, action: String) throws -> Int64 {
        try enumInts(atype, count: 1, name: name, action: action) { memType, buffer in
            H5Aread(aid, memType, buffer)
        }[0]
    }

    private func enumInts(_ ftype: hid_t, count: Int, name: String, action: String,
                          read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> [Int64] {
        let memType = H5Tget_native_type(ftype, H5T_DIR_ASCEND)
        guard memType >= 0 else { throw failure(action, name, withLibraryDetail("unsupported enum type")) }
        defer { H5Tclose(memType) }
        let base = H5Tget_super(memType)
        guard base >= 0 else { throw failure(action, name, withLibraryDetail("unsupported enum type")) }
        defer { H5Tclose(base) }
        let size = H5Tget_size(base)
        let signed = H5Tget_sign(base) != H5T_SGN_NONE
        guard [1, 2, 4, 8].contains(size) else { throw failure(action, name, "unsupported enum base size \(size)") }
        var raw = [UInt8](repeating: 0, count: count * size)
        let status = raw.withUnsafeMutableBytes { read(memType, $0.baseAddress!) }
        if status < 0 { throw failure(action, name, withLibraryDetail("read failed")) }
        return raw.withUnsafeBytes { bytes -> [Int64] in
            (0..<count).map { i in
                let offset = i * size
                switch (size, signed) {
                case (1, true): return Int64(bytes.load(fromByteOffset: offset, as: Int8.self))
                case (1, false): return Int64(bytes.load(fromByteOffset: offset, as: UInt8.self))
                case (2, true): return Int64(bytes.loadUnaligned(fromByteOffset: offset, as: Int16.self))
                case (2, false): return Int64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                case (4, true): return Int64(bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self))
                case (4, false): return Int64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                case (8, true): return bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self)
                default: return Int64(bitPattern: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                }
            }
        }
    }

    private func makeVariableStringType(action: String, name: String) throws -> hid_t {
        let type = H5Tcopy(tessera_h5t_c_s1())
        guard type >= 0,
              H5Tset_size(type, tessera_h5t_variable()) >= 0,
              H5Tset_cset(type, H5T_CSET_UTF8) >= 0 else {
            throw failure(action, name, withLibraryDetail("cannot build a string type"))
        }
        return type
    }

    /// Reads one string, fixed or variable length, via `read(memType, buffer)`.
    private func readSingleString(_ ftype: hid_t, name: String, action: String,
                                  read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> String {
        guard H5Tget_class(ftype) == H5T_STRING else {
            throw failure(action, name, "expected a string, found \(typeDescription(ftype)) data")
        }
        let memType = H5Tcopy(ftype)
        guard memType >= 0 else { throw failure(action, name, withLibraryDetail("cannot copy the type")) }
        defer { H5Tclose(memType) }
        if H5Tis_variable_str(ftype) > 0 {
            var pointer: UnsafeMutablePointer<CChar>? = nil
            let status = withUnsafeMutablePointer(to: &pointer) { read(memType, UnsafeMutableRawPointer($0)) }
            if status < 0 { throw failure(action, name, withLibraryDetail("read failed")) }
            guard let p = pointer else { return "" }
            defer { H5free_memory(p) }
            return String(cString: p)
        }
        let size = H5Tget_size(ftype)
        var raw = [UInt8](repeating: 0, count: max(size, 1))
        let status = raw.withUnsafeMutableBytes { read(memType, $0.baseAddress!) }
        if status < 0 { throw failure(action, name, withLibraryDetail("read failed")) }
        var bytes = raw.prefix(size)
        if let nul = bytes.firstIndex(of: 0) { bytes = bytes[..<nul] }
        if H5Tget_strpad(ftype) == H5T_STR_SPACEPAD {
            while bytes.last == 0x20 { bytes = bytes.dropLast() }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func typeDescription(_ type: hid_t) -> String {
        switch H5Tget_class(type) {
        case H5T_INTEGER: return "integer"
        case H5T_FLOAT: return "floating-point"
        case H5T_STRING: return "string"
        case H5T_COMPOUND: return "compound"
        case H5T_ENUM: return "enum"
        case H5T_ARRAY: return "array"
        case H5T_VLEN: return "variable-length"
        case H5T_OPAQUE: return "opaque"
        case H5T_REFERENCE: return "reference"
        case H5T_BITFIELD: return "bitfield"
        case H5T_TIME: return "time"
        default: return "unknown"
        }
    }
}

// MARK: - Atomic writes

public enum HDF5 {
    /// Writes a file atomically: `body` builds the file in memory, its bytes go to `path + ".tmp-<pid>"`
    /// with write(2), which is fsync'ed and renamed over `path`. If anything fails (a full disk
    /// included) `path` is untouched, the temporary file is removed and the error is one line naming
    /// `path`; if the process dies, the temporary is left for the next start to remove.
    public static func writeAtomically(to path: String, _ body: (HDF5File) throws -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        if !directory.isEmpty,
           !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw HDF5Error(path: path, dataset: nil, action: "create HDF5 file \(path)", reason: "no such directory \(directory)")
        }
        let temporary = path + ".tmp-\(getpid())"
        let file = try HDF5File(creatingInMemory: temporary)
        let image: [UInt8]
        do {
            try body(file)
            image = try file.closeIntoImage()
        } catch {
            file.close()
            throw error
        }
        func failure(_ action: String) -> HDF5Error {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return HDF5Error(path: path, dataset: nil, action: "\(action) \(path)", reason: reason)
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("create") }
        var written = 0
        let ok = image.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                written += n
            }
            return fsync(fd) == 0
        }
        if !ok {
            let saved = errno
            _ = closeDescriptor(fd)
            errno = saved
            throw failure("write")
        }
        guard closeDescriptor(fd) == 0 else { throw failure("write") }
        guard rename(temporary, path) == 0 else { throw failure("replace") }
        // Make the rename itself durable (best effort: some file systems refuse to fsync a directory).
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dfd >= 0 {
            _ = fsync(dfd)
            _ = closeDescriptor(dfd)
        }
    }

    private static func closeDescriptor(_ fd: Int32) -> Int32 {
        #if canImport(Glibc)
        return Glibc.close(fd)
        #else
        return Darwin.close(fd)
        #endif
    }

}
