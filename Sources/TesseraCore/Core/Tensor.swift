import Foundation

/// A contiguous row-major float32 tensor. Reshapes share storage; every other op allocates.
///
/// A tensor that takes part in autograd carries a `GradSlot`; the tape refers to slots, not to
/// tensors, so an activation's values are freed as soon as no backward closure needs them.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let count: Int
    public let storage: Storage
    /// Element offset into `storage` (non-zero only for views made by `Tensor.view`).
    public let offset: Int
    /// Non-nil when this tensor requires a gradient.
    public internal(set) var slot: GradSlot?
    /// A name used in error messages and checkpoints (parameters only).
    public var name: String?

    public var data: UnsafeMutablePointer<Float> { storage.ptr + offset }
    public var rank: Int { shape.count }
    public var requiresGrad: Bool { slot != nil }
    /// The accumulated gradient (leaves keep theirs after `backward`).
    public var grad: Tensor? {
        get { slot?.grad }
        set { slot?.grad = newValue }
    }

    public init(shape: [Int], storage: Storage, offset: Int = 0) {
        let n = shape.reduce(1, *)
        precondition(shape.allSatisfy { $0 >= 0 }, "tessera: negative dimension in shape \(shape)")
        precondition(offset + n <= storage.count, "tessera: shape \(shape) needs \(n) elements, storage has \(storage.count - offset)")
        self.shape = shape
        self.count = n
        self.storage = storage
        self.offset = offset
    }

    /// Uninitialised tensor.
    public convenience init(shape: [Int]) {
        self.init(shape: shape, storage: Storage(count: shape.reduce(1, *)))
    }

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: .zeros(shape.reduce(1, *)))
    }

    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = Tensor(shape: shape)
        t.data.initialize(repeating: value, count: t.count)
        return t
    }

    public convenience init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "tessera: \(values.count) values do not fill shape \(shape)")
        self.init(shape: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    public static func scalar(_ v: Float) -> Tensor { Tensor([v], shape: []) }

    /// A leaf that accumulates a gradient (a parameter).
    @discardableResult
    public func requiringGrad(_ flag: Bool = true) -> Tensor {
        if flag { if slot == nil { slot = GradSlot(shape: shape, isLeaf: true) } } else { slot = nil }
        return self
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var item: Float {
        precondition(count == 1, "tessera: item() on a tensor of shape \(shape)")
        return data[0]
    }

    public subscript(_ i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// A copy with no autograd history.
    public func clone() -> Tensor {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Same values, cut from the tape.
    public func detach() -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    /// Copies `other`'s values into this tensor (shapes must hold the same number of elements).
    public func copy(from other: Tensor) {
        precondition(other.count == count, "tessera: copy from shape \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// A view of `shape` over this tensor's storage starting at element `start` (no autograd).
    public func view(_ shape: [Int], start: Int = 0) -> Tensor {
        Tensor(shape: shape, storage: storage, offset: offset + start)
    }

    public func dim(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }

    public var description: String {
        let head = array.prefix(8).map { String(format: "%.4f", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", ..." : "")])"
    }
}

/// Fails with a message naming both shapes when they differ.
@inline(__always)
public func checkShapes(_ a: [Int], _ b: [Int], _ op: StaticString) {
    precondition(a == b, "tessera: \(op): shape \(a) does not match \(b)")
}

