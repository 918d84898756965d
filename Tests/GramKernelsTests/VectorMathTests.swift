import Foundation
import GramMicroKernels
import Testing
@testable import GramKernels

@Suite("vectorised elementary functions")
struct VectorMathTests {
  /// Largest |atan2_simd − atan2_libm| over a set of (y, x) pairs, in units of π·ε.
  func maxError(_ pairs: [(Double, Double)]) -> Double {
    var worst = 0.0
    var k = 0
    while k < pairs.count {
      var y = Lanes(), x = Lanes()
      for l in 0..<4 { let p = pairs[min(k + l, pairs.count - 1)]; y[l] = p.0; x[l] = p.1 }
      let r = GramKernels.atan2(y, x)
      for l in 0..<4 where k + l < pairs.count {
        let ref = Foundation.atan2(y[l], x[l])
        worst = max(worst, abs(r[l] - ref) / (Double.pi * Double.ulpOfOne))
      }
      k += 4
    }
    return worst
  }

  @Test("atan2 agrees with libm to a few ulp of π over the whole plane")
  func atan2WholeRange() {
    var rng = SystemRandomNumberGenerator()
    var pairs: [(Double, Double)] = []
    for _ in 0..<20_000 {
      let angle = Double.random(in: -Double.pi...Double.pi, using: &rng)
      let r = pow(10, Double.random(in: -300...300, using: &rng))
      pairs.append((r * sin(angle), r * cos(angle)))
    }
    // Octant and quadrant boundaries, tiny angles near 0 and π, zeros.
    for e in stride(from: -300.0, through: 0, by: 1) {
      let t = pow(10, e)
      pairs += [(t, 1), (t, -1), (1, t), (1, -t), (-t, 1), (-t, -1), (t, t), (tanPiOverEight * (1 + t), 1)]
    }
    pairs += [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (0, Double.leastNonzeroMagnitude)]
    let err = maxError(pairs)
    #expect(err <= 4, "max error \(err) × π·ε")
  }

  @Test("atan2(0, 0) is 0, matching libm")
  func atan2Zero() {
    let r = GramKernels.atan2(Lanes(repeating: 0), Lanes(repeating: 0))
    #expect(r == Lanes(repeating: 0))
  }

  @Test("vector sqrt, max and min equal the scalar operations lane by lane, bit for bit")
  func sqrtMaxMin() {
    var g = SplitMix64(seed: 5)
    var values: [Double] = [0, -0.0, 1, 4, 2, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
                            1e-300, 1e300, .infinity, 0.5, 3]
    for _ in 0..<4000 { values.append(pow(10, 600 * g.unit() - 300) * g.unit()) }
    var k = 0
    while k + 8 <= values.count {
      var x = Lanes(), y = Lanes()
      for l in 0..<4 { x[l] = values[k + l]; y[l] = (l % 2 == 0 ? 1 : -1) * values[k + 4 + l] }
      let r = GramKernels.sqrt(x), hi = GramKernels.max(x, y), lo = GramKernels.min(x, y)
      for l in 0..<4 {
        #expect(r[l].bitPattern == x[l].squareRoot().bitPattern, "sqrt(\(x[l]))")
        #expect(hi[l] == Swift.max(x[l], y[l]) && lo[l] == Swift.min(x[l], y[l]), "max/min(\(x[l]), \(y[l]))")
      }
      k += 8
    }
    // Negative arguments give NaN, as the scalar square root does.
    #expect(GramKernels.sqrt(Lanes(repeating: -1))[0].isNaN)
  }
}
