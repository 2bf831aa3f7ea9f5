// swift-tools-version:6.0
import PackageDescription

// Hot numerical code is built with -Ounchecked in release; run.sh adds -target-cpu native.
// -fno-math-errno: the standard library's Float.squareRoot() is a C inline function, which clang
// otherwise compiles for Linux as a sqrtf call that may set errno, so no loop or SIMD vector of
// square roots became vsqrtps (AdamW ran 16 scalar roots with branches per vector). Results are the
// same: the instruction is the correctly rounded root libm returns.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo", "-Xcc", "-fno-math-errno"], .when(configuration: .release))]

let package = Package(
    name: "Tessera",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Tessera", targets: ["Tessera"]),
        .executable(name: "tessera", targets: ["TesseraCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CHDF5Shim", dependencies: ["CHDF5"]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "CMPIShim", dependencies: ["CMPI"]),
        .target(name: "CDNNLShim", linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),
        .target(name: "TesseraCore", dependencies: ["CBLAS", "CDNNLShim", "CMPIShim"], swiftSettings: fast),
        .target(name: "TesseraHDF5", dependencies: ["CHDF5Shim", "CHDF5"]),
        .target(name: "TesseraConfig", dependencies: ["Yams"]),
        .target(name: "TesseraData", dependencies: ["TesseraCore", "CTurboJPEG", "CZlib"], swiftSettings: fast),
        .target(name: "Tessera",
                dependencies: ["TesseraCore", "TesseraHDF5", "TesseraConfig", "TesseraData",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: fast),
        .executableTarget(name: "TesseraCLI",
                          dependencies: ["Tessera", "TesseraCore", "TesseraData", "TesseraConfig", "TesseraHDF5",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "TesseraCoreTests", dependencies: ["TesseraCore", "TesseraHDF5"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TesseraHDF5Tests", dependencies: ["TesseraHDF5"], exclude: ["Fixtures"]),
        .testTarget(name: "TesseraConfigTests", dependencies: ["TesseraConfig"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TesseraDataTests", dependencies: ["TesseraData", "TesseraHDF5"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TesseraTests", dependencies: ["Tessera", "TesseraCore", "TesseraHDF5", "TesseraConfig", "TesseraData"],
                    resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
