import Foundation
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
}
