import Foundation
import GramBuild
import GramData
import GramKernels
import GramNetwork
import GramStorage

/// A job file or flag value that cannot make a valid build: one line naming the job file (when
/// the value came from one), the key or layer, and the problem.
public struct SettingsError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The kernel flags, each overriding the job file's `[kernel]` key of the same name.
public struct KernelFlags: Sendable {
  public var architecture: String?
  public var depth: Int?
  public var activation: String?
  public var leakySlope: Double?
  public var wStd: Double?
  /// A number, or `none`.
  public var bStd: String?
  public var parameterization: String?
  public var width: Int?
  public var gramPrecision: String?
  /// `compute_precision` of the convolutional kernels.
  public var computePrecision: String?
  /// A layer list as JSON (the kernel file's `network` attribute), or the path of a file holding one.
  public var layers: String?
  /// A named network (`Network.presets`).
  public var preset: String?
  /// The shorthand's readout width (outputs per sample of the concrete network).
  public var readoutWidth: Int?
  /// The empirical kernels of one concrete network (`--empirical`).
  public var empirical = false
  /// The seed its weights are drawn from.
  public var seed: Int?
  /// A file whose `/params` are its weights (implies `empirical`).
  public var params: String?

  public init() {}
}

/// Every `ntkgram build` flag, each overriding the job key of the same name.
public struct BuildFlags: Sendable {
  public var train: String?
  public var trainLabels: String?
  public var trainLabelColumn: Int?
  public var trainLimit: Int?
  public var test: String?
  public var testLabels: String?
  public var testLabelColumn: Int?
  public var testLimit: Int?
  public var preprocess: String?
  /// `zca`'s strength ε (`--zca-strength`).
  public var zcaStrength: Double?
  /// `none` or `flip` (`--augment`).
  public var augment: String?
  /// `H,W,C` (or `d`).
  public var inputShape: String?
  public var kernel = KernelFlags()
  public var dtype: String?
  public var tile: Int?
  public var out: String?
  public var checkpoints: String?
  public var keepCheckpoints = false
  public var force = false
  public var restart = false
  public var repair = false
  public var threads = 1
  /// A stored training kernel: build only K(test, train) against it.
  public var against: String?
  /// `ntk`, `nngp` or both, comma-separated.
  public var kernels: String?
  /// `auto`, `contiguous` or `tiles`.
  public var layout: String?

  public init() {}
}

/// Job file + flags → validated settings, in one place: every value is checked here once, with
/// the job file named in the message when it came from there.
public enum Settings {
  /// The activations the shorthand's `activation` takes.
  public static let activationNames = Activation.validNames

  /// The keys of the fully-connected shorthand (which a layer list replaces).
  static let shorthandKeys = ["architecture", "depth", "activation", "leaky_slope", "W_std", "b_std", "width", "readout_width"]

  /// Where the network of `[kernel]` and the kernel flags comes from, for the problems found
  /// only against the data: `--layers` (or the JSON file it names), `--preset`, else the job
  /// file; and the preset's name, if it is one.
  public static func networkSource(job: JobFile?, flags: KernelFlags) -> (origin: String?, preset: String?) {
    if let text = flags.layers {
      return (text.trimmingCharacters(in: .whitespaces).hasPrefix("[") ? "--layers" : text, nil)
    }
    if let name = flags.preset { return ("--preset", name) }
    return (job?.path, job?.string("preset"))
  }

