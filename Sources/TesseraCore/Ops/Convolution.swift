/// Patch embedding (a stride = kernel convolution done as im2col + GEMM) and the depthwise
/// Gaussian blur used for SAIM/SemAIM targets.

/// img [B, C, H, W] → columns [B, L, C·p·p] with L = (H/p)·(W/p) in row-major patch order and each
/// column in (channel, row, col) order, matching a Conv2d weight [D, C, p, p].
public func im2col(_ img: Tensor, patch p: Int) -> Tensor {
    precondition(img.rank == 4, "tessera: im2col needs [B, C, H, W], got \(img.shape)")
    let (b, c, hgt, wid) = (img.shape[0], img.shape[1], img.shape[2], img.shape[3])
    precondition(hgt % p == 0 && wid % p == 0, "tessera: image \(hgt)x\(wid) is not divisible by patch size \(p)")
    let gh = hgt / p, gw = wid / p, l = gh * gw, k = c * p * p
    let y = Tensor(shape: [b, l, k])
    let ip = img.data, yp = y.data
    Parallel.forRange(b * l, costPerItem: k, minCost: 1 << 16) { r in
        for t in r {
            let bi = t / l, pi = t % l, pr = pi / gw, pc = pi % gw
            let dst = yp + t * k
            for ch in 0..<c {
                for i in 0..<p {
                    let src = ip + ((bi * c + ch) * hgt + pr * p + i) * wid + pc * p
                    (dst + (ch * p + i) * p).update(from: src, count: p)
                }
            }
        }
    }
    Autograd.record(y, [img]) { g in
        guard let s = img.slot else { return }
        let d = s.buffer()
        for t in 0..<(b * l) {
            let bi = t / l, pi = t % l, pr = pi / gw, pc = pi % gw
            let src = g.data + t * k
            for ch in 0..<c { for i in 0..<p {
                let dst = d.data + ((bi * c + ch) * hgt + pr * p + i) * wid + pc * p
                for j in 0..<p { dst[j] += src[(ch * p + i) * p + j] }
            } }
        }
    }
    return y
}

/// Conv2d(C → D, kernel = stride = p) with bias, flattened to tokens: img [B, C, H, W],
/// weight [D, C, p, p], bias [D] → [B, L, D].
public func patchEmbed(_ img: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(weight.rank == 4 && weight.shape[2] == weight.shape[3] && weight.shape[1] == img.shape[1],
                 "tessera: patch embedding weight \(weight.shape) does not fit image \(img.shape)")
    return patchEmbed(columns: im2col(img, patch: weight.shape[2]), weight: weight, bias: bias)
}

/// The patch embedding of patches already laid out by `im2col` (any subset of them): cols [..., C·p·p].
public func patchEmbed(columns cols: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    linear(cols, weight.reshaped([weight.shape[0], -1]), bias)
}

/// A normalised k×k Gaussian, exp(−((x−μ)² + (y−μ)²) / 2σ²) with μ = (k−1)/2 (integer division), as SAIM builds it.
public func gaussianKernel(size k: Int, sigma: Float) -> Tensor {
    let mu = Double((k - 1) / 2)
    var vals = [Double](repeating: 0, count: k * k)
    for y in 0..<k { for x in 0..<k {
        let dx = Double(x) - mu, dy = Double(y) - mu
        vals[y * k + x] = Foundation.exp(-(dx * dx + dy * dy) / (2 * Double(sigma) * Double(sigma)))
    } }
    let s = vals.reduce(0, +)
    return Tensor(vals.map { Float($0 / s) }, shape: [k, k])
}

/// Depthwise correlation of every channel of img [B, C, H, W] with kernel [k, k], zero padding k/2,
/// same output size (F.conv2d with groups = C and the same kernel for each channel).
public func depthwiseBlur(_ img: Tensor, kernel: Tensor) -> Tensor {
    precondition(img.rank == 4, "tessera: depthwiseBlur needs [B, C, H, W], got \(img.shape)")
    let k = kernel.shape[0], pad = k / 2
    let planes = img.shape[0] * img.shape[1], hgt = img.shape[2], wid = img.shape[3]
    let y = Tensor(shape: img.shape)
    func correlate(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, flip: Bool, accumulate: Bool) {
        let kp = kernel.data
        Parallel.forRange(planes, costPerItem: hgt * wid * k * k, minCost: 1 << 16) { r in
            for pl in r {
                let sp = src + pl * hgt * wid, dp = dst + pl * hgt * wid
                for i in 0..<hgt { for j in 0..<wid {
                    var acc: Float = 0
                    for u in 0..<k {
                        let si = i + u - pad
                        if si < 0 || si >= hgt { continue }
                        for v in 0..<k {
                            let sj = j + v - pad
                            if sj < 0 || sj >= wid { continue }
                            let kv = flip ? kp[(k - 1 - u) * k + (k - 1 - v)] : kp[u * k + v]
                            acc += kv * sp[si * wid + sj]
                        }
                    }
                    dp[i * wid + j] = accumulate ? dp[i * wid + j] + acc : acc
                } }
            }
        }
    }
    correlate(img.data, y.data, flip: false, accumulate: false)
    Autograd.record(y, [img]) { g in
        guard let s = img.slot else { return }
        // The adjoint of a zero-padded correlation (odd k) is the correlation with the flipped kernel.
        precondition(k % 2 == 1, "tessera: depthwiseBlur backward needs an odd kernel size")
        let (d, beta) = s.target()
        correlate(g.data, d.data, flip: true, accumulate: beta != 0)
    }
    return y
}

import Foundation
