/// Linear, LayerNorm, MLP and patch embedding with PyTorch parameter names.

public final class Linear: Module {
    public let weight: Tensor   // [out, in]
    public let bias: Tensor?    // [out]

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = Tensor.zeros([outFeatures, inFeatures])
        self.bias = bias ? Tensor.zeros([outFeatures]) : nil
        super.init()
        parameter("weight", weight)
        if let b = self.bias { parameter("bias", b) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight, bias) }

    /// xavier_uniform weight, zero bias (MAE/SAIM/SemAIM/CAE `_init_weights`).
    public func initXavier(rng: inout RandomGenerator) {
        Init.xavierUniform(weight, rng: &rng)
        if let bias { Init.constant(bias, 0) }
    }
}

public final class LayerNorm: Module {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-6, affine: Bool = true) {
        self.eps = eps
        weight = affine ? Tensor.full([dim], 1) : nil
        bias = affine ? Tensor.zeros([dim]) : nil
        super.init()
        if let weight { parameter("weight", weight) }
        if let bias { parameter("bias", bias) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// fc1 (D → hidden) → GELU → fc2 (hidden → out), timm's Mlp.
public final class Mlp: Module {
    public let fc1: Linear
    public let fc2: Linear

    public init(_ dim: Int, hidden: Int, out: Int? = nil) {
        fc1 = Linear(dim, hidden)
        fc2 = Linear(hidden, out ?? dim)
        super.init()
        child("fc1", fc1)
        child("fc2", fc2)
    }

    /// fc2(GELU(fc1(x))), with GELU recomputed in backward instead of stored and fc1's bias added
    /// (and its gradient summed) in GELU's sweeps (see `geluLinear`). Without a tape (inference,
    /// feature extraction) GELU overwrites fc1's output, this call's own buffer, so one hidden-sized
    /// tensor is alive instead of two.
    /// A `residual` (the output's shape) is added in fc2's own pass (see `linear(_:_:_:residual:)`).
    public func callAsFunction(_ x: Tensor, residual: Tensor? = nil) -> Tensor {
        guard Autograd.isEnabled else {
            let h = fc1(x)
            geluInPlace(h)
            return linear(h, fc2.weight, fc2.bias, residual: residual)
        }
        return geluLinear(linear(x, fc1.weight), fc2.weight, fc2.bias, inputBias: fc1.bias, residual: residual)
    }
}

/// Conv2d(C → D, kernel = stride = p) flattened to tokens: `patch_embed.proj.{weight,bias}`.
public final class PatchEmbed: Module {
    public let weight: Tensor   // [D, C, p, p]
    public let bias: Tensor     // [D]
    public let patchSize: Int

    public init(inChannels: Int, dim: Int, patchSize: Int) {
        self.patchSize = patchSize
        weight = Tensor.zeros([dim, inChannels, patchSize, patchSize])
        bias = Tensor.zeros([dim])
        super.init()
        let proj = Module()
        proj.parameter("weight", weight)
        proj.parameter("bias", bias)
        child("proj", proj)
    }

    /// img [B, C, H, W] → [B, L, D]
    public func callAsFunction(_ img: Tensor) -> Tensor { patchEmbed(img, weight: weight, bias: bias) }

    /// The embedding of patches already laid out by `im2col` (for instance only the kept ones).
    public func embed(columns: Tensor) -> Tensor { patchEmbed(columns: columns, weight: weight, bias: bias) }
}

/// Fixed 2-D sin-cos position tables (spec §1.2).
public enum SinCos {
    public enum Layout: String, Sendable { case mae, moco }

    /// [(cls ? 1 : 0) + gh·gw, dim] with a zero cls row. MAE layout: [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)];
    /// MoCo layout: rows and columns swapped. ω_k = 10000^(−k/(dim/4)). Computed in Double.
    public static func table(dim: Int, gridH: Int, gridW: Int, cls: Bool, layout: Layout) -> Tensor {
        precondition(dim % 4 == 0, "tessera: sin-cos position embedding needs a width divisible by 4, got \(dim)")
        let q = dim / 4
        let rows = gridH * gridW + (cls ? 1 : 0)
        let t = Tensor.zeros([rows, dim])
        for r in 0..<gridH {
            for c in 0..<gridW {
                let row = (cls ? 1 : 0) + r * gridW + c
                let first = Double(layout == .mae ? c : r), second = Double(layout == .mae ? r : c)
                for k in 0..<q {
                    let omega = 1 / pow(10000.0, Double(k) / Double(q))
                    let p = t.data + row * dim
                    p[k] = Float(sin(first * omega))
                    p[q + k] = Float(cos(first * omega))
                    p[2 * q + k] = Float(sin(second * omega))
                    p[3 * q + k] = Float(cos(second * omega))
                }
            }
        }
        return t
    }
}

import Foundation
