import Foundation
import GramEvents
import GramSolver
import GramStorage
import GramTransport

/// What `ntkgram solve` is asked to do.
public struct SolveSettings: Sendable {
  public enum Solver: String, Sendable, CaseIterable { case cg, blockCG = "block-cg" }
  public enum PreconditionerKind: String, Sendable, CaseIterable { case nystrom, rpcholesky, jacobi, none }
  public typealias Encoding = TargetEncoding

  public var kernelFile: String
  public var kernelName = "ntk"
  public var ridges: [Double] = [1e-4]
  public var ridgeAbsolute = false
  public var tolerance = 1e-6
  public var maxIterations = 1000
  public var solver: Solver = .blockCG
  public var preconditioner: PreconditionerKind = .rpcholesky
  public var rank = 1000
  public var memoryBudget = 4 << 30
  public var targets: String?
  public var testTargets: String?
  public var encoding: Encoding = .onehot
  public var out: String
  public var metrics: String?
  public var checkpointEvery = 10
  public var force = false
  /// Also run unpreconditioned per-column CG on the same passes, and report its iterations.
  public var baseline = false
  public var seed: UInt64 = 0x5eed

  public init(kernelFile: String, out: String) {
    self.kernelFile = kernelFile
    self.out = out
  }

  /// What a checkpoint must match to be resumed.
  var identity: String {
    "\(kernelName)|\(ridges)|\(ridgeAbsolute)|\(tolerance)|\(solver.rawValue)|\(preconditioner.rawValue)|\(rank)|\(encoding.rawValue)|\(targets ?? "labels")|\(baseline)|\(seed)"
  }

  /// The solve's checkpoint, `OUT.solve-state.h5` beside the output (`derivedPath`: room for
  /// the `.tmp-PID` of its writer).
  public var statePath: String { derivedPath(of: out, prefix: "", suffix: ".solve-state.h5", reserve: 16) }

  /// The files this solve reads and writes, checked together before any work.
  public var paths: CommandPaths {
    var inputs: [(String, String)] = []
    if let t = targets { inputs.append((t, "the targets")) }
    if let t = testTargets { inputs.append((t, "the test targets")) }
    var paths = analysisPaths(kernelFile: kernelFile, inputs: inputs, out: out, outName: "the solution file", metrics: metrics,
                              more: [PlannedOutput(statePath, "the solve's checkpoint", mayExist: true)], force: force)
    paths.resuming = FileType.of(statePath) == .regular
    return paths
  }
}

/// One line of `metrics.json`.
public struct RidgeMetrics: Codable, Sendable {
  public var ridge: Double
  public var lambda: Double
  public var iterations: Int
  public var worstTrueResidual: Double
  public var accuracy: Double?
  public var mse: Double?
  public var rmse: Double?
  public var baselineIterations: Int?

  enum CodingKeys: String, CodingKey {
    case ridge, lambda, iterations, accuracy, mse, rmse
    case worstTrueResidual = "worst_true_residual"
    case baselineIterations = "baseline_unpreconditioned_cg_iterations"
  }
}

/// The outcome of a solve, as written to `metrics.json`.
public struct SolveReport: Codable, Sendable {
  public var kernelFile: String
  public var kernel: String
  public var solver: String
  public var preconditioner: String
  public var nystromRank: Int?
  public var ranks: Int
  public var trainCount: Int
  public var testCount: Int
  public var columns: Int
  public var passes: Int
  public var seconds: Double
  public var resumedFromIteration: Int
  public var cachedTiles: Int
  public var streamedTiles: Int
  /// Measured on the rank where each is largest: the peak resident set (`VmHWM`), and the
  /// kernel file's mapped pages in it at the end (`ntkgram plan` predicts both).
  public var peakResidentBytes: Int?
  public var mappedKernelBytes: Int?
  public var results: [RidgeMetrics]

  enum CodingKeys: String, CodingKey {
    case kernel, solver, preconditioner, ranks, columns, passes, seconds, results
    case kernelFile = "kernel_file", nystromRank = "nystrom_rank", trainCount = "train_count", testCount = "test_count"
    case resumedFromIteration = "resumed_from_iteration", cachedTiles = "cached_tiles", streamedTiles = "streamed_tiles"
    case peakResidentBytes = "peak_rss_bytes", mappedKernelBytes = "mapped_kernel_bytes"
  }
}

public struct SolveDriver {
  public let settings: SolveSettings
  public let comm: Communicator
  /// Where progress goes (messages and progress from rank 0 only).
  public let events: EventSink

