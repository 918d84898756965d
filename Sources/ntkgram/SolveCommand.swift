import ArgumentParser
import Foundation
import GramAnalysis

/// `4GiB`, `512MiB`, `2GB`, `1e9` → bytes. Refuses NaN, negative and absurd sizes (≥ 2⁶² bytes)
/// instead of overflowing.
func parseBytes(_ text: String) throws -> Int {
  let kib = 1024.0
  let units: [(String, Double)] = [("KiB", kib), ("MiB", kib * kib), ("GiB", kib * kib * kib), ("TiB", kib * kib * kib * kib),
                                   ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
                                   ("K", kib), ("M", kib * kib), ("G", kib * kib * kib), ("B", 1)]
  var bytes: Double? = nil
  for (suffix, factor) in units where text.hasSuffix(suffix) {
    if let v = Double(text.dropLast(suffix.count)) { bytes = v * factor }
    break
  }
  if bytes == nil, let v = Double(text) { bytes = v }
  guard let b = bytes, b.isFinite, b >= 0 else { throw CommandError("cannot read '\(text)' as a size (e.g. 4GiB, 512MiB, 2e9)") }
  guard b < 0x1p62 else { throw CommandError("'\(text)' is larger than any machine's memory (at most 4 EiB)") }
  return Int(b)
}

struct SolveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "solve",
    abstract: "Kernel ridge regression over a stored kernel: (K + λI) α = Y by preconditioned CG, streamed from disk; then test predictions and metrics.",
    discussion: """
      Targets: one-hot classes from /train/labels (default), or --targets FILE (NPY, file.h5:/dataset, CSV) for regression.
      Ridge values are relative to trace(K)/N unless --ridge-absolute. Runs under mpirun: the ranks share the tiles.
      A killed solve rerun with the same command resumes from its checkpoint (OUT.solve-state.h5).
      """)

  @Argument(help: "A kernel file written by `ntkgram build`.") var kernelFile: String
  @Option(name: .customLong("kernel-name"), help: "ntk or nngp.") var kernelName: String = "ntk"
  @Option(parsing: .unconditional, help: "Ridge value(s), comma-separated decimals, each once; relative to trace(K)/N unless --ridge-absolute.") var ridge: String = "1e-4"
  @Flag(name: .customLong("ridge-absolute"), help: "Ridge values are absolute λ.") var ridgeAbsolute = false
  @Option(parsing: .unconditional, help: "Stop a column at ‖Y − (K+λI)α‖/‖Y‖ ≤ tol.", transform: decimal) var tol: Double = 1e-6
  @Option(name: .customLong("max-iter"), parsing: .unconditional, help: "Iteration limit.") var maxIter: Int = 1000
  @Option(help: "block-cg (breakdown-free block CG, the default: fewest passes, see docs/solver.md) or cg (per column, drops converged columns).") var solver: String = "block-cg"
  @Option(help: "rpcholesky (the default: Nyström from randomly pivoted Cholesky, rank columns of K read, no pass), nystrom (Gaussian sketch: one pass with rank columns), jacobi or none.") var preconditioner: String = "rpcholesky"
  @Option(parsing: .unconditional, help: "Rank of the Nyström preconditioner.") var rank: Int = 1000
  @Option(name: .customLong("memory-budget"), help: "Bytes per rank (e.g. 4GiB) for the preconditioner, the solver's vectors and the kernel tiles kept in memory; the other tiles are read from the file on every pass (ntkgram plan shows the split).") var memoryBudget: String = "4GiB"
  @Option(help: "Regression targets (N rows): .npy, file.h5:/dataset or .csv.") var targets: String?
  @Option(name: .customLong("test-targets"), help: "Regression targets of the test set, for MSE/RMSE.") var testTargets: String?
  @Option(help: "Class encoding: onehot (0/1) or centered (−0.1/0.9).") var encoding: String = "onehot"
  @Option(help: "Solution file (.h5).") var out: String
  @Option(help: "Write metrics as JSON to this file.") var metrics: String?
  @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "Save the CG state every k iterations (0: never).") var checkpointEvery: Int = 10
  @Flag(help: "Also run unpreconditioned per-column CG on the same passes and report its iteration count.") var baseline = false
  @Flag(help: "Replace an existing solution file.") var force = false
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> SolveSettings {
    var s = SolveSettings(kernelFile: kernelFile, out: out)
    s.kernelName = kernelName
    s.ridges = try parseRidges(ridge, allowZero: false)
    s.ridgeAbsolute = ridgeAbsolute
    guard tol > 0 else { throw CommandError("--tol must be positive (got \(tol))") }
    s.tolerance = tol
    guard maxIter >= 1 else { throw CommandError("--max-iter must be at least 1") }
    s.maxIterations = maxIter
    guard let sv = SolveSettings.Solver(rawValue: solver) else { throw CommandError("unknown solver '\(solver)' (valid: cg, block-cg)") }
    s.solver = sv
    guard let p = SolveSettings.PreconditionerKind(rawValue: preconditioner) else {
      throw CommandError("unknown preconditioner '\(preconditioner)' (valid: rpcholesky, nystrom, jacobi, none)")
    }
    s.preconditioner = p
    guard rank >= 1 else { throw CommandError("--rank must be at least 1") }
    s.rank = rank
    s.memoryBudget = try parseBytes(memoryBudget)
    s.targets = targets
    s.testTargets = testTargets
    guard let e = SolveSettings.Encoding(rawValue: encoding) else { throw CommandError("unknown encoding '\(encoding)' (valid: onehot, centered)") }
    s.encoding = e
    s.metrics = metrics
    s.checkpointEvery = max(0, checkpointEvery)
    s.force = force
    s.baseline = baseline
    return s
  }

  func run() throws {
    let s = try settings()
    let report = try withProgress(quiet: quiet, logJSON: logJSON, paths: s.paths) { comm, sink in
      try SolveDriver(settings: s, comm: comm, events: sink).run()
    }
    guard launcherRank == 0 else { return }
    print("solved \(report.trainCount) samples × \(report.columns) columns with \(report.solver) + \(report.preconditioner)" +
          (report.nystromRank.map { " (rank \($0))" } ?? "") + " on \(report.ranks) rank(s): \(report.passes) passes over K in \(String(format: "%.1f", report.seconds)) s")
    for r in report.results {
      var line = "ridge \(r.ridge) (λ = \(String(format: "%.4g", r.lambda))): \(r.iterations) iterations, worst true residual \(String(format: "%.2e", r.worstTrueResidual))"
      if let b = r.baselineIterations { line += ", unpreconditioned per-column CG: \(b) iterations" }
      if let a = r.accuracy { line += ", test accuracy \(String(format: "%.4f", a))" }
      if let m = r.mse { line += ", test MSE \(String(format: "%.4g", m)), RMSE \(String(format: "%.4g", r.rmse!))" }
      print(line)
    }
  }
}
