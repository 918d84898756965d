import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// Networks covering every activation family, both parameterizations, bias and no bias.
let sampleNetworks: [FullyConnected] = [
  FullyConnected(depth: 3, activation: .relu, wStd: 2.0.squareRoot(), bStd: 0.1),
  FullyConnected(depth: 1, activation: .relu, wStd: 2.0.squareRoot(), bStd: nil),
  FullyConnected(depth: 2, activation: .erf, wStd: 1.5, bStd: 0.2),
  FullyConnected(depth: 4, activation: .leakyReLU(slope: 0.1), wStd: 1.3, bStd: 0.05),
  FullyConnected(depth: 2, activation: .abs, wStd: 1.0, bStd: 0.3),
  FullyConnected(depth: 2, activation: .identity, wStd: 0.9, bStd: 0.4),
  FullyConnected(depth: 2, activation: .relu, wStd: 1.2, bStd: nil, parameterization: .standard, width: 128),
  FullyConnected(depth: 3, activation: .erf, wStd: 1.1, bStd: 0.0, parameterization: .standard, width: 64),
  FullyConnected(depth: 5, activation: .relu, wStd: 1.0, bStd: 0.0),
  // A layer list: per-layer parameters and activations, both parameterizations, two dense
  // layers in a row (the identity between them).
  try! FullyConnected(network: Network(tables: [
    ["type": .string("dense"), "width": .int(64), "W_std": .double(1.5), "b_std": .double(0.1)],
    ["type": .string("erf")],
    ["type": .string("dense"), "width": .int(32), "W_std": .double(1.2), "b_std": .string("none"), "parameterization": .string("standard")],
    ["type": .string("relu")],
    ["type": .string("dense"), "width": .int(48), "W_std": .double(1.1), "b_std": .double(0.05)],
    ["type": .string("dense"), "width": .int(16), "W_std": .double(1.3), "b_std": .double(0), "parameterization": .string("standard")],
    ["type": .string("leaky_relu"), "slope": .double(0.2)],
    ["type": .string("dense"), "width": .int(8)],
    ["type": .string("abs")],
    ["type": .string("dense"), "width": .int(1), "W_std": .double(0.9), "b_std": .double(0.2), "parameterization": .string("standard")],
  ])),
  // No hidden layer: the readout straight from the dot products.
  try! FullyConnected(network: Network(tables: [["type": .string("dense"), "width": .int(1), "W_std": .double(1.3), "b_std": .double(0.2)]])),
]

/// Random rows plus the adversarial ones: parallel and anti-parallel pairs (θ near 0 and π),
/// zero rows, duplicates, huge and tiny norms.
func adversarialRows(d: Int, seed: UInt64) -> [[Double]] {
  var g = SplitMix64(seed: seed)
  func gaussian() -> Double { (-2 * log(g.unit())).squareRoot() * cos(2 * .pi * g.unit()) }
  var rows = (0..<12).map { _ in (0..<d).map { _ in gaussian() } }
  let base = rows[0]
  rows.append(base.map { $0 * 3 })                                  // exactly parallel
  rows.append(base.map { -$0 })                                     // anti-parallel
  rows.append(zip(base, rows[1]).map { $0 + 1e-7 * $1 })            // θ ≈ 1e-7
  rows.append(zip(base, rows[1]).map { -$0 + 1e-9 * $1 })           // θ ≈ π − 1e-9
  rows.append([Double](repeating: 0, count: d))                     // zero row
  rows.append(rows[2])                                              // duplicate
  rows.append(rows[3].map { $0 * 1e12 })                            // huge norm
  rows.append(rows[4].map { $0 * 1e-12 })                           // tiny norm
  return rows
}