  public init(settings: SolveSettings, comm: Communicator, events: EventSink = SilentSink()) {
    self.settings = settings
    self.comm = comm
    self.events = events
  }

  func validate() throws {
    guard !settings.ridges.isEmpty, settings.ridges.allSatisfy({ $0 > 0 && $0.isFinite }) else {
      throw AnalysisError("ridge values must be positive (got \(settings.ridges.map { "\($0)" }.joined(separator: ",")))")
    }
    guard settings.tolerance > 0 else { throw AnalysisError("--tol must be positive") }
    guard settings.maxIterations >= 1 else { throw AnalysisError("--max-iter must be at least 1") }
    guard settings.rank >= 1 else { throw AnalysisError("--rank must be at least 1") }
    try checkAnalysis(kernelName: settings.kernelName, paths: settings.paths)
  }

  func loadTargets(n: Int) throws -> Targets {
    let targets = try Targets.load(kernelFile: settings.kernelFile, kernel: settings.kernelName, targets: settings.targets,
                                   testTargets: settings.testTargets, encoding: settings.encoding, n: n)
    // Block CG keeps at most N independent directions: with more columns than samples the
    // block's Gram matrix is singular from the first step.
    if settings.solver == .blockCG && targets.y.cols > n {
      throw AnalysisError("\(settings.targets ?? settings.kernelFile): \(targets.y.cols) target columns for \(n) training samples: block CG needs at most as many columns as samples; use --solver cg (each column on its own)")
    }
    return targets
  }

  var linearAlgebra: LinearAlgebraContext {
    LinearAlgebraContext(kernelFile: settings.kernelFile, targets: settings.targets, hasRidge: true)
  }

  var statePath: String { settings.statePath }

  /// Solves, predicts and writes; a linear-algebra failure is one line naming the kernel file
  /// and the remedy (`LinearAlgebraContext`).
  public func run() throws -> SolveReport {
    try linearAlgebra.explaining { try solveAndWrite() }
  }

