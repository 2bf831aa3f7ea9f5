import Foundation
import XCTest
import TesseraConfig

final class InheritanceTests: XCTestCase {
    func testSingleBase() throws {
        let spec = try Fixtures.load("child_single.yaml")
        XCTAssertEqual(spec.name, "child_single")
        XCTAssertEqual(spec.task, .pretrain)
        XCTAssertEqual(spec.batchSize, 64)
        XCTAssertEqual(spec.epochs, 20)
        XCTAssertEqual(spec.model.arch, .tiny)
        XCTAssertEqual(spec.model.imgSize, 32)
        XCTAssertEqual(spec.model.patchSize, 4)
        XCTAssertEqual(spec.model.decoder.width, 128)
        XCTAssertEqual(spec.model.decoder.depth, 2)
        XCTAssertEqual(spec.optim.blr, 1.5e-4)
        XCTAssertEqual(spec.optim.weightDecay, 0.05)
    }

    func testListOfBasesLaterWins() throws {
        let spec = try Fixtures.load("child_list.yaml")
        XCTAssertEqual(spec.optim.weightDecay, 0.1, "base_data.yaml comes after base_model.yaml")
        XCTAssertEqual(spec.optim.blr, 1.5e-4)
        XCTAssertEqual(spec.optim.lr, 0.002)
        XCTAssertEqual(spec.data.limit, 1000)
        XCTAssertEqual(spec.augment.scale, [0.5, 1.0])
        XCTAssertEqual(spec.model.decoder.width, 128)
        XCTAssertEqual(spec.epochs, 10)
    }

    func testRecursiveBaseRelativeToIncludingFile() throws {
        let spec = try Fixtures.load("nested/child_recursive.yaml")
        XCTAssertEqual(spec.name, "child_recursive")
        XCTAssertEqual(spec.seed, 7)
        XCTAssertEqual(spec.epochs, 20, "from ../child_single.yaml")
        XCTAssertEqual(spec.batchSize, 64, "from base_model.yaml, two levels up the chain")
        XCTAssertEqual(spec.model.decoder.width, 128, "sibling keys of an overridden key are kept")
        XCTAssertEqual(spec.model.decoder.depth, 4)
        XCTAssertEqual(spec.model.imgSize, 32)
    }

    func testDeleteReplacesInheritedMapping() throws {
        let spec = try Fixtures.load("child_delete.yaml")
        XCTAssertEqual(spec.model.method, .cae)
        XCTAssertEqual(spec.model.arch, .small)
        XCTAssertEqual(spec.model.width, 384)
        XCTAssertEqual(spec.model.decoder.width, 384, "the base's decoder.width 128 is dropped; cae default = width")
        XCTAssertEqual(spec.model.decoder.depth, 4)
        XCTAssertEqual(spec.model.imgSize, 224)
        XCTAssertEqual(spec.model.block, .beit)
        XCTAssertEqual(spec.epochs, 10, "keys outside the deleted mapping are still inherited")
    }

    func testTreeRemembersFileAndLine() throws {
        let tree = try ConfigLoader.loadTree(path: Fixtures.path("child_single.yaml"), overrides: ["seed=9"])
        XCTAssertEqual(tree.node(at: "model.decoder.width")?.origin,
                       .file(path: Fixtures.path("base_model.yaml"), line: 9))
        XCTAssertEqual(tree.node(at: "epochs")?.origin, .file(path: Fixtures.path("child_single.yaml"), line: 2))
        XCTAssertEqual(tree.node(at: "model.patch_size")?.origin,
                       .file(path: Fixtures.path("child_single.yaml"), line: 5))
        XCTAssertEqual(tree.node(at: "seed")?.origin, .override)
        XCTAssertNil(tree["_base_"], "_base_ is consumed by the loader")
        XCTAssertEqual(tree["epochs"]?.value.content, .scalar("20", quoted: false))
    }

    func testCycleIsAnErrorNamingTheFiles() {
        let error = Fixtures.error("cycle_a.yaml")
        XCTAssertEqual(error?.description,
                       "\(Fixtures.path("cycle_b.yaml")):2: _base_: inheritance cycle: cycle_a.yaml -> cycle_b.yaml -> cycle_a.yaml")
    }

    func testMissingBaseFile() {
        let error = Fixtures.error("missing_base.yaml")
        XCTAssertEqual(error?.description,
                       "\(Fixtures.path("missing_base.yaml")):2: _base_: config file not found: \(Fixtures.path("does_not_exist.yaml"))")
    }

    func testErrorInsideBaseNamesTheBaseFile() {
        let error = Fixtures.error("err_in_base.yaml")
        XCTAssertEqual(error?.origin, .file(path: Fixtures.path("err_enum.yaml"), line: 3))
        XCTAssertEqual(error?.key, "model.method")
    }

    func testMissingConfigFile() {
        XCTAssertThrowsError(try ConfigLoader.load(path: Fixtures.path("nope.yaml"))) { error in
            XCTAssertEqual("\(error)", "\(Fixtures.path("nope.yaml")): config file not found: \(Fixtures.path("nope.yaml"))")
        }
    }
}
