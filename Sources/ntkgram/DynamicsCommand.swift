import ArgumentParser
import Foundation
import GramAnalysis

/// A number written in decimal (`12`, `-0.5`, `1e-4`, `.5`): digits, one point, an exponent.
/// Swift's `Double(_:)` also reads hexadecimal (`0x10` is 16), `nan` and `inf`; a list of times
/// or ridges takes only decimals, so that `0x10` is an error rather than 16.
func parseDecimal(_ text: String) -> Double? {
  let decimal = #/[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?/#
  guard (try? decimal.wholeMatch(in: text)) != nil else { return nil }
  return Double(text)
}

/// A number option's value as a decimal (the `transform:` of every floating-point option): a
/// hexadecimal `0x10` is not 16; `inf` and `nan` are read, for each option's own check to refuse
/// in its words. With `parsing: .unconditional`, `-5` is a value (refused by that check), not
/// a missing one.
func decimal(_ text: String) throws -> Double {
  let words = ["inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"]
  guard let v = parseDecimal(text) ?? (words.contains(text.lowercased()) ? Double(text.lowercased()) : nil) else {
    throw CommandError("'\(text)' is not a decimal number")
  }
  return v
}

/// The first value of `values` given twice (equal as numbers), if any.
func firstDuplicate(_ values: [Double]) -> Double? {
  var seen = Set<Double>()
  for v in values where !seen.insert(v).inserted { return v }
  return nil
}

/// `0.1,1,10,inf`, with `log:START:STOP:COUNT` items expanded to COUNT log-spaced times. Items
/// are decimal numbers (never hexadecimal), `inf`, or log ranges. The commands refuse times
/// that do not strictly increase, a time given twice included (`DynamicsDriver.validate`,
/// `TrainDriver.steps`).
func parseTimes(_ text: String) throws -> [Double] {
  var times: [Double] = []
  for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
    if item.hasPrefix("log:") {
      let parts = item.dropFirst(4).split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count == 3, let a = parseDecimal(String(parts[0])), let b = parseDecimal(String(parts[1])),
            let count = Int(parts[2]), parts[2].allSatisfy(\.isNumber) else {
        throw CommandError("--times: '\(item)' is not log:START:STOP:COUNT (decimal numbers)")
      }
      guard a > 0, b > a, a.isFinite, b.isFinite, count >= 2, count <= 100_000 else {
        throw CommandError("--times: '\(item)' needs 0 < START < STOP (finite) and 2 ≤ COUNT ≤ 100000")
      }
      for i in 0..<count { times.append(i == count - 1 ? b : a * pow(b / a, Double(i) / Double(count - 1))) }
    } else if ["inf", "infinity", "+inf"].contains(item.lowercased()) {
      times.append(.infinity)
    } else if let v = parseDecimal(item) {
      guard v >= 0, v.isFinite else { throw CommandError("--times: '\(item)' is not a training time (times are ≥ 0, or inf)") }
      times.append(v)
    } else {
      throw CommandError("--times: '\(item)' is not a time (a decimal number ≥ 0, inf, or log:START:STOP:COUNT)")
    }
  }
  return times
}

/// `train --times`: as `parseTimes`, and a time given as a number is a whole number of steps
/// (`4.6` is refused, not rounded into another requested step; `log:` ranges are rounded).
func parseSteps(_ text: String) throws -> [Double] {
  for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.hasPrefix("log:") {
    if let v = parseDecimal(item), v.isFinite, v >= 0, v != v.rounded() {
      throw CommandError("--times: '\(item)' is not a whole number of steps (train records whole steps; only log:START:STOP:COUNT is rounded)")
    }
  }
  return try parseTimes(text)
}

/// A class encoding's name (`onehot`, `centered`).
func parseEncoding(_ name: String) throws -> TargetEncoding {
  guard let e = TargetEncoding(rawValue: name) else { throw CommandError("unknown encoding '\(name)' (valid: onehot, centered)") }
  return e
}

/// `1e-4,1e-3` → ridge values (≥ 0 when `allowZero`): decimal numbers, each given once.
func parseRidges(_ text: String, allowZero: Bool) throws -> [Double] {
  let ridges = try text.split(separator: ",", omittingEmptySubsequences: false).map {
    let item = $0.trimmingCharacters(in: .whitespaces)
    // inf and nan are read (and refused below as not finite); hexadecimal is not a ridge.
    guard let v = try? decimal(item) else { throw CommandError("--ridge: '\(item)' is not a decimal number") }
    guard v.isFinite, allowZero ? v >= 0 : v > 0 else {
      throw CommandError("--ridge must be a \(allowZero ? "non-negative" : "positive") finite number (got \(v))")
    }
    return v
  }
  if let twice = firstDuplicate(ridges) {
    throw CommandError("--ridge: \(twice) is given twice (each ridge value is solved once: give it once)")
  }
  return ridges
}

/// Points up to this many get one stdout line each; more are summarised (`pointsToPrint`).
let perTimeLinesLimit = 50
/// Lines kept at each end of a summarised list.
let perTimeLinesShownAtEnds = 5