  func solveAndWrite() throws -> SolveReport {
    let start = Date()
    let isRoot = comm.rank == 0
    let reporter: EventSink = isRoot ? events : SilentSink()
    // One BLAS thread per rank: the products here are thin (N × C), where OpenBLAS threads
    // cost more than they give (measured 3× slower on 2 cores), and ranks already fill the cores.
    setLinearAlgebraThreads(1)
    try comm.collectively { try validate() }
    // The budget covers the preconditioner and the solver's vectors too; the tiles get the rest.
    let stored = try comm.collectively {
      let s = try TiledKernelOperator.stored(path: settings.kernelFile, kernel: settings.kernelName)
      return (n: s.dataset.shape[0], tile: s.tile, bytes: s.dataset.scalarType!.byteCount)
    }
    let targets = try comm.collectively { try loadTargets(n: stored.n) }
    let memory = SolveMemory(n: stored.n, tile: stored.tile, bytesPerValue: stored.bytes, ranks: comm.size, budget: settings.memoryBudget,
                             preconditioner: settings.preconditioner, rank: settings.rank, columns: targets.y.cols,
                             systems: settings.ridges.count * (settings.baseline ? 2 : 1))
    if memory.preconditioner + memory.vectors > Double(settings.memoryBudget) {
      let need = String(format: "%.2f", (memory.preconditioner + memory.vectors) / Double(1 << 30))
      let budget = String(format: "%.2f", Double(settings.memoryBudget) / Double(1 << 30))
      reporter.message("warning: the \(settings.preconditioner.rawValue) preconditioner and the solver's vectors need \(need) GiB per rank, more than --memory-budget (\(budget) GiB): every tile is read from the file on each pass; lower --rank or raise the budget")
    }
    let op = try comm.collectively {
      try TiledKernelOperator(path: settings.kernelFile, kernel: settings.kernelName, comm: comm, memoryBudget: memory.tileBudget)
    }
    let scale = settings.ridgeAbsolute ? 1 : op.trace / Double(op.n)
    let lambdas = settings.ridges.map { $0 * scale }
    var rule = StoppingRule()
    rule.tolerance = settings.tolerance
    rule.maxIterations = settings.maxIterations
    reporter.message("solve: \(op.n) samples, \(targets.y.cols) columns, \(lambdas.count) ridge value(s); \(op.cachedTiles) tiles in memory, \(op.streamedTiles) streamed per pass"
                     + String(format: " (read in %.1f s)", Date().timeIntervalSince(start)))
    let preconditionerStart = Date()

    let preconditioner: Preconditioner = try comm.collectively { try linearAlgebra.explaining { () -> Preconditioner in
      switch settings.preconditioner {
      case .none: return IdentityPreconditioner()
      case .jacobi: return JacobiPreconditioner(diagonal: op.diagonal)
      case .nystrom: return try NystromPreconditioner(operator: op, rank: settings.rank, seed: settings.seed)
      case .rpcholesky: return try NystromPreconditioner.randomlyPivotedCholesky(operator: op, rank: settings.rank, seed: settings.seed)
      }
    } }
    let preconditionerSeconds = Date().timeIntervalSince(preconditionerStart)
    if settings.preconditioner != .none {
      reporter.message(String(format: "preconditioner built in %.1f s", preconditionerSeconds))
    }
    reporter.record("preconditioner", ["kind": .string(settings.preconditioner.rawValue), "seconds": .double(preconditionerSeconds)])
    var systems: [KRRIteration] = try lambdas.map { lambda in
      switch settings.solver {
      case .cg: return ColumnCG(y: targets.y, lambda: lambda, preconditioner: preconditioner, rule: rule)
      case .blockCG: return try BlockCG(y: targets.y, lambda: lambda, preconditioner: preconditioner, rule: rule)
      }
    }
    if settings.baseline {
      systems += lambdas.map { ColumnCG(y: targets.y, lambda: $0, preconditioner: IdentityPreconditioner(), rule: rule) }
    }
    let solver = KRRSolver(op: op, systems: systems, rule: rule)

    // Resume from a checkpoint of the same solve.
    let resumedFrom = try comm.collectively { try restoreState(solver) }
    if resumedFrom > 0 { reporter.message("resuming the solve at iteration \(resumedFrom) from \(statePath)") }

    let t0 = Date()
    let r0 = max(solver.worstResidual, 1e-300)
    while !solver.finished {
      try solver.step()
      let worst = solver.worstResidual
      let elapsed = Date().timeIntervalSince(t0)
      let done = solver.iteration - resumedFrom
      let rate = done > 0 ? log(max(worst, 1e-300) / r0) / Double(done) : 0
      let remainingIterations = rate < 0 ? max(0, log(settings.tolerance / worst) / rate) : .infinity
      let eta = remainingIterations * elapsed / Double(max(done, 1))
      reporter.progress(.iteration(solver.iteration, worstResidual: worst, elapsed: elapsed, eta: eta), force: false)
      if settings.checkpointEvery > 0 && solver.iteration % settings.checkpointEvery == 0 && !solver.finished {
        try comm.collectively { if isRoot { try saveState(solver) } }
      }
    }
    reporter.finishProgress()
    guard !solver.worstResidual.isNaN else {
      throw AnalysisError("the solve produced NaN residuals at iteration \(solver.iteration) (the kernel or the targets overflow float64)")
    }
    let solution = try solver.solution(targets: targets.y)
    let count = lambdas.count

    // Predictions for the test set, every ridge value in one pass.
    let kernelFile = try H5File.open(settings.kernelFile)
    let hasTest = kernelFile.exists(KernelFileLayout.test(settings.kernelName))
    let alphaAll = DenseBlock.concatenate(Array(solution.alpha.prefix(count)), rows: op.n)
    let predictions = hasTest ? try crossKernelProduct(path: settings.kernelFile, kernel: settings.kernelName, alpha: alphaAll, comm: comm) : nil
    let c = targets.y.cols
    var results: [RidgeMetrics] = []
    for s in 0..<count {
      var m = RidgeMetrics(ridge: settings.ridges[s], lambda: lambdas[s], iterations: solution.iterations[s],
                           worstTrueResidual: worstValue(solution.trueResiduals[s]))
      if settings.baseline { m.baselineIterations = solution.iterations[count + s] }
      if let p = predictions?.columns(Array(s * c ..< (s + 1) * c)) {
        if let classes = targets.classes, let labels = targets.testLabels {
          m.accuracy = classificationAccuracy(p, classes: classes, labels: labels)
        }
        if let t = targets.testTargets {
          let err = p - t
          m.mse = err.values.reduce(0) { $0 + $1 * $1 } / Double(err.values.count)
          m.rmse = m.mse!.squareRoot()
        }
      }
      results.append(m)
    }
    var measured = [Double(peakResidentBytes() ?? -1), Double(op.mappedResidentBytes)]
    try comm.allReduce(&measured, .max)
    let report = SolveReport(kernelFile: settings.kernelFile, kernel: settings.kernelName, solver: settings.solver.rawValue,
                             preconditioner: settings.preconditioner.rawValue,
                             nystromRank: [.nystrom, .rpcholesky].contains(settings.preconditioner) ? settings.rank : nil, ranks: comm.size,
                             trainCount: op.n, testCount: predictions?.rows ?? 0, columns: c, passes: op.passes,
                             seconds: Date().timeIntervalSince(start), resumedFromIteration: resumedFrom,
                             cachedTiles: op.cachedTiles, streamedTiles: op.streamedTiles,
                             peakResidentBytes: measured[0] >= 0 ? Int(measured[0]) : nil, mappedKernelBytes: Int(measured[1]),
                             results: results)
    try comm.collectively {
      guard isRoot else { return }
      try writeSolution(solution, count: count, predictions: predictions, targets: targets, report: report)
      if let path = settings.metrics { try writeJSON(report, to: path) }
      unlink(statePath)
    }
    return report
  }

