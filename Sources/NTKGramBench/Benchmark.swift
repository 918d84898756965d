import CLAPACK
import Foundation
import GramAnalysis
import GramBuild
import GramKernels
import GramMicroKernels
import GramSolver
import GramStorage
import GramTiling

/// `ntkgram bench`: the reference job (FC ReLU, depth 3, W_std √2, b_std 0.1, d = 784,
/// N = 4096, train NTK + NNGP) timed in parts, beside OpenBLAS computing the same Gram product
/// X·Xᵀ in the same process. An entry is one (i, j) of the full N×N matrix giving both kernels.
public struct BenchmarkReport: Codable, Sendable {
  public var samples: Int
  public var features: Int
  public var threads: Int
  public var tile: Int
  public var dtype: String
  /// Precision of the dot products (`gram_precision`).
  public var gramPrecision: String
  /// The kernels OpenBLAS runs (`openblas_get_corename`).
  public var blasCore: String
  public var data: String
  /// Whole build of the train kernel (dot products + recursion + mirror), no I/O.
  public var computeSeconds: Double
  public var entriesPerSecond: Double
  /// The dot-product part alone (upper tiles), its GFLOP/s.
  public var gramSeconds: Double
  public var gramGflops: Double
  /// The recursion: the kernel alone (dot products + recursion into reused buffers) − gram.
  public var recursionSeconds: Double
  /// compute − the kernel alone: the tiles' arrays, the mirror of the diagonal tiles.
  public var tileOverheadSeconds: Double
  /// Writing every tile as a checkpoint (as the build does: converted, checksummed, HDF5,
  /// renamed) until it is on disk (one `sync` at the end), and what `dd` writes to the same
  /// folder (1 MiB blocks, `conv=fsync`).
  public var ioSeconds: Double
  public var ioMegabytesPerSecond: Double
  public var ddMegabytesPerSecond: Double?
  /// OpenBLAS X·Xᵀ in the dot-product precision: the full N×N (gemm) and the upper
  /// triangle (syrk, half the flops), and our build time over the faster of the two.
  public var blasGramSeconds: Double
  public var blasGflops: Double
  public var blasSyrkSeconds: Double
  public var buildOverBlas: Double
  public var peakRSSMegabytes: Double
  /// The solver's product `K·X` (10 right-hand sides, one thread) over the upper tiles of an
  /// N × N kernel held in memory in the storage precision, against one read-only stream over the
  /// same tiles (which exceed the last-level cache), and their ratio.
  public var solverSamples: Int
  public var solverPassSeconds: Double
  public var solverStreamSeconds: Double
  public var solverStreamGigabytesPerSecond: Double
  public var solverPassOverStream: Double
  /// What a reader checks of each tile at its first read (`solve`, `dynamics`, `spectrum`,
  /// `predict`): the finite check alone (before tile checksums were checked), and the finite
  /// check with the tile's `checksum64` (now), over the same tiles; the check over one product.
  public var solverFiniteSeconds: Double
  public var solverCheckSeconds: Double
  public var solverCheckOverPass: Double

  enum CodingKeys: String, CodingKey {
    case samples, features, tile, dtype, data, threads
    case gramPrecision = "gram_precision", blasCore = "blas_core", blasSyrkSeconds = "blas_syrk_s"
    case computeSeconds = "compute_s", entriesPerSecond = "entries_per_s", gramSeconds = "gram_s", gramGflops = "gram_gflops"
    case recursionSeconds = "recursion_s", tileOverheadSeconds = "tile_overhead_s", ioSeconds = "io_s", ioMegabytesPerSecond = "io_MB_per_s"
    case ddMegabytesPerSecond = "dd_MB_per_s", blasGramSeconds = "blas_gram_s", blasGflops = "blas_gflops"
    case buildOverBlas = "build_over_blas", peakRSSMegabytes = "peak_rss_MB"
    case solverSamples = "solver_samples", solverPassSeconds = "solver_pass_s", solverStreamSeconds = "solver_stream_s"
    case solverStreamGigabytesPerSecond = "solver_stream_GB_per_s", solverPassOverStream = "solver_pass_over_stream"
    case solverFiniteSeconds = "solver_finite_s", solverCheckSeconds = "solver_check_s", solverCheckOverPass = "solver_check_over_pass"
  }
}

/// Where the stream benchmark leaves its sum, so that the reads are not optimised away.
nonisolated(unsafe) var benchmarkSink = 0.0

public struct Benchmark {
  public var samples = 4096
  public var tile = 1024
  public var dtype: ScalarType = .float32
  /// Precision of the dot products; nil: that of `dtype`.
  public var gramPrecision: GramPrecision?
  public var folder: String
  public var repeats = 5
  /// Threads for the compute part.
  public var threads = 1
  /// N of the solver part (0 skips it); the default's upper tiles, 800 MB in float32, exceed
  /// the last-level caches of current servers.
  public var solverSamples = 20_000

