import CLAPACK
import Foundation
import GramAnalysis
import GramBuild
import GramData
import GramEvents
import GramKernels
import GramNetwork
import GramSolver
import GramStorage
import GramTransport

// Full-batch gradient descent on the network whose empirical kernels `build --empirical`
// computes, with the conventions of `ntkgram dynamics` (docs/finite-width.md):
//
//   loss L(θ) = ½·Σ (f(x_i) − y_i)² / (N·C),   θ ← θ − η·∇L(θ),   step s ↔ time t = s,
//
// so that, for a wide network and a small η, the outputs after s steps approach
// `dynamics --times s --learning-rate η --initial-outputs` on the network's own initial outputs.
// Parameters are those of stax (the `/params` layout); the layer products are BLAS calls.
// With several ranks, each holds a contiguous share of the training rows and the gradients are
// summed by an allReduce, so every rank takes the same step.

/// Everything `ntkgram train` needs.
public struct TrainSettings: Sendable {
  /// The data, the network and where its weights come from (`--seed` / `--params`), as a build.
  public var build: BuildSettings
  public var learningRate = 1.0
  /// Steps at which outputs are recorded (whole numbers, increasing); the last is the number of steps.
  public var times: [Double] = []
  public var targets: String?
  public var testTargets: String?
  public var encoding: TargetEncoding = .onehot
  public var metrics: String?
  /// BLAS threads per rank.
  public var threads = 1

  public init(build: BuildSettings) {
    self.build = build
  }

  public var out: String { build.out }

  /// The files `train` reads and writes, checked together before any work.
  public var paths: CommandPaths {
    var inputs: [(String, String)] = [(build.train.samples, "the training data")]
    if let l = build.train.labels { inputs.append((l, "the training labels")) }
    if let t = build.test { inputs.append((t.samples, "the test data")) }
    if let l = build.test?.labels { inputs.append((l, "the test labels")) }
    if let t = targets { inputs.append((t, "the targets")) }
    if let t = testTargets { inputs.append((t, "the test targets")) }
    if case .file(let p)? = build.empirical { inputs.append((p, "the initial weights (--params)")) }
    if let job = build.specOrigin { inputs.append((job, "the job file")) }
    var outputs = [PlannedOutput(out, "the training output")]
    if let m = metrics { outputs.append(PlannedOutput(m, "the metrics (--metrics)", kind: .text)) }
    return CommandPaths(inputs: inputs, outputs: outputs, force: build.force)
  }
}

/// One recorded step.
public struct TrainPoint: Sendable, Codable {
  public var step: Int
  public var trainLoss: Double
  public var trainAccuracy: Double?
  public var testLoss: Double?
  public var testAccuracy: Double?

  enum CodingKeys: String, CodingKey {
    case step, trainLoss = "train_loss", trainAccuracy = "train_accuracy", testLoss = "test_loss", testAccuracy = "test_accuracy"
  }
}

/// What a finished training reports.
public struct TrainReport: Sendable, Codable {
  public var out: String
  public var trainCount: Int
  public var testCount: Int
  public var outputs: Int
  public var parameters: Int
  public var learningRate: Double
  public var steps: Int
  public var ranks: Int
  public var seconds: Double
  public var points: [TrainPoint]
}

public struct TrainError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

public struct TrainDriver {
  public let settings: TrainSettings
  public let comm: Communicator
  public let events: EventSink

  public init(settings: TrainSettings, comm: Communicator, events: EventSink = SilentSink()) {
    self.settings = settings
    self.comm = comm
    self.events = events
  }

