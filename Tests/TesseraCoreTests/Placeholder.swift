import XCTest
final class TesseraCoreTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
