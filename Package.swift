// swift-tools-version:6.0
import PackageDescription

/// Vector code: the math kernels must get AVX2 + FMA (a default build is SSE2 only and turns
/// SIMD fused multiply-adds into libm calls). See docs/DESIGN.md, "Build flags".
let vectorFlags: [SwiftSetting] = [
  .unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma"]),
]

/// The AVX-512 instantiation of the packed Gram product; its code runs only after a CPU check.
let avx512Flags: [SwiftSetting] = [
  .unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mavx512f", "-Xcc", "-mavx512vl", "-Xcc", "-mavx512dq"]),
]

let package = Package(
  name: "NTKGram",
  products: [
    .executable(name: "ntkgram", targets: ["ntkgram"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
  ],
  targets: [
    // MARK: System-library shims (static-inline getters for C macros, nothing else)
    .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
    .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CFileIO"),
    .systemLibrary(name: "CLAPACK", providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),

    // MARK: Implementation (arrows point one way; docs/DESIGN.md draws the graph)
    .target(name: "CSIMDSupport"),
    .target(name: "GramMicroKernels", dependencies: ["CSIMDSupport"]),
    .target(name: "GramMicroKernelsAVX512", dependencies: ["GramMicroKernels"], swiftSettings: avx512Flags),
    .target(name: "GramNetwork"),
    .target(name: "GramKernels", dependencies: ["CSIMDSupport", "GramMicroKernels", "GramMicroKernelsAVX512", "GramNetwork"],
            swiftSettings: vectorFlags),
    .target(name: "GramTiling"),
    .target(name: "GramTransport", dependencies: ["CMPI"]),
    .target(name: "GramStorage", dependencies: ["CHDF5", "CZlib", "CFileIO"]),
    .target(name: "GramEvents"),
    .target(name: "GramData", dependencies: ["CLAPACK", "GramKernels", "GramStorage"], swiftSettings: vectorFlags),
    .target(name: "GramSolver", dependencies: ["CLAPACK", "GramMicroKernels", "GramMicroKernelsAVX512"], swiftSettings: vectorFlags),
    .target(
      name: "GramBuild",
      dependencies: ["GramData", "GramEvents", "GramKernels", "GramMicroKernels", "GramNetwork", "GramStorage", "GramTiling", "GramTransport"],
      swiftSettings: vectorFlags),
    .target(
      name: "GramAnalysis",
      dependencies: ["CLAPACK", "GramEvents", "GramMicroKernels", "GramSolver", "GramStorage", "GramTiling", "GramTransport"],
      swiftSettings: vectorFlags),
    .target(
      name: "GramTraining",
      dependencies: ["CLAPACK", "GramAnalysis", "GramBuild", "GramData", "GramEvents", "GramKernels", "GramNetwork", "GramSolver",
                     "GramStorage", "GramTransport"]),
    .target(name: "GramPlot", dependencies: ["CZlib", "GramStorage"]),
    .target(
      name: "GramJobs",
      dependencies: ["GramBuild", "GramData", "GramKernels", "GramNetwork", "GramStorage",
                     .product(name: "TOMLKit", package: "TOMLKit")]),
    .target(
      name: "NTKGramBench",
      dependencies: ["CLAPACK", "GramAnalysis", "GramBuild", "GramKernels", "GramMicroKernels", "GramSolver", "GramStorage", "GramTiling"],
      swiftSettings: vectorFlags),
    .executableTarget(
      name: "ntkgram",
      dependencies: [
        "GramAnalysis", "GramBuild", "GramEvents", "GramJobs", "GramPlot", "GramStorage", "GramTraining", "GramTransport", "NTKGramBench",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),

    // MARK: Tests
    .testTarget(name: "GramKernelsTests", dependencies: ["GramKernels", "GramMicroKernels", "GramNetwork"],
                resources: [.copy("Fixtures")], swiftSettings: vectorFlags),
    .testTarget(name: "GramNetworkTests", dependencies: ["GramNetwork"]),
    .testTarget(name: "GramSolverTests", dependencies: ["GramSolver", "GramMicroKernels", "GramTransport"], swiftSettings: vectorFlags),
    .testTarget(name: "GramStorageTests", dependencies: ["GramStorage"]),
    .testTarget(name: "GramPlotTests", dependencies: ["GramPlot", "CZlib"]),
    .testTarget(name: "GramTilingTests", dependencies: ["GramTiling"]),
    .testTarget(name: "GramTransportTests", dependencies: ["GramTransport"]),
    .testTarget(name: "GramBuildTests", dependencies: ["GramAnalysis", "GramBuild", "GramData", "GramEvents", "GramNetwork", "GramSolver", "GramStorage", "GramTraining", "GramTransport", "GramTiling"]),
    .testTarget(name: "NTKGramCLITests", dependencies: ["ntkgram", "GramStorage", "GramTiling"]),
  ]
)