  /// The recorded steps: the times, strictly increasing as given (a time given twice is an
  /// error, as in `dynamics`), rounded to whole steps; times that round to the same step (the
  /// small times of a `log:` range) are recorded once.
  public static func steps(_ times: [Double]) throws -> [Int] {
    guard !times.isEmpty else { throw TrainError("--times: no training times given") }
    var steps: [Int] = []
    var previous: Double? = nil
    for t in times {
      guard t.isFinite, t >= 0 else { throw TrainError("--times: \(t) is not a number of steps (train takes whole numbers ≥ 0; inf is for dynamics)") }
      guard t <= 1e9 else { throw TrainError("--times: \(t) steps is absurdly many (at most 1e9)") }
      if let previous, t == previous {
        throw TrainError("--times must be increasing: \(t) is given twice (each step is recorded once: give it once)")
      }
      if let previous, t < previous { throw TrainError("--times must be increasing (\(t) comes after \(previous))") }
      previous = t
      let s = Int(t.rounded())
      if let last = steps.last, s == last { continue }
      steps.append(s)
    }
    return steps
  }

  /// Copies of the weights training holds at its peak: the network as read or drawn (its
  /// weights and transposed rows), the model, the gradient (and its parts), and a recorded
  /// step's network (its transposed rows).
  static let weightCopies = 6.0

  public static func validate(_ s: TrainSettings) throws {
    _ = try steps(s.times)
    guard s.learningRate > 0, s.learningRate.isFinite else { throw TrainError("--learning-rate must be positive and finite (got \(s.learningRate))") }
    guard s.threads >= 1, s.threads <= 4096 else { throw TrainError("--threads must be between 1 and 4096 (got \(s.threads))") }
    if s.testTargets != nil && s.targets == nil {
      throw TrainError("--test-targets needs --targets (without them the targets are the labels, and so are the test targets)")
    }
    try s.paths.check()
  }

