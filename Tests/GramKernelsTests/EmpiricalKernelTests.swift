@testable import GramKernels
import GramNetwork
import Testing

@Suite("Empirical kernels: tiles against the scalar reference, any tiling the same bits")
struct EmpiricalKernelTests {
  static func kernel(depth: Int, activation: Activation, parameterization: Parameterization, bStd: Double?, readout: Int,
                     width: Int = 24, features: Int = 7, seed: UInt64 = 3) throws -> EmpiricalKernel {
    var net = Network.fullyConnected(depth: depth, activation: activation, wStd: 1.3, bStd: bStd, parameterization: parameterization, width: width)
    if case .dense(var a) = net.layers.last! { a.width = readout; net.layers[net.layers.count - 1] = .dense(a) }
    let p = try NetworkParameters.draw(net, inputShape: [features], seed: seed)
    return EmpiricalKernel(network: try ConcreteNetwork(network: net, inputShape: [features], parameters: p))
  }

  static func data(_ rows: Int, _ cols: Int, seed: UInt64) -> Matrix {
    let g = CounterNormal(seed: seed, stream: 99)
    return Matrix(rows: rows, cols: cols, values: (0..<(rows * cols)).map { g.value(UInt64($0)) })
  }

  /// The whole `rows × cols` kernel, computed in `rb × cb` blocks with `computeTile`.
  static func full(_ k: EmpiricalKernel, _ a: EmpiricalFeatures, _ b: EmpiricalFeatures, rb: Int, cb: Int) -> [[Double]] {
    let m = a.rows, n = b.rows
    var ntk = [Double](repeating: .nan, count: m * n), nngp = ntk
    var scratch = [Double](repeating: 0, count: k.scratchCount(inputFeatures: k.network.inputCount, rows: rb, cols: cb))
    var i0 = 0
    while i0 < m {
      var j0 = 0
      while j0 < n {
        let rows = i0 ..< min(i0 + rb, m), cols = j0 ..< min(j0 + cb, n)
        ntk.withUnsafeMutableBufferPointer { np in
          nngp.withUnsafeMutableBufferPointer { gp in
            scratch.withUnsafeMutableBufferPointer { sp in
              let out = TileOutput(values: [np.baseAddress! + i0 * n + j0, gp.baseAddress! + i0 * n + j0], leadingDimension: n)
              k.computeTile(a, rows: rows, b, cols: cols, into: out, scratch: sp)
            }
          }
        }
        j0 += cb
      }
      i0 += rb
    }
    return [ntk, nngp]
  }

  @Test("every entry within 1e-13 of the scalar reference, for depths 0–3, every activation, both parameterizations, bias or none, 1–4 outputs",
        arguments: [(0, Activation.relu, Parameterization.ntk, 0.1 as Double?, 1), (1, .erf, .standard, nil, 3), (2, .abs, .ntk, nil, 2),
                    (3, .leakyReLU(slope: 0.2), .standard, 0.3, 4), (2, .identity, .ntk, 0.5, 1)])
  func reference(depth: Int, activation: Activation, parameterization: Parameterization, bStd: Double?, readout: Int) throws {
    let k = try Self.kernel(depth: depth, activation: activation, parameterization: parameterization, bStd: bStd, readout: readout)
    let x = Self.data(13, 7, seed: 1), y = Self.data(9, 7, seed: 2)
    let values = Self.full(k, k.prepare(x), k.prepare(y), rb: 13, cb: 9)
    for i in 0..<13 {
      for j in 0..<9 {
        let ref = k.referenceEntry(Array(x.values[i * 7 ..< (i + 1) * 7]), Array(y.values[j * 7 ..< (j + 1) * 7]))
        for o in 0..<2 { #expect(abs(values[o][i * 9 + j] - ref[o]) <= 1e-13 * max(abs(ref[o]), 1e-3)) }
      }
    }
  }

  @Test("tile shapes, column chunks, upper tiles and threads give the same bits")
  func tiling() throws {
    var k = try Self.kernel(depth: 2, activation: .relu, parameterization: .ntk, bStd: 0.1, readout: 3, width: 40)
    let x = Self.data(70, 7, seed: 5)
    let a = k.prepare(x)
    // Blocks of 16 rows over 3 threads: the same features as one block on one thread.
    var small = k
    small.blockRows = 16
    let threaded = small.prepare(x, threads: 3)
    #expect(threaded.derivatives.map(\.values) == a.derivatives.map(\.values))
    #expect(threaded.inputs.map(\.values) == a.inputs.map(\.values))
    let whole = Self.full(k, a, a, rb: 70, cb: 70)
    #expect(Self.full(k, a, a, rb: 7, cb: 13) == whole)
    k.packedValues = 40 * 3 * 32  // columns in chunks of 32
    #expect(k.columnChunk(70) == 32)
    #expect(Self.full(k, a, a, rb: 70, cb: 70) == whole)
    // An upper tile: the entries on and right of the diagonal are those of the full tile.
    var ntk = [Double](repeating: .nan, count: 70 * 70), nngp = ntk
    var scratch = [Double](repeating: 0, count: k.scratchCount(inputFeatures: 7, rows: 70, cols: 70))
    ntk.withUnsafeMutableBufferPointer { np in
      nngp.withUnsafeMutableBufferPointer { gp in
        scratch.withUnsafeMutableBufferPointer { sp in
          k.computeUpperTile(a, rows: 0..<70, into: TileOutput(values: [np.baseAddress!, gp.baseAddress!], leadingDimension: 70), scratch: sp)
        }
      }
    }
    for i in 0..<70 { for j in i..<70 { #expect(ntk[i * 70 + j] == whole[0][i * 70 + j] && nngp[i * 70 + j] == whole[1][i * 70 + j]) } }
    // Symmetric by construction.
    for i in 0..<70 { for j in 0..<70 { #expect(whole[0][i * 70 + j] == whole[0][j * 70 + i]) } }
  }
}
