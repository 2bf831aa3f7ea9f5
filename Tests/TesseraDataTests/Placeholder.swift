import XCTest
final class TesseraDataTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