/// The indices of the per-time lines `dynamics` and `train` print: none with `--quiet` (the
/// summary line only), every one up to `perTimeLinesLimit`, else the first and last
/// `perTimeLinesShownAtEnds` (the file and the metrics hold every one).
func pointsToPrint(_ count: Int, quiet: Bool) -> [Int] {
  if quiet { return [] }
  if count <= perTimeLinesLimit { return Array(0..<count) }
  return Array(0..<perTimeLinesShownAtEnds) + Array((count - perTimeLinesShownAtEnds)..<count)
}

struct DynamicsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dynamics",
    abstract: "Gradient-descent training dynamics over a stored kernel: train and test outputs at every requested time, by block Lanczos.",
    discussion: """
      The conventions of neural-tangents' gradient_descent_mse with zero initial outputs (the ensemble mean): loss \
      ½‖f − y‖²/(N·C), f_t = (I − exp(−η·t·K/(N·C)))·y on the training set and K*·K⁻¹·(I − exp(−η·t·K/(N·C)))·y \
      on the test set, K = kernel + ρI. One Krylov basis serves every time and every ridge value; no eigendecomposition \
      of K. Runs under mpirun like solve.
      """)

  @Argument(help: "A kernel file written by `ntkgram build`.") var kernelFile: String
  @Option(parsing: .unconditional, help: "Training times, comma-separated, strictly increasing (each once): decimal numbers ≥ 0, inf, or log:START:STOP:COUNT (log-spaced). More than 50 (time, ridge) points print the first and last five; --quiet prints none.") var times: String
  @Option(name: .customLong("learning-rate"), parsing: .unconditional, help: "η (neural-tangents' learning_rate).", transform: decimal) var learningRate: Double = 1
  @Option(name: .customLong("kernel-name"), help: "ntk or nngp.") var kernelName: String = "ntk"
  @Option(parsing: .unconditional, help: "Ridge value(s) ρ ≥ 0, comma-separated decimals, each once; relative to trace(K)/N unless --ridge-absolute (neural-tangents' diag_reg).") var ridge: String = "0"
  @Flag(name: .customLong("ridge-absolute"), help: "Ridge values are absolute.") var ridgeAbsolute = false
  @Option(parsing: .unconditional, help: "Stop when every output's error estimate is ≤ tol (relative to the targets' norm, per column).", transform: decimal) var tol: Double = 1e-6
  @Option(name: .customLong("max-iter"), parsing: .unconditional, help: "Block Lanczos step limit (one pass over K each).") var maxIter: Int = 1000
  @Option(name: .customLong("memory-budget"), help: "Bytes of kernel tiles kept in memory per rank (e.g. 4GiB); the rest is streamed.") var memoryBudget: String = "4GiB"
  @Option(help: "Regression targets (N rows): .npy, file.h5:/dataset or .csv.") var targets: String?
  @Option(name: .customLong("test-targets"), help: "Regression targets of the test set, for the test loss.") var testTargets: String?
  @Option(name: .customLong("initial-outputs"),
          help: "Predict one network instead of the ensemble mean: its outputs at initialisation from this HDF5 file's /initial_outputs/train and /initial_outputs/test (an empirical kernel file or a train output).")
  var initialOutputs: String?
  @Option(help: "Class encoding: onehot (0/1) or centered (−0.1/0.9).") var encoding: String = "onehot"
  @Option(help: "Output file (.h5).") var out: String
  @Option(help: "Write metrics as JSON to this file.") var metrics: String?
  @Flag(help: "Replace an existing output file.") var force = false
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> DynamicsSettings {
    var s = DynamicsSettings(kernelFile: kernelFile, out: out)
    s.times = try parseTimes(times)
    s.learningRate = learningRate
    s.kernelName = kernelName
    s.ridges = try parseRidges(ridge, allowZero: true)
    s.ridgeAbsolute = ridgeAbsolute
    s.tolerance = tol
    s.maxIterations = maxIter
    s.memoryBudget = try parseBytes(memoryBudget)
    s.targets = targets
    s.testTargets = testTargets
    s.initialOutputs = initialOutputs
    s.encoding = try parseEncoding(encoding)
    s.metrics = metrics
    s.force = force
    do { try DynamicsDriver.validate(s) } catch let e as AnalysisError { throw CommandError(e.description) }
    return s
  }

  func run() throws {
    let s = try settings()
    let report = try withProgress(quiet: quiet, logJSON: logJSON, paths: s.paths) { comm, sink in
      let notice = InterruptNotice(rank: comm.rank, output: s.out, others: [s.metrics].compactMap { $0 }) { signal, written in
        InterruptNotice.dynamicsLine(signal, written: written, progress: (sink as? ProgressRenderer)?.lastProgress, out: s.out,
                                     tolerance: s.tolerance)
      }
      defer { notice.stop() }
      return try DynamicsDriver(settings: s, comm: comm, events: sink).run()
    }
    guard launcherRank == 0 else { return }
    print("dynamics of \(report.trainCount) samples × \(report.columns) columns on \(report.ranks) rank(s): \(report.iterations) block Lanczos steps (basis \(report.basisDimension)), \(report.passes) passes over K in \(String(format: "%.1f", report.seconds)) s\(report.converged ? "" : " — NOT converged")")
    let shown = pointsToPrint(report.points.count, quiet: quiet)
    if shown.count < report.points.count && !quiet {
      print("\(report.points.count) (time, ridge) points: the first and last \(perTimeLinesShownAtEnds) shown; every one in \(s.out) (/dynamics/*/loss, /dynamics/*/accuracy)\(s.metrics.map { " and \($0)" } ?? "")")
    }
    for p in shown.map({ report.points[$0] }) {
      var line = "t = \(p.time.isInfinite ? "inf" : String(format: "%.6g", p.time))"
      if s.ridges.count > 1 || p.ridge != 0 { line += ", ridge \(p.ridge)" }
      line += ": train loss \(String(format: "%.4g", p.trainLoss))"
      if let a = p.trainAccuracy { line += ", train accuracy \(String(format: "%.4f", a))" }
      if let l = p.testLoss { line += ", test loss \(String(format: "%.4g", l))" }
      if let a = p.testAccuracy { line += ", test accuracy \(String(format: "%.4f", a))" }
      line += " (error ≤ \(String(format: "%.1e", p.errorEstimate)))"
      print(line)
    }
  }
}

