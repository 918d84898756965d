import Foundation
import GramEvents
import GramSolver
import GramStorage
import GramTransport

/// What `ntkgram dynamics` is asked to do.
public struct DynamicsSettings: Sendable {
  public var kernelFile: String
  public var kernelName = "ntk"
  /// Training times, strictly increasing, `.infinity` allowed last.
  public var times: [Double] = [.infinity]
  public var learningRate = 1.0
  /// Ridge values ρ (K + ρI), relative to trace(K)/N unless `ridgeAbsolute`.
  public var ridges: [Double] = [0]
  public var ridgeAbsolute = false
  /// Stop when every estimate ≤ tolerance (relative to ‖y‖, per column).
  public var tolerance = 1e-6
  public var maxIterations = 1000
  public var memoryBudget = 4 << 30
  public var targets: String?
  public var testTargets: String?
  public var encoding: TargetEncoding = .onehot
  public var out: String
  public var metrics: String?
  public var force = false
  /// One network's outputs at initialisation (an HDF5 file with `/initial_outputs/train` and,
  /// for a test kernel, `/initial_outputs/test`, `rows × C`): predict that network, f₀ ≠ 0,
  /// instead of the ensemble mean (f₀ = 0).
  public var initialOutputs: String?

  public init(kernelFile: String, out: String) {
    self.kernelFile = kernelFile
    self.out = out
  }

  /// The files `dynamics` reads and writes, checked together before any work.
  public var paths: CommandPaths {
    var inputs: [(String, String)] = []
    if let t = targets { inputs.append((t, "the targets")) }
    if let t = testTargets { inputs.append((t, "the test targets")) }
    if let t = initialOutputs { inputs.append((t, "the initial outputs")) }
    return analysisPaths(kernelFile: kernelFile, inputs: inputs, out: out, outName: "the dynamics file", metrics: metrics, force: force)
  }
}

/// Train and test metrics at one training time and ridge.
public struct DynamicsPoint: Codable, Sendable {
  public var time: Double
  public var ridge: Double
  public var lambda: Double
  public var trainLoss: Double
  public var trainAccuracy: Double?
  public var testLoss: Double?
  public var testAccuracy: Double?
  /// The largest error estimate over the target columns (relative to ‖y‖).
  public var errorEstimate: Double

  enum CodingKeys: String, CodingKey {
    case time, ridge, lambda
    case trainLoss = "train_loss", trainAccuracy = "train_accuracy", testLoss = "test_loss", testAccuracy = "test_accuracy"
    case errorEstimate = "error_estimate"
  }

  // JSON has no infinity: t = ∞ is written as the string "inf".
  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    if time.isInfinite { try c.encode("inf", forKey: .time) } else { try c.encode(time, forKey: .time) }
    try c.encode(ridge, forKey: .ridge)
    try c.encode(lambda, forKey: .lambda)
    try c.encode(trainLoss, forKey: .trainLoss)
    try c.encodeIfPresent(trainAccuracy, forKey: .trainAccuracy)
    try c.encodeIfPresent(testLoss, forKey: .testLoss)
    try c.encodeIfPresent(testAccuracy, forKey: .testAccuracy)
    try c.encode(errorEstimate, forKey: .errorEstimate)
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    if let s = try? c.decode(String.self, forKey: .time), s == "inf" { time = .infinity } else { time = try c.decode(Double.self, forKey: .time) }
    ridge = try c.decode(Double.self, forKey: .ridge)
    lambda = try c.decode(Double.self, forKey: .lambda)
    trainLoss = try c.decode(Double.self, forKey: .trainLoss)
    trainAccuracy = try c.decodeIfPresent(Double.self, forKey: .trainAccuracy)
    testLoss = try c.decodeIfPresent(Double.self, forKey: .testLoss)
    testAccuracy = try c.decodeIfPresent(Double.self, forKey: .testAccuracy)
    errorEstimate = try c.decode(Double.self, forKey: .errorEstimate)
  }

  init(time: Double, ridge: Double, lambda: Double, trainLoss: Double, errorEstimate: Double) {
    self.time = time
    self.ridge = ridge
    self.lambda = lambda
    self.trainLoss = trainLoss
    self.errorEstimate = errorEstimate
  }
}