  public init(folder: String) { self.folder = folder }

  /// The storage precision and the dot products' precision from their names.
  public mutating func setPrecisions(dtype: String, gramPrecision: String?) throws {
    guard let type = ScalarType(rawValue: dtype) else { throw BenchmarkError("unknown dtype '\(dtype)' (valid: float32, float64)") }
    self.dtype = type
    if let gramPrecision {
      guard let g = GramPrecision(rawValue: gramPrecision) else {
        throw BenchmarkError("unknown gram precision '\(gramPrecision)' (valid: float32, float64)")
      }
      self.gramPrecision = g
    }
  }

  static let fashionMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

  func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

  /// The best of `repeats` runs of `body` (seconds).
  func best(_ body: () throws -> Void) rethrows -> Double {
    var t = Double.infinity
    for _ in 0..<repeats {
      let s = now()
      try body()
      t = min(t, now() - s)
    }
    return t
  }

  public func run() throws -> BenchmarkReport {
    // Data: the first N Fashion-MNIST images (pixels / 255), or random rows without the dataset.
    var data = "fashion-mnist"
    var x: Matrix
    if FileManager.default.fileExists(atPath: Self.fashionMNIST) {
      let (a, _) = try IDX.readMatrix(Self.fashionMNIST, limit: samples)
      x = Matrix(rows: a.rows, cols: a.cols, values: a.values.map { $0 / 255 })
    } else {
      data = "random"
      var g = SystemRandomNumberGenerator()
      x = Matrix(rows: samples, cols: 784, values: (0..<(samples * 784)).map { _ in Double.random(in: -1...1, using: &g) })
    }
    let n = x.rows, d = x.cols
    let precision = gramPrecision ?? (dtype == .float64 ? .float64 : .float32)
    let net = FullyConnected(depth: 3, activation: .relu, wStd: 2.0.squareRoot(), bStd: 0.1, gramPrecision: precision)
    let features = net.prepare(x)
    let plan = TilePlan(trainCount: n, testCount: 0, tileSize: tile)
    // Whole compute (on `threads` threads, as `build --threads` does), then the Gram part
    // alone over the same upper tiles (one thread).
    var results: [TileValues] = []
    let threadCount = max(1, min(threads, plan.count))
    let compute = best {
      let lock = NSLock()
      nonisolated(unsafe) var slots = [TileValues?](repeating: nil, count: plan.count)
      DispatchQueue.concurrentPerform(iterations: threadCount) { t in
        var computer = TileComputer(kernel: net, train: features, test: nil)
        for index in stride(from: t, to: plan.count, by: threadCount) {
          let v = computer.compute(plan.tile(index))
          lock.withLock { slots[index] = v }
        }
      }
      results = slots.map { $0! }
    }
    // The Gram part alone, then the kernel alone (dot products + recursion, into reused
    // buffers), on the same threads and tiles: what `compute` spends beyond the kernel is the
    // tiles' own arrays, the mirror and the bookkeeping.
    let tileEdge = tile
    func onTiles(_ body: @escaping @Sendable (Tile, UnsafeMutableBufferPointer<Double>, TileOutput) -> Void) -> Double {
      best {
        DispatchQueue.concurrentPerform(iterations: threadCount) { t in
          var scratch = [Double](repeating: 0, count: net.scratchCount(features, rows: tileEdge, cols: tileEdge))
          var nngp = [Double](repeating: 0, count: tileEdge * tileEdge), ntk = nngp
          scratch.withUnsafeMutableBufferPointer { sp in nngp.withUnsafeMutableBufferPointer { np in ntk.withUnsafeMutableBufferPointer { tp in
            for index in stride(from: t, to: plan.count, by: threadCount) {
              let tl = plan.tile(index)
              body(tl, sp, TileOutput(values: [tp.baseAddress!, np.baseAddress!], leadingDimension: tl.cols.count))
            }
          } } }
        }
      }
    }
    // As the build does: diagonal tiles compute their upper triangle only (counted: j ≥ i).
    let gram = onTiles { tl, sp, _ in
      net.gramOnly(features, rows: tl.rows, features, cols: tl.cols, scratch: sp, upper: tl.isDiagonal)
    }
    let gramFlops = (0..<plan.count).reduce(0.0) { sum, index in
      let tl = plan.tile(index)
      let entries = tl.isDiagonal ? tl.rows.count * (tl.rows.count + 1) / 2 : tl.entryCount
      return sum + 2 * Double(d) * Double(entries)
    }
    let kernelOnly = onTiles { tl, sp, out in
      if tl.isDiagonal {
        net.computeUpperTile(features, rows: tl.rows, into: out, scratch: sp)
      } else {
        net.computeTile(features, rows: tl.rows, features, cols: tl.cols, into: out, scratch: sp)
      }
    }

    // I/O: every tile written as the build writes it (upper tile and mirror, straight to its
    // place in a laid-out kernel file, then its record), against dd to the same folder.
    let tiles = folder + "/bench-tiles-\(getpid())"
    try FileManager.default.createDirectory(atPath: tiles, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: tiles) }
    var bytes = 0.0
    // Until the data is on disk: the tiles as the build writes them, then one `sync`.
    sync()
    let io = try best {
      bytes = 0
      let path = tiles + "/kernel.h5"
      unlink(path)
      let regions = try { () throws -> [KernelRegion] in
        let f = try H5File.create(path)
        return try (0..<2).map { k in
          let d = try f.createAllocatedDataset("/train/k\(k)", shape: [n, n], type: dtype)
          return KernelRegion.of(d)!
        }
      }()
      let file = try RegionFile(path: path, writable: true)
      let scratch = WriteScratch()
      for v in results {
        let stored = (0..<v.outputs).map { StoredValues(v.values($0), as: dtype) }
        let (r, c) = (v.tile.rows.count, v.tile.cols.count)
        for (k, values) in stored.enumerated() {
          try file.write(values, to: regions[k], rowStart: v.tile.rows.lowerBound, colStart: v.tile.cols.lowerBound, rows: r, cols: c)
          if !v.tile.isDiagonal {
            try file.writeTransposed(values, to: regions[k], rowStart: v.tile.cols.lowerBound, colStart: v.tile.rows.lowerBound,
                                     rows: r, cols: c, scratch: scratch)
          }
          bytes += Double(values.count * dtype.byteCount * (v.tile.isDiagonal ? 1 : 2))
        }
        try TileRecord(index: v.tile.index, checksums: stored.map(\.checksum)).write(folder: tiles, fingerprint: "bench")
      }
      sync()
    }
    // dd gets the same number of tries as the tiles (best of `repeats`).
    let dd = (0..<repeats).compactMap { _ in ddThroughput(folder: tiles, megabytes: max(64, Int(bytes / 1e6))) }.max()

