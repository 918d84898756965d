import Foundation
import GramAnalysis
import GramBuild
import GramSolver
import GramStorage
import GramTransport
import Testing

/// `dynamics` and `spectrum` in-process, on a kernel the build driver writes: rank counts,
/// t = ∞ against `solve`, the Krylov space exhausted on a small kernel.
@Suite("dynamics and spectrum drivers, in-process ranks", .serialized)
struct DynamicsDriverTests {
  /// A 41-sample kernel with 2 regression target columns.
  static func fixture() throws -> (folder: String, kernel: String, targets: String) {
    let d = try BuildDriverTests.folder()
    try BuildDriverTests.writeData(d)
    let kernel = d + "/k.h5"
    _ = try BuildDriverTests.build(BuildDriverTests.settings(d, out: kernel), ranks: 1)
    var state: UInt64 = 99
    let y = (0..<(41 * 2)).map { _ -> Double in
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Double(state >> 11) / Double(1 << 53) - 0.5
    }
    try NPY.write(DenseArray(rows: 41, cols: 2, values: y), to: d + "/y.npy")
    return (d, kernel, d + "/y.npy")
  }

  static func read(_ path: String, _ name: String) throws -> [Double] { try H5File.open(path).dataset(name).readAll() }

  @Test("1, 2 and 3 ranks give the same outputs; t = inf equals solve; the space is exhausted exactly")
  func ranksAndSolve() throws {
    let (d, kernel, targets) = try Self.fixture()
    var outputs: [[Double]] = []
    for ranks in 1...3 {
      var s = DynamicsSettings(kernelFile: kernel, out: d + "/dyn\(ranks).h5")
      s.times = [0, 0.5, 20, 1e3, .infinity]
      s.ridges = [1e-3, 1e-1]
      s.targets = targets
      s.tolerance = 1e-12
      let settings = s
      let report = try onRanks(ranks) { comm in try DynamicsDriver(settings: settings, comm: comm).run() }[0]
      #expect(report.converged)
      #expect(report.exhausted)  // 41 samples: the Krylov space is all of R⁴¹
      #expect(report.basisDimension == 41)
      outputs.append(try Self.read(s.out, "/dynamics/test/predictions") + Self.read(s.out, "/dynamics/train/predictions"))
    }
    for o in outputs.dropFirst() {
      #expect(zip(o, outputs[0]).allSatisfy { abs($0 - $1) <= 1e-10 * (1 + abs($1)) })
    }
    // t = inf against the solver at both ridges.
    var solve = SolveSettings(kernelFile: kernel, out: d + "/solution.h5")
    solve.ridges = [1e-3, 1e-1]
    solve.targets = targets
    solve.tolerance = 1e-12
    solve.preconditioner = .none
    let solveSettings = solve
    _ = try onRanks(1) { comm in try SolveDriver(settings: solveSettings, comm: comm).run() }
    let solved = try Self.read(solve.out, "/test/predictions")  // 2 × 13 × 2
    let dyn = try Self.read(d + "/dyn1.h5", "/dynamics/test/predictions")  // 2 × 5 × 13 × 2
    for r in 0..<2 {
      let ours = Array(dyn[((r * 5 + 4) * 26) ..< ((r * 5 + 5) * 26)])
      let theirs = Array(solved[(r * 26) ..< ((r + 1) * 26)])
      let scale = theirs.map(abs).max()!
      #expect(zip(ours, theirs).allSatisfy { abs($0 - $1) <= 1e-9 * scale })
    }
    // t = 0 is the zero function; t = inf on the training set is y.
    let train = try Self.read(d + "/dyn1.h5", "/dynamics/train/predictions")  // 2 × 5 × 41 × 2
    #expect(train[0 ..< 82].allSatisfy { $0 == 0 })
    let y = try NPY.readMatrix(targets).values
    #expect(zip(train[(4 * 82) ..< (5 * 82)], y).allSatisfy { abs($0 - $1) <= 1e-10 })
  }

  @Test("an unconverged run says so, keeps its estimates, and writes them")
  func notConverged() throws {
    let (d, kernel, targets) = try Self.fixture()
    var s = DynamicsSettings(kernelFile: kernel, out: d + "/dyn.h5")
    s.times = [1e6, .infinity]
    s.ridges = [1e-8]
    s.targets = targets
    s.tolerance = 1e-14
    s.maxIterations = 2
    let sink = CollectingSinkProxy()
    let settings = s
    let report = try onRanks(1) { comm in try DynamicsDriver(settings: settings, comm: comm, events: sink.sink).run() }[0]
    #expect(!report.converged)
    #expect(report.iterations == 2)
    #expect(report.points.allSatisfy { $0.errorEstimate > 1e-14 })
    #expect(sink.sink.warnings.contains { $0.contains("not converged") })
    #expect(try H5File.open(s.out).attribute("converged") == .int(0))
  }

  @Test("a kernel of rank 1 (identical samples): --top beyond its Krylov space is one clear error, not a crash")
  func lowRankSpectrum() throws {
    let d = try BuildDriverTests.folder()
    try NPY.write(DenseArray(rows: 41, cols: 9, values: [Double](repeating: 0.3, count: 41 * 9)), to: d + "/train.npy")
    try NPY.write(DenseArray(rows: 2, cols: 9, values: [Double](repeating: 0.1, count: 18)), to: d + "/test.npy")
    let kernel = d + "/k.h5"
    _ = try BuildDriverTests.build(BuildDriverTests.settings(d, out: kernel), ranks: 1)
    var s = SpectrumSettings(kernelFile: kernel, out: d + "/spec.h5")
    s.top = 40
    let settings = s
    #expect {
      _ = try onRanks(1) { comm in try SpectrumDriver(settings: settings, comm: comm).run() }
    } throws: { error in
      "\(error)".contains("low rank") && "\(error)".contains("k.h5")
    }
    #expect(!FileManager.default.fileExists(atPath: s.out))
  }

  @Test("spectrum on 1 and 3 ranks: the same eigenvalues, exhausted on a small kernel")
  func spectrumRanks() throws {
    let (d, kernel, _) = try Self.fixture()
    var values: [[Double]] = []
    for ranks in [1, 3] {
      var s = SpectrumSettings(kernelFile: kernel, out: d + "/spec\(ranks).h5")
      s.top = 5
      s.block = 4
      s.tolerance = 1e-13
      let settings = s
      let report = try onRanks(ranks) { comm in try SpectrumDriver(settings: settings, comm: comm).run() }[0]
      #expect(report.converged)
      #expect(report.eigenvalues == report.eigenvalues.sorted(by: >))
      #expect(report.smallestRitzValue > 0)
      values.append(report.eigenvalues)
    }
    #expect(zip(values[0], values[1]).allSatisfy { abs($0 - $1) <= 1e-12 * values[0][0] })
  }
}

import GramEvents

/// A `CollectingSink` shared with the rank threads.
final class CollectingSinkProxy: @unchecked Sendable {
  let sink = CollectingSink()
}
