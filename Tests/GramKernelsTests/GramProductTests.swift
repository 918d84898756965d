import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// Shapes that cross every blocking boundary: the 6-row register block, the 2w-column panels,
/// the 72-row cache block and the k blocks (64 … 256 deep).
let gramShapes: [(rows: Int, cols: Int, depth: Int)] = [
  (1, 1, 1), (5, 3, 2), (7, 13, 65), (73, 45, 300), (150, 70, 530), (20, 33, 0),
]

/// Gaussian rows with a zero row, a huge and a tiny one among them.
func gramRows<T: BinaryFloatingPoint>(_: T.Type, count: Int, depth: Int, seed: UInt64) -> [T] {
  var g = SplitMix64(seed: seed)
  var v = (0..<(count * depth)).map { _ in T((-2 * log(g.unit())).squareRoot() * cos(2 * .pi * g.unit())) }
  if count > 3 {
    for k in 0..<depth {
      v[1 * depth + k] = 0
      v[2 * depth + k] *= T(1e15)
      v[3 * depth + k] *= T(1e-15)
    }
  }
  return v
}

@Suite("packed Gram product against the sequential chain")
struct GramProductTests {
  /// Runs `gram` on `isa` and checks every entry (every entry with `j ≥ i − r` when
  /// `upperFrom = r`) bit for bit against `sequentialDot`.
  func check<T: BinaryFloatingPoint>(_: T.Type, isa: GramISA, rows m: Int, cols n: Int, depth: Int, upper: Bool) {
    let a = gramRows(T.self, count: m, depth: depth, seed: UInt64(m * 1000 + n * 10 + depth))
    let b = upper ? a : gramRows(T.self, count: n, depth: depth, seed: UInt64(n * 7 + depth))
    let cols = upper ? m : n
    let np = GramShape.paddedCols(cols)
    var c = [T](repeating: .nan, count: GramShape.blockRows * np)
    var ws = [T](repeating: .nan, count: GramShape.workspace(cols: cols, depth: depth))
    let r = 3
    var checked = 0, wrong = 0
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        c.withUnsafeMutableBufferPointer { cp in
          ws.withUnsafeMutableBufferPointer { wp in
            gram(ap.baseAddress!, aStride: depth, rows: m, bp.baseAddress!, bStride: depth, cols: cols, depth: depth,
                 into: cp.baseAddress!, ldc: np, workspace: wp.baseAddress!, upperFrom: upper ? r : nil, isa: isa) { block in
              for i in block {
                for j in (upper ? max(0, i - r) : 0)..<cols {
                  let expected = depth == 0 ? T.zero
                    : sequentialDot(ap.baseAddress! + i * depth, bp.baseAddress! + j * depth, depth: depth)
                  let got = cp[(i - block.lowerBound) * np + j]
                  checked += 1
                  if got != expected && !(got.isNaN && expected.isNaN) { wrong += 1 }
                }
              }
            }
          }
        }
      }
    }
    #expect(checked > 0)
    #expect(wrong == 0, "\(T.self) \(isa) \(m)×\(cols)×\(depth) upper=\(upper): \(wrong) of \(checked) entries differ")
  }

  @Test("every supported instruction set, float64 and float32, every shape, full and upper",
        arguments: GramISA.allCases.filter(\.isSupported))
  func bitIdentical(isa: GramISA) {
    for s in gramShapes {
      for upper in [false, true] {
        check(Double.self, isa: isa, rows: s.rows, cols: s.cols, depth: s.depth, upper: upper)
        check(Float.self, isa: isa, rows: s.rows, cols: s.cols, depth: s.depth, upper: upper)
      }
    }
  }

  @Test("this machine runs the widest instruction set it has")
  func detection() {
    #expect(GramISA.avx2.isSupported, "the build needs AVX2 + FMA")
    if ProcessInfo.processInfo.environment["NTKGRAM_ISA"] == nil {
      #expect(GramISA.current == (GramISA.avx512.isSupported ? .avx512 : .avx2))
    }
  }
}

@Suite("diagonal tiles and dot-product precision")
struct TileShapeTests {
  /// A tile through `computeTile` or `computeUpperTile`, row-major.
  func run(_ net: FullyConnected, _ f: FCFeatures, rows: Range<Int>, cols: Range<Int>, upper: Bool) -> (nngp: [Double], ntk: [Double]) {
    let m = rows.count, n = cols.count
    var nngp = [Double](repeating: .nan, count: m * n), ntk = nngp
    var scratch = [Double](repeating: .nan, count: net.scratchCount(f, rows: m, cols: n))
    nngp.withUnsafeMutableBufferPointer { np in
      ntk.withUnsafeMutableBufferPointer { tp in
        scratch.withUnsafeMutableBufferPointer { sp in
          let out = TileOutput(values: [tp.baseAddress!, np.baseAddress!], leadingDimension: n)
          if upper { net.computeUpperTile(f, rows: rows, into: out, scratch: sp) }
          else { net.computeTile(f, rows: rows, f, cols: cols, into: out, scratch: sp) }
        }
      }
    }
    return (nngp, ntk)
  }