    // OpenBLAS Gram product of the same rows in the precision of our dot products, on as many
    // threads as the compute above used: the same cores. gemm gives all N² entries, syrk the
    // upper triangle (what the build computes); the faster one is the floor.
    setLinearAlgebraThreads(threadCount)
    let blas: Double, syrk: Double
    let (ni, di) = (Int32(n), Int32(d))
    if precision == .float64 {
      var c = [Double](repeating: 0, count: n * n)
      blas = best {
        x.values.withUnsafeBufferPointer { a in c.withUnsafeMutableBufferPointer { cp in
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ni, di, 1, a.baseAddress, di, a.baseAddress, di, 0, cp.baseAddress, ni)
        } }
      }
      syrk = best {
        x.values.withUnsafeBufferPointer { a in c.withUnsafeMutableBufferPointer { cp in
          cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, ni, di, 1, a.baseAddress, di, 0, cp.baseAddress, ni)
        } }
      }
    } else {
      let xf = x.values.map { Float($0) }
      var c = [Float](repeating: 0, count: n * n)
      blas = best {
        xf.withUnsafeBufferPointer { a in c.withUnsafeMutableBufferPointer { cp in
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ni, di, 1, a.baseAddress, di, a.baseAddress, di, 0, cp.baseAddress, ni)
        } }
      }
      syrk = best {
        xf.withUnsafeBufferPointer { a in c.withUnsafeMutableBufferPointer { cp in
          cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, ni, di, 1, a.baseAddress, di, 0, cp.baseAddress, ni)
        } }
      }
    }
    let solver = solverSamples > 0 ? solverPass(n: solverSamples) : (pass: 0, stream: 0, bytes: 0, finite: 0, check: 0)

    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return BenchmarkReport(
      samples: n, features: d, threads: threadCount, tile: tile, dtype: dtype.rawValue,
      gramPrecision: precision.rawValue, blasCore: linearAlgebraCore, data: data,
      computeSeconds: compute, entriesPerSecond: Double(n * n) / compute,
      gramSeconds: gram, gramGflops: gramFlops / gram / 1e9, recursionSeconds: max(0, kernelOnly - gram),
      tileOverheadSeconds: max(0, compute - kernelOnly),
      ioSeconds: io, ioMegabytesPerSecond: bytes / io / 1e6, ddMegabytesPerSecond: dd,
      blasGramSeconds: blas, blasGflops: 2 * Double(n) * Double(n) * Double(d) / blas / 1e9, blasSyrkSeconds: syrk,
      buildOverBlas: (compute + io) / min(blas, syrk), peakRSSMegabytes: Double(usage.ru_maxrss) / 1024,
      solverSamples: solverSamples, solverPassSeconds: solver.pass, solverStreamSeconds: solver.stream,
      solverStreamGigabytesPerSecond: solver.stream > 0 ? solver.bytes / solver.stream / 1e9 : 0,
      solverPassOverStream: solver.stream > 0 ? solver.pass / solver.stream : 0,
      solverFiniteSeconds: solver.finite, solverCheckSeconds: solver.check,
      solverCheckOverPass: solver.pass > 0 ? solver.check / solver.pass : 0)
  }

  /// One solver product over the upper tiles of an `n × n` kernel (random values: the time does
  /// not depend on them) in the storage precision, one read-only pass over the same bytes, and
  /// the first-read check of the same tiles (finite alone; finite and checksum).
  func solverPass(n: Int) -> (pass: Double, stream: Double, bytes: Double, finite: Double, check: Double) {
    let plan = TilePlan(trainCount: n, testCount: 0, tileSize: 1024)
    var g = SplitMix64(seed: 1)
    let tiles = (0..<plan.count).map { plan.tile($0) }
    let columns = 10, lanes = (columns + 3) / 4
    var x = [SIMD4<Double>](repeating: SIMD4(), count: n * lanes)
    for i in 0..<n { for j in 0..<columns { x[i * lanes + j / 4][j % 4] = g.unit() - 0.5 } }
    var y = x
    func timed<T: BinaryFloatingPoint & SIMDScalar>(_ values: [[T]], _ stored: ([T]) -> StoredValues) -> (Double, Double, Double, Double, Double) {
      let pass = best {
        for i in y.indices { y[i] = SIMD4() }
        x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { yb in
          for (t, v) in zip(tiles, values) {
            v.withUnsafeBufferPointer {
              symmetricTileProduct($0.baseAddress!, rows: t.rows.count, cols: t.cols.count, rowStart: t.rows.lowerBound,
                                   colStart: t.cols.lowerBound, diagonal: t.isDiagonal, x: xb.baseAddress!, y: yb.baseAddress!,
                                   lanes: lanes)
            }
          }
        } }
      }
      var sink = SIMD16<T>()
      let stream = best {
        for v in values {
          v.withUnsafeBufferPointer { p in
            var a = SIMD16<T>(), b = SIMD16<T>(), c = SIMD16<T>(), d = SIMD16<T>()
            var k = 0
            let raw = UnsafeRawPointer(p.baseAddress!)
            while k + 64 <= p.count {
              a += raw.loadUnaligned(fromByteOffset: k * MemoryLayout<T>.size, as: SIMD16<T>.self)
              b += raw.loadUnaligned(fromByteOffset: (k + 16) * MemoryLayout<T>.size, as: SIMD16<T>.self)
              c += raw.loadUnaligned(fromByteOffset: (k + 32) * MemoryLayout<T>.size, as: SIMD16<T>.self)
              d += raw.loadUnaligned(fromByteOffset: (k + 48) * MemoryLayout<T>.size, as: SIMD16<T>.self)
              k += 64
            }
            while k < p.count { a[0] += p[k]; k += 1 }
            sink += a + b + c + d
          }
        }
      }
      benchmarkSink = Double(sink.sum())
      var finiteCount = 0, sums: UInt64 = 0
      let finite = best { for v in values where stored(v).allFinite { finiteCount += 1 } }
      let check = best {
        for v in values {
          let s = stored(v)
          if s.allFinite { finiteCount += 1 }
          sums ^= s.checksum
        }
      }
      benchmarkSink += Double(finiteCount) + Double(sums & 1)
      return (pass, stream, Double(values.reduce(0) { $0 + $1.count } * MemoryLayout<T>.size), finite, check)
    }
    switch dtype {
    case .float32: return timed(tiles.map { t in (0..<(t.rows.count * t.cols.count)).map { _ in Float(g.unit()) } }, { .float32($0) })
    case .float64: return timed(tiles.map { t in (0..<(t.rows.count * t.cols.count)).map { _ in g.unit() } }, { .float64($0) })
    }
  }

  /// Sequential write throughput of `dd if=/dev/zero bs=1M conv=fsync` into `folder` (MB/s).
  func ddThroughput(folder: String, megabytes: Int) -> Double? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let file = folder + "/dd.bin"
    p.arguments = ["dd", "if=/dev/zero", "of=\(file)", "bs=1M", "count=\(megabytes)", "conv=fsync"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    let s = now()
    guard (try? p.run()) != nil else { return nil }
    p.waitUntilExit()
    let t = now() - s
    unlink(file)
    return p.terminationStatus == 0 ? Double(megabytes) * 1.048576 / t : nil
  }
}

/// A benchmark setting that cannot run.
public struct BenchmarkError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