  // MARK: Outputs

  func writeSolution(_ s: KRRSolution, count: Int, predictions: DenseBlock?, targets: Targets, report: SolveReport) throws {
    let writer = try KernelFileWriter(destination: settings.out, overwrite: settings.force)
    defer { writer.discard() }
    let f = writer.handle
    let n = s.alpha[0].rows, c = s.alpha[0].cols
    func write(_ name: String, _ values: [Double], _ shape: [Int]) throws { try writeDoubles(f, name, values, shape) }
    let alpha = s.alpha.prefix(count).flatMap(\.values)
    try write("/alpha", alpha, count == 1 ? [n, c] : [count, n, c])
    try write("/ridge", s.lambdas.prefix(count).map { $0 }, [count])
    try write("/ridge_relative", settings.ridges, [count])
    if let p = predictions {
      var stacked: [Double] = []
      for r in 0..<count { stacked += p.columns(Array(r * c ..< (r + 1) * c)).values }
      try write("/test/predictions", stacked, count == 1 ? [p.rows, c] : [count, p.rows, c])
    }
    let longest = s.history.prefix(count).map(\.count).max() ?? 0
    var history = [Double](repeating: .nan, count: count * longest)
    for r in 0..<count { for (k, v) in s.history[r].enumerated() { history[r * longest + k] = v } }
    try write("/residual_history", history, count == 1 ? [longest] : [count, longest])
    try write("/true_residuals", s.trueResiduals.prefix(count).flatMap { $0 }, [count, c])
    if let classes = targets.classes {
      let d = try f.createInt64Dataset("/classes", shape: [classes.count])
      try classes.withUnsafeBufferPointer { try d.write($0, start: [0], count: [classes.count]) }
    }
    let attributes: [(String, AttributeValue)] = [
      ("kernel_file", .string(settings.kernelFile)), ("kernel", .string(settings.kernelName)),
      ("solver", .string(settings.solver.rawValue)), ("preconditioner", .string(settings.preconditioner.rawValue)),
      ("nystrom_rank", .int(Int64(settings.rank))), ("tolerance", .double(settings.tolerance)),
      ("max_iterations", .int(Int64(settings.maxIterations))), ("ridge_absolute", .int(settings.ridgeAbsolute ? 1 : 0)),
      ("encoding", .string(targets.classes == nil ? "regression" : settings.encoding.rawValue)),
      ("ranks", .int(Int64(comm.size))), ("passes", .int(Int64(s.passes))), ("tool_version", .string(toolVersion)),
    ]
    for (k, v) in attributes { try f.setAttribute(k, v) }
    // The training kernel it was solved on: `predict` refuses cross kernels of another, and
    // of its training statistics modified (as the build recorded them, else as stored).
    let kernel = try H5File.open(settings.kernelFile)
    var trainFingerprint: String? = nil
    for (from, to) in [("fingerprint", "kernel_fingerprint"), ("train_fingerprint", "kernel_train_fingerprint")] {
      if case .string(let v)? = try kernel.attribute(from) {
        try f.setAttribute(to, .string(v))
        if from == "train_fingerprint" { trainFingerprint = v }
      }
    }
    var preprocess: String? = nil
    if case .string(let v)? = try kernel.attribute("preprocess_checksum") { preprocess = v } else { preprocess = try kernel.storedPreprocessChecksum() }
    if let preprocess { try f.setAttribute("kernel_preprocess_checksum", .string(preprocess)) }
    // Everything `predict` reads, checksummed: an edited α is refused there.
    try f.setAttribute("solution_checksum", .string(solutionChecksum(
      alpha: alpha, shape: count == 1 ? [n, c] : [count, n, c], classes: targets.classes, kernel: settings.kernelName,
      trainFingerprint: trainFingerprint, preprocess: preprocess)))
    try writer.commit()
  }