  public func run() throws -> TrainReport {
    let start = Date()
    let isRoot = comm.rank == 0
    let reporter: EventSink = isRoot ? events : SilentSink()
    try comm.collectively { try Self.validate(settings) }
    setLinearAlgebraThreads(settings.threads)
    var build = settings.build
    if build.empirical == nil { build.empirical = .seed(0) }
    let data = try comm.collectively { () -> NetworkData in
      var loader = BuildDriver(settings: build, comm: comm)
      loader.weightCopies = Self.weightCopies
      let data = try loader.loadNetworkData()
      // The output's folder now, not after the last step.
      if isRoot {
        let folder = URL(fileURLWithPath: settings.out).deletingLastPathComponent().path
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        catch { throw StorageError(settings.out, "cannot create its folder \(folder): \(error.localizedDescription)") }
      }
      return data
    }
    let steps = try Self.steps(settings.times)
    let n = data.train.rows, m = data.test?.rows ?? 0
    let network = data.network
    let k = network.outputCount

    // Targets: given, or the labels one-hot encoded over the training classes.
    let (y, classes, yTest) = try comm.collectively { () -> (DenseBlock, [Int64]?, DenseBlock?) in
      if let path = settings.targets {
        let y = try Targets.readRealMatrix(path)
        guard y.rows == n else { throw StorageError(path, "has \(y.rows) target rows but the training data has \(n) samples") }
        // Targets whose squares overflow would make the loss infinite at step 0: not a divergence.
        try Targets.checkMagnitude(y, path: path)
        let test = try settings.testTargets.map(Targets.readRealMatrix)
        if let test, test.rows != m || test.cols != y.cols {
          throw StorageError(settings.testTargets!, "has \(test.rows)×\(test.cols) targets, expected \(m)×\(y.cols)" + (m == 0 ? " (there is no test data: give --test)" : ""))
        }
        if let test { try Targets.checkMagnitude(test, path: settings.testTargets!) }
        return (y, nil, test)
      }
      guard let labels = data.trainLabels else {
        throw StorageError(settings.build.train.samples, "has no labels: give --train-labels (or --targets for regression)")
      }
      let classes = Array(Set(labels)).sorted()
      let y = Targets.encode(labels, classes: classes, encoding: settings.encoding)!
      let test = data.testLabels.flatMap { Targets.encode($0, classes: classes, encoding: settings.encoding) }
      return (y, classes, test)
    }
    guard y.cols == k else {
      throw TrainError("the network has \(k) output(s) per sample (its readout width) but the targets have \(y.cols) column(s): set readout_width (--readout-width \(y.cols)) or the last dense layer's width")
    }

    try comm.collectively { try Self.checkRecordedSize(steps: steps.count, rows: n + m, outputs: k) }

    // This rank's share of the training rows.
    let lo = n * comm.rank / comm.size, hi = n * (comm.rank + 1) / comm.size
    let rows = hi - lo
    var model = Model(network: network)
    let normalization = Double(n) * Double(k)
    var points: [TrainPoint] = []
    var trainRecords: [Double] = [], testRecords: [Double] = []
    reporter.message("train: \(n) samples (\(rows) on rank 0), \(m) test samples, \(network.parameters.count) parameters, \(steps.last!) steps of η = \(settings.learningRate), \(comm.size) rank(s)")
    let t0 = Date()
    var recorded = 0
    for step in 0...steps.last! {
      let record = recorded < steps.count && steps[recorded] == step
      let pass = model.forward(data.train.values, from: lo, rows: rows)
      if record {
        // Recorded outputs come from the packed product, as the kernel file's initial outputs
        // do: at step 0 they are the same bits, and they do not depend on the rank count.
        let current = try ConcreteNetwork(network: data.spec.network, inputShape: data.spec.inputShape, parameters: model.parameters)
        func outputs(_ x: Matrix, _ from: Int, _ count: Int) -> [Double] {
          x.values.withUnsafeBufferPointer { count > 0 ? current.forward($0.baseAddress! + from * x.cols, rows: count).pre.last! : [] }
        }
        let train = try gatherRows(outputs(data.train, lo, rows), rows: rows, cols: k, total: n)
        var test: [Double]? = nil
        if let x = data.test, m > 0 {
          let tlo = m * comm.rank / comm.size, thi = m * (comm.rank + 1) / comm.size
          test = try gatherRows(outputs(x, tlo, thi - tlo), rows: thi - tlo, cols: k, total: m)
        }
        trainRecords += train
        testRecords += test ?? []
        let f = DenseBlock(rows: n, cols: k, values: train)
        var p = TrainPoint(step: step, trainLoss: DynamicsDriver.halfMeanSquare(f - y))
        // Every rank holds the same gathered outputs, so every rank agrees on this.
        let finite = p.trainLoss.isFinite && train.allSatisfy(\.isFinite) && (test ?? []).allSatisfy(\.isFinite)
        try comm.collectively { try stopIfDiverged(finite, step: step, cause: p.trainLoss.isFinite ? "the outputs are not finite" : "the loss is \(p.trainLoss)") }
        if let classes, let labels = data.trainLabels { p.trainAccuracy = classificationAccuracy(f, classes: classes, labels: labels) }
        if let test {
          let ft = DenseBlock(rows: m, cols: k, values: test)
          if let yTest { p.testLoss = DynamicsDriver.halfMeanSquare(ft - yTest) }
          if let classes, let labels = data.testLabels { p.testAccuracy = classificationAccuracy(ft, classes: classes, labels: labels) }
        }
        points.append(p)
        recorded += 1
        let elapsed = Date().timeIntervalSince(t0)
        reporter.progress(.training(step: step, steps: steps.last!, loss: p.trainLoss, elapsed: elapsed,
                                    eta: step > 0 ? elapsed / Double(step) * Double(steps.last! - step) : .infinity), force: false)
      }
      guard step < steps.last! else { break }
      // ∂L/∂f = (f − y)/(N·C) on this rank's rows; the gradient summed over the ranks.
      var residual = pass.output
      var squares = 0.0
      for i in 0..<rows {
        for j in 0..<k {
          let difference = residual[i * k + j] - y[lo + i, j]
          squares += difference * difference
          residual[i * k + j] = difference / normalization
        }
      }
      if !record { try reportStep(step, of: steps.last!, squares: squares, normalization: normalization, since: t0, to: reporter) }
      var gradient = model.gradient(pass, residual: residual, rows: rows)
      // A last entry counts the ranks whose outputs are not finite: summed with the gradient,
      // so every rank learns of a divergence in the same collective and stops at the same step.
      gradient.append(pass.output.allSatisfy(\.isFinite) ? 0 : 1)
      if comm.size > 1 { try comm.allReduce(&gradient, .sum) }
      let diverged = gradient.removeLast() > 0
      let finite = !diverged && gradient.allSatisfy(\.isFinite)
      try comm.collectively { try stopIfDiverged(finite, step: step, cause: diverged ? "the outputs are not finite" : "the gradient is not finite") }
      model.step(gradient, learningRate: settings.learningRate)
    }
    let finalWeightsFinite = model.W.allSatisfy { $0.allSatisfy(\.isFinite) } && model.b.allSatisfy { $0?.allSatisfy(\.isFinite) ?? true }
    try comm.collectively { try stopIfDiverged(finalWeightsFinite, step: steps.last!, cause: "the weights are not finite") }
    reporter.finishProgress()
    let report = TrainReport(out: settings.out, trainCount: n, testCount: m, outputs: k, parameters: network.parameters.count,
                             learningRate: settings.learningRate, steps: steps.last!, ranks: comm.size,
                             seconds: Date().timeIntervalSince(start), points: points)
    try comm.collectively {
      guard isRoot else { return }
      if let path = settings.metrics { try writeJSON(report, to: path) }
      try write(report: report, data: data, model: model, steps: steps, train: trainRecords, test: testRecords,
                classes: classes)
    }
    return report
  }

