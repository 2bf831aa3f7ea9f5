/// The `model` and `data` sections of a tiny MAE (width 32, one block) on the first 256 Fashion-MNIST
/// images padded to 32×32: small enough that an epoch takes well under a second in release.
let tinyMAEModelAndData = """
    model:
      method: mae
      arch: custom
      width: 32
      depth: 1
      heads: 2
      patch_size: 4
      img_size: 32
      decoder: {width: 16, depth: 1, heads: 2}
      mask_ratio: 0.75
    data:
      dataset: fashion-mnist
      input_size: 32
      pad_to: 32
      limit: 256
      mean: [0.286, 0.286, 0.286]
      std: [0.353, 0.353, 0.353]
    """

import Foundation
import XCTest
import TesseraCore
import Tessera
import TesseraConfig
import TesseraHDF5

/// The small MAE of the PyTorch parity fixtures (16 px, 4×4 patches, width 32, depth 2, decoder
/// 16/2/2): official MAE, or MAE-priv with BEiT blocks, MoCo sin-cos, no cls token, layer-norm
/// targets, channel-first patches and one mask per batch.
func smallMAE(_ variant: MAE.Options.Variant, seed: UInt64 = 0) -> MAE {
    let shape = ViTShape(imgSize: 16, patchSize: 4, inChans: 3, width: 32, depth: 2, heads: 4)
    var o = MAE.Options()
    o.variant = variant
    o.decoderWidth = 16; o.decoderDepth = 2; o.decoderHeads = 2
    let style: ViTStyle
    if variant == .official {
        style = ViTStyle(layout: .fused, posLayout: .mae, clsToken: true)
    } else {
        style = ViTStyle(layout: .beit, posLayout: .moco, clsToken: false)
        o.targetNorm = .layernorm; o.patchOrder = .chw; o.sharedMask = true
    }
    var rng = RandomGenerator(seed: seed)
    return MAE(shape, style, o, rng: &rng)
}

/// A small SAIM on 16 px images (4×4 patches, width 32, depth 2, 2 query blocks, 3×3 blur, norm-pix).
func smallSAIM(share: Bool = false, seed: UInt64 = 3) -> SAIM {
    let shape = ViTShape(imgSize: 16, patchSize: 4, inChans: 3, width: 32, depth: 2, heads: 4)
    var o = SAIM.Options()
    o.queryDepth = 2
    o.shareWeight = share
    o.gaussianKernel = 3
    var rng = RandomGenerator(seed: seed)
    return SAIM(shape, ViTStyle(layout: .split, posLayout: .mae, clsToken: true), o, rng: &rng)
}

/// A config of `task` with the given `model:` lines (and any further top-level YAML), on
/// Fashion-MNIST, loaded as the file `scratch/<name>.yaml` (so errors name that file).
func loadSpec(model: String, task: String = "pretrain", name: String, batch: Int = 3, extra: String = "",
              scratch: URL, checkPaths: Bool = false) throws -> ExperimentSpec {
    let yaml = """
    name: \(name)
    task: \(task)
    batch_size: \(batch)
    epochs: 1
    model:
    \(model.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    data:
      dataset: fashion-mnist
    \(extra)
    """
    return try ConfigLoader.load(yaml: yaml, file: scratch.appendingPathComponent("\(name).yaml").path, checkPaths: checkPaths)
}

/// Writes `method`'s state dict as a checkpoint, loads it into the downstream encoder of a linear
/// probe with the same 16 px / width 32 / depth 2 / 4 heads shape, and returns that model's state.
func downstreamState(loading method: PretrainMethod, methodName: String, scratch: URL) throws -> [String: Tensor] {
    let ck = Checkpoint(params: Dictionary(uniqueKeysWithValues: method.stateDict().map { ($0.name, $0.tensor) }))
    let path = scratch.appendingPathComponent("\(methodName)-ck.h5").path
    try ck.write(to: path)
    let model = "method: \(methodName)\narch: custom\nimg_size: 16\npatch_size: 4\nwidth: 32\ndepth: 2\nheads: 4\nnum_classes: 10"
    let s = try loadSpec(model: model, task: "linprobe", name: "lin", batch: 4, scratch: scratch)
    let classifier = DownstreamRunner.buildModel(s, numClasses: 10)
    try DownstreamRunner.loadEncoder(classifier, from: path)
    return Dictionary(uniqueKeysWithValues: classifier.stateDict().map { ($0.name, $0.tensor) })
}

/// A small SemAIM on 16 px images (4×4 patches, width 32, depth 2, 2 query blocks, 3×3 blur,
/// norm-pix), attention_center / cls unless `configure` says otherwise.
func smallSemAIM(seed: UInt64 = 4, _ configure: (inout SemAIM.Options) -> Void = { _ in }) -> SemAIM {
    let shape = ViTShape(imgSize: 16, patchSize: 4, inChans: 3, width: 32, depth: 2, heads: 4)
    var o = SemAIM.Options()
    o.model.queryDepth = 2
    o.model.gaussianKernel = 3
    configure(&o)
    var rng = RandomGenerator(seed: seed)
    return SemAIM(shape, ViTStyle(layout: .fused, posLayout: .mae, clsToken: true), o, rng: &rng)
}

/// Runs `tessera step` with a PyTorch fixture as both weights and batch, then checks the loss and
/// every gradient against the fixture's `f32/loss` and `f32/grads/<name>` (relative error 1e-5 and
/// 1e-4). Gradients that are exactly zero in exact arithmetic (`zeroGradient`) are checked in absolute
/// terms. `extra` checks more of the output against the fixture.
func assertStepMatchesFixture(_ fixture: String, spec: ExperimentSpec, scratch: URL, zeroGradient: (String) -> Bool = { _ in false },
                              file: StaticString = #filePath, line: UInt = #line,
                              extra: (_ got: HDF5File, _ ref: HDF5File) throws -> Void = { _, _ in }) throws {
    let out = scratch.appendingPathComponent("step-out.h5").path
    try StepCommand.run(spec: spec, weights: fixture, batch: fixture, out: out)
    let ref = try HDF5File(reading: fixture)
    defer { ref.close() }
    let got = try HDF5File(reading: out)
    defer { got.close() }
    let name = (fixture as NSString).lastPathComponent
    let loss = try got.readDoubles("loss").values[0], refLoss = try ref.readDoubles("f32/loss").values[0]
    XCTAssertLessThan(abs(loss - refLoss) / abs(refLoss), 1e-5, "\(name): loss \(loss) vs \(refLoss)", file: file, line: line)
    let refGrads = try ref.datasetNames(under: "f32/grads").map { String($0.dropFirst("f32/grads/".count)) }
    let gotGrads = try got.datasetNames(under: "grads").map { String($0.dropFirst("grads/".count)) }
    XCTAssertFalse(refGrads.isEmpty, name, file: file, line: line)
    XCTAssertEqual(Set(gotGrads), Set(refGrads), name, file: file, line: line)
    for g in refGrads {
        let mine = try got.readFloats("grads/\(g)").values, theirs = try ref.readFloats("f32/grads/\(g)").values
        if zeroGradient(g) {
            XCTAssertLessThan(mine.map(abs).max()!, 1e-6, "\(name) \(g)", file: file, line: line)
        } else {
            XCTAssertLessThan(relativeError(mine, theirs), 1e-4, "\(name) \(g)", file: file, line: line)
        }
    }
    try extra(got, ref)
}

/// A test case with a fresh temporary directory per test (`scratch`), removed afterwards.
class ScratchTestCase: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("tessera-\(type(of: self))-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }
}
