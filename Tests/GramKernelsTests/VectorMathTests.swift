import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

@Suite("vectorised elementary functions")
struct VectorMathTests {
  /// Largest |atan2_simd − atan2_libm| over a set of (y, x) pairs, in units of π·ε, on
  /// vectors of type `V` (4 lanes: the AVX2 recursion; 8: the AVX-512 one).
  func maxError<V: RecursionVector>(_: V.Type, _ pairs: [(Double, Double)]) -> Double {
    var worst = 0.0
    var k = 0
    let w = V.scalarCount
    while k < pairs.count {
      var y = V(), x = V()
      for l in 0..<w { let p = pairs[min(k + l, pairs.count - 1)]; y[l] = p.0; x[l] = p.1 }
      let r = vectorAtan2(y, x)
      for l in 0..<w where k + l < pairs.count {
        let ref = Foundation.atan2(y[l], x[l])
        worst = max(worst, abs(r[l] - ref) / (Double.pi * Double.ulpOfOne))
      }
      k += w
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
    for err in [maxError(SIMD4<Double>.self, pairs), maxError(SIMD8<Double>.self, pairs)] {
      #expect(err <= 4, "max error \(err) × π·ε")
    }
  }

  @Test("atan2(0, 0) is 0, matching libm")
  func atan2Zero() {
    #expect(vectorAtan2(Lanes(repeating: 0), Lanes(repeating: 0)) == Lanes(repeating: 0))
    #expect(vectorAtan2(SIMD8<Double>(repeating: 0), SIMD8<Double>(repeating: 0)) == SIMD8(repeating: 0))
  }

  @Test("vector sqrt, max, min and compare-and-blend equal the scalar operations lane by lane, bit for bit")
  func sqrtMaxMin() {
    var g = SplitMix64(seed: 5)
    var values: [Double] = [0, -0.0, 1, 4, 2, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
                            1e-300, 1e300, .infinity, 0.5, 3]
    for _ in 0..<4000 { values.append(pow(10, 600 * g.unit() - 300) * g.unit()) }
    func check<V: RecursionVector>(_: V.Type) {
      let w = V.scalarCount
      var k = 0
      while k + 2 * w <= values.count {
        var x = V(), y = V(), a = V(), b = V()
        for l in 0..<w {
          x[l] = values[k + l]; y[l] = (l % 2 == 0 ? 1 : -1) * values[k + w + l]
          a[l] = Double(l); b[l] = -Double(l)
        }
        let r = V.sqrt(x), hi = V.max(x, y), lo = V.min(x, y), pick = V.select(a, b, where: x, isGreaterThan: y)
        for l in 0..<w {
          #expect(r[l].bitPattern == x[l].squareRoot().bitPattern, "sqrt(\(x[l]))")
          #expect(hi[l] == Swift.max(x[l], y[l]) && lo[l] == Swift.min(x[l], y[l]), "max/min(\(x[l]), \(y[l]))")
          #expect(pick[l] == (x[l] > y[l] ? b[l] : a[l]), "select at \(x[l]) > \(y[l])")
        }
        k += 2 * w
      }
      // Negative arguments give NaN, as the scalar square root does.
      #expect(V.sqrt(V(repeating: -1))[0].isNaN)
    }
    check(SIMD4<Double>.self)
    check(SIMD8<Double>.self)
  }
}
