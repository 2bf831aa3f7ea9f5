import XCTest
final class TesseraConfigTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
