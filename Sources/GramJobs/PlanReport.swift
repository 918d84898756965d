import Foundation
import GramBuild
import GramData
import GramKernels
import GramNetwork
import GramStorage

/// The flags of `ntkgram plan` beside the kernel flags.
public struct PlanFlags: Sendable {
  public var ranks = 1
  public var threads = 1
  /// Measured entries per second of one rank; nil: from the kernel's declared cost.
  public var entriesPerSecond: Double?
  public var trainCount: Int?
  public var testCount: Int?
  public var features: Int?
  public var inputShape: String?
  public var tile: Int?
  public var dtype: String?
  /// The kernels written (`ntk,nngp`); nil: the job's, else every output.
  public var kernels: String?
  /// `auto`, `contiguous` or `tiles`; nil: the job's, else auto.
  public var layout: String?
  public var kernel = KernelFlags()

  public init() {}
}

/// `ntkgram plan`: a job sized from its data files' headers and its kernel's declared costs.
public struct PlanReport: Sendable {
  public let plan: BuildPlan
  public let lines: [String]

  public init(job jobPath: String?, flags: PlanFlags) throws {
    guard flags.ranks >= 1, flags.ranks <= 1 << 24 else { throw SettingsError("--ranks must be between 1 and 16777216 (got \(flags.ranks))") }
    guard flags.threads >= 1, flags.threads <= 4096 else { throw SettingsError("--threads must be between 1 and 4096 (got \(flags.threads))") }
    if let e = flags.entriesPerSecond, !(e > 0 && e.isFinite) { throw SettingsError("--entries-per-second must be positive") }
    let job = try jobPath.map { try JobFile(path: $0) }
    let origin = job.map { "\($0.path): " } ?? ""
    var n = flags.trainCount, m = flags.testCount
    var shape: [Int]? = try flags.inputShape.map(Settings.parseShape) ?? job?.ints("input_shape")
    if let d = flags.features, shape == nil { shape = [d] }
    if n == nil || shape == nil, let train = job?.string("train") {
      let (rows, sample) = try DatasetReader.sampleShape(train, labelColumn: job?.int("train_label_column"))
      // A flipped training set holds the mirrored rows too (the limit applies first).
      n = n ?? min(rows, job?.int("train_limit") ?? rows) * (job?.string("augment") == Augment.flip.rawValue ? 2 : 1)
      shape = shape ?? sample
    }
    if m == nil, let test = job?.string("test") {
      let (rows, _) = try DatasetReader.sampleShape(test, labelColumn: job?.int("test_label_column"))
      m = min(rows, job?.int("test_limit") ?? rows)
    }
    guard let n, let shape else { throw SettingsError("give a job file, or --train-count and --features (or --input-shape)") }
    guard n >= 1, n <= 1 << 40, (m ?? 0) >= 0, (m ?? 0) <= 1 << 40 else {
      throw SettingsError("sample counts must be between 1 and 2^40 (got \(n) train, \(m ?? 0) test)")
    }
    let tileSize = flags.tile ?? job?.int("tile") ?? 1024
    guard tileSize >= 1, tileSize <= 1 << 16 else { throw SettingsError("\(origin)tile must be between 1 and 65536 (got \(tileSize))") }
    guard let type = ScalarType(rawValue: flags.dtype ?? job?.string("dtype") ?? "float32") else {
      throw SettingsError("\(origin)unknown dtype (valid: float32, float64)")
    }
    let (network, precision) = try Settings.network(job: job, flags: flags.kernel)
    do { try Network.checkInputShape(shape) } catch let e as NetworkError { throw SettingsError(origin + e.description) }
    let kernel: any GramKernel
    do {
      if try Settings.empirical(job: job, flags: flags.kernel) != nil {
        kernel = try EmpiricalKernel.sizing(network: network, inputShape: shape)
      } else {
        kernel = try KernelFactory.make(network: network, inputShape: shape, gramPrecision: precision,
                                        computePrecision: try Settings.computePrecision(job: job, flags: flags.kernel))
      }
    } catch let e as NetworkError {
      let (networkOrigin, preset) = Settings.networkSource(job: job, flags: flags.kernel)
      let data = flags.inputShape != nil ? "--input-shape \(flags.inputShape!)" : flags.features != nil ? "--features \(flags.features!)" : job?.string("train") ?? "the data"
      throw SettingsError(NetworkProblem.describe(e.description, network: network, preset: preset,
                                                  origin: networkOrigin,
                                                  data: data, shape: shape))
    } catch let e as KernelSpecError {
      throw SettingsError(origin + e.description)
    }
    let features = shape.reduce(1, *)
    let tiles = Double((n + tileSize - 1) / tileSize)
    guard tiles * (tiles + 1) / 2 + tiles * Double(((m ?? 0) + tileSize - 1) / tileSize) <= 1e12 else {
      throw SettingsError("\(origin)\(n) samples in tiles of \(tileSize) make more than 10^12 tiles: use larger tiles")
    }
    var outputs = kernel.outputNames
    if let list = flags.kernels ?? job?.string("kernels") {
      let selected = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      for name in selected where !outputs.contains(name) {
        throw SettingsError("\(origin)unknown kernel '\(name)' in kernels (this network gives \(outputs.joined(separator: ", ")))")
      }
      guard !selected.isEmpty else { throw SettingsError("\(origin)kernels names no kernel") }
      outputs = outputs.filter(selected.contains)
    }
    let layoutName = flags.layout ?? job?.string("layout") ?? "auto"
    guard let layout = KernelStorageLayout(rawValue: layoutName) else {
      throw SettingsError("\(flags.layout == nil ? origin : "")unknown layout '\(layoutName)' (valid: \(KernelStorageLayout.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    plan = BuildPlan(kernel: kernel, trainCount: n, testCount: m ?? 0, features: features, tileSize: tileSize,
                     ranks: flags.ranks, threads: flags.threads, dtype: type, entriesPerSecondPerRank: flags.entriesPerSecond,
                     outputs: outputs, layout: layout)
    let work = plan.assignment.workByRank, counts = plan.assignment.countByRank
    func size(_ bytes: Double) -> String {
      let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
      var v = bytes, u = 0
      while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
      return String(format: "%.1f %@", v, units[u])
    }
    func duration(_ s: Double) -> String {
      s < 120 ? String(format: "%.0f s", s) : s < 7200 ? String(format: "%.1f min", s / 60) : String(format: "%.1f h", s / 3600)
    }
    let mem = plan.memory
    var out: [String] = []
    out.append("data: \(n) train × \(m ?? 0) test samples of shape \(shape.map(String.init).joined(separator: "×")); tile \(tileSize), \(type.rawValue)")
    out.append("network: \(network.layers.count) layers, \(KernelFactory.path(of: network, inputShape: shape, empirical: kernel is EmpiricalKernel)); \(String(format: "%.0f", plan.costPerEntry)) flops per entry")
    out.append("tiles: \(plan.tiles) (\(String(format: "%.4g", plan.totalEntries)) kernel entries, \(plan.outputs.joined(separator: " + ")) each)")
    out.append("ranks: \(flags.ranks) × \(flags.threads) thread(s); tiles per rank \(counts.min()!)–\(counts.max()!); entries per rank \(String(format: "%.4g", work.min()!))–\(String(format: "%.4g", work.max()!)) (imbalance \(String(format: "%.2f", plan.assignment.imbalance * 100))%)")
    if flags.ranks > plan.tiles { out.append("note: \(flags.ranks - plan.tiles) ranks get no tile (more ranks than tiles)") }
    out.append("memory per rank: \(size(mem.total)) (process \(size(mem.baseline)), labels \(size(mem.labels)), \(mem.weights > 0 ? "the network's weights and passes \(size(mem.weights)), " : "")then the larger of reading the data \(size(mem.samples)) and the tiles: the rows held \(size(mem.heldSamples)) (at most \(Int(mem.heldRows)) of \(n + (m ?? 0)) samples), their prepared features \(size(mem.features)), tiles in flight \(size(mem.tiles)), scratch \(size(mem.scratch)))")
    out.append("disk: kernel file \(size(plan.kernelFileBytes)) (" + (plan.tiled ? "kernels in tiles, edge tiles padded" : "kernels contiguous") +
               "; reserved at the start, each byte written once), tile records \(size(plan.checkpointBytes))")
    let rate = plan.entriesPerSecondPerRank
    out.append("estimated wall time: \(duration(plan.wallSeconds)) at \(String(format: "%.3g", rate)) entries/s per rank" +
               (flags.entriesPerSecond == nil ? " (from the kernel's cost at \(String(format: "%.2g", BuildPlan.flopsPerSecondPerThread)) flop/s per thread)" : "") + ", plus writing the kernel file to disk")
    lines = out
  }
}
