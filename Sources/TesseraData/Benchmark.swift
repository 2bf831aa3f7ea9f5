import Foundation
import TesseraCore

/// Single-threaded throughput of decode + RandomResizedCrop(224, scale (0.2, 1), bicubic) + flip +
/// ToTensor/Normalize on ~500×375 JPEGs, next to PIL + torchvision measured by
/// `python3 tools/bench_pil.py DIR` in the same run when available. Returns a markdown table.
///
/// `imageDir`: a folder of JPEGs; when nil (or empty), `python3 tools/bench_pil.py --make` writes
/// 32 images cut from scikit-image's photographs into a temporary folder. `script` is the path of
/// bench_pil.py (relative to the working directory by default).
public func benchmarkDecodeAugment(imageDir: String? = nil, minSeconds: Double = 3,
                                   script: String = "tools/bench_pil.py") -> String {
    let fm = FileManager.default
    var dir = imageDir ?? ""
    func jpegs(_ d: String) -> [String] {
        ((try? fm.contentsOfDirectory(atPath: d)) ?? []).filter { ["jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted().map { (d as NSString).appendingPathComponent($0) }
    }
    if dir.isEmpty || jpegs(dir).isEmpty {
        dir = NSTemporaryDirectory() + "tessera-bench-jpegs"
        if jpegs(dir).isEmpty { _ = runProcess(["python3", script, "--make", dir]) }
    }
    let files = jpegs(dir)
    guard !files.isEmpty else {
        return "benchmarkDecodeAugment: no JPEGs in \(dir) (pass imageDir, or install scikit-image for bench_pil.py --make)"
    }
    let blobs = files.map { [UInt8](fm.contents(atPath: $0) ?? Data()) }
    let decoder = JPEGDecoder()
    let pipeline = TransformPipeline.maePretrain(size: 224)
    let out = UnsafeMutablePointer<Float>.allocate(capacity: 3 * 224 * 224)
    defer { out.deallocate() }

    // Full path: read file + decode + transform.
    var n = 0
    var decodeOnly = 0.0
    let t0 = Date()
    var elapsed = 0.0
    repeat {
        for (i, path) in files.enumerated() {
            guard let img = try? decoder.decode(file: path) else { continue }
            var rng = RandomGenerator(seed: 1).derived(0, UInt64(n + i))
            pipeline.apply(img, rng: &rng, into: out)
            n += 1
        }
        elapsed = Date().timeIntervalSince(t0)
    } while elapsed < minSeconds
    let t1 = Date()
    for b in blobs { _ = try? decoder.decode(b) }
    decodeOnly = Date().timeIntervalSince(t1) / Double(blobs.count)
    let swiftRate = Double(n) / elapsed
    let sizes = blobs.first.flatMap { try? decoder.decode($0) }.map { "\($0.width)x\($0.height)" } ?? "?"

    var rows = [
        "| pipeline (1 thread, \(files.count) JPEGs \(sizes)) | images/s | decode ms/image |",
        "|---|---:|---:|",
        String(format: "| Tessera (libturbojpeg + PIL-exact resample) | %.1f | %.2f |", swiftRate, decodeOnly * 1000),
    ]
    if let json = runProcess(["python3", script, dir]),
       let line = json.split(separator: "\n").last,
       let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
       let rate = obj["images_per_s"] as? Double {
        let dec = obj["decode_ms"] as? Double ?? .nan
        rows.append(String(format: "| PIL %@ + torchvision %@ | %.1f | %.2f |", "\(obj["pillow"] ?? "")",
                           "\(obj["torchvision"] ?? "")", rate, dec))
        rows.append(String(format: "\nratio Tessera / PIL+torchvision: **%.2f×** per core", swiftRate / rate))
    } else {
        rows.append("| PIL + torchvision | n/a (python3 with torchvision not available) | |")
    }
    return rows.joined(separator: "\n")
}

/// Runs a command with our standard error, returning its output when it succeeds.
private func runProcess(_ args: [String]) -> String? {
    Subprocess.run(args, passStandardError: true).flatMap { $0.succeeded ? $0.stdout : nil }
}
