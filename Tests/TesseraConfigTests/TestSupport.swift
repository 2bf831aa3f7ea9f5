import Foundation
import XCTest
import TesseraConfig

/// Fixture paths and helpers shared by the config tests.
enum Fixtures {
    static let directory: String = {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures folder missing from the test bundle")
        }
        return url.path
    }()

    /// Absolute path of a fixture, written the way the loader reports it.
    static func path(_ name: String) -> String {
        ((directory as NSString).appendingPathComponent(name) as NSString).standardizingPath
    }

    /// Loads a fixture with `data.path` pointed at the (existing) fixture folder, then `overrides`.
    static func load(_ name: String, _ overrides: [String] = []) throws -> ExperimentSpec {
        try ConfigLoader.load(path: path(name), overrides: ["data.path=\(directory)"] + overrides)
    }

    /// The error thrown by loading a fixture (with `data.path` redirected unless `keepDataPath`);
    /// fails the test if loading succeeds.
    static func error(_ name: String, _ overrides: [String] = [], keepDataPath: Bool = false,
                      file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            if keepDataPath {
                _ = try ConfigLoader.load(path: path(name), overrides: overrides)
            } else {
                _ = try load(name, overrides)
            }
            XCTFail("loading \(name) succeeded", file: file, line: line)
        } catch let error as ConfigError {
            XCTAssertFalse(error.description.contains("\n"), "multi-line error: \(error)", file: file, line: line)
            return error
        } catch {
            XCTFail("unexpected error type: \(error)", file: file, line: line)
        }
        return nil
    }
}
