import GramMicroKernels
import GramSolver
import Testing

/// `symmetricTileProduct` against the plain double loop, for every column-group width (1 to 21
/// right-hand sides: 4, 8, 12, 16 and split groups), diagonal and off-diagonal tiles, float32
/// and float64 storage, on every instruction set this machine has.
@Suite("solver tile product against the scalar reference")
struct TileProductTests {
  /// With `ld`, the tile is read in place from a wider matrix (rows `ld` apart) whose other
  /// values are NaN, so a read outside the tile would show.
  func check<T: BinaryFloatingPoint>(_: T.Type, columns: Int, diagonal: Bool, isa: GramISA, ld: Int? = nil) -> (error: Double, bits: [UInt64]) {
    var g = SplitMix64(seed: UInt64(columns * 10 + (diagonal ? 1 : 0)))
    let n = 40
    let (m, w, r0, c0) = diagonal ? (13, 13, 5, 5) : (13, 11, 2, 21)
    // Symmetric diagonal tiles, as the solver stores them; adversarial magnitudes in K and x.
    var k = (0..<(m * w)).map { _ in T(g.unit() - 0.5) * (g.unit() < 0.1 ? T(1e6) : 1) }
    if diagonal { for i in 0..<m { for j in 0..<i { k[i * w + j] = k[j * w + i] } } }
    k[0] = 0
    let lanes = (columns + 3) / 4, p = 4 * lanes
    var x = [Double](repeating: 0, count: n * p)
    for i in 0..<n { for c in 0..<columns { x[i * p + c] = (g.unit() - 0.5) * (g.unit() < 0.1 ? 1e-6 : 1) } }
    var y = [Double](repeating: 0, count: n * p)
    for i in 0..<n { for c in 0..<columns { y[i * p + c] = g.unit() } }
    var expected = y
    for i in 0..<m {
      for j in 0..<w {
        let kij = Double(k[i * w + j])
        for c in 0..<columns {
          expected[(r0 + i) * p + c] += kij * x[(c0 + j) * p + c]
          if !diagonal { expected[(c0 + j) * p + c] += kij * x[(r0 + i) * p + c] }
        }
      }
    }
    var wide = [T](repeating: .nan, count: m * (ld ?? w))
    for i in 0..<m { for j in 0..<w { wide[i * (ld ?? w) + j] = k[i * w + j] } }
    wide.withUnsafeBufferPointer { kp in
      x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
          symmetricTileProduct(kp.baseAddress!, rows: m, cols: w, rowStart: r0, colStart: c0, diagonal: diagonal,
                               x: UnsafeRawPointer(xp.baseAddress!).assumingMemoryBound(to: SIMD4<Double>.self),
                               y: UnsafeMutableRawPointer(yp.baseAddress!).assumingMemoryBound(to: SIMD4<Double>.self),
                               lanes: lanes, ld: ld, isa: isa)
        }
      }
    }
    var worst = 0.0
    let scale = expected.map(abs).max()!
    for i in 0..<(n * p) { worst = max(worst, abs(y[i] - expected[i]) / scale) }
    // Padding columns stay zero.
    for i in 0..<n { for c in columns..<p { #expect(y[i * p + c] == 0) } }
    return (worst, y.map(\.bitPattern))
  }

  @Test("every width, both tile kinds, both storage types, every instruction set", arguments: Array(1...21))
  func agrees(columns: Int) {
    let isas = GramISA.allCases.filter(\.isSupported)
    for diagonal in [true, false] {
      for isFloat in [true, false] {
        let runs = isas.map { isFloat ? check(Float.self, columns: columns, diagonal: diagonal, isa: $0)
                                      : check(Double.self, columns: columns, diagonal: diagonal, isa: $0) }
        for (isa, r) in zip(isas, runs) {
          #expect(r.error < 1e-14, "\(columns) columns, diagonal \(diagonal), float32 \(isFloat), \(isa): error \(r.error)")
        }
        #expect(runs.allSatisfy { $0.bits == runs[0].bits }, "instruction sets differ at \(columns) columns")
      }
    }
  }

  @Test("a tile read in place from a wider matrix gives the packed tile's bits", arguments: [1, 4, 10, 12, 16, 21])
  func inPlace(columns: Int) {
    for isa in GramISA.allCases.filter(\.isSupported) {
      for diagonal in [true, false] {
        let packed32 = check(Float.self, columns: columns, diagonal: diagonal, isa: isa)
        let wide32 = check(Float.self, columns: columns, diagonal: diagonal, isa: isa, ld: 29)
        #expect(wide32.bits == packed32.bits, "float32, \(columns) columns, diagonal \(diagonal), \(isa)")
        let packed64 = check(Double.self, columns: columns, diagonal: diagonal, isa: isa)
        let wide64 = check(Double.self, columns: columns, diagonal: diagonal, isa: isa, ld: 13 + 1)
        #expect(wide64.bits == packed64.bits, "float64, \(columns) columns, diagonal \(diagonal), \(isa)")
      }
    }
  }
}

@Suite("OpenBLAS core type")
struct LinearAlgebraCoreTests {
  @Test("restart only when OpenBLAS picked kernels without AVX2 on a CPU that has it, never over the user's choice")
  func rule() {
    #expect(preferredLinearAlgebraCore(current: "Prescott", userChoice: false, avx512: true, avx2: true) == "SkylakeX")
    #expect(preferredLinearAlgebraCore(current: "Prescott", userChoice: false, avx512: false, avx2: true) == "Haswell")
    #expect(preferredLinearAlgebraCore(current: "Prescott", userChoice: false, avx512: false, avx2: false) == nil)
    #expect(preferredLinearAlgebraCore(current: "Prescott", userChoice: true, avx512: true, avx2: true) == nil)
    for good in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"] {
      #expect(preferredLinearAlgebraCore(current: good, userChoice: false, avx512: true, avx2: true) == nil, "\(good)")
    }
  }
}
