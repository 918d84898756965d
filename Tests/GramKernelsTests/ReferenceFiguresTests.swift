import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// neural-tangents 0.6.5 float64 figures for eight networks (Tests/GramKernelsTests/Fixtures/fc_kernels.json).
struct ReferenceFigures: Decodable {
  struct Case: Decodable {
    let depth: Int
    let activation: String
    let W_std: Double
    let b_std: Double?
    let parameterization: String
    let width: Int
    let ntk_k11: [[Double]]
    let ntk_k12: [[Double]]
    let nngp_k11: [[Double]]
    let nngp_k12: [[Double]]
    let ntk_k11_diag_exact: [Double]
    let nngp_k11_diag_exact: [Double]

    var network: FullyConnected {
      let act: Activation
      if activation.hasPrefix("leaky_relu_") {
        act = .leakyReLU(slope: Double(activation.dropFirst("leaky_relu_".count))!)
      } else {
        act = Activation(name: activation)!
      }
      return FullyConnected(depth: depth, activation: act, wStd: W_std, bStd: b_std,
                            parameterization: Parameterization(rawValue: parameterization)!, width: width)
    }
  }
  let x1: [[Double]]
  let x2: [[Double]]
  let cases: [Case]

  static func load() throws -> ReferenceFigures {
    let url = try #require(Bundle.module.url(forResource: "fc_kernels", withExtension: "json", subdirectory: "Fixtures"))
    return try JSONDecoder().decode(ReferenceFigures.self, from: Data(contentsOf: url))
  }
}

/// `|a − b| / (|b| + 0.01·max|K|)`: entries near zero are judged against the kernel's scale.
func relativeError(_ a: Double, _ b: Double, scale: Double) -> Double {
  abs(a - b) / (abs(b) + 0.01 * scale)
}

/// The SIMD tile kernel over whole matrices, as the build runs it.
func tileKernel(_ net: FullyConnected, _ x: [[Double]], _ y: [[Double]]) -> (nngp: [[Double]], ntk: [[Double]]) {
  let d = x[0].count
  let a = net.prepare(Matrix(rows: x.count, cols: d, values: x.flatMap { $0 }))
  let b = net.prepare(Matrix(rows: y.count, cols: d, values: y.flatMap { $0 }))
  var nngp = [Double](repeating: .nan, count: x.count * y.count)
  var ntk = nngp
  var scratch = [Double](repeating: 0, count: net.scratchCount(a, rows: x.count, cols: y.count))
  nngp.withUnsafeMutableBufferPointer { np in
    ntk.withUnsafeMutableBufferPointer { tp in
      scratch.withUnsafeMutableBufferPointer { sp in
        net.computeTile(a, rows: 0..<x.count, b, cols: 0..<y.count,
                        into: TileOutput(values: [tp.baseAddress!, np.baseAddress!], leadingDimension: y.count),
                        scratch: sp)
      }
    }
  }
  let rows = { (v: [Double]) in (0..<x.count).map { Array(v[$0 * y.count ..< ($0 + 1) * y.count]) } }
  return (rows(nngp), rows(ntk))
}

@Suite("neural-tangents reference figures")
struct ReferenceFiguresTests {
  static let figures = try! ReferenceFigures.load()

  @Test("every case, both kernels, k11 and k12", arguments: 0..<8)
  func matchesReference(caseIndex: Int) throws {
    let f = Self.figures
    let c = f.cases[caseIndex]
    let net = c.network
    try net.validate()
    let k11 = tileKernel(net, f.x1, f.x1)
    let k12 = tileKernel(net, f.x1, f.x2)
    for (name, ours11, ref11, ours12, ref12, diag) in [
      ("ntk", k11.ntk, c.ntk_k11, k12.ntk, c.ntk_k12, c.ntk_k11_diag_exact),
      ("nngp", k11.nngp, c.nngp_k11, k12.nngp, c.nngp_k12, c.nngp_k11_diag_exact),
    ] {
      let scale11 = ref11.flatMap { $0 }.map(abs).max()!
      for i in ref11.indices {
        for j in ref11.indices {
          let (ref, tol): (Double, Double)
          if i == j { (ref, tol) = (diag[i], 1e-13) }
          else if Set([i, j]) == [1, 4] { (ref, tol) = (ref11[i][j], 1e-7) }  // nearly parallel pair
          else { (ref, tol) = (ref11[i][j], 1e-12) }
          let err = relativeError(ours11[i][j], ref, scale: scale11)
          #expect(err <= tol, "case \(caseIndex) \(c.activation) \(name) k11[\(i)][\(j)]: \(ours11[i][j]) vs \(ref) (rel \(err))")
        }
      }
      let scale12 = ref12.flatMap { $0 }.map(abs).max()!
      for i in ref12.indices {
        for j in ref12[i].indices {
          let err = relativeError(ours12[i][j], ref12[i][j], scale: scale12)
          #expect(err <= 1e-12, "case \(caseIndex) \(c.activation) \(name) k12[\(i)][\(j)]: \(ours12[i][j]) vs \(ref12[i][j]) (rel \(err))")
        }
      }
    }
  }

  @Test("the scalar reference kernel matches the figures too", arguments: 0..<8)
  func scalarReferenceMatches(caseIndex: Int) {
    let f = Self.figures
    let c = f.cases[caseIndex]
    let net = c.network
    let scale = c.ntk_k12.flatMap { $0 }.map(abs).max()!
    for i in f.x1.indices {
      for j in f.x2.indices {
        let (_, ntk) = net.referenceKernel(f.x1[i], f.x2[j])
        #expect(relativeError(ntk, c.ntk_k12[i][j], scale: scale) <= 1e-12)
      }
      let (nngp, ntk) = net.referenceKernel(f.x1[i], f.x1[i])
      #expect(abs(nngp - c.nngp_k11_diag_exact[i]) <= 1e-13 * abs(c.nngp_k11_diag_exact[i]))
      #expect(abs(ntk - c.ntk_k11_diag_exact[i]) <= 1e-13 * abs(c.ntk_k11_diag_exact[i]))
    }
  }
}
