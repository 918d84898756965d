import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// neural-tangents 0.6.5 float64 figures for convolutional networks (Fixtures/cntk_kernels.json).
struct CNTKFigures: Decodable {
  struct Case: Decodable {
    let name: String
    let inputs: [String]
    let layers: [[String: LayerValue]]
    let nt_diagonal_spatial: Bool
    let ntk_k11: [[Double]]
    let nngp_k11: [[Double]]
    let ntk_k12: [[Double]]
    let nngp_k12: [[Double]]
    let ntk_k11_diag_exact: [Double]
    let nngp_k11_diag_exact: [Double]

    /// The reference's layer objects in this project's layer-table vocabulary.
    var network: Network {
      get throws {
        try Network(tables: layers.map { layer in
          var t: [String: SpecValue] = [:]
          for (key, value) in layer {
            let name = ["layer": "type", "out_chan": "width", "out_dim": "width", "filter_shape": "filter", "window_shape": "window"][key] ?? key
            t[name] = value.spec
          }
          return t
        })
      }
    }
  }

  enum LayerValue: Decodable {
    case string(String), double(Double), ints([Int]), bool(Bool), null
    init(from decoder: Decoder) throws {
      let c = try decoder.singleValueContainer()
      if c.decodeNil() { self = .null }
      else if let b = try? c.decode(Bool.self) { self = .bool(b) }
      else if let s = try? c.decode(String.self) { self = .string(s) }
      else if let i = try? c.decode([Int].self) { self = .ints(i) }
      else { self = .double(try c.decode(Double.self)) }
    }
    var spec: SpecValue {
      switch self {
      case .string(let s): .string(s)
      case .double(let d): d == d.rounded() && abs(d) < 1e9 && false ? .int(Int(d)) : .double(d)
      case .ints(let v): .list(v.map { .int($0) })
      case .bool(let b): .bool(b)
      case .null: .string("none")
      }
    }
  }

  let inputs: [String: [[[[Double]]]]]
  let cases: [Case]

  static func load() throws -> CNTKFigures {
    let url = try #require(Bundle.module.url(forResource: "cntk_kernels", withExtension: "json", subdirectory: "Fixtures"))
    return try JSONDecoder().decode(CNTKFigures.self, from: Data(contentsOf: url))
  }

  /// Images as rows (NHWC flattened) and their shape.
  func images(_ name: String) -> (rows: [[Double]], shape: [Int]) {
    let a = inputs[name]!
    return (a.map { $0.flatMap { $0.flatMap { $0 } } }, [a[0].count, a[0][0].count, a[0][0][0].count])
  }
}

/// The tile kernel of any `GramKernel` on two sets of rows: `(ntk, nngp)` as matrices.
func kernelMatrices<K: GramKernel>(_ kernel: K, _ x: [[Double]], _ y: [[Double]], upper: Bool = false) -> (ntk: [[Double]], nngp: [[Double]]) {
  let d = x[0].count
  let a = kernel.prepare(Matrix(rows: x.count, cols: d, values: x.flatMap { $0 }))
  let b = kernel.prepare(Matrix(rows: y.count, cols: d, values: y.flatMap { $0 }))
  var ntk = [Double](repeating: .nan, count: x.count * y.count), nngp = ntk
  var scratch = [Double](repeating: 0, count: kernel.scratchCount(a, rows: x.count, cols: y.count))
  ntk.withUnsafeMutableBufferPointer { tp in
    nngp.withUnsafeMutableBufferPointer { np in
      scratch.withUnsafeMutableBufferPointer { sp in
        let out = TileOutput(values: [tp.baseAddress!, np.baseAddress!], leadingDimension: y.count)
        if upper {
          kernel.computeUpperTile(a, rows: 0..<x.count, into: out, scratch: sp)
        } else {
          kernel.computeTile(a, rows: 0..<x.count, b, cols: 0..<y.count, into: out, scratch: sp)
        }
      }
    }
  }
  if upper {  // mirror, as the tile computer does
    for i in 0..<x.count { for j in 0..<i { ntk[i * y.count + j] = ntk[j * y.count + i]; nngp[i * y.count + j] = nngp[j * y.count + i] } }
  }
  let rows = { (v: [Double]) in (0..<x.count).map { Array(v[$0 * y.count ..< ($0 + 1) * y.count]) } }
  return (rows(ntk), rows(nngp))
}

@Suite("convolutional kernels against neural-tangents")
struct ConvolutionalTests {
  static let figures = try! CNTKFigures.load()