/// The outcome of `ntkgram dynamics`, as written to the metrics JSON.
public struct DynamicsReport: Codable, Sendable {
  public var kernelFile: String
  public var kernel: String
  public var learningRate: Double
  public var ranks: Int
  public var trainCount: Int
  public var testCount: Int
  public var columns: Int
  /// Block Lanczos steps (passes over K) and the basis size.
  public var iterations: Int
  public var basisDimension: Int
  public var basisBytes: Int
  public var passes: Int
  public var converged: Bool
  /// The Krylov space became invariant: every output exact to round-off.
  public var exhausted: Bool
  public var seconds: Double
  public var cachedTiles: Int
  public var streamedTiles: Int
  public var points: [DynamicsPoint]

  enum CodingKeys: String, CodingKey {
    case kernel, ranks, columns, iterations, passes, converged, exhausted, seconds, points
    case kernelFile = "kernel_file", learningRate = "learning_rate", trainCount = "train_count", testCount = "test_count"
    case basisDimension = "basis_dimension", basisBytes = "basis_bytes"
    case cachedTiles = "cached_tiles", streamedTiles = "streamed_tiles"
  }
}

/// The filters of gradient flow on ½‖f − y‖²/(N·C) from f₀ = 0, as functions of an eigenvalue
/// x of K + ρI, with a = η·t/(N·C):
///   train outputs f_t  = φ_t(K+ρI)·y,   φ_t(x) = 1 − e^{−a·x}
///   test outputs  f*_t = K*·ψ_t(K+ρI)·y, ψ_t(x) = (1 − e^{−a·x})/x
/// Non-positive x (a kernel that is only semi-definite, or round-off) is a direction the flow
/// never moves: φ = ψ = 0 there, the pseudo-inverse convention at t = ∞.
public struct GradientFlowFilter: Sendable, Equatable {
  /// η·t/(N·C); infinity for t = ∞.
  public let a: Double
  public init(time: Double, learningRate: Double, normalization: Double) {
    a = time.isInfinite ? .infinity : learningRate * time / normalization
  }
  public func phi(_ x: Double) -> Double {
    guard x > 0 else { return 0 }
    return a.isInfinite ? 1 : -expm1(-a * x)
  }
  public func psi(_ x: Double) -> Double {
    guard x > 0 else { return 0 }
    return a.isInfinite ? 1 / x : -expm1(-a * x) / x
  }
}

/// What the outputs of a dynamics job cost, known before any tile is read: every time and ridge
/// gives N + M outputs of C values, held in memory (train and test outputs, the test-side
/// weights, the basis's coefficients, the copies written) and written to the output file; each
/// convergence check and the final combination are dense products as wide as R·T·C.
public struct DynamicsOutputSize: Sendable {
  public let trainCount: Int, testCount: Int, columns: Int, times: Int, ridges: Int, maxIterations: Int

  public init(trainCount: Int, testCount: Int, columns: Int, times: Int, ridges: Int, maxIterations: Int) {
    (self.trainCount, self.testCount, self.columns, self.times, self.ridges) = (trainCount, testCount, columns, times, ridges)
    self.maxIterations = maxIterations
  }

  /// R·T·C: the columns of every output block (Double, so that nothing overflows).
  public var width: Double { Double(ridges) * Double(times) * Double(columns) }
  /// The outputs' file: train and test predictions, float64.
  public var fileBytes: Double { 8 * width * (Double(trainCount) + Double(testCount)) + Double(1 << 20) }
  /// Held at the end: train outputs, test-side weights, their copies as written, the test
  /// outputs and theirs, and four coefficient blocks of at most N rows.
  public var memoryBytes: Double { 8 * width * (7 * Double(trainCount) + 2 * Double(testCount)) }
  /// Floating-point operations of the checks, at the steps `DynamicsDriver` checks them (the
  /// same rule), until the basis would be exhausted (N/C steps) or `maxIterations`: each
  /// combines the basis's k×k coefficients with every (ridge, time) column, 4·k²·R·T·C; then
  /// the final combination and the test products. An upper estimate: a run that converges
  /// earlier checks fewer times.
  public var flops: Double {
    let n = Double(trainCount), c = Double(max(columns, 1)), w = width
    let steps = max(1, min(maxIterations, (trainCount + max(columns, 1) - 1) / max(columns, 1)))
    var total = w * (4 * n * n + 2 * Double(testCount) * n)
    var lastCheck = 0
    for step in 1...steps {
      let k = min(n, c * Double(step))
      let checkCost = 10 * k * k * k, passCost = 2 * n * n * c
      let interval = max(1, min(Int(min(1e9, (10 * checkCost / passCost).rounded(.up))), step / 10))
      guard step - lastCheck >= interval || step == steps else { continue }
      lastCheck = step
      total += 4 * k * k * w + checkCost
    }
    return total
  }
  /// The effective rate of those dense products on one core (measured here: a dynamics job of
  /// 100,000 times on 60 samples; the filters' loops, not BLAS, set it).
  public static let flopsPerSecond = 1e9
  public var seconds: Double { flops / Self.flopsPerSecond }