  func data(rows: Int, d: Int, seed: UInt64) -> Matrix {
    var g = SplitMix64(seed: seed)
    // Pixel-like non-negative rows, with a repeated row.
    var v = (0..<(rows * d)).map { _ in g.unit() < 0.4 ? 0 : g.unit() }
    for k in 0..<d { v[5 * d + k] = v[80 * d + k] }
    return Matrix(rows: rows, cols: d, values: v)
  }

  @Test("an upper diagonal tile equals the full tile on j ≥ i, bit for bit, in both precisions")
  func upperMatchesFull() {
    for precision in GramPrecision.allCases {
      for (k, base) in [sampleNetworks[0], sampleNetworks[2], sampleNetworks[6]].enumerated() {
        var net = base
        net.gramPrecision = precision
        let f = net.prepare(data(rows: 160, d: 70 + k, seed: UInt64(k)))
        for rows in [0..<160, 3..<150, 77..<81] {
          let full = run(net, f, rows: rows, cols: rows, upper: false)
          let up = run(net, f, rows: rows, cols: rows, upper: true)
          let n = rows.count
          var wrong = 0
          for i in 0..<n {
            for j in i..<n where full.ntk[i * n + j].bitPattern != up.ntk[i * n + j].bitPattern
              || full.nngp[i * n + j].bitPattern != up.nngp[i * n + j].bitPattern { wrong += 1 }
          }
          #expect(wrong == 0, "\(precision) network \(k) rows \(rows): \(wrong) entries differ")
          #expect(full.ntk.allSatisfy(\.isFinite) && full.nngp.allSatisfy(\.isFinite))
        }
      }
    }
  }

  @Test("every instruction set gives the same bits, for every activation and both precisions")
  func instructionSetsAgree() {
    let isas = GramISA.allCases.filter(\.isSupported)
    for precision in GramPrecision.allCases {
      for (k, base) in sampleNetworks.enumerated() {
        var net = base
        net.gramPrecision = precision
        let f = net.prepare(data(rows: 90, d: 40 + k, seed: UInt64(20 + k)))
        for upper in [false, true] {
          var results: [[UInt64]] = []
          for isa in isas {
            let n = 90
            var nngp = [Double](repeating: .nan, count: n * n), ntk = nngp
            var scratch = [Double](repeating: .nan, count: net.scratchCount(f, rows: n, cols: n))
            nngp.withUnsafeMutableBufferPointer { np in
              ntk.withUnsafeMutableBufferPointer { tp in
                scratch.withUnsafeMutableBufferPointer { sp in
                  net.tile(f, rows: 0..<n, f, cols: 0..<n, into: TileOutput(values: [tp.baseAddress!, np.baseAddress!], leadingDimension: n),
                           scratch: sp, upper: upper, isa: isa)
                }
              }
            }
            let kept = (0..<(n * n)).filter { !upper || $0 % n >= $0 / n }
            results.append(kept.map { nngp[$0].bitPattern } + kept.map { ntk[$0].bitPattern })
          }
          #expect(results.allSatisfy { $0 == results[0] }, "\(precision) network \(k) upper=\(upper): instruction sets differ")
        }
      }
    }
  }

  @Test("float32 dot products: error against the float64 kernel is that of float32 rounding")
  func float32Error() {
    let d = 784
    let x = data(rows: 96, d: d, seed: 11)
    for base in [sampleNetworks[0], sampleNetworks[2], sampleNetworks[6]] {
      var net32 = base
      net32.gramPrecision = .float32
      let f64 = base.prepare(x), f32 = net32.prepare(x)
      let k64 = run(base, f64, rows: 0..<96, cols: 0..<96, upper: false)
      let k32 = run(net32, f32, rows: 0..<96, cols: 0..<96, upper: false)
      var worst = 0.0, identical = true
      for i in 0..<96 {
        for j in 0..<96 {
          for (a, b, diag) in [(k32.ntk, k64.ntk, k64.ntk), (k32.nngp, k64.nngp, k64.nngp)] {
            let scale = (diag[i * 96 + i] * diag[j * 96 + j]).squareRoot()
            let err = abs(a[i * 96 + j] - b[i * 96 + j]) / scale
            worst = max(worst, err)
          }
          if k32.ntk[i * 96 + j] != k64.ntk[i * 96 + j] { identical = false }
        }
      }
      // Rows rounded to float32 (2⁻²⁴ relative) and 784-term float32 sums: ~1e-6 relative;
      // the bound leaves room for the √-conditioning of nearly parallel rows, not for a bug.
      #expect(worst < 1e-4, "\(base): max relative error \(worst)")
      #expect(worst > 1e-9, "float32 dot products should differ from float64 ones (\(worst))")
      #expect(!identical)
      // Identical rows still take the exact θ = 0 value.
      #expect(k32.ntk[5 * 96 + 80] == f32.diagonalNTK[5])
    }
  }
}
