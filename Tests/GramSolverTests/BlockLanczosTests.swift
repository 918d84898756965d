import Foundation
import Testing
@testable import GramSolver

/// A dense symmetric matrix as an operator.
final class DenseOperator: KernelOperator {
  let matrix: DenseBlock
  var passes = 0
  init(_ matrix: DenseBlock) { self.matrix = matrix }
  var n: Int { matrix.rows }
  var diagonal: [Double] { (0..<n).map { matrix[$0, $0] } }
  func apply(_ x: DenseBlock) throws -> DenseBlock { passes += 1; return matrix.times(x) }
}

/// A random positive semi-definite `n × n` matrix of rank `rank` with a decaying spectrum.
func randomKernel(n: Int, rank: Int, seed: UInt64) -> DenseBlock {
  var state = seed
  func next() -> Double {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    return Double(state >> 11) / Double(1 << 53) - 0.5
  }
  var a = DenseBlock(rows: n, cols: rank)
  for i in 0..<n { for j in 0..<rank { a[i, j] = next() / Double(j + 1) } }
  var k = DenseBlock(rows: n, cols: n)
  for i in 0..<n { for j in 0..<n {
    var s = 0.0
    for l in 0..<rank { s += a[i, l] * a[j, l] }
    k[i, j] = s
  } }
  return k
}

func randomBlock(rows: Int, cols: Int, seed: UInt64) -> DenseBlock {
  var state = seed
  var b = DenseBlock(rows: rows, cols: cols)
  for i in b.values.indices {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    b.values[i] = Double(state >> 11) / Double(1 << 53) - 0.5
  }
  return b
}

/// `V·diag(f(λ))·Vᵀ·Y` from a dense eigendecomposition.
func denseFunction(_ k: DenseBlock, _ y: DenseBlock, _ f: (Double) -> Double) throws -> DenseBlock {
  let (values, vectors) = try symmetricEigen(k)
  var coefficients = vectors.transposeTimes(y)
  for i in 0..<coefficients.rows { for j in 0..<coefficients.cols { coefficients[i, j] *= f(values[i]) } }
  return vectors.times(coefficients)
}

func relativeError(_ a: DenseBlock, _ b: DenseBlock) -> Double {
  let d = (a - b).values.reduce(0) { $0 + $1 * $1 }.squareRoot()
  return d / max(b.values.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-300)
}

@Suite struct BlockLanczosTests {
  /// Runs to exhaustion: the basis spans everything reachable, so functions of T are exact.
  @Test func exhaustedSpaceGivesExactFunctionsAndEigenvalues() throws {
    let n = 90
    let k = randomKernel(n: n, rank: n, seed: 7)
    let y = randomBlock(rows: n, cols: 3, seed: 11)
    let lanczos = try BlockLanczos(start: y)
    let op = DenseOperator(k)
    while let block = lanczos.pendingBlock() { try lanczos.advance(try op.apply(block)) }
    #expect(lanczos.exhausted)
    #expect(lanczos.dimension == n)
    #expect(lanczos.orthogonalityLoss() < 1e-12)
    let (theta, s) = try lanczos.ritz()
    let (lambda, _) = try symmetricEigen(k)
    for (a, b) in zip(theta, lambda) { #expect(abs(a - b) <= 1e-10 * lambda.last!) }
    // exp(−K)·Y through the basis: Q·S·exp(−Θ)·Sᵀ·E₁R₀.
    var g = DenseBlock(rows: lanczos.dimension, cols: y.cols)
    let r0 = lanczos.startCoefficients
    for i in 0..<r0.rows { for j in 0..<r0.cols { g[i, j] = r0[i, j] } }
    var c = s.transposeTimes(g)
    for i in 0..<c.rows { for j in 0..<c.cols { c[i, j] *= exp(-theta[i]) } }
    let approx = lanczos.combine(s.times(c))
    let exact = try denseFunction(k, y) { exp(-$0) }
    #expect(relativeError(approx, exact) < 1e-12)
  }

  /// A kernel of rank 4 and a start block with a repeated column: the block shrinks and the
  /// space is exhausted after a few steps, with T's eigenvalues the nonzero ones reachable.
  @Test func dependentDirectionsAreDropped() throws {
    let n = 60
    let k = randomKernel(n: n, rank: 4, seed: 3)
    var y = randomBlock(rows: n, cols: 3, seed: 5)
    for i in 0..<n { y[i, 2] = 2 * y[i, 0] }
    let lanczos = try BlockLanczos(start: y)
    #expect(lanczos.blockSizes == [2])
    let op = DenseOperator(k)
    var steps = 0
    while let block = lanczos.pendingBlock(), steps < 20 { try lanczos.advance(try op.apply(block)); steps += 1 }
    #expect(lanczos.exhausted)
    #expect(lanczos.dimension <= 2 + 4)
    #expect(lanczos.orthogonalityLoss() < 1e-12)
    // K·Y is reproduced exactly from the basis.
    let (theta, s) = try lanczos.ritz()
    var g = DenseBlock(rows: lanczos.dimension, cols: y.cols)
    let r0 = lanczos.startCoefficients
    for i in 0..<r0.rows { for j in 0..<r0.cols { g[i, j] = r0[i, j] } }
    var c = s.transposeTimes(g)
    for i in 0..<c.rows { for j in 0..<c.cols { c[i, j] *= theta[i] } }
    #expect(relativeError(lanczos.combine(s.times(c)), k.times(y)) < 1e-12)
  }

  /// Before exhaustion the Krylov relation K·Q = Q·T + Q_{m+1}·B·E_mᵀ holds to round-off.
  @Test func krylovRelationHolds() throws {
    let n = 150
    let k = randomKernel(n: n, rank: n, seed: 13)
    let lanczos = try BlockLanczos(start: randomBlock(rows: n, cols: 4, seed: 17))
    let op = DenseOperator(k)
    for _ in 0..<6 { try lanczos.advance(try op.apply(lanczos.pendingBlock()!)) }
    let m = lanczos.dimension
    #expect(m == 24)
    let q = lanczos.combine(identity(m))
    let t = lanczos.projectedMatrix()
    var lhs = k.times(q)
    lhs.add(q.times(t), scale: -1)
    // The remainder lives in the pending block's span, in the last block's columns only.
    let (b, offset) = lanczos.lastCoupling()!
    let pending = lanczos.pendingBlock()!
    var rhs = DenseBlock(rows: n, cols: m)
    let pb = pending.times(b)
    for i in 0..<n { for j in 0..<b.cols { rhs[i, offset + j] = pb[i, j] } }
    #expect(relativeError(lhs, rhs) < 1e-10)
  }

  func identity(_ m: Int) -> DenseBlock {
    var e = DenseBlock(rows: m, cols: m)
    for i in 0..<m { e[i, i] = 1 }
    return e
  }
}

@Suite struct WorstValueTests {
  /// `Array.max()` skips a NaN or not depending on its position; a residual report must not.
  @Test func nanAnywhereIsNaN() {
    #expect(worstValue([]) == 0)
    #expect(worstValue([1e-3, 2e-7]) == 1e-3)
    for position in 0..<3 {
      var v = [1e-3, 2e-7, 5e-4]
      v[position] = .nan
      #expect(worstValue(v).isNaN)
    }
    #expect(worstValue([.infinity, 1]) == .infinity)
  }
}
