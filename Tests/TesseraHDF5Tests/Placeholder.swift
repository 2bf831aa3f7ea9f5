import XCTest
final class TesseraHDF5TestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
