import CLAPACK
import Foundation
import GramKernels
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
  /// compute − gram.
  public var recursionSeconds: Double
  /// Writing every tile as a checkpoint, and what `dd` (conv=fsync) writes to the same folder.
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

  enum CodingKeys: String, CodingKey {
    case samples, features, tile, dtype, data, threads
    case gramPrecision = "gram_precision", blasCore = "blas_core", blasSyrkSeconds = "blas_syrk_s"
    case computeSeconds = "compute_s", entriesPerSecond = "entries_per_s", gramSeconds = "gram_s", gramGflops = "gram_gflops"
    case recursionSeconds = "recursion_s", ioSeconds = "io_s", ioMegabytesPerSecond = "io_MB_per_s"
    case ddMegabytesPerSecond = "dd_MB_per_s", blasGramSeconds = "blas_gram_s", blasGflops = "blas_gflops"
    case buildOverBlas = "build_over_blas", peakRSSMegabytes = "peak_rss_MB"
  }
}

public struct Benchmark {
  public var samples = 4096
  public var tile = 1024
  public var dtype: ScalarType = .float32
  /// Precision of the dot products; nil: that of `dtype`.
  public var gramPrecision: GramPrecision?
  public var folder: String
  public var repeats = 3
  /// Threads for the compute part.
  public var threads = 1

  public init(folder: String) { self.folder = folder }

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
    // The Gram part alone, on the same threads and tiles.
    let tileEdge = tile
    var gramFlops = 0.0
    let gram = best {
      let lock = NSLock()
      nonisolated(unsafe) var flops = 0.0
      DispatchQueue.concurrentPerform(iterations: threadCount) { t in
        var scratch = [Double](repeating: 0, count: net.scratchCount(features, rows: tileEdge, cols: tileEdge))
        var mine = 0.0
        scratch.withUnsafeMutableBufferPointer { sp in
          for index in stride(from: t, to: plan.count, by: threadCount) {
            let tl = plan.tile(index)
            if tl.isDiagonal {
              // As the build does: the upper triangle only (counted: the entries j ≥ i).
              net.gramOnly(features, rows: tl.rows, features, cols: tl.cols, scratch: sp, upper: true)
              mine += 2 * Double(d) * Double(tl.rows.count * (tl.rows.count + 1) / 2)
            } else {
              net.gramOnly(features, rows: tl.rows, features, cols: tl.cols, scratch: sp)
              mine += 2 * Double(d) * Double(tl.entryCount)
            }
          }
        }
        lock.withLock { flops += mine }
      }
      gramFlops = flops
    }

    // I/O: every tile as a checkpoint, against dd to the same folder.
    let tiles = folder + "/bench-tiles-\(getpid())"
    try FileManager.default.createDirectory(atPath: tiles, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: tiles) }
    var bytes = 0.0
    let io = try best {
      bytes = 0
      for v in results {
        let stored = KernelFileLayout.kernelNames.map { StoredValues(v.values($0), as: dtype) }
        try TileCheckpoint(index: v.tile.index, rowStart: v.tile.rows.lowerBound, colStart: v.tile.cols.lowerBound,
                           rows: v.tile.rows.count, cols: v.tile.cols.count, values: stored).write(folder: tiles, fingerprint: "bench")
        bytes += Double(stored.reduce(0) { $0 + $1.count } * dtype.byteCount)
      }
    }
    let dd = ddThroughput(folder: tiles, megabytes: max(64, Int(bytes / 1e6)))

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
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return BenchmarkReport(
      samples: n, features: d, threads: threadCount, tile: tile, dtype: dtype.rawValue,
      gramPrecision: precision.rawValue, blasCore: linearAlgebraCore, data: data,
      computeSeconds: compute, entriesPerSecond: Double(n * n) / compute,
      gramSeconds: gram, gramGflops: gramFlops / gram / 1e9, recursionSeconds: max(0, compute - gram),
      ioSeconds: io, ioMegabytesPerSecond: bytes / io / 1e6, ddMegabytesPerSecond: dd,
      blasGramSeconds: blas, blasGflops: 2 * Double(n) * Double(n) * Double(d) / blas / 1e9, blasSyrkSeconds: syrk,
      buildOverBlas: (compute + io) / min(blas, syrk), peakRSSMegabytes: Double(usage.ru_maxrss) / 1024)
  }

  /// Sequential write throughput of `dd if=/dev/zero … conv=fsync` into `folder` (MB/s).
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