  /// The progress of a step that is not recorded: its training loss ½·Σ(f − y)²/(N·C) from
  /// this step's forward pass (`squares`: this rank's Σ(f − y)², summed over the ranks), for the
  /// sink to show at its own rate. Recorded steps report the loss of their recorded outputs.
  func reportStep(_ step: Int, of steps: Int, squares: Double, normalization: Double, since t0: Date, to reporter: EventSink) throws {
    var total = [squares]
    if comm.size > 1 { try comm.allReduce(&total, .sum) }
    let elapsed = Date().timeIntervalSince(t0)
    reporter.progress(.training(step: step, steps: steps, loss: 0.5 * total[0] / normalization, elapsed: elapsed,
                                eta: step > 0 ? elapsed / Double(step) * Double(steps - step) : .infinity), force: false)
  }

  /// The recorded outputs (every recorded step's train and test outputs, held until written,
  /// and their copy in the file's writer) must fit in half the machine's memory, as for
  /// `dynamics` (`DynamicsOutputSize.memoryShare`): else one line before the first step.
  static func checkRecordedSize(steps: Int, rows: Int, outputs: Int) throws {
    let bytes = 2 * 8 * Double(steps) * Double(rows) * Double(outputs)
    guard let memory = physicalMemoryBytes(), bytes > DynamicsOutputSize.memoryShare * memory else { return }
    throw TrainError("--times: \(steps) recorded steps of \(rows) samples × \(outputs) outputs need about \(byteSize(bytes)) in memory, more than half this machine's \(byteSize(memory)); record fewer steps (a smaller COUNT in log:START:STOP:COUNT)")
  }

  /// Stops a diverging training: a non-finite loss, outputs, gradient or weights at `step` is
  /// one line naming the step and the remedy, before anything is written.
  /// At step 0 nothing has been learned yet: non-finite outputs there come from the network's
  /// initial weights or the data, not from the learning rate.
  func stopIfDiverged(_ finite: Bool, step: Int, cause: @autoclosure () -> String) throws {
    guard !finite else { return }
    if step == 0 {
      throw TrainError("\(settings.build.train.samples): the network's outputs at initialisation are not finite (\(cause())): its weights (--params, W_std) or the data overflow float64; nothing was written")
    }
    throw TrainError("--learning-rate \(settings.learningRate): training diverged at step \(step) (\(cause())): use a smaller --learning-rate (gradient descent is stable below 2·N·C/λ_max of the network's NTK; `ntkgram spectrum` of its empirical kernel gives that rate); nothing was written")
  }

