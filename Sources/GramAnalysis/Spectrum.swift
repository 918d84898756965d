import Foundation
import GramEvents
import GramMicroKernels
import GramSolver
import GramStorage
import GramTransport

/// What `ntkgram spectrum` is asked to do.
public struct SpectrumSettings: Sendable {
  public var kernelFile: String
  public var kernelName = "ntk"
  /// How many of the largest eigenpairs.
  public var top = 10
  /// Block size of the Lanczos start block (0: min(top, 32)).
  public var block = 0
  /// Stop when the residual ‖K·v − θ·v‖ of each of the top pairs is ≤ tolerance · θ_max.
  public var tolerance = 1e-10
  public var maxIterations = 1000
  public var memoryBudget = 4 << 30
  public var seed: UInt64 = 0x5eed
  /// For the convergence rates η·λ/(N·C).
  public var learningRate = 1.0
  public var targets: String?
  public var encoding: TargetEncoding = .onehot
  public var out: String
  public var metrics: String?
  public var force = false

  public init(kernelFile: String, out: String) {
    self.kernelFile = kernelFile
    self.out = out
  }

  /// The files `spectrum` reads and writes, checked together before any work.
  public var paths: CommandPaths {
    analysisPaths(kernelFile: kernelFile, inputs: targets.map { [($0, "the targets")] } ?? [], out: out, outName: "the spectrum file",
                  metrics: metrics, force: force)
  }
}

/// The outcome of `ntkgram spectrum`, as written to the metrics JSON.
public struct SpectrumReport: Codable, Sendable {
  public var kernelFile: String
  public var kernel: String
  public var trainCount: Int
  public var ranks: Int
  public var eigenvalues: [Double]
  /// ‖K·v − λ·v‖ of each pair.
  public var residuals: [Double]
  public var trace: Double
  /// The smallest Ritz value: an upper bound of λ_min; an eigenvalue lies within its residual.
  public var smallestRitzValue: Double
  public var smallestRitzResidual: Double
  /// 2·N·C/λ_max: gradient descent with a larger step diverges along the top eigenvector.
  public var maxStableLearningRate: Double
  public var learningRate: Double
  public var targetColumns: Int?
  /// ‖vᵢᵀY‖²/‖Y‖² of each eigenvector, and what the top k leave out.
  public var targetEnergy: [Double]?
  public var targetEnergyOutside: Double?
  public var iterations: Int
  public var basisDimension: Int
  public var passes: Int
  public var converged: Bool
  public var seconds: Double

  enum CodingKeys: String, CodingKey {
    case kernel, ranks, eigenvalues, residuals, trace, iterations, passes, converged, seconds
    case kernelFile = "kernel_file", trainCount = "train_count"
    case smallestRitzValue = "smallest_ritz_value", smallestRitzResidual = "smallest_ritz_residual"
    case maxStableLearningRate = "max_stable_learning_rate", learningRate = "learning_rate"
    case targetColumns = "target_columns", targetEnergy = "target_energy", targetEnergyOutside = "target_energy_outside"
    case basisDimension = "basis_dimension"
  }
}

/// The largest eigenpairs of a stored kernel by block Lanczos with full reorthogonalization from
/// a seeded random block, streamed and distributed like `solve`.
public struct SpectrumDriver {
  public let settings: SpectrumSettings
  public let comm: Communicator
  public let events: EventSink

  public init(settings: SpectrumSettings, comm: Communicator, events: EventSink = SilentSink()) {
    self.settings = settings
    self.comm = comm
    self.events = events
  }

  public static func validate(_ s: SpectrumSettings) throws {
    guard s.top >= 1 else { throw AnalysisError("--top must be at least 1 (got \(s.top))") }
    guard s.block >= 0 else { throw AnalysisError("--block must be at least 1 (got \(s.block))") }
    guard s.tolerance > 0, s.tolerance.isFinite else { throw AnalysisError("--tol must be positive (got \(s.tolerance))") }
    guard s.maxIterations >= 1 else { throw AnalysisError("--max-iter must be at least 1") }
    guard s.learningRate > 0, s.learningRate.isFinite else { throw AnalysisError("--learning-rate must be positive and finite (got \(s.learningRate))") }
    try checkAnalysis(kernelName: s.kernelName, paths: s.paths)
  }

  var linearAlgebra: LinearAlgebraContext {
    LinearAlgebraContext(kernelFile: settings.kernelFile, targets: settings.targets, hasRidge: false)
  }