  /// The convolutional kernels' arithmetic from `[kernel] compute_precision` or its flag.
  public static func computePrecision(job: JobFile?, flags: KernelFlags) throws -> ComputePrecision {
    let name = flags.computePrecision ?? job?.string("compute_precision") ?? "float64"
    guard let precision = ComputePrecision(rawValue: name) else {
      let origin = flags.computePrecision != nil ? "--compute-precision: " : job.map { "\($0.path): " } ?? ""
      throw SettingsError("\(origin)unknown compute_precision '\(name)' (valid: \(ComputePrecision.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return precision
  }

  /// The network and the dot-product precision from `[kernel]` and the kernel flags.
  public static func network(job: JobFile?, flags: KernelFlags) throws -> (Network, GramPrecision) {
    let origin = job.map { "\($0.path): " } ?? ""
    let gName = flags.gramPrecision ?? job?.string("gram_precision") ?? "float64"
    guard let precision = GramPrecision(rawValue: gName) else {
      throw SettingsError("\(origin)unknown gram_precision '\(gName)' (valid: float64, float32)")
    }
    let pName = flags.parameterization ?? job?.string("parameterization") ?? "ntk"
    guard let parameterization = Parameterization(rawValue: pName) else {
      throw SettingsError("\(origin)unknown parameterization '\(pName)' (valid: ntk, standard)")
    }
    let flagShorthand: [(String, Bool)] = [
      ("architecture", flags.architecture != nil), ("depth", flags.depth != nil), ("activation", flags.activation != nil),
      ("leaky_slope", flags.leakySlope != nil), ("W_std", flags.wStd != nil), ("b_std", flags.bStd != nil), ("width", flags.width != nil),
      ("readout_width", flags.readoutWidth != nil),
    ]
    let shorthandGiven = flagShorthand.filter(\.1).map(\.0) + shorthandKeys.filter { job?.values[$0] != nil }

    // A layer list: from the flag (JSON or a JSON file), else from the job file.
    var tables: [[String: SpecValue]]? = job?.layers
    var layersOrigin = origin
    if let text = flags.layers {
      let json: String
      if text.trimmingCharacters(in: .whitespaces).hasPrefix("[") {
        json = text
        layersOrigin = "--layers: "
      } else {
        guard let data = FileManager.default.contents(atPath: text), let s = String(data: data, encoding: .utf8) else {
          throw SettingsError("\(text): cannot read the layer list (--layers takes JSON or a JSON file)")
        }
        json = s
        layersOrigin = "\(text): "
      }
      let value: SpecValue
      do { value = try SpecValue(json: json) } catch let e as JSONError { throw SettingsError("\(layersOrigin)\(e.description)") }
      guard case .list(let items) = value else { throw SettingsError("\(layersOrigin)the layer list must be a JSON list of layer objects") }
      tables = try items.enumerated().map { k, item in
        guard case .table(let t) = item else { throw SettingsError("\(layersOrigin)kernel.layers[\(k)]: must be an object with a \"type\" key") }
        return t
      }
    }
    if let name = flags.preset ?? job?.string("preset") {
      if let key = shorthandGiven.first {
        throw SettingsError("\(origin)give either a preset or the fully-connected shorthand (depth, activation, W_std, …), not both (found \(key))")
      }
      guard tables == nil else { throw SettingsError("\(origin)give either a preset or a layer list, not both") }
      guard let network = Network.preset(name, parameterization: parameterization) else {
        throw SettingsError("\(origin)unknown preset '\(name)' (valid: \(Network.presets.keys.sorted().joined(separator: ", ")))")
      }
      return (network, precision)
    }
    if let tables {
      if let key = shorthandGiven.first {
        throw SettingsError("\(origin)give either a layer list ([[kernel.layers]] or --layers) or the fully-connected shorthand (depth, activation, W_std, …), not both (found \(key))")
      }
      do {
        return (try Network(tables: tables, defaultParameterization: parameterization), precision)
      } catch let e as NetworkError {
        throw SettingsError(layersOrigin + e.description)
      }
    }

    let arch = flags.architecture ?? job?.string("architecture") ?? "fully_connected"
    guard arch == "fully_connected" else {
      throw SettingsError("\(origin)unknown architecture '\(arch)' (valid: fully_connected; other networks are written as [[kernel.layers]])")
    }
    let name = flags.activation ?? job?.string("activation") ?? "relu"
    guard let act = Activation(name: name, leakySlope: flags.leakySlope ?? job?.double("leaky_slope") ?? 0.01) else {
      throw SettingsError("\(origin)unknown activation '\(name)' (valid: \(Activation.validNames.joined(separator: ", ")))")
    }
    let bStd: Double?
    if let text = flags.bStd {
      if text.lowercased() == "none" { bStd = nil } else {
        guard let v = Double(text) else { throw SettingsError("--b-std must be a number or 'none' (got '\(text)')") }
        bStd = v
      }
    } else if job?.string("b_std") == "none" {
      bStd = nil
    } else {
      bStd = job?.double("b_std") ?? 0.1
    }
    let depth = flags.depth ?? job?.int("depth") ?? 3
    guard depth >= 1 else { throw SettingsError("\(origin)depth must be at least 1 (got \(depth))") }
    guard depth <= 10_000 else { throw SettingsError("\(origin)depth \(depth) is absurdly large (at most 10000)") }
    var network = Network.fullyConnected(depth: depth, activation: act, wStd: flags.wStd ?? job?.double("W_std") ?? 2.0.squareRoot(),
                                         bStd: bStd, parameterization: parameterization, width: flags.width ?? job?.int("width") ?? 512)
    if let readout = flags.readoutWidth ?? job?.int("readout_width") {
      guard readout >= 1, readout <= 1 << 20 else { throw SettingsError("\(origin)readout_width must be between 1 and 1048576 (got \(readout))") }
      if case .dense(var a) = network.layers[network.layers.count - 1] {
        a.width = readout
        network.layers[network.layers.count - 1] = .dense(a)
      }
    }
    if let width = flags.width ?? job?.int("width"), width < 1 || width > 1 << 40 {
      throw SettingsError("\(origin)width must be between 1 and 2^40 (got \(width))")
    }
    do { try FullyConnected(network: network).validate() } catch let e as KernelSpecError { throw SettingsError(origin + e.description) }
    return (network, precision)
  }

  /// Where the weights of a concrete network come from (`empirical`, `seed`, `params`), or nil
  /// for the analytic kernels.
  public static func empirical(job: JobFile?, flags: KernelFlags) throws -> EmpiricalWeights? {
    let origin = job.map { "\($0.path): " } ?? ""
    let params = flags.params ?? job?.string("params")
    let seed = flags.seed ?? job?.int("seed")
    let on = flags.empirical || (job?.bool("empirical") ?? false) || params != nil
    guard on else {
      if seed != nil { throw SettingsError("\(origin)seed is for empirical kernels: add --empirical ([kernel] empirical = true)") }
      return nil
    }
    if let params {
      if seed != nil { throw SettingsError("\(origin)give either seed (weights drawn) or params (weights read from a file), not both") }
      return .file(params)
    }
    let s = seed ?? 0
    guard s >= 0 else { throw SettingsError("\(origin)seed must be at least 0 (got \(s))") }
    return .seed(UInt64(s))
  }

  /// `H,W,C` or `d` as a list of sizes.
  public static func parseShape(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.allSatisfy({ $0 != nil }), let shape = Optional(parts.map { $0! }), shape.count == 1 || shape.count == 3,
          shape.allSatisfy({ $0 >= 1 }) else {
      throw SettingsError("--input-shape must be H,W,C (or d) with positive sizes (got '\(text)')")
    }
    return shape
  }

  /// The settings of `ntkgram build` from a job file (optional) and its flags.
  public static func build(job jobPath: String?, flags: BuildFlags) throws -> BuildSettings {
    if let against = flags.against { return try cross(against: against, job: jobPath, flags: flags) }
    let job = try jobPath.map { try JobFile(path: $0) }
    let origin = job.map { "\($0.path): " } ?? ""
    guard let trainPath = flags.train ?? job?.string("train") else { throw SettingsError("\(origin)no training data: give --train or [data] train") }
    guard let outPath = flags.out ?? job?.string("out") else { throw SettingsError("\(origin)no output: give --out or [build] out") }
    let (network, precision) = try network(job: job, flags: flags.kernel)
    var s = BuildSettings(
      train: DataSource(samples: trainPath, labels: flags.trainLabels ?? job?.string("train_labels"),
                        limit: flags.trainLimit ?? job?.int("train_limit"),
                        labelColumn: flags.trainLabelColumn ?? job?.int("train_label_column")),
      network: network, out: outPath)
    s.gramPrecision = precision
    s.computePrecision = try computePrecision(job: job, flags: flags.kernel)
    s.specOrigin = job?.path
    (s.networkOrigin, s.preset) = networkSource(job: job, flags: flags.kernel)
    if let testPath = flags.test ?? job?.string("test") {
      s.test = DataSource(samples: testPath, labels: flags.testLabels ?? job?.string("test_labels"),
                          limit: flags.testLimit ?? job?.int("test_limit"),
                          labelColumn: flags.testLabelColumn ?? job?.int("test_label_column"))
    }
    let pre = flags.preprocess ?? job?.string("preprocess") ?? "scale"
    guard let p = Preprocess(rawValue: pre) else {
      throw SettingsError("\(origin)unknown preprocess '\(pre)' (valid: \(Preprocess.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    s.preprocess = p
    if let strength = flags.zcaStrength ?? job?.double("zca_strength") {
      let named = flags.zcaStrength != nil ? "--zca-strength" : "\(origin)[data] zca_strength"
      guard p == .zca else { throw SettingsError("\(named) applies to preprocess zca only (preprocess is \(p.rawValue))") }
      guard strength.isFinite, strength >= 0 else { throw SettingsError("\(named) must be finite and at least 0 (got \(strength))") }
      s.zcaStrength = strength
    }
    let augment = flags.augment ?? job?.string("augment") ?? "none"
    guard let a = Augment(rawValue: augment) else {
      let named = flags.augment != nil ? "--augment" : "\(origin)[data] augment"
      throw SettingsError("\(named): unknown augment '\(augment)' (valid: \(Augment.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    s.train.augment = a
    if let text = flags.inputShape {
      s.inputShape = try parseShape(text)
    } else if let shape = job?.ints("input_shape") {
      guard shape.count == 1 || shape.count == 3, shape.allSatisfy({ $0 >= 1 }) else {
        throw SettingsError("\(origin)[data] input_shape must be [H, W, C] (or [d]) with positive sizes (got \(shape))")
      }
      s.inputShape = shape
    }
    let typeName = flags.dtype ?? job?.string("dtype") ?? "float32"
    guard let type = ScalarType(rawValue: typeName) else { throw SettingsError("\(origin)unknown dtype '\(typeName)' (valid: float32, float64)") }
    s.dtype = type
    s.tileSize = flags.tile ?? job?.int("tile") ?? 1024
    guard s.tileSize >= 1 else { throw SettingsError("\(origin)tile must be at least 1 (got \(s.tileSize))") }
    guard s.tileSize <= 1 << 16 else { throw SettingsError("\(origin)tile \(s.tileSize) is too large (at most 65536: a tile is held in memory)") }
    for (name, v) in [("train_limit", s.train.limit), ("test_limit", s.test?.limit)] {
      if let v, v < 1 { throw SettingsError("\(origin)\(name) must be at least 1 (got \(v))") }
    }
    s.empirical = try empirical(job: job, flags: flags.kernel)
    s.checkpoints = flags.checkpoints ?? job?.string("checkpoints")
    s.keepCheckpoints = flags.keepCheckpoints || (job?.bool("keep_checkpoints") ?? false)
    s.force = flags.force
    s.restart = flags.restart
    s.repair = flags.repair
    var flags = flags
    if flags.kernels == nil { flags.kernels = job?.string("kernels") }
    let layoutOrigin = flags.layout == nil ? origin : ""
    if flags.layout == nil { flags.layout = job?.string("layout") }
    try common(&s, flags: flags, origin: layoutOrigin)
    return s
  }

  /// The flags every build takes the same way.
  /// `origin` names the job file when the layout came from it.
  static func common(_ s: inout BuildSettings, flags: BuildFlags, origin: String = "") throws {
    guard flags.threads >= 1, flags.threads <= 4096 else { throw SettingsError("--threads must be between 1 and 4096 (got \(flags.threads))") }
    s.threads = flags.threads
    if let list = flags.kernels {
      s.kernels = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      guard !(s.kernels ?? []).isEmpty else { throw SettingsError("--kernels names no kernel (valid: ntk, nngp)") }
    }
    if let name = flags.layout {
      guard let layout = KernelStorageLayout(rawValue: name) else {
        throw SettingsError("\(origin)unknown layout '\(name)' (valid: \(KernelStorageLayout.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      s.layout = layout
    }
  }

  /// `build --against KERNEL.h5 --test NEW`: the network, preprocessing, training data, dtype
  /// and tile come from the stored training kernel; only the new data (and where the training
  /// data now is, with `--train`) are given.
  static func cross(against path: String, job jobPath: String?, flags: BuildFlags) throws -> BuildSettings {
    let conflicting: [(String, Bool)] = [
      ("a job file", jobPath != nil), ("--preprocess", flags.preprocess != nil), ("--input-shape", flags.inputShape != nil),
      ("--zca-strength", flags.zcaStrength != nil), ("--augment", flags.augment != nil),
      ("--train-limit", flags.trainLimit != nil), ("--train-labels", flags.trainLabels != nil),
      ("--train-label-column", flags.trainLabelColumn != nil), ("--layers", flags.kernel.layers != nil), ("--depth", flags.kernel.depth != nil),
      ("--activation", flags.kernel.activation != nil), ("--W-std", flags.kernel.wStd != nil), ("--b-std", flags.kernel.bStd != nil),
      ("--width", flags.kernel.width != nil), ("--parameterization", flags.kernel.parameterization != nil),
      ("--leaky-slope", flags.kernel.leakySlope != nil), ("--gram-precision", flags.kernel.gramPrecision != nil),
      ("--compute-precision", flags.kernel.computePrecision != nil),
      ("--architecture", flags.kernel.architecture != nil), ("--preset", flags.kernel.preset != nil),
      ("--empirical", flags.kernel.empirical), ("--seed", flags.kernel.seed != nil), ("--params", flags.kernel.params != nil),
      ("--readout-width", flags.kernel.readoutWidth != nil),
    ]
    if let (what, _) = conflicting.first(where: \.1) {
      throw SettingsError("\(what) cannot be combined with --against: the network, preprocessing and training data come from \(path)")
    }
    let stored = try StoredTraining.read(path)
    guard let testPath = flags.test else { throw SettingsError("--against \(path) needs the new data: give --test") }
    guard let outPath = flags.out else { throw SettingsError("no output: give --out") }
    var train = stored.source
    if let moved = flags.train { train.samples = moved }
    var s = BuildSettings(train: train, network: stored.spec.network, out: outPath)
    s.against = stored
    s.gramPrecision = stored.spec.gramPrecision
    s.computePrecision = stored.spec.computePrecision
    s.preprocess = stored.spec.preprocess
    s.zcaStrength = stored.spec.zcaStrength
    s.inputShape = stored.spec.inputShape
    s.test = DataSource(samples: testPath, labels: flags.testLabels, limit: flags.testLimit, labelColumn: flags.testLabelColumn)
    if let v = flags.testLimit, v < 1 { throw SettingsError("test_limit must be at least 1 (got \(v))") }
    let typeName = flags.dtype ?? stored.dtype.rawValue
    guard let type = ScalarType(rawValue: typeName) else { throw SettingsError("unknown dtype '\(typeName)' (valid: float32, float64)") }
    s.dtype = type
    s.tileSize = flags.tile ?? stored.tileSize
    guard s.tileSize >= 1, s.tileSize <= 1 << 16 else { throw SettingsError("tile must be between 1 and 65536 (got \(s.tileSize))") }
    s.checkpoints = flags.checkpoints
    s.keepCheckpoints = flags.keepCheckpoints
    s.force = flags.force
    s.restart = flags.restart
    s.repair = flags.repair
    if flags.kernels == nil { s.kernels = stored.kernels }
    try common(&s, flags: flags)
    return s
  }
}
