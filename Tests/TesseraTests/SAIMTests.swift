import Foundation
import XCTest
import Tessera
import TesseraConfig
import TesseraCore
import TesseraHDF5

/// SAIM against the official qiy20/SAIM code (fixtures from tools/make_saim_fixture.py), its masks,
/// its shared-weight checkpoints and its config errors.
final class SAIMTests: ScratchTestCase {
    private func spec(_ model: String, checkPaths: Bool = false, file: String = "saim.yaml") throws -> ExperimentSpec {
        try loadSpec(model: model, name: (file as NSString).deletingPathExtension, scratch: scratch, checkPaths: checkPaths)
    }

    static let fixtureModel = """
        method: saim
        arch: custom
        img_size: 32
        patch_size: 4
        width: 64
        depth: 4
        heads: 4
        query_depth: 2
        prediction_head: mlp
        gaussian_kernel_size: 3
        gaussian_sigma: 1
        norm_pix_loss: true
        loss_type: l2
        """

    static let sharedFixtureModel = """
        method: saim
        arch: custom
        img_size: 32
        patch_size: 4
        width: 32
        depth: 2
        heads: 2
        query_depth: 2
        share_weight: true
        prediction_head: linear
        gaussian_kernel_size: 3
        gaussian_sigma: 1
        norm_pix_loss: true
        loss_type: l1
        """

    /// `tessera step` on the fixture's weights (a `{'model': state_dict}` .pth converted by
    /// tools/pth_to_h5.py), images and permutation noise gives the official loss, prediction and
    /// every gradient.
    func checkStep(_ fixtureName: String, model: String) throws {
        // attn.k.bias has an exact zero gradient (a constant shift of every key's logit cancels in the
        // softmax); both sides hold rounding noise there.
        try assertStepMatchesFixture(fixtureURL(fixtureName).path, spec: try spec(model), scratch: scratch,
                                     zeroGradient: { $0.hasSuffix("attn.k.bias") }) { got, ref in
            // The official prediction includes the cls row; Tessera's starts at the first patch.
            let (refPred, predShape) = try ref.readFloats("f32/pred")
            let (l, k) = (predShape[1] - 1, predShape[2])
            var patchRows: [Float] = []
            for b in 0..<predShape[0] {
                let start: Int = (b * (l + 1) + 1) * k, end: Int = (b + 1) * (l + 1) * k
                patchRows.append(contentsOf: refPred[start..<end])
            }
            XCTAssertLessThan(relativeError(try got.readFloats("prediction").values, patchRows), 1e-5, "\(fixtureName) prediction")
        }
    }

    func testStepMatchesOfficialSAIM() throws { try checkStep("saim.h5", model: Self.fixtureModel) }

    func testStepMatchesOfficialSAIMWithSharedWeightsLinearHeadAndL1() throws {
        try checkStep("saim_shared.h5", model: Self.sharedFixtureModel)
    }

    /// The fixture's state dict loads strictly: every name of the original, including the blur kernel
    /// buffer and, with share_weight, both `blocks.*` and `query_blocks.*`.
    func testOfficialStateDictLoadsStrictly() throws {
        for (file, model) in [("saim.h5", Self.fixtureModel), ("saim_shared.h5", Self.sharedFixtureModel)] {
            var rng = RandomGenerator(seed: 0)
            let m = try Registry.method("saim").build(try spec(model), &rng)
            let ck = try Checkpoint.read(fixtureURL(file).path)
            XCTAssertNoThrow(try m.load(state: ck.params, strict: true), file)
            XCTAssertEqual(Set(m.stateDict().map(\.name)), Set(ck.params.keys), file)
        }
    }

    /// share_weight: one set of tensors, stepped once (each appears once in the parameters), saved
    /// under both names, and a checkpoint without the alias names loads too.
    func testSharedWeightsAreOneSetUnderTwoNames() throws {
        let m = smallSAIM(share: true)
        let params = m.namedParameters()
        XCTAssertFalse(params.contains { $0.name.hasPrefix("query_blocks.") })
        XCTAssertEqual(Set(params.map { ObjectIdentifier($0.tensor) }).count, params.count, "a tensor appears twice")
        let state = Dictionary(uniqueKeysWithValues: m.stateDict().map { ($0.name, $0.tensor) })
        XCTAssertTrue(state["query_blocks.1.attn.q.weight"] === state["blocks.1.attn.q.weight"])
        let primaryOnly = state.filter { !$0.key.hasPrefix("query_blocks.") }
        XCTAssertNoThrow(try smallSAIM(share: true, seed: 9).load(state: primaryOnly, strict: true))
        // Not shared: separate tensors under their own names.
        let separate = smallSAIM()
        XCTAssertTrue(separate.namedParameters().contains { $0.name == "query_blocks.0.attn.q.weight" })
    }

