import Foundation
import GramMicroKernels
import GramNetwork
import Testing
@testable import GramKernels

/// The executor by pixel offset (`SlicePlan`, ConvolutionalSlices.swift) against the full
/// pixel-pair path (the same kernel with `slices = nil`) and the direct 4-D `referenceKernel`,
/// on random small networks; entries independent of the tile shapes, the threads and the
/// scratch's contents; and `compute_precision` float32 and mixed: finite, measured against
/// float64 and bounded, self-pairs (and the records) bit for bit those of float64.
@Suite("convolutional kernels by pixel offset")
struct ConvolutionalSlicesTests {
  /// The random networks checked (each a test case).
  static let seeds = Array(0..<48)
  /// Images per network: rows 1 and 4 are the same image (the tile copies the self-pair).
  static let count = 7
  static let duplicate = (1, 4)

  // MARK: - Random networks

  /// A random small convolutional network for random `H×W×C` images (H ≠ W most of the time,
  /// C in 1–3): 1–3 blocks of a conv (filter 1–4 per axis, strides 1–2, SAME or VALID, random
  /// W_std, b_std a number or none, ntk or standard parameterization), usually followed by an
  /// activation (relu, leaky_relu, abs, erf, identity), sometimes by an avg_pool (window 1–3,
  /// strides 1–2, SAME or VALID, normalize_edges or not) itself sometimes followed by an
  /// activation; a global_avg_pool or flatten readout; a dense tail of 0–2 hidden layers with
  /// activations, usually closed by a dense layer of width 1.
  static func randomNetwork(seed: Int) -> (network: Network, shape: [Int]) {
    var g = SplitMix64(seed: 0x5eed_0000 &+ UInt64(seed) &* 0x9e37_79b9)
    func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &g) }
    func real(_ r: ClosedRange<Double>) -> Double { Double.random(in: r, using: &g) }
    func chance(_ p: Double) -> Bool { g.unit() < p }
    func activation() -> Activation {
      switch int(0...4) {
      case 0: .relu
      case 1: .leakyReLU(slope: real(0.01...0.3))
      case 2: .abs
      case 3: .erf
      default: .identity
      }
    }
    let parameterization: Parameterization = chance(0.5) ? .ntk : .standard
    func affine(width: Int) -> Affine {
      Affine(wStd: real(0.7...1.6), bStd: chance(0.7) ? real(0...0.6) : nil, width: width,
             parameterization: chance(0.85) ? parameterization : (parameterization == .ntk ? .standard : .ntk))
    }
    var h = int(3...7), w = int(3...7)
    if h == w && chance(0.8) { w = w == 7 ? 4 : w + 1 }
    let shape = [h, w, int(1...3)]
    /// A window: VALID only where it fits the grid.
    func window(_ sizes: ClosedRange<Int>) -> Window {
      let size = [int(sizes), int(sizes)], strides = [int(1...2), int(1...2)]
      let padding: Padding = chance(0.5) && size[0] <= h && size[1] <= w ? .valid : .same
      return Window(size: size, strides: strides, padding: padding)
    }
    func advance(_ win: Window) {
      func out(_ n: Int, _ k: Int, _ s: Int) -> Int { win.padding == .valid ? (n - k) / s + 1 : (n + s - 1) / s }
      h = out(h, win.size[0], win.strides[0])
      w = out(w, win.size[1], win.strides[1])
    }
    var layers: [Layer] = []
    for _ in 0..<int(1...3) {
      let win = window(1...4)
      layers.append(.conv(affine(width: int(1...6)), win))
      advance(win)
      if chance(0.85) { layers.append(.activation(activation())) }
      if chance(0.45) {
        let pool = window(1...3)
        layers.append(.avgPool(pool, normalizeEdges: chance(0.5)))
        advance(pool)
        if chance(0.3) { layers.append(.activation(activation())) }
      }
    }
    layers.append(chance(0.5) ? .globalAvgPool : .flatten)
    for _ in 0..<int(0...2) {
      layers.append(.dense(affine(width: int(1...12))))
      layers.append(.activation(activation()))
    }
    if chance(0.85) { layers.append(.dense(affine(width: 1))) }
    return (Network(layers: layers), shape)
  }

  /// `count` random images (N(0, 1) pixels, a fifth of them three times larger, like strokes
  /// on a background) as NHWC rows, row `duplicate.1` a copy of row `duplicate.0`.
  static func images(shape: [Int], seed: Int) -> [[Double]] {
    var g = SplitMix64(seed: 0x1a9e_0000 &+ UInt64(seed))
    let d = shape.reduce(1, *)
    var rows = (0..<count).map { _ in
      (0..<d).map { _ -> Double in
        let u = g.unit(), v = g.unit()
        let z = (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
        return g.unit() < 0.2 ? 3 * z : z
      }
    }
    rows[duplicate.1] = rows[duplicate.0]
    return rows
  }

  static func describe(_ network: Network, _ shape: [Int]) -> String {
    "\(shape) " + network.layers.map { layer -> String in
      switch layer {
      case .conv(let a, let w):
        "conv(\(w.size[0])x\(w.size[1]) s\(w.strides[0]),\(w.strides[1]) \(w.padding.rawValue) \(a.parameterization.rawValue)\(a.bStd == nil ? " nobias" : ""))"
      case .avgPool(let w, let n):
        "avg_pool(\(w.size[0])x\(w.size[1]) s\(w.strides[0]),\(w.strides[1]) \(w.padding.rawValue)\(n ? " normalize" : ""))"
      case .dense(let a): "dense(\(a.width))"
      default: layer.typeName
      }
    }.joined(separator: " ")
  }

  // MARK: - Tiles

  /// The `n × n` kernels (ntk, nngp) of `a` rows against `b` columns, computed block by block:
  /// `(rows, cols)` by `computeTile`, `(rows, nil)` by `computeUpperTile` (entries j ≥ i of the
  /// block only; others stay NaN), the blocks spread over `threads` threads, each thread's
  /// scratch filled with NaN first (an entry must not read what an earlier pair left there).
  static func blocks(_ k: Convolutional, _ a: ConvFeatures, _ b: ConvFeatures, _ list: [(Range<Int>, Range<Int>?)],
                     threads: Int) -> (ntk: [Double], nngp: [Double]) {
    /// The two outputs, written by every thread at disjoint places.
    struct Shared: @unchecked Sendable {
      let ntk: UnsafeMutableBufferPointer<Double>
      let nngp: UnsafeMutableBufferPointer<Double>
    }
    let n = a.rows, m = b.rows
    let shared = Shared(ntk: .allocate(capacity: n * m), nngp: .allocate(capacity: n * m))
    defer { shared.ntk.deallocate(); shared.nngp.deallocate() }
    shared.ntk.initialize(repeating: .nan)
    shared.nngp.initialize(repeating: .nan)
    let scratchCount = k.scratchCount(a, rows: n, cols: m)
    DispatchQueue.concurrentPerform(iterations: threads) { t in
      let (ntk, nngp) = (shared.ntk, shared.nngp)
      var scratch = [Double](repeating: .nan, count: scratchCount)
      scratch.withUnsafeMutableBufferPointer { sp in
        for (index, (rows, cols)) in list.enumerated() where index % threads == t {
          let offset = rows.lowerBound * m + (cols ?? rows).lowerBound
          let out = TileOutput(values: [ntk.baseAddress! + offset, nngp.baseAddress! + offset], leadingDimension: m)
          if let cols {
            k.computeTile(a, rows: rows, b, cols: cols, into: out, scratch: sp)
          } else {
            // Only the block's entries j ≥ i count: clear what it may write left of them.
            k.computeUpperTile(a, rows: rows, into: out, scratch: sp)
            for i in rows { for j in rows where j < i { ntk[i * m + j] = .nan; nngp[i * m + j] = .nan } }
          }
        }
      }
    }
    return (Array(shared.ntk), Array(shared.nngp))
  }

  static func prepare(_ k: Convolutional, _ rows: [[Double]]) -> ConvFeatures {
    k.prepare(Matrix(rows: rows.count, cols: rows[0].count, values: rows.flatMap { $0 }))
  }

  static func bits(_ v: [Double]) -> [UInt64] { v.map(\.bitPattern) }

  /// The largest `|a − b| / (|b| + 0.01·max|b|)` (the project's measure) over `entries`.
  static func largestError(_ a: [Double], _ b: [Double], _ entries: [Int]) -> Double {
    let scale = b.map(abs).max() ?? 0
    return entries.map { relativeError(a[$0], b[$0], scale: scale) }.max() ?? 0
  }

  // MARK: - Tests

  @Test("the generator covers the vocabulary the brief names")
  func randomNetworksCoverTheVocabulary() throws {
    var seen = Set<String>()
    for seed in Self.seeds {
      let (network, shape) = Self.randomNetwork(seed: seed)
      if shape[0] != shape[1] { seen.insert("H≠W") }
      seen.insert("C=\(shape[2])")
      var pools = 0
      for layer in network.layers {
        switch layer {
        case .conv(let a, let w):
          seen.formUnion(["filter \(w.size[0])", "filter \(w.size[1])", "stride \(w.strides[0])", "stride \(w.strides[1])",
                          w.padding.rawValue, a.parameterization.rawValue])
        case .avgPool(let w, let normalize):
          pools += 1
          seen.formUnion(["pool \(w.padding.rawValue)", "pool stride \(w.strides[0])", "normalize \(normalize)"])
        case .dense: seen.insert("dense")
        default: seen.insert(layer.typeName)
        }
      }
      seen.insert("stages \(min(pools + 1, 3))")
      let kernel = try Convolutional(network: network, inputShape: shape)
      #expect(kernel.slices != nil, "seed \(seed): the slice executor takes every network without circular windows")
      #expect(kernel.slices?.stages.count == pools + 1)
    }
    let wanted = ["H≠W", "C=1", "C=2", "C=3", "filter 1", "filter 2", "filter 3", "filter 4", "stride 1", "stride 2",
                  "SAME", "VALID", "ntk", "standard", "pool SAME", "pool VALID", "pool stride 1", "pool stride 2",
                  "normalize true", "normalize false", "relu", "leaky_relu", "abs", "erf", "identity", "global_avg_pool",
                  "flatten", "dense", "stages 1", "stages 2", "stages 3"]
    #expect(Set(wanted).subtracting(seen).isEmpty, "not covered: \(Set(wanted).subtracting(seen).sorted())")
  }

  @Test("slices equal the full pixel-pair path and the 4-D reference within 1e-13, on and off the diagonal",
        arguments: seeds)
  func slicesEqualFullPathAndReference(seed: Int) throws {
    let (network, shape) = Self.randomNetwork(seed: seed)
    let what = "seed \(seed): \(Self.describe(network, shape))"
    let kernel = try Convolutional(network: network, inputShape: shape)
    try #require(kernel.slices != nil, "\(what)")
    var full = kernel
    full.slices = nil
    let rows = Self.images(shape: shape, seed: seed)
    let n = rows.count
    let fs = Self.prepare(kernel, rows), ff = Self.prepare(full, rows)
    let whole: [(Range<Int>, Range<Int>?)] = [(0..<n, 0..<n)]
    let s = Self.blocks(kernel, fs, fs, whole, threads: 1)
    let f = Self.blocks(full, ff, ff, whole, threads: 1)
    for (name, a, b) in [("ntk", s.ntk, f.ntk), ("nngp", s.nngp, f.nngp)] {
      #expect(a.allSatisfy { $0.isFinite } && b.allSatisfy { $0.isFinite }, "\(what) \(name): not finite")
      let err = Self.largestError(a, b, Array(0..<(n * n)))
      #expect(err <= 1e-13, "\(what) \(name): slices vs full path \(err)")
      let diag = (0..<n).map { $0 * n + $0 }
      #expect(Self.largestError(a, b, diag) <= 1e-13, "\(what) \(name) diagonal")
    }
    // The duplicate pair takes the self-pair's values.
    let (p, q) = Self.duplicate
    #expect(s.ntk[p * n + q].bitPattern == s.ntk[p * n + p].bitPattern && s.nngp[q * n + p].bitPattern == s.nngp[q * n + q].bitPattern)
    // Both against the direct 4-D reference (every pair, self-pairs with their exact forms).
    let scaleN = s.ntk.map(abs).max()!, scaleG = s.nngp.map(abs).max()!
    for i in 0..<n {
      for j in i..<n {
        let r = kernel.referenceKernel(rows[i], rows[j])
        for (name, ours, ref, scale) in [("ntk", s.ntk, r.ntk, scaleN), ("nngp", s.nngp, r.nngp, scaleG)] {
          #expect(relativeError(ours[i * n + j], ref, scale: scale) <= 1e-13, "\(what) slices \(name)[\(i)][\(j)] vs reference")
        }
        for (name, ours, ref, scale) in [("ntk", f.ntk, r.ntk, scaleN), ("nngp", f.nngp, r.nngp, scaleG)] {
          #expect(relativeError(ours[i * n + j], ref, scale: scale) <= 1e-13, "\(what) full \(name)[\(i)][\(j)] vs reference")
        }
      }
    }
  }

  @Test("every compute precision: the same bytes whatever the tile shapes, the threads, the scratch and the rows' places",
        arguments: seeds.filter { $0 % 2 == 0 })
  func tilesAndThreadsGiveTheSameBytes(seed: Int) throws {
    let (network, shape) = Self.randomNetwork(seed: seed)
    let what = "seed \(seed): \(Self.describe(network, shape))"
    let rows = Self.images(shape: shape, seed: seed)
    let n = rows.count
    for precision in ComputePrecision.allCases {
      let k = try Convolutional(network: network, inputShape: shape, computePrecision: precision)
      let f = Self.prepare(k, rows)
      let base = Self.blocks(k, f, f, [(0..<n, 0..<n)], threads: 1)
      // Uneven blocks, on three threads.
      let rowSplits = [0..<2, 2..<5, 5..<n], colSplits = [0..<3, 3..<4, 4..<6, 6..<n]
      let mosaic = Self.blocks(k, f, f, rowSplits.flatMap { r in colSplits.map { (r, Optional($0)) } }, threads: 3)
      #expect(Self.bits(mosaic.ntk) == Self.bits(base.ntk) && Self.bits(mosaic.nngp) == Self.bits(base.nngp),
              "\(what) \(precision): blocks on three threads")
      // Diagonal blocks by computeUpperTile, the blocks right of them by computeTile.
      let splits = [0..<3, 3..<n]
      var list: [(Range<Int>, Range<Int>?)] = splits.map { ($0, nil) }
      list.append((0..<3, 3..<n))
      let upper = Self.blocks(k, f, f, list, threads: 2)
      for i in 0..<n {
        for j in i..<n {
          #expect(upper.ntk[i * n + j].bitPattern == base.ntk[i * n + j].bitPattern
                    && upper.nngp[i * n + j].bitPattern == base.nngp[i * n + j].bitPattern,
                  "\(what) \(precision): upper tile [\(i)][\(j)]")
        }
      }
      // The columns from another dataset holding the same images in reverse order.
      let reversed = Self.prepare(k, rows.reversed())
      let cross = Self.blocks(k, f, reversed, [(0..<4, 0..<n), (4..<n, 0..<n)], threads: 2)
      for i in 0..<n {
        for j in 0..<n {
          #expect(cross.ntk[i * n + (n - 1 - j)].bitPattern == base.ntk[i * n + j].bitPattern
                    && cross.nngp[i * n + (n - 1 - j)].bitPattern == base.nngp[i * n + j].bitPattern,
                  "\(what) \(precision): rows in other places [\(i)][\(j)]")
        }
      }
    }
  }

  /// float32 and mixed against float64 (off the diagonal, the project's relative measure): the
  /// largest errors measured were 1.2e-6 on these 48 networks and 2.7e-6 on 400 (seeds 0..<400,
  /// float32 nngp; mixed 1.4e-6); the test prints each network's.
  static let float32Bound = 1e-5
  static let mixedBound = 1e-5

  @Test("float32 and mixed: finite, within a measured bound of float64; self-pairs and records bit for bit float64",
        arguments: seeds)
  func reducedPrecision(seed: Int) throws {
    let (network, shape) = Self.randomNetwork(seed: seed)
    let what = "seed \(seed): \(Self.describe(network, shape))"
    let rows = Self.images(shape: shape, seed: seed)
    let n = rows.count
    let k64 = try Convolutional(network: network, inputShape: shape)
    let f64 = Self.prepare(k64, rows)
    let whole: [(Range<Int>, Range<Int>?)] = [(0..<n, 0..<n)]
    let base = Self.blocks(k64, f64, f64, whole, threads: 1)
    let stages = try #require(k64.slices).stages.count
    let offDiagonal = (0..<(n * n)).filter { $0 / n != $0 % n && Set([$0 / n, $0 % n]) != Set([Self.duplicate.0, Self.duplicate.1]) }
    var measured: [String] = []
    for precision in [ComputePrecision.float32, .mixed] {
      let k = try Convolutional(network: network, inputShape: shape, computePrecision: precision)
      #expect(k.float32Stages == (0..<stages).map { precision == .float32 || $0 < stages - 1 })
      let f = Self.prepare(k, rows)
      #expect(Self.bits(f.diagonalNTK) == Self.bits(f64.diagonalNTK) && Self.bits(f.diagonalNNGP) == Self.bits(f64.diagonalNNGP),
              "\(what) \(precision): self-pairs")
      #expect(Self.bits(f.records) == Self.bits(f64.records), "\(what) \(precision): records")
      #expect(f.records32 == f64.records.map { Float($0) }, "\(what) \(precision): float32 records")
      let r = Self.blocks(k, f, f, whole, threads: 1)
      for (name, ours, ref) in [("ntk", r.ntk, base.ntk), ("nngp", r.nngp, base.nngp)] {
        #expect(ours.allSatisfy { $0.isFinite }, "\(what) \(precision) \(name): NaN or inf")
        // The diagonal and the duplicate pair: the self-pairs, bit for bit.
        for i in 0..<n { #expect(ours[i * n + i].bitPattern == ref[i * n + i].bitPattern, "\(what) \(precision) \(name) diagonal") }
        let (p, q) = Self.duplicate
        #expect(ours[p * n + q].bitPattern == ref[p * n + p].bitPattern && ours[q * n + p].bitPattern == ref[p * n + p].bitPattern)
        let err = Self.largestError(ours, ref, offDiagonal)
        measured.append("\(precision) \(name) \(err)")
        #expect(err <= (precision == .float32 ? Self.float32Bound : Self.mixedBound), "\(what) \(precision) \(name): \(err) against float64")
        if precision == .mixed && stages == 1 {
          // One stage (no avg_pool): mixed is float64 throughout.
          #expect(Self.bits(ours) == Self.bits(ref), "\(what) mixed with one stage")
        } else {
          // Not silently float64.
          #expect(offDiagonal.contains { ours[$0].bitPattern != ref[$0].bitPattern }, "\(what) \(precision) \(name): float64 bits")
        }
      }
    }
    print("ConvolutionalSlices precision seed \(seed) stages \(stages): \(measured.joined(separator: ", "))")
  }

  @Test("float32 and mixed refused where they do not apply: circular windows, fully-connected networks")
  func reducedPrecisionRefused() throws {
    let circular = Network(layers: [
      .conv(Affine(wStd: 1.4, bStd: 0.1, width: 2, parameterization: .ntk), Window(size: [3, 3], strides: [1, 1], padding: .circular)),
      .activation(.relu), .globalAvgPool, .dense(Affine(wStd: 1, bStd: nil, width: 1, parameterization: .ntk)),
    ])
    for precision in [ComputePrecision.float32, .mixed] {
      #expect(throws: NetworkError.self) { _ = try Convolutional(network: circular, inputShape: [5, 4, 1], computePrecision: precision) }
      #expect(throws: KernelSpecError.self) {
        _ = try KernelFactory.make(network: Network.fullyConnected(depth: 2, activation: .relu, wStd: 1.4, bStd: 0.1),
                                   inputShape: [6], gramPrecision: .float64, computePrecision: precision)
      }
    }
    // float64 still takes circular networks (the full path).
    let k = try Convolutional(network: circular, inputShape: [5, 4, 1])
    #expect(k.slices == nil)
  }
}