  /// The top eigenpairs, written; a linear-algebra failure is one line naming the kernel file
  /// and the remedy (`LinearAlgebraContext`).
  public func run() throws -> SpectrumReport {
    try linearAlgebra.explaining { try runAndWrite() }
  }

  func runAndWrite() throws -> SpectrumReport {
    let start = Date()
    let isRoot = comm.rank == 0
    let reporter: EventSink = isRoot ? events : SilentSink()
    setLinearAlgebraThreads(1)
    try comm.collectively { try Self.validate(settings) }
    let op = try comm.collectively {
      try TiledKernelOperator(path: settings.kernelFile, kernel: settings.kernelName, comm: comm, memoryBudget: settings.memoryBudget)
    }
    let n = op.n
    guard settings.top <= n else { throw AnalysisError("--top \(settings.top) exceeds the kernel's \(n) samples") }
    // Targets are optional here: labels when the file has them, else none.
    let hasLabels = try H5File.open(settings.kernelFile).exists(KernelFileLayout.trainLabels)
    let targets: Targets? = try comm.collectively {
      guard settings.targets != nil || hasLabels else { return nil }
      return try Targets.load(kernelFile: settings.kernelFile, kernel: settings.kernelName, targets: settings.targets, testTargets: nil, encoding: settings.encoding, n: n)
    }
    let b = min(settings.block > 0 ? settings.block : min(settings.top, 32), n)
    var rng = SplitMix64(seed: settings.seed)
    var startBlock = DenseBlock(rows: n, cols: b)
    for i in startBlock.values.indices { startBlock.values[i] = rng.unit() * 2 - 1 }
    let lanczos = try BlockLanczos(start: startBlock)
    reporter.message("spectrum: top \(settings.top) of \(n) samples, block \(b); \(op.cachedTiles) tiles in memory, \(op.streamedTiles) streamed per pass")

    var lastCheck = 0
    var converged = false
    let t0 = Date()
    var state: (values: [Double], vectors: DenseBlock, residuals: [Double])? = nil
    while lanczos.steps < settings.maxIterations, let block = lanczos.pendingBlock() {
      let product = try op.apply(block)
      try comm.collectively { try linearAlgebra.explaining { try lanczos.advance(product) } }
      let k = Double(lanczos.dimension)
      let interval = max(1, min(Int((100 * k * k * k / (2 * Double(n) * Double(n) * Double(block.cols))).rounded(.up)), lanczos.steps / 10))
      guard lanczos.dimension >= settings.top else { continue }
      guard lanczos.exhausted || lanczos.steps - lastCheck >= interval || lanczos.steps == settings.maxIterations else { continue }
      lastCheck = lanczos.steps
      let current = try comm.collectively { try linearAlgebra.explaining { try ritzPairs(lanczos) } }
      state = current
      let top = current.residuals.prefix(settings.top)
      let scale = max(abs(current.values.first ?? 0), Double.leastNormalMagnitude)
      let worst = worstValue(Array(top)) / scale
      reporter.progress(.iteration(lanczos.steps, worstResidual: worst, elapsed: Date().timeIntervalSince(t0), eta: .nan), force: false)
      if lanczos.exhausted || worst <= settings.tolerance { converged = true; break }
    }
    reporter.finishProgress()
    if state == nil || (lanczos.exhausted && !converged) {
      state = try comm.collectively { try linearAlgebra.explaining { try ritzPairs(lanczos) } }
      converged = lanczos.exhausted || worstValue(Array(state!.residuals.prefix(settings.top))) <= settings.tolerance * abs(state!.values.first ?? 0)
    }
    guard let (values, ritzVectors, residuals) = state, values.count >= settings.top else {
      let reached = lanczos.dimension
      throw AnalysisError(lanczos.exhausted
        ? "\(settings.kernelFile): the Krylov space of the start block has only \(reached) dimensions (a kernel of low rank): --top \(settings.top) cannot be reached; ask for at most \(reached)"
        : "spectrum: only \(reached) basis vectors after --max-iter \(settings.maxIterations) steps, fewer than --top \(settings.top); raise --max-iter or --block")
    }
    if !converged {
      reporter.warning("spectrum: not converged after \(lanczos.steps) block Lanczos steps (worst relative residual \(String(format: "%.2e", worstValue(Array(residuals.prefix(settings.top))) / abs(values.first ?? 1))) > tol \(settings.tolerance))")
    }
    let k = settings.top
    let eigenvalues = Array(values.prefix(k))
    let vectors = lanczos.combine(ritzVectors.columns(Array(0..<k)))  // n × k
    let cTargets = targets?.y.cols ?? 1
    let lambdaMax = values.first ?? 0
    var energy: [Double]? = nil
    var outside: Double? = nil
    if let y = targets?.y {
      let total = y.values.reduce(0) { $0 + $1 * $1 }
      let projections = vectors.transposeTimes(y)  // k × C
      energy = (0..<k).map { i in (0..<y.cols).reduce(0) { $0 + projections[i, $1] * projections[i, $1] } / max(total, 1e-300) }
      outside = max(0, 1 - energy!.reduce(0, +))
    }
    let report = SpectrumReport(kernelFile: settings.kernelFile, kernel: settings.kernelName, trainCount: n, ranks: comm.size,
                                eigenvalues: eigenvalues, residuals: Array(residuals.prefix(k)), trace: op.trace,
                                smallestRitzValue: values.last ?? 0, smallestRitzResidual: residuals.last ?? 0,
                                maxStableLearningRate: lambdaMax > 0 ? 2 * Double(n) * Double(cTargets) / lambdaMax : .infinity,
                                learningRate: settings.learningRate, targetColumns: targets?.y.cols, targetEnergy: energy,
                                targetEnergyOutside: outside, iterations: lanczos.steps, basisDimension: lanczos.dimension,
                                passes: op.passes, converged: converged, seconds: Date().timeIntervalSince(start))
    try comm.collectively {
      guard isRoot else { return }
      try write(report, vectors: vectors, columns: cTargets)
      if let path = settings.metrics { try writeJSON(report, to: path) }
    }
    return report
  }

