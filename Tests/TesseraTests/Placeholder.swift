import XCTest
final class TesseraTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