    /// Spec §4.2: patch i sees j iff j comes no later (content) or strictly earlier (query); cls sees
    /// only itself; everyone sees cls.
    func testAttentionMasksFollowTheOrder() {
        let scores = Tensor([0.7, 0.1, 0.4, 0.9, 0.2, 0.3], shape: [2, 3])
        let (h, g) = SAIM.attentionMasks(scores: scores)
        XCTAssertEqual(h.shape, [2, 4, 4])
        for b in 0..<2 {
            for j in 0..<4 {
                XCTAssertEqual(h.data[b * 16 + j], j == 0 ? 0 : -.infinity)
                XCTAssertEqual(g.data[b * 16 + j], j == 0 ? 0 : -.infinity)
                XCTAssertEqual(h.data[b * 16 + j * 4], 0)
            }
            for i in 0..<3 { for j in 0..<3 {
                let si = scores.data[b * 3 + i], sj = scores.data[b * 3 + j]
                XCTAssertEqual(h.data[b * 16 + (i + 1) * 4 + j + 1], sj <= si ? 0 : -.infinity)
                XCTAssertEqual(g.data[b * 16 + (i + 1) * 4 + j + 1], sj < si ? 0 : -.infinity)
            } }
        }
    }

    /// The first patch in the order sees only cls in the query stream, so its prediction does not
    /// depend on any image content; changing the last patch in the order changes nothing before it.
    func testPredictionsDependOnlyOnEarlierPatches() {
        let m = smallSAIM()
        var rng = RandomGenerator(seed: 5)
        let images = Tensor.randn([1, 3, 16, 16], rng: &rng)
        let scores = Tensor.uniform([1, 16], rng: &rng)
        let order = (0..<16).sorted { scores.data[$0] < scores.data[$1] }
        let last = order[15]
        let changed = images.clone()
        let (r, c) = (last / 4, last % 4)
        for ch in 0..<3 { for y in 0..<4 { for x in 0..<4 { changed.data[(ch * 16 + r * 4 + y) * 16 + c * 4 + x] += 3 } } }
        let ctx = Context(training: false)
        let a = Autograd.noGrad { m.forwardStreams(images, scores: scores, ctx: ctx) }
        let b = Autograd.noGrad { m.forwardStreams(changed, scores: scores, ctx: ctx) }
        let k = a.shape[2]
        for patch in 0..<16 {
            let same = (0..<k).allSatisfy { a.data[patch * k + $0] == b.data[patch * k + $0] }
            XCTAssertEqual(same, true, "patch \(patch) (rank \(order.firstIndex(of: patch)!)) saw the last patch")
        }
    }

    func testBadSAIMValuesNameTheKey() throws {
        func message(_ model: String) -> String {
            do { _ = try spec(model); return "no error" } catch { return "\(error)" }
        }
        let base = "method: saim\narch: custom\nimg_size: 32\npatch_size: 4\nwidth: 64\nheads: 4\n"
        let badQuery = message(base + "depth: 4\nquery_depth: 3")
        XCTAssertTrue(badQuery.contains("model.query_depth") && badQuery.contains("not a multiple"), badQuery)
        let evenKernel = message(base + "depth: 4\ngaussian_kernel_size: 4")
        XCTAssertTrue(evenKernel.contains("model.gaussian_kernel_size") && evenKernel.contains("odd"), evenKernel)
        // The patch grid is img_size/patch_size on both sides; a size that does not divide is refused.
        let grid = message("method: saim\narch: custom\nimg_size: 30\npatch_size: 4\nwidth: 64\nheads: 4\ndepth: 4")
        XCTAssertTrue(grid.contains("model.img_size") && grid.contains("not divisible"), grid)
        for m in [badQuery, evenKernel, grid] { XCTAssertEqual(m.split(separator: "\n").count, 1, m) }
    }

    /// A SAIM pre-training checkpoint feeds the downstream encoder (split q/k/v blocks, spec §10):
    /// every encoder parameter comes from it.
    func testSAIMCheckpointLoadsIntoTheDownstreamEncoder() throws {
        let m = smallSAIM()
        let own = try downstreamState(loading: m, methodName: "saim", scratch: scratch)
        XCTAssertEqual(own["blocks.1.attn.v.weight"]!.array, m.encoder.blocks[1].attn.v!.weight.array)
        XCTAssertEqual(own["norm.weight"]!.array, m.norm.weight!.array)
    }
}