  /// One line for the log: the outputs' size and the dense work they add to the passes over K.
  public var summary: String {
    "dynamics: \(times) time(s) × \(ridges) ridge value(s) × \(columns) column(s) on \(trainCount) + \(testCount) samples: outputs about \(byteSize(memoryBytes)) in memory and \(byteSize(fileBytes)) on disk" +
      (seconds >= Self.worthSaying ? ", up to \(String(format: "%.3g", seconds)) s of dense work beside the passes over K" : "")
  }

  /// The bound on the dense work is said from this many seconds on (it is pessimistic: below a
  /// minute it would only alarm).
  public static let worthSaying = 60.0

  /// The share of the machine's memory the outputs may take: the rest is for the kernel's
  /// tiles (`--memory-budget`), the basis, and the other processes of the machine.
  public static let memoryShare = 0.5

  /// Refuses outputs that cannot fit in half this machine's memory or on the output's
  /// filesystem, before any tile is read.
  public func check(_ s: DynamicsSettings) throws {
    let remedy = "ask for fewer --times (a smaller COUNT in log:START:STOP:COUNT) or fewer --ridge values"
    if let memory = physicalMemoryBytes(), memoryBytes > Self.memoryShare * memory {
      throw AnalysisError("--times: \(times) time(s) × \(ridges) ridge value(s) × \(columns) column(s) on \(trainCount) + \(testCount) samples need about \(byteSize(memoryBytes)) of outputs in memory, more than half this machine's \(byteSize(memory)); \(remedy)")
    }
    let folder = URL(fileURLWithPath: s.out).deletingLastPathComponent().path
    if let free = freeBytes(folder: folder), fileBytes > free {
      throw StorageError(s.out, "needs about \(byteSize(fileBytes)) for \(times) time(s) × \(ridges) ridge value(s) of outputs but its filesystem has \(byteSize(free)) free; \(remedy), or choose another --out")
    }
  }
}

public struct DynamicsDriver {
  public let settings: DynamicsSettings
  public let comm: Communicator
  public let events: EventSink

  public init(settings: DynamicsSettings, comm: Communicator, events: EventSink = SilentSink()) {
    self.settings = settings
    self.comm = comm
    self.events = events
  }

