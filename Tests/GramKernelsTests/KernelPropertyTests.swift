import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// Smallest pivot of the Cholesky factorisation of `a + shift·I` (negative or NaN: not PD).
func smallestCholeskyPivot(_ a: [[Double]], shift: Double) -> Double {
  let n = a.count
  var l = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
  var smallest = Double.infinity
  for j in 0..<n {
    var s = a[j][j] + shift
    for k in 0..<j { s -= l[j][k] * l[j][k] }
    smallest = min(smallest, s)
    guard s > 0 else { return s }
    l[j][j] = s.squareRoot()
    for i in (j + 1)..<n {
      var t = a[i][j]
      for k in 0..<j { t -= l[i][k] * l[j][k] }
      l[i][j] = t / l[j][j]
    }
  }
  return smallest
}

@Suite("kernel properties")
struct KernelPropertyTests {
  @Test("the train kernel is exactly symmetric and its NNGP positive definite", arguments: sampleNetworks.indices)
  func symmetricAndPSD(networkIndex: Int) {
    let net = sampleNetworks[networkIndex]
    var g = SplitMix64(seed: UInt64(networkIndex))
    let rows = (0..<60).map { _ in (0..<10).map { _ in g.unit() * 2 - 1 } }
    let k = tileKernel(net, rows, rows)
    for i in rows.indices { for j in rows.indices {
      #expect(k.ntk[i][j].bitPattern == k.ntk[j][i].bitPattern)
      #expect(k.nngp[i][j].bitPattern == k.nngp[j][i].bitPattern)
    } }
    #expect(smallestCholeskyPivot(k.nngp, shift: 1e-10) > 0)
  }

  @Test("K(test, train) equals the matching block of K over the concatenated data")
  func crossBlock() {
    let net = sampleNetworks[3]
    var g = SplitMix64(seed: 11)
    let train = (0..<23).map { _ in (0..<6).map { _ in g.unit() - 0.5 } }
    let test = (0..<9).map { _ in (0..<6).map { _ in g.unit() - 0.5 } }
    let cross = tileKernel(net, test, train)
    let all = tileKernel(net, train + test, train + test)
    for i in test.indices { for j in train.indices {
      #expect(cross.ntk[i][j] == all.ntk[train.count + i][j])
      #expect(cross.nngp[i][j] == all.nngp[train.count + i][j])
    } }
  }

  @Test("validation rejects impossible networks")
  func validation() {
    #expect(throws: KernelSpecError.self) { try FullyConnected(depth: 1, activation: .relu, wStd: 1, bStd: 0, width: 0).validate() }
    #expect(throws: KernelSpecError.self) { try FullyConnected(depth: 1, activation: .leakyReLU(slope: .nan), wStd: 1, bStd: 0).validate() }
    #expect(throws: KernelSpecError.self) { try FullyConnected(depth: 1, activation: .relu, wStd: -1, bStd: 0).validate() }
    #expect(throws: KernelSpecError.self) { try FullyConnected(depth: 1, activation: .relu, wStd: 1, bStd: -0.1).validate() }
    #expect(throws: Never.self) { try FullyConnected(depth: 1, activation: .relu, wStd: 1, bStd: nil).validate() }
  }
}