  /// Every rank's `rows × cols` block, in rank order (`total` rows), on every rank.
  func gatherRows(_ local: [Double], rows: Int, cols: Int, total: Int) throws -> [Double] {
    guard comm.size > 1 else { return local }
    let bytes = local.withUnsafeBytes { Array($0) }
    let parts = try comm.allGather(bytes)
    let count = parts.reduce(0) { $0 + $1.count } / MemoryLayout<Double>.size
    guard count == total * cols else { throw TrainError("gathering outputs: \(count) values, expected \(total * cols)") }
    return [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
      var offset = 0
      for p in parts {
        p.withUnsafeBytes { UnsafeMutableRawPointer(buffer.baseAddress! + offset / MemoryLayout<Double>.size).copyMemory(from: $0.baseAddress!, byteCount: p.count) }
        offset += p.count
      }
      initialized = count
    }
  }

  func write(report: TrainReport, data: NetworkData, model: Model, steps: [Int], train: [Double], test: [Double],
             classes: [Int64]?) throws {
    let writer = try KernelFileWriter(destination: settings.out, overwrite: settings.build.force)
    defer { writer.discard() }
    let f = writer.handle
    let (t, n, m, k) = (steps.count, report.trainCount, report.testCount, report.outputs)
    try writeDoubles(f, "/times", steps.map(Double.init), [t])
    try writeDoubles(f, "/train/outputs", train, [t, n, k])
    try writeDoubles(f, "/train/loss", report.points.map(\.trainLoss), [t])
    if report.points.allSatisfy({ $0.trainAccuracy != nil }) { try writeDoubles(f, "/train/accuracy", report.points.map { $0.trainAccuracy! }, [t]) }
    if m > 0 {
      try writeDoubles(f, "/test/outputs", test, [t, m, k])
      if report.points.allSatisfy({ $0.testLoss != nil }) { try writeDoubles(f, "/test/loss", report.points.map { $0.testLoss! }, [t]) }
      if report.points.allSatisfy({ $0.testAccuracy != nil }) { try writeDoubles(f, "/test/accuracy", report.points.map { $0.testAccuracy! }, [t]) }
    }
    // The outputs at step 0 are the network's initial outputs (`dynamics --initial-outputs`).
    let initial = data.network.outputs(data.train)
    try writeDoubles(f, "/initial_outputs/train", initial, [n, k])
    if let x = data.test, m > 0 { try writeDoubles(f, "/initial_outputs/test", data.network.outputs(x), [m, k]) }
    if let classes {
      let d = try f.createInt64Dataset("/classes", shape: [classes.count])
      try classes.withUnsafeBufferPointer { try d.write($0, start: [0], count: [classes.count]) }
    }
    try ParametersFile.write(model.parameters, to: f)
    try ParametersFile.write(data.network.parameters, to: f, group: "/initial_params")
    var attributes = data.spec.attributes.filter { !["empirical", "seed", "parameters_checksum", "parameters_source"].contains($0.0) }
    attributes += [
      ("learning_rate", .double(settings.learningRate)), ("steps", .int(Int64(report.steps))),
      ("loss", .string("0.5 * sum((f - y)^2) / (N * C); theta <- theta - learning_rate * grad; step s is dynamics time s")),
      ("encoding", .string(classes == nil ? "regression" : settings.encoding.rawValue)),
      ("initial_seed", .int(data.empirical.seed.map { Int64($0) } ?? -1)),
      ("initial_parameters_source", .string(data.empirical.source ?? "seed")),
      ("initial_parameters_checksum", .string(data.empirical.checksum)),
      ("parameters_checksum", .string(ParametersFile.checksum(model.parameters))),
      ("train_data_checksum", .string(data.trainChecksum)),
      ("ranks", .int(Int64(comm.size))), ("tool_version", .string(toolVersion)),
    ]
    for (key, value) in attributes { try f.setAttribute(key, value) }
    try writer.commit()
  }
}

/// The trainable state: the stax-layout parameters, updated in place.
struct Model {
  let network: ConcreteNetwork
  var W: [[Double]]
  var b: [[Double]?]

  init(network: ConcreteNetwork) {
    self.network = network
    W = network.dense.map(\.W)
    b = network.dense.map(\.b)
  }