  /// Checks the times, rates and paths before any work.
  public static func validate(_ s: DynamicsSettings) throws {
    guard !s.times.isEmpty else { throw AnalysisError("--times: no training times given") }
    for t in s.times where t.isNaN || t < 0 { throw AnalysisError("--times: \(t) is not a training time (times are ≥ 0, or inf)") }
    for (a, b) in zip(s.times, s.times.dropFirst()) where !(a < b) {
      if a == b { throw AnalysisError("--times must be strictly increasing: \(formatTime(a)) is given twice (each time is computed once: give it once)") }
      throw AnalysisError("--times must be strictly increasing (\(formatTime(a)) is followed by \(formatTime(b)))")
    }
    guard s.learningRate > 0, s.learningRate.isFinite else { throw AnalysisError("--learning-rate must be positive and finite (got \(s.learningRate))") }
    guard !s.ridges.isEmpty, s.ridges.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
      throw AnalysisError("ridge values must be non-negative and finite (got \(s.ridges.map { "\($0)" }.joined(separator: ",")))")
    }
    guard s.tolerance > 0, s.tolerance.isFinite else { throw AnalysisError("--tol must be positive (got \(s.tolerance))") }
    guard s.maxIterations >= 1 else { throw AnalysisError("--max-iter must be at least 1") }
    try checkAnalysis(kernelName: s.kernelName, paths: s.paths)
  }

  static func formatTime(_ t: Double) -> String { t.isInfinite ? "inf" : "\(t)" }

  var linearAlgebra: LinearAlgebraContext {
    LinearAlgebraContext(kernelFile: settings.kernelFile, targets: settings.targets ?? settings.initialOutputs, hasRidge: true)
  }

  /// The outputs at every time and ridge, written; a linear-algebra failure is one line naming
  /// the kernel file and the remedy (`LinearAlgebraContext`).
  public func run() throws -> DynamicsReport {
    try linearAlgebra.explaining { try runAndWrite() }
  }

  func runAndWrite() throws -> DynamicsReport {
    let start = Date()
    let isRoot = comm.rank == 0
    let reporter: EventSink = isRoot ? events : SilentSink()
    setLinearAlgebraThreads(1)
    try comm.collectively { try Self.validate(settings) }
    // The targets and the size of the outputs are checked against the file's shapes before any
    // tile is read.
    let (targets, size) = try comm.collectively { () -> (Targets, DynamicsOutputSize) in
      let n = try TiledKernelOperator.stored(path: settings.kernelFile, kernel: settings.kernelName).dataset.shape[0]
      let targets = try Targets.load(kernelFile: settings.kernelFile, kernel: settings.kernelName, targets: settings.targets,
                                     testTargets: settings.testTargets, encoding: settings.encoding, n: n)
      let f = try H5File.open(settings.kernelFile)
      let test = KernelFileLayout.test(settings.kernelName)
      let m = f.exists(test) ? try f.dataset(test).shape[0] : 0
      let size = DynamicsOutputSize(trainCount: n, testCount: m, columns: targets.y.cols, times: settings.times.count, ridges: settings.ridges.count,
                                    maxIterations: settings.maxIterations)
      try size.check(settings)
      return (targets, size)
    }
    let op = try comm.collectively {
      try TiledKernelOperator(path: settings.kernelFile, kernel: settings.kernelName, comm: comm, memoryBudget: settings.memoryBudget)
    }
    let y = targets.y
    let (n, c) = (y.rows, y.cols)
    let kernelHandle = try H5File.open(settings.kernelFile)
    let hasTestKernel = kernelHandle.exists(KernelFileLayout.test(settings.kernelName))
    let testRows = hasTestKernel ? try kernelHandle.dataset(KernelFileLayout.test(settings.kernelName)).shape[0] : 0
    let initial = try comm.collectively {
      try settings.initialOutputs.map { path in
        if let warning = try Self.checkProvenance(of: path, kernel: kernelHandle) { reporter.warning(warning) }
        return try Self.readInitialOutputs(path, n: n, c: c, testRows: hasTestKernel ? testRows : nil)
      }
    }
    // Gradient flow from f₀ moves the residual y − f₀ exactly as the flow from 0 moves y:
    // f_t = f₀ + φ_t(Θ)(y − f₀) on the training set, f₀ + Θ*·ψ_t(Θ)(y − f₀) elsewhere.
    let residual0 = initial.map { y - $0.train } ?? y
    let scale = settings.ridgeAbsolute ? 1 : op.trace / Double(n)
    let lambdas = settings.ridges.map { $0 * scale }
    let normalization = Double(n) * Double(c)
    let filters = settings.times.map { GradientFlowFilter(time: $0, learningRate: settings.learningRate, normalization: normalization) }
    reporter.message(size.summary)
    reporter.message("dynamics: \(n) samples, \(c) columns, \(filters.count) time(s) × \(lambdas.count) ridge value(s); \(op.cachedTiles) tiles in memory, \(op.streamedTiles) streamed per pass")

    guard residual0.columnNorms().contains(where: { $0 > 0 }) else {
      let largest = residual0.values.reduce(0.0) { max($0, abs($1)) }
      if largest > 0 {
        throw AnalysisError("\(settings.targets ?? settings.kernelFile): the targets\(settings.initialOutputs == nil ? "" : " minus the initial outputs") are too small to square in float64 (largest \(largest)): scale them up")
      }
      if let path = settings.initialOutputs { throw AnalysisError("\(path): the initial outputs already equal the targets (every output would stay f₀)") }
      throw AnalysisError("\(settings.targets ?? settings.kernelFile): the targets are all zero (every output would be 0)")
    }
    let lanczos = try comm.collectively { try linearAlgebra.explaining { try BlockLanczos(start: residual0) } }
    let yNorms = residual0.columnNorms().map { $0 > 0 ? $0 : 1 }
    var previousPhi: DenseBlock? = nil
    var latest: Coefficients? = nil  // of the last check, which is always the last step
    var estimates: [[Double]] = []  // per (ridge, time): worst over columns
    var converged = false
    var lastCheck = 0
    let t0 = Date()
    var firstEstimate: Double? = nil
    while lanczos.steps < settings.maxIterations, let block = lanczos.pendingBlock() {
      let product = try op.apply(block)
      try comm.collectively { try linearAlgebra.explaining { try lanczos.advance(product) } }
      // Check when the dense work of a check costs at most a tenth of the passes since the last
      // one (and at least every tenth of the steps so far): deterministic, so every rank agrees.
      let k = Double(lanczos.dimension)
      let checkCost = 10 * k * k * k
      let passCost = 2 * Double(n) * Double(n) * Double(block.cols)
      let interval = max(1, min(Int((10 * checkCost / passCost).rounded(.up)), lanczos.steps / 10))
      guard lanczos.exhausted || lanczos.steps - lastCheck >= interval || lanczos.steps == settings.maxIterations else { continue }
      lastCheck = lanczos.steps
      let current = try comm.collectively { try linearAlgebra.explaining { try coefficients(lanczos, filters: filters, lambdas: lambdas, y: y) } }
      estimates = Self.estimates(current, lanczos, previousPhi: previousPhi, yNorms: yNorms, ridges: lambdas.count, times: filters.count)
      previousPhi = current.phi
      latest = current
      let worst = worstValue(estimates.flatMap { $0 })
      let elapsed = Date().timeIntervalSince(t0)
      if firstEstimate == nil { firstEstimate = max(worst, 1e-300) }
      let rate = log(max(worst, 1e-300) / firstEstimate!) / Double(max(lanczos.steps, 1))
      let eta = rate < 0 ? max(0, log(settings.tolerance / worst) / rate) * elapsed / Double(lanczos.steps) : .infinity
      reporter.progress(.iteration(lanczos.steps, worstResidual: worst, elapsed: elapsed, eta: eta), force: false)
      if lanczos.exhausted || worst <= settings.tolerance { converged = true; break }
    }
    reporter.finishProgress()
    guard let final = latest else { throw AnalysisError("dynamics: no block Lanczos step was taken") }
    if !converged {
      let worst = worstValue(estimates.flatMap { $0 })
      reporter.warning("dynamics: not converged after \(lanczos.steps) block Lanczos steps (worst estimate \(String(format: "%.2e", worst)) > tol \(settings.tolerance)); the outputs carry their estimates")
    }

    // Coefficients for every (ridge, time): ψ for the test side, φ for the train side.
    if settings.times.last!.isInfinite, let smallest = final.smallestRitz {
      for (r, l) in lambdas.enumerated() where smallest + l <= 0 {
        reporter.warning("dynamics: K + ρI has a Ritz value \(String(format: "%.3g", smallest + l)) ≤ 0 at ridge \(settings.ridges[r]): t = inf uses the pseudo-inverse; a positive --ridge makes it a regression")
      }
    }
    var trainPredictions = lanczos.combine(final.phi)  // n × (R·T·C)
    let alpha = lanczos.combine(final.psi)
    let kernelFile = kernelHandle
    var testPredictions = hasTestKernel ? try crossKernelProduct(path: settings.kernelFile, kernel: settings.kernelName, alpha: alpha, comm: comm) : nil
    if let initial {
      Self.addRepeated(initial.train, to: &trainPredictions)
      if let f0 = initial.test, testPredictions != nil { Self.addRepeated(f0, to: &testPredictions!) }
    }
    let testY = targets.encodedTestTargets(encoding: settings.encoding)

    let trainLabels = targets.classes == nil ? nil : try kernelFile.readCheckedLabels(KernelFileLayout.trainLabels)
    var points: [DynamicsPoint] = []
    for (r, lambda) in lambdas.enumerated() {
      for (ti, time) in settings.times.enumerated() {
        let columns = Array(((r * filters.count + ti) * c) ..< ((r * filters.count + ti + 1) * c))
        let f = trainPredictions.columns(columns)
        var p = DynamicsPoint(time: time, ridge: settings.ridges[r], lambda: lambda,
                              trainLoss: Self.halfMeanSquare(f - y), errorEstimate: estimates.isEmpty ? .infinity : estimates[r][ti])
        if let classes = targets.classes, let labels = trainLabels {
          p.trainAccuracy = classificationAccuracy(f, classes: classes, labels: labels)
        }
        if let test = testPredictions?.columns(columns) {
          if let testY, testY.rows == test.rows, testY.cols == test.cols { p.testLoss = Self.halfMeanSquare(test - testY) }
          if let classes = targets.classes, let labels = targets.testLabels {
            p.testAccuracy = classificationAccuracy(test, classes: classes, labels: labels)
          }
        }
        points.append(p)
      }
    }
    let report = DynamicsReport(kernelFile: settings.kernelFile, kernel: settings.kernelName, learningRate: settings.learningRate,
                                ranks: comm.size, trainCount: n, testCount: testPredictions?.rows ?? 0, columns: c,
                                iterations: lanczos.steps, basisDimension: lanczos.dimension, basisBytes: lanczos.basisBytes,
                                passes: op.passes, converged: converged, exhausted: lanczos.exhausted,
                                seconds: Date().timeIntervalSince(start), cachedTiles: op.cachedTiles, streamedTiles: op.streamedTiles,
                                points: points)
    try comm.collectively {
      guard isRoot else { return }
      try write(report: report, lambdas: lambdas, train: trainPredictions, test: testPredictions, targets: targets)
      if let path = settings.metrics { try writeJSON(report, to: path) }
    }
    return report
  }

  /// `/initial_outputs/train` (`n × c`) and, when the kernel has a test block,
  /// `/initial_outputs/test` of an HDF5 file (an empirical kernel file or a `train` output).
  static func readInitialOutputs(_ path: String, n: Int, c: Int, testRows: Int?) throws -> (train: DenseBlock, test: DenseBlock?) {
    let f = try H5File.open(path)
    func read(_ name: String, rows: Int) throws -> DenseBlock {
      guard f.exists(name) else { throw StorageError(path, "has no \(name) (the network's outputs at initialisation, rows × outputs)") }
      let d = try f.dataset(name)
      guard d.shape.count == 2 || (d.shape.count == 1 && c == 1) else { throw StorageError(path, "\(name) has shape \(d.shape), expected rows × \(c)") }
      let cols = d.shape.count == 2 ? d.shape[1] : 1
      guard cols == c else {
        throw StorageError(path, "\(name) has \(cols) outputs per sample but the targets have \(c) columns: the network's readout width must be the number of target columns")
      }
      if d.shape[0] != rows { throw StorageError(path, "\(name) has \(d.shape[0]) rows, the kernel has \(rows) \(name.hasSuffix("train") ? "training" : "test") samples") }
      let values = try d.readAll()
      if let bad = values.first(where: { !$0.isFinite }) { throw StorageError(path, "\(name) holds a non-finite value (\(bad))") }
      return DenseBlock(rows: d.shape[0], cols: c, values: values)
    }
    let train = try read("/initial_outputs/train", rows: n)
    let test = try testRows.map { try read("/initial_outputs/test", rows: $0) }
    return (train, test)
  }

  /// Initial outputs must be of the kernel's training data (both files record its checksum):
  /// another data set is refused. Outputs of another network than an empirical kernel's own
  /// are allowed (the analytic kernel with one network's f₀ is the usual case; another network's
  /// f₀ over an empirical kernel may be deliberate) but said.
  static func checkProvenance(of path: String, kernel: H5File) throws -> String? {
    let f = try H5File.open(path)
    func string(_ file: H5File, _ name: String) throws -> String? {
      if case .string(let s)? = try file.attribute(name) { return s }
      return nil
    }
    if let ours = try string(kernel, "train_data_checksum"), let theirs = try string(f, "train_data_checksum"), ours != theirs {
      throw StorageError(path, "holds the outputs of a network on other training data (data checksum \(theirs), the kernel's \(ours))")
    }
    if let ours = try string(kernel, "parameters_checksum"),
       let theirs = try string(f, "initial_parameters_checksum") ?? string(f, "parameters_checksum"), ours != theirs {
      return "dynamics: \(path) holds the initial outputs of another network than the one whose empirical kernel this is (weights \(theirs), the kernel's \(ours))"
    }
    return nil
  }

  /// Adds `f0` (`rows × c`) to every `c`-column block of `p`.
  static func addRepeated(_ f0: DenseBlock, to p: inout DenseBlock) {
    precondition(f0.rows == p.rows && p.cols % max(f0.cols, 1) == 0, "addRepeated: shapes")
    for i in 0..<p.rows { for j in 0..<p.cols { p[i, j] += f0[i, j % f0.cols] } }
  }

  /// ½·mean of the squares (the loss ½‖f − y‖²/(N·C)).
  public static func halfMeanSquare(_ e: DenseBlock) -> Double {
    guard !e.values.isEmpty else { return 0 }
    return 0.5 * e.values.reduce(0) { $0 + $1 * $1 } / Double(e.values.count)
  }

  struct Coefficients {
    /// `dimension × (R·T·C)`: column block (r, t) holds ridge r and time t.
    var phi: DenseBlock
    var psi: DenseBlock
    var smallestRitz: Double?
  }

  /// Q-coefficients of the train outputs, S·φ(Θ+ρ)·Sᵀ·E₁R₀, and of the test-side weights,
  /// S·ψ(Θ+ρ)·Sᵀ·E₁R₀, for every ridge and time, from one eigendecomposition of T.
  func coefficients(_ lanczos: BlockLanczos, filters: [GradientFlowFilter], lambdas: [Double], y: DenseBlock) throws -> Coefficients {
    let (theta, s) = try lanczos.ritz()
    let k = lanczos.dimension, c = y.cols
    let g = s.transposeTimes(Self.padded(lanczos.startCoefficients, rows: k))
    let width = lambdas.count * filters.count * c
    var wPhi = DenseBlock(rows: k, cols: width), wPsi = DenseBlock(rows: k, cols: width)
    for (r, lambda) in lambdas.enumerated() {
      for (ti, filter) in filters.enumerated() {
        let base = (r * filters.count + ti) * c
        for i in 0..<k {
          let (p, q) = (filter.psi(theta[i] + lambda), filter.phi(theta[i] + lambda))
          for j in 0..<c { wPsi[i, base + j] = p * g[i, j]; wPhi[i, base + j] = q * g[i, j] }
        }
      }
    }
    return Coefficients(phi: s.times(wPhi), psi: s.times(wPsi), smallestRitz: theta.first)
  }

  /// Error estimates per ridge and time (worst over the C columns), relative to ‖y_j‖:
  /// ‖B_{m+1}·E_mᵀ·ψ(T+ρ)·E₁R₀‖ (how far K·x_t misses φ_t(K)·y through the part of K·Q outside
  /// the basis: at t = ∞ exactly the CG residual) plus the change of the train outputs since the
  /// previous check (how far the basis's own approximation of the filter still moves; infinite
  /// at the first check, zero once the space is exhausted).
  static func estimates(_ co: Coefficients, _ lanczos: BlockLanczos, previousPhi: DenseBlock?, yNorms: [Double],
                        ridges: Int, times: Int) -> [[Double]] {
    let residual = lanczos.residualNorms(co.psi)
    let width = co.phi.cols, k = co.phi.rows, c = yNorms.count
    var change = [Double](repeating: lanczos.exhausted ? 0 : .infinity, count: width)
    if !lanczos.exhausted, let previous = previousPhi {
      change = [Double](repeating: 0, count: width)
      for i in 0..<k { for j in 0..<width {
        let d = co.phi[i, j] - (i < previous.rows ? previous[i, j] : 0)
        change[j] += d * d
      } }
      change = change.map { $0.squareRoot() }
    }
    return (0..<ridges).map { r in
      (0..<times).map { t in
        worstValue((0..<c).map { j in let col = (r * times + t) * c + j; return (residual[col] + change[col]) / yNorms[j] })
      }
    }
  }

  static func padded(_ b: DenseBlock, rows: Int) -> DenseBlock {
    var out = DenseBlock(rows: rows, cols: b.cols)
    for i in 0..<min(rows, b.rows) { for j in 0..<b.cols { out[i, j] = b[i, j] } }
    return out
  }

  // MARK: Outputs

  func write(report: DynamicsReport, lambdas: [Double], train: DenseBlock, test: DenseBlock?, targets: Targets) throws {
    let writer = try KernelFileWriter(destination: settings.out, overwrite: settings.force)
    defer { writer.discard() }
    let f = writer.handle
    let (rCount, tCount, c) = (settings.ridges.count, settings.times.count, targets.y.cols)
    func write(_ name: String, _ values: [Double], _ shape: [Int]) throws { try writeDoubles(f, name, values, shape) }
    /// (R·T·C columns) → R × T × rows × C, the ridge axis dropped for one ridge value.
    func stack(_ p: DenseBlock) -> ([Double], [Int]) {
      var out: [Double] = []
      out.reserveCapacity(p.values.count)
      for b in 0..<(rCount * tCount) { out += p.columns(Array((b * c) ..< ((b + 1) * c))).values }
      return (out, rCount == 1 ? [tCount, p.rows, c] : [rCount, tCount, p.rows, c])
    }
    try write("/dynamics/times", settings.times, [tCount])
    try write("/dynamics/ridges", settings.ridges, [rCount])
    try write("/dynamics/lambdas", lambdas, [rCount])
    let (tv, ts) = stack(train)
    try write("/dynamics/train/predictions", tv, ts)
    if let test {
      let (v, s) = stack(test)
      try write("/dynamics/test/predictions", v, s)
    }
    let metricShape = rCount == 1 ? [tCount] : [rCount, tCount]
    try write("/dynamics/train/loss", report.points.map(\.trainLoss), metricShape)
    if report.points.allSatisfy({ $0.trainAccuracy != nil }) { try write("/dynamics/train/accuracy", report.points.map { $0.trainAccuracy! }, metricShape) }
    if report.points.allSatisfy({ $0.testLoss != nil }) { try write("/dynamics/test/loss", report.points.map { $0.testLoss! }, metricShape) }
    if report.points.allSatisfy({ $0.testAccuracy != nil }) { try write("/dynamics/test/accuracy", report.points.map { $0.testAccuracy! }, metricShape) }
    try write("/dynamics/error_estimates", report.points.map(\.errorEstimate), metricShape)
    if let classes = targets.classes {
      let d = try f.createInt64Dataset("/dynamics/classes", shape: [classes.count])
      try classes.withUnsafeBufferPointer { try d.write($0, start: [0], count: [classes.count]) }
    }
    let attributes: [(String, AttributeValue)] = [
      ("kernel_file", .string(settings.kernelFile)), ("kernel", .string(settings.kernelName)),
      ("learning_rate", .double(settings.learningRate)), ("normalization", .double(Double(report.trainCount * c))),
      ("loss", .string("0.5 * sum((f - y)^2) / (N * C), " + (settings.initialOutputs == nil ? "f_0 = 0" : "f_0 from initial_outputs"))),
      ("initial_outputs", .string(settings.initialOutputs ?? "")),
      ("ridge_absolute", .int(settings.ridgeAbsolute ? 1 : 0)), ("tolerance", .double(settings.tolerance)),
      ("encoding", .string(targets.classes == nil ? "regression" : settings.encoding.rawValue)),
      ("iterations", .int(Int64(report.iterations))), ("basis_dimension", .int(Int64(report.basisDimension))),
      ("converged", .int(report.converged ? 1 : 0)), ("exhausted", .int(report.exhausted ? 1 : 0)),
      ("ranks", .int(Int64(comm.size))), ("passes", .int(Int64(report.passes))), ("tool_version", .string(toolVersion)),
    ]
    for (k, v) in attributes { try f.setAttribute(k, v) }
    let kernel = try H5File.open(settings.kernelFile)
    for (from, to) in [("fingerprint", "kernel_fingerprint"), ("train_fingerprint", "kernel_train_fingerprint")] {
      if case .string(let v)? = try kernel.attribute(from) { try f.setAttribute(to, .string(v)) }
    }
    try writer.commit()
  }
}

/// Writes a report as pretty JSON (`writeOutputFile`: a file replaced whole, or a device or
/// FIFO written in place).
public func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
  let data = try encoder.encode(value)
  try writeOutputFile(Array(data) + [0x0a], to: path, what: "the metrics")
}