  /// Ritz values (descending), vectors (columns, same order) and residual norms ‖K·v − θ·v‖.
  func ritzPairs(_ lanczos: BlockLanczos) throws -> (values: [Double], vectors: DenseBlock, residuals: [Double]) {
    let (ascending, s) = try lanczos.ritz()
    let k = ascending.count
    let order = Array((0..<k).reversed())
    let vectors = s.columns(order)
    let residuals = lanczos.residualNorms(vectors)
    return (order.map { ascending[$0] }, vectors, residuals)
  }

  func write(_ report: SpectrumReport, vectors: DenseBlock, columns: Int) throws {
    let writer = try KernelFileWriter(destination: settings.out, overwrite: settings.force)
    defer { writer.discard() }
    let f = writer.handle
    func write(_ name: String, _ values: [Double], _ shape: [Int]) throws { try writeDoubles(f, name, values, shape) }
    let k = report.eigenvalues.count
    try write("/spectrum/eigenvalues", report.eigenvalues, [k])
    try write("/spectrum/eigenvectors", vectors.values, [vectors.rows, k])
    try write("/spectrum/residuals", report.residuals, [k])
    let normalization = Double(report.trainCount) * Double(columns)
    try write("/spectrum/rates", report.eigenvalues.map { settings.learningRate * $0 / normalization }, [k])
    if let e = report.targetEnergy { try write("/spectrum/target_energy", e, [k]) }
    var attributes: [(String, AttributeValue)] = [
      ("kernel_file", .string(settings.kernelFile)), ("kernel", .string(settings.kernelName)),
      ("trace", .double(report.trace)), ("smallest_ritz_value", .double(report.smallestRitzValue)),
      ("smallest_ritz_residual", .double(report.smallestRitzResidual)),
      ("max_stable_learning_rate", .double(report.maxStableLearningRate)), ("learning_rate", .double(settings.learningRate)),
      ("normalization", .double(normalization)), ("tolerance", .double(settings.tolerance)),
      ("iterations", .int(Int64(report.iterations))), ("basis_dimension", .int(Int64(report.basisDimension))),
      ("converged", .int(report.converged ? 1 : 0)), ("ranks", .int(Int64(comm.size))), ("passes", .int(Int64(report.passes))),
      ("seed", .int(Int64(bitPattern: settings.seed))), ("tool_version", .string(toolVersion)),
    ]
    if let o = report.targetEnergyOutside { attributes.append(("target_energy_outside", .double(o))) }
    for (k, v) in attributes { try f.setAttribute(k, v) }
    let kernel = try H5File.open(settings.kernelFile)
    if case .string(let v)? = try kernel.attribute("fingerprint") { try f.setAttribute("kernel_fingerprint", .string(v)) }
    try writer.commit()
  }
}