  var parameters: NetworkParameters {
    NetworkParameters(dense: network.dense.enumerated().map { l, d in
      DenseParameters(position: d.position, inputs: d.inputs, outputs: d.outputs, W: W[l], b: b[l])
    })
  }

  struct Pass {
    /// The input of every dense layer, `rows × n_l`.
    var inputs: [[Double]]
    /// Every pre-activation, `rows × m_l`.
    var pre: [[Double]]
    var output: [Double] { pre.last! }
  }

  /// z_l = c_l·A_l·W_l + β_l·b_l, a_{l+1} = φ_l(z_l), for rows `from ..< from + rows` of `x`.
  func forward(_ x: [Double], from: Int, rows: Int) -> Pass {
    let d0 = network.inputCount
    var inputs = [Array(x[(from * d0) ..< ((from + rows) * d0)])]
    var pre: [[Double]] = []
    for (l, d) in network.dense.enumerated() {
      var z = [Double](repeating: 0, count: rows * d.outputs)
      if rows > 0 {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(d.outputs), Int32(d.inputs),
                    d.weightScale, inputs[l], Int32(d.inputs), W[l], Int32(d.outputs), 0, &z, Int32(d.outputs))
      }
      if let bias = b[l] {
        for i in 0..<rows { for j in 0..<d.outputs { z[i * d.outputs + j] += d.biasScale * bias[j] } }
      }
      pre.append(z)
      if l < network.activations.count {
        let act = network.activations[l]
        inputs.append(z.map { act.apply($0) })
      }
    }
    return Pass(inputs: inputs, pre: pre)
  }

  /// ∇L for these rows, every W then b in layer order (one flat vector, for the allReduce):
  /// ∂L/∂W_l = c_l·A_lᵀ·Δ_l, ∂L/∂b_l = β_l·Σ_i Δ_l(i), Δ_L = ∂L/∂f,
  /// Δ_{l−1} = φ′(Z_{l−1}) ⊙ (c_l·Δ_l·W_lᵀ).
  func gradient(_ pass: Pass, residual: [Double], rows: Int) -> [Double] {
    let L = network.dense.count - 1
    var parts = [[Double]](repeating: [], count: 2 * (L + 1))
    var delta = residual
    var l = L
    while l >= 0 {
      let d = network.dense[l]
      var gW = [Double](repeating: 0, count: d.inputs * d.outputs)
      if rows > 0 {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d.inputs), Int32(d.outputs), Int32(rows),
                    d.weightScale, pass.inputs[l], Int32(d.inputs), delta, Int32(d.outputs), 0, &gW, Int32(d.outputs))
      }
      parts[2 * l] = gW
      if b[l] != nil {
        var gb = [Double](repeating: 0, count: d.outputs)
        for i in 0..<rows { for j in 0..<d.outputs { gb[j] += delta[i * d.outputs + j] } }
        parts[2 * l + 1] = gb.map { $0 * d.biasScale }
      }
      if l > 0 {
        let below = network.dense[l - 1], act = network.activations[l - 1]
        var next = [Double](repeating: 0, count: rows * d.inputs)
        if rows > 0 {
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(d.inputs), Int32(d.outputs),
                      d.weightScale, delta, Int32(d.outputs), W[l], Int32(d.outputs), 0, &next, Int32(d.inputs))
        }
        precondition(below.outputs == d.inputs)
        for i in 0..<(rows * d.inputs) { next[i] *= act.derivative(pass.pre[l - 1][i]) }
        delta = next
      }
      l -= 1
    }
    return parts.flatMap { $0 }
  }

  /// θ ← θ − η·g, with `g` laid out as `gradient` returns it.
  mutating func step(_ g: [Double], learningRate eta: Double) {
    var offset = 0
    for l in 0..<W.count {
      for i in 0..<W[l].count { W[l][i] -= eta * g[offset + i] }
      offset += W[l].count
      if b[l] != nil {
        for i in 0..<b[l]!.count { b[l]![i] -= eta * g[offset + i] }
        offset += b[l]!.count
      }
    }
  }
}