  // MARK: Checkpoints

  func saveState(_ solver: KRRSolver) throws {
    let temporary = statePath + ".tmp-\(getpid())"
    unlink(temporary)
    do {
      let f = try H5File.create(temporary)
      try f.setAttribute("identity", .string(settings.identity))
      try f.setAttribute("kernel_fingerprint", .string(try kernelFingerprint()))
      try f.setAttribute("iteration", .int(Int64(solver.iteration)))
      var sum: UInt64 = 0
      for (s, system) in solver.systems.enumerated() {
        for (name, block) in system.state().sorted(by: { $0.key < $1.key }) {
          let d = try f.createDataset("/system\(s)/\(name)", shape: [block.rows, block.cols], type: .float64)
          try block.values.withUnsafeBufferPointer { try d.write($0, start: [0, 0], count: [block.rows, block.cols]) }
          sum = checksum64(block.values, seed: sum)
        }
        let h = solver.history[s]
        let d = try f.createDataset("/system\(s)/history", shape: [h.count], type: .float64)
        try h.withUnsafeBufferPointer { try d.write($0, start: [0], count: [h.count]) }
        sum = checksum64(h, seed: sum)
      }
      try f.setAttribute("state_checksum", .string(hex(sum)))
      try f.flush()
    } catch {
      unlink(temporary)
      throw error
    }
    try fsyncPath(temporary)
    guard rename(temporary, statePath) == 0 else { throw StorageError(statePath, "cannot write the solve checkpoint") }
  }

  func kernelFingerprint() throws -> String {
    let f = try H5File.open(settings.kernelFile)
    if case .string(let s)? = try f.attribute("fingerprint") { return s }
    return ""
  }

  /// Restores every system from the checkpoint when it belongs to this solve and is intact;
  /// returns the iteration it resumes at (0 for a fresh start). A checkpoint of another solve is
  /// ignored; a damaged one (checksum, NaN, unreadable) is reported and ignored.
  func restoreState(_ solver: KRRSolver) throws -> Int {
    guard FileManager.default.fileExists(atPath: statePath) else { return 0 }
    func damaged(_ why: String) -> Int {
      if comm.rank == 0 { events.warning("\(statePath): \(why): the checkpoint is ignored and the solve starts over") }
      return 0
    }
    guard let f = try? H5File.open(statePath) else { return damaged("not a readable HDF5 file") }
    guard (try? f.attribute("identity")) == .string(settings.identity),
          (try? f.attribute("kernel_fingerprint")) == .string(try kernelFingerprint()) else { return 0 }
    guard case .int(let iteration)? = try? f.attribute("iteration"), iteration >= 0,
          case .string(let stored)? = try? f.attribute("state_checksum") else { return damaged("no iteration count or checksum") }
    var history: [[Double]] = []
    var states: [[String: DenseBlock]] = []
    var sum: UInt64 = 0
    do {
      for (s, system) in solver.systems.enumerated() {
        var state: [String: DenseBlock] = [:]
        for name in system.state().keys.sorted() {
          let d = try f.dataset("/system\(s)/\(name)")
          guard d.shape.count == 2 else { return damaged("/system\(s)/\(name) has shape \(d.shape)") }
          let values: [Double] = try d.readAll()
          sum = checksum64(values, seed: sum)
          state[name] = DenseBlock(rows: d.shape[0], cols: d.shape[1], values: values)
        }
        let h: [Double] = try f.dataset("/system\(s)/history").readAll()
        sum = checksum64(h, seed: sum)
        states.append(state)
        history.append(h)
      }
    } catch { return damaged("unreadable (\(error))") }
    guard hex(sum) == stored else { return damaged("checksum mismatch (the state was modified after it was written)") }
    guard states.allSatisfy({ $0.values.allSatisfy { $0.values.allSatisfy(\.isFinite) } }) else { return damaged("NaN or infinite values") }
    for (system, state) in zip(solver.systems, states) { try system.restore(state) }
    solver.restore(iteration: Int(iteration), history: history)
    return Int(iteration)
  }
}

/// An analysis asked for something that cannot be done (a bad ridge, an unknown kernel, …).
public struct AnalysisError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// This process's peak resident set (`VmHWM` of `/proc/self/status`), nil where it is missing.
func peakResidentBytes() -> Int? {
  guard let text = procText("/proc/self/status"),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
  return kb * 1024
}
