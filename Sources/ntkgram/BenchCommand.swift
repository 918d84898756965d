import ArgumentParser
import Foundation
import NTKGramBench

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time the reference build (FC ReLU depth 3, d = 784, N = 4096, NTK + NNGP) in parts, beside OpenBLAS's X·Xᵀ.")

  @Option(parsing: .unconditional, help: "Samples (the first N Fashion-MNIST images; random rows without the dataset).") var samples: Int = 4096
  @Option(parsing: .unconditional, help: "Tile edge.") var tile: Int = 1024
  @Option(help: "Storage precision (float32 or float64); also the precision of the BLAS comparison.") var dtype: String = "float32"
  @Option(name: .customLong("gram-precision"),
          help: "Precision of the dot products (float32 or float64). Default: that of --dtype.") var gramPrecision: String?
  @Option(help: "Folder for the I/O part (tile checkpoints and dd).") var dir: String = "."
  @Option(parsing: .unconditional, help: "Runs of each part; the best is reported.") var repeats: Int = 5
  @Option(parsing: .unconditional, help: "Threads for the compute part (and for the BLAS comparison).") var threads: Int = 1
  @Option(name: .customLong("solver-samples"),
          help: "N of the solver part (upper tiles in memory, 10 right-hand sides); 0 skips it.") var solverSamples: Int = 20_000
  @Flag(name: .customLong("fma-peak"),
        help: "Only measure the cores' fused multiply-add peak: SIMD4<Double> and SIMD8<Float> FMAs on --threads threads for about --fma-seconds each (GFLOP/s, 2 flops per lane).") var fmaPeak = false
  @Option(name: .customLong("fma-seconds"), parsing: .unconditional, help: "Seconds of each precision's --fma-peak run.", transform: decimal)
  var fmaSeconds: Double = 1
  @Flag(help: "Print JSON instead of text.") var json = false

  func run() throws {
    guard samples >= 2, tile >= 1, repeats >= 1, threads >= 1 else { throw CommandError("--samples ≥ 2, --tile ≥ 1, --repeats ≥ 1, --threads ≥ 1") }
    if fmaPeak { try runFMAPeak(); return }
    var b = Benchmark(folder: dir)
    b.samples = samples
    b.tile = tile
    do { try b.setPrecisions(dtype: dtype, gramPrecision: gramPrecision) } catch let e as BenchmarkError { throw CommandError(e.description) }
    b.repeats = repeats
    b.threads = threads
    guard solverSamples >= 0 else { throw CommandError("--solver-samples must be ≥ 0") }
    b.solverSamples = solverSamples
    let r = try b.run()
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(r), as: UTF8.self))
      return
    }
    func f(_ v: Double, _ p: Int = 3) -> String { String(format: "%.\(p)g", v) }
    print("reference job: FC ReLU depth 3, W_std √2, b_std 0.1, N = \(r.samples) \(r.data) rows, d = \(r.features), tile \(r.tile), store \(r.dtype), dot products \(r.gramPrecision), 1 rank, \(r.threads) thread(s)")
    print("entries/s:           \(f(r.entriesPerSecond)) (compute \(f(r.computeSeconds)) s for \(r.samples)² entries, NTK + NNGP)")
    print("dot products:        \(f(r.gramSeconds)) s, \(f(r.gramGflops)) GFLOP/s")
    print("recursion:           \(f(r.recursionSeconds)) s")
    print("tile arrays, mirror: \(f(r.tileOverheadSeconds)) s")
    print("tile I/O:            \(f(r.ioSeconds)) s, \(f(r.ioMegabytesPerSecond)) MB/s" + (r.ddMegabytesPerSecond.map { " (dd: \(f($0)) MB/s, ratio \(f(r.ioMegabytesPerSecond / $0, 2)))" } ?? ""))
    print("OpenBLAS X·Xᵀ (\(r.blasCore), \(r.threads) thread(s)): gemm \(f(r.blasGramSeconds)) s (\(f(r.blasGflops)) GFLOP/s), syrk \(f(r.blasSyrkSeconds)) s")
    print("build / BLAS:        \(f(r.buildOverBlas)) (compute + I/O over the faster BLAS call)")
    if r.solverSamples > 0 {
      print("solver K·X (N = \(r.solverSamples), 10 columns, 1 thread): \(f(r.solverPassSeconds)) s per iteration; streaming the same \(r.dtype) tiles: \(f(r.solverStreamSeconds)) s (\(f(r.solverStreamGigabytesPerSecond)) GB/s); ratio \(f(r.solverPassOverStream))")
      print("first-read tile check (solve, dynamics, spectrum, predict; once per command): finite + checksum \(f(r.solverCheckSeconds)) s, finite alone \(f(r.solverFiniteSeconds)) s; \(f(r.solverCheckOverPass)) of one K·X")
    }
    print("peak RSS:            \(f(r.peakRSSMegabytes)) MB")
  }

  /// `--fma-peak`: the cores' FMA peak alone (`measureFMAPeak`).
  func runFMAPeak() throws {
    guard fmaSeconds > 0, fmaSeconds <= 60 else { throw CommandError("--fma-seconds must be in (0, 60]") }
    let r = measureFMAPeak(threads: threads, seconds: fmaSeconds)
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(r), as: UTF8.self))
      return
    }
    print(String(format: "FMA peak, %d thread(s), %d accumulators per thread: float64 (SIMD4<Double>) %.1f GFLOP/s, float32 (SIMD8<Float>) %.1f GFLOP/s",
                 r.threads, r.accumulators, r.float64Gflops, r.float32Gflops))
  }
}