struct SpectrumCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "spectrum",
    abstract: "The largest eigenpairs of a stored kernel by block Lanczos (out of core, distributed), with the trace, the smallest Ritz value, the largest stable learning rate and the targets' energy per eigenvector.")

  @Argument(help: "A kernel file written by `ntkgram build`.") var kernelFile: String
  @Option(parsing: .unconditional, help: "How many of the largest eigenpairs.") var top: Int = 10
  @Option(name: .customLong("kernel-name"), help: "ntk or nngp.") var kernelName: String = "ntk"
  @Option(parsing: .unconditional, help: "Lanczos block size (default: min(top, 32)).") var block: Int = 0
  @Option(parsing: .unconditional, help: "Stop when every top pair's residual ‖K·v − λ·v‖ is ≤ tol·λ_max.", transform: decimal) var tol: Double = 1e-10
  @Option(name: .customLong("max-iter"), parsing: .unconditional, help: "Block Lanczos step limit (one pass over K each).") var maxIter: Int = 1000
  @Option(name: .customLong("memory-budget"), help: "Bytes of kernel tiles kept in memory per rank (e.g. 4GiB); the rest is streamed.") var memoryBudget: String = "4GiB"
  @Option(name: .customLong("learning-rate"), parsing: .unconditional, help: "η, for the per-direction rates η·λ/(N·C).", transform: decimal) var learningRate: Double = 1
  @Option(help: "Targets for the energy per eigenvector (default: the file's one-hot labels, if any).") var targets: String?
  @Option(help: "Class encoding: onehot (0/1) or centered (−0.1/0.9).") var encoding: String = "onehot"
  @Option(parsing: .unconditional, help: "Seed of the random start block.") var seed: UInt64 = 0x5eed
  @Option(help: "Output file (.h5).") var out: String
  @Option(help: "Write metrics as JSON to this file.") var metrics: String?
  @Flag(help: "Replace an existing output file.") var force = false
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> SpectrumSettings {
    var s = SpectrumSettings(kernelFile: kernelFile, out: out)
    s.top = top
    s.kernelName = kernelName
    s.block = block
    s.tolerance = tol
    s.maxIterations = maxIter
    s.memoryBudget = try parseBytes(memoryBudget)
    s.learningRate = learningRate
    s.targets = targets
    s.encoding = try parseEncoding(encoding)
    s.seed = seed
    s.metrics = metrics
    s.force = force
    do { try SpectrumDriver.validate(s) } catch let e as AnalysisError { throw CommandError(e.description) }
    return s
  }

  func run() throws {
    let s = try settings()
    let report = try withProgress(quiet: quiet, logJSON: logJSON, paths: s.paths) { comm, sink in
      try SpectrumDriver(settings: s, comm: comm, events: sink).run()
    }
    guard launcherRank == 0 else { return }
    print("top \(report.eigenvalues.count) eigenvalues of \(report.trainCount) × \(report.trainCount) on \(report.ranks) rank(s): \(report.iterations) block Lanczos steps, \(report.passes) passes over K in \(String(format: "%.1f", report.seconds)) s\(report.converged ? "" : " — NOT converged")")
    print("λ_max \(String(format: "%.6g", report.eigenvalues.first ?? 0)), trace \(String(format: "%.6g", report.trace)), smallest Ritz value \(String(format: "%.3g", report.smallestRitzValue)) (± \(String(format: "%.1e", report.smallestRitzResidual))), largest stable learning rate \(String(format: "%.6g", report.maxStableLearningRate))")
    if let e = report.targetEnergy {
      print("targets' energy on the top \(e.count) eigenvectors: \(String(format: "%.4f", e.reduce(0, +))) (first: \(String(format: "%.4f", e.first ?? 0)))")
    }
  }
}
