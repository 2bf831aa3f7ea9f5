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

// MARK: forward-only convolutional layers (the frozen DALL-E tokenizer)

/// Conv2d, stride 1, zero padding `padding` on every side: x [B, C, H, W], weight [O, C, k, k],
/// bias [O] → [B, O, H + 2p − k + 1, W + 2p − k + 1]. **Forward only** (no gradient): it runs frozen
/// tokenizers under no-grad, and refuses inputs or weights that require a gradient. Each image is
/// unfolded a band of output rows at a time (bounded memory) and multiplied with one GEMM per band;
/// images run in parallel.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, padding p: Int) -> Tensor {
    precondition(x.rank == 4 && weight.rank == 4 && weight.shape[1] == x.shape[1] && weight.shape[2] == weight.shape[3],
                 "tessera: conv2d weight \(weight.shape) does not fit input \(x.shape)")
    precondition(!x.requiresGrad && !weight.requiresGrad && !(bias?.requiresGrad ?? false),
                 "tessera: conv2d is forward only; run it on frozen weights under no-grad")
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, k) = (weight.shape[0], weight.shape[2])
    let ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1
    precondition(ho > 0 && wo > 0, "tessera: conv2d kernel \(k) does not fit \(h)×\(w) with padding \(p)")
    let y = Tensor(shape: [b, o, ho, wo])
    let ckk = c * k * k
    // Output rows per band: about 4 M floats of unfolded input.
    let band = max(1, min(ho, (1 << 22) / max(ckk * wo, 1)))
    let xp = x.data, wp = weight.data, yp = y.data, bp = bias?.data
    Parallel.forRange(b, costPerItem: 2 * o * ckk * ho * wo, minCost: 1 << 20) { r in
        let cols = UnsafeMutablePointer<Float>.allocate(capacity: ckk * band * wo)
        defer { cols.deallocate() }
        for bi in r {
            let img = xp + bi * c * h * w, out = yp + bi * o * ho * wo
            var r0 = 0
            while r0 < ho {
                let rows = min(band, ho - r0), n = rows * wo
                // cols[(ci, ky, kx), (row, col)] = x[ci, r0 + row + ky − p, col + kx − p] (0 outside)
                for ci in 0..<c { for ky in 0..<k { for kx in 0..<k {
                    let dst = cols + ((ci * k + ky) * k + kx) * n
                    for row in 0..<rows {
                        let iy = r0 + row + ky - p
                        let d = dst + row * wo
                        if iy < 0 || iy >= h { for col in 0..<wo { d[col] = 0 }; continue }
                        let src = img + (ci * h + iy) * w
                        for col in 0..<wo {
                            let ix = col + kx - p
                            d[col] = ix >= 0 && ix < w ? src[ix] : 0
                        }
                    }
                } } }
                BLAS.gemm(m: o, n: n, k: ckk, a: wp, lda: ckk, b: cols, ldb: n, c: out + r0 * wo, ldc: ho * wo, parallel: false)
                r0 += rows
            }
            if let bp {
                for oi in 0..<o {
                    let row = out + oi * ho * wo, bv = bp[oi]
                    for j in 0..<(ho * wo) { row[j] += bv }
                }
            }
        }
    }
    return y
}

/// 2×2 max-pooling with stride 2 (odd trailing rows/columns dropped, as torch): [B, C, H, W] →
/// [B, C, H/2, W/2]. Forward only, like `conv2d`.
public func maxPool2x2(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "tessera: maxPool2x2 needs [B, C, H, W], got \(x.shape)")
    precondition(!x.requiresGrad, "tessera: maxPool2x2 is forward only")
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let ho = h / 2, wo = w / 2
    let y = Tensor(shape: [b, c, ho, wo])
    let xp = x.data, yp = y.data
    Parallel.forRange(b * c, costPerItem: 4 * ho * wo, minCost: 1 << 16) { r in
        for plane in r {
            let src = xp + plane * h * w, dst = yp + plane * ho * wo
            for i in 0..<ho { for j in 0..<wo {
                let a = src + 2 * i * w + 2 * j
                dst[i * wo + j] = max(max(a[0], a[1]), max(a[w], a[w + 1]))
            } }
        }
    }
    return y
}