@Suite("SIMD tile kernel against the scalar reference kernel")
struct SIMDvsScalarTests {
  @Test("random and adversarial inputs, float64 and float32 dot products",
        arguments: sampleNetworks.indices, GramPrecision.allCases)
  func agrees(networkIndex: Int, precision: GramPrecision) {
    var net = sampleNetworks[networkIndex]
    net.gramPrecision = precision
    for d in [1, 3, 7, 33] {
      let rows = adversarialRows(d: d, seed: UInt64(networkIndex * 100 + d))
      let k = tileKernel(net, rows, rows)
      for kernel in ["nngp", "ntk"] {
        let ours = kernel == "ntk" ? k.ntk : k.nngp
        var worst = 0.0, worstAt = (0, 0)
        for i in rows.indices {
          for j in rows.indices {
            let ref = net.referenceKernel(rows[i], rows[j])
            let r = kernel == "ntk" ? ref.ntk : ref.nngp
            // Judged against the pair's own scale √(K(x,x)·K(y,y)).
            let di = net.referenceKernel(rows[i], rows[i]), dj = net.referenceKernel(rows[j], rows[j])
            let scale = kernel == "ntk" ? (di.ntk * dj.ntk).squareRoot() : (di.nngp * dj.nngp).squareRoot()
            #expect(ours[i][j].isFinite, "\(kernel)[\(i)][\(j)] not finite")
            let err = scale > 0 ? abs(ours[i][j] - r) / scale : abs(ours[i][j] - r)
            // Nearly (anti-)parallel pairs sit where q q′ − Σ² cancels: √ε conditioning.
            let nx = rows[i].reduce(0) { $0 + $1 * $1 }, ny = rows[j].reduce(0) { $0 + $1 * $1 }
            let cosine = zip(rows[i], rows[j]).reduce(0) { $0 + $1.0 * $1.1 } / (nx * ny).squareRoot()
            // So are rows nearly equal in absolute terms (the zero row and the tiny one): after a
            // layer whose pair and diagonal forms round differently (erf then ReLU), their
            // q q′ − Σ² is a few ulp of q², not 0.
            let distance = zip(rows[i], rows[j]).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            if abs(cosine) > 1 - 1e-6 || distance <= 1e-12 * max(1, nx, ny) {
              #expect(err <= 1e-7, "network \(networkIndex) \(precision) d=\(d) \(kernel)[\(i)][\(j)] (near-parallel): \(err)")
            } else if err > worst { worst = err; worstAt = (i, j) }
          }
        }
        #expect(worst <= 1e-13, "network \(networkIndex) \(precision) d=\(d) \(kernel): max error \(worst) at \(worstAt)")
      }
    }
  }

  @Test("identical rows take the exact θ = 0 value")
  func duplicatesUseClosedForm() {
    let net = sampleNetworks[0]
    let rows = adversarialRows(d: 9, seed: 7)
    let k = tileKernel(net, rows, rows)
    let dup = rows.count - 3  // the duplicate of row 2
    let diag = net.referenceKernel(rows[2], rows[2])
    #expect(k.ntk[2][dup] == diag.ntk && k.ntk[dup][2] == diag.ntk && k.ntk[2][2] == diag.ntk)
    #expect(k.nngp[2][dup] == diag.nngp)
  }

  @Test("an entry does not depend on the tile it is computed in")
  func tileIndependence() {
    let net = sampleNetworks[2]
    let rows = adversarialRows(d: 13, seed: 3)
    let whole = tileKernel(net, rows, rows)
    for (r0, c0, h, w) in [(1, 2, 3, 5), (0, 5, 7, 1), (4, 4, 9, 9), (18, 0, 2, 20)] {
      let part = tileKernel(net, Array(rows[r0 ..< r0 + h]), Array(rows[c0 ..< c0 + w]))
      for i in 0..<h { for j in 0..<w {
        #expect(part.ntk[i][j].bitPattern == whole.ntk[r0 + i][c0 + j].bitPattern)
        #expect(part.nngp[i][j].bitPattern == whole.nngp[r0 + i][c0 + j].bitPattern)
      } }
    }
  }
}