  @Test("every case: k12 and the off-diagonal k11 within 1e-12, self-pairs within 1e-13 of the exact θ = 0 values",
        arguments: 0..<7)
  func matchesReference(caseIndex: Int) throws {
    let f = Self.figures
    let c = f.cases[caseIndex]
    let (x1, shape) = f.images(c.inputs[0])
    let (x2, _) = f.images(c.inputs[1])
    let kernel = try #require(try KernelFactory.make(network: c.network, inputShape: shape, gramPrecision: .float64) as? Convolutional)
    #expect(kernel.fullSpatial == !c.nt_diagonal_spatial, "\(c.name): path")
    let k11 = kernelMatrices(kernel, x1, x1, upper: true)
    let k12 = kernelMatrices(kernel, x1, x2)
    for (name, ours11, ref11, ours12, ref12, diag) in [
      ("ntk", k11.ntk, c.ntk_k11, k12.ntk, c.ntk_k12, c.ntk_k11_diag_exact),
      ("nngp", k11.nngp, c.nngp_k11, k12.nngp, c.nngp_k12, c.nngp_k11_diag_exact),
    ] {
      let scale11 = ref11.flatMap { $0 }.map(abs).max()!
      for i in ref11.indices {
        for j in ref11.indices {
          let (ref, tol) = i == j ? (diag[i], 1e-13) : (ref11[i][j], 1e-12)
          let err = i == j ? abs(ours11[i][j] - ref) / abs(ref) : relativeError(ours11[i][j], ref, scale: scale11)
          #expect(err <= tol, "\(c.name) \(name) k11[\(i)][\(j)]: \(ours11[i][j]) vs \(ref) (rel \(err))")
        }
      }
      let scale12 = ref12.flatMap { $0 }.map(abs).max()!
      for i in ref12.indices {
        for j in ref12[i].indices {
          let err = relativeError(ours12[i][j], ref12[i][j], scale: scale12)
          #expect(err <= 1e-12, "\(c.name) \(name) k12[\(i)][\(j)]: \(ours12[i][j]) vs \(ref12[i][j]) (rel \(err))")
        }
      }
    }
    // The scalar reference (direct 4-D windows) agrees with the tiles.
    for i in x1.indices {
      for j in x2.indices {
        let r = kernel.referenceKernel(x1[i], x2[j])
        #expect(relativeError(k12.ntk[i][j], r.ntk, scale: abs(r.ntk)) <= 1e-13, "\(c.name) reference ntk[\(i)][\(j)]")
        #expect(relativeError(k12.nngp[i][j], r.nngp, scale: abs(r.nngp)) <= 1e-13, "\(c.name) reference nngp[\(i)][\(j)]")
      }
      let r = kernel.referenceKernel(x1[i], x1[i])
      #expect(abs(r.ntk - c.ntk_k11_diag_exact[i]) <= 1e-13 * abs(c.ntk_k11_diag_exact[i]), "\(c.name) reference diagonal")
    }
  }

  @Test("AVX2 and AVX-512 give the same bits, and an entry does not depend on its tile", arguments: 0..<7)
  func instructionSetsAndTiles(caseIndex: Int) throws {
    let f = Self.figures
    let c = f.cases[caseIndex]
    let (x1, shape) = f.images(c.inputs[0])
    let (x2, _) = f.images(c.inputs[1])
    var kernel = try #require(try KernelFactory.make(network: c.network, inputShape: shape, gramPrecision: .float64) as? Convolutional)
    let rows = x1 + x2
    kernel.isa = .avx2
    let narrow = kernelMatrices(kernel, rows, rows)
    if GramISA.avx512.isSupported {
      kernel.isa = .avx512
      let wide = kernelMatrices(kernel, rows, rows)
      #expect(wide.ntk.flatMap { $0 }.map(\.bitPattern) == narrow.ntk.flatMap { $0 }.map(\.bitPattern), "\(c.name) ntk")
      #expect(wide.nngp.flatMap { $0 }.map(\.bitPattern) == narrow.nngp.flatMap { $0 }.map(\.bitPattern), "\(c.name) nngp")
    }
    let upper = kernelMatrices(kernel, rows, rows, upper: true)
    let n = rows.count
    let part = kernelMatrices(kernel, Array(rows[1..<3]), Array(rows[1..<n]))
    for i in 0..<2 { for j in 0..<(n - 1) {
      #expect(part.ntk[i][j].bitPattern == narrow.ntk[i + 1][j + 1].bitPattern)
    } }
    for i in rows.indices { for j in rows.indices where j >= i {
      #expect(upper.ntk[i][j].bitPattern == narrow.ntk[i][j].bitPattern && upper.nngp[i][j].bitPattern == narrow.nngp[i][j].bitPattern)
    } }
  }
}
