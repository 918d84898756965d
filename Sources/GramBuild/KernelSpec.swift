import GramData
import GramKernels
import GramNetwork
import GramStorage

/// What a kernel is a kernel of: the network, the shape of one sample, the preprocessing and
/// the precision of the input dot products. Its canonical JSON is what the fingerprint hashes
/// (never a log line), and the kernel file stores it as attributes that h5py and R read
/// directly: `network` (the layer list as a JSON string), `input_shape` (integers),
/// `preprocess`, `gram_precision`.
public struct KernelSpec: Sendable, Equatable {
  public var network: Network
  /// `[d]` for flat rows, `[H, W, C]` for images.
  public var inputShape: [Int]
  public var preprocess: Preprocess
  public var gramPrecision: GramPrecision
  /// The arithmetic of a convolutional kernel's recursion (float64 for every other kernel).
  public var computePrecision: ComputePrecision = .float64
  /// The concrete network of an empirical kernel; nil for the analytic (infinite-width) one.
  public var empirical: EmpiricalSpec?
  /// `zca`'s strength ε (`zca_strength`); nil for every other preprocessing.
  public var zcaStrength: Double?
  /// The training set's augmentation (the test set is never augmented).
  public var augment: Augment

  public init(network: Network, inputShape: [Int], preprocess: Preprocess, gramPrecision: GramPrecision,
              empirical: EmpiricalSpec? = nil, zcaStrength: Double? = nil, augment: Augment = .none) {
    self.network = network
    self.inputShape = inputShape
    self.preprocess = preprocess
    self.gramPrecision = gramPrecision
    self.empirical = empirical
    self.zcaStrength = preprocess == .zca ? zcaStrength ?? Preprocess.defaultZCAStrength : nil
    self.augment = augment
  }

  /// The canonical encoding: one JSON object, keys sorted. An empirical kernel adds
  /// `"empirical": {"parameters": <checksum of every weight>, "seed": <seed or "given">}`;
  /// `zca` adds `"zca_strength": ε` and an augmented training set `"augment": "flip"` (absent
  /// otherwise, so the specs of earlier files are unchanged).
  public var json: String {
    var table: [String: SpecValue] = [
      "gram_precision": .string(gramPrecision.rawValue),
      "input_shape": .list(inputShape.map { .int($0) }),
      "network": .list(network.tables.map { .table($0) }),
      "preprocess": .string(preprocess.rawValue),
    ]
    // Only a non-default precision enters the canonical form: float64 kernels keep the
    // fingerprints they had before the key existed.
    if computePrecision != .float64 { table["compute_precision"] = .string(computePrecision.rawValue) }
    if let zcaStrength { table["zca_strength"] = .double(zcaStrength) }
    if augment != .none { table["augment"] = .string(augment.rawValue) }
    if let empirical {
      table["empirical"] = .table(["parameters": .string(empirical.checksum),
                                   "seed": empirical.seed.map { .int(Int($0)) } ?? .string("given")])
    }
    return SpecValue.table(table).json
  }

  /// The kernel this spec computes (throws a `NetworkError` naming the layer it cannot take).
  public func makeKernel() throws -> any GramKernel {
    try KernelFactory.make(network: network, inputShape: inputShape, gramPrecision: gramPrecision,
                           computePrecision: computePrecision, parameters: empirical?.parameters)
  }

  /// The spec as root attributes of the kernel file (an empirical kernel's weights are the
  /// `/params` group, written beside them).
  public var attributes: [(String, AttributeValue)] {
    var list: [(String, AttributeValue)] = [
      ("architecture", .string(network.isConvolutional ? "convolutional" : "fully_connected")),
      ("network", .string(network.json)),
      ("input_shape", .int64s(inputShape.map(Int64.init))),
      ("preprocess", .string(preprocess.rawValue)),
      ("gram_precision", .string(gramPrecision.rawValue)),
    ]
    if network.isConvolutional && empirical == nil { list.append(("compute_precision", .string(computePrecision.rawValue))) }
    if let zcaStrength { list.append(("zca_strength", .double(zcaStrength))) }
    if augment != .none { list.append(("augment", .string(augment.rawValue))) }
    if let empirical {
      list += [
        ("empirical", .string("true")),
        ("seed", .int(empirical.seed.map { Int64($0) } ?? -1)),
        ("parameters_checksum", .string(empirical.checksum)),
        ("parameters_source", .string(empirical.source ?? "seed")),
      ]
    }
    return list
  }

  /// The spec of a kernel file, with the weights of an empirical kernel read from its `/params`.
  public static func read(from file: H5File) throws -> KernelSpec {
    var spec = try KernelSpec(attributes: { try file.attribute($0) })
    if case .string("true")? = try file.attribute("empirical") {
      let parameters = try ParametersFile.read(file, network: spec.network, inputShape: spec.inputShape)
      var seed: UInt64? = nil
      if case .int(let s)? = try file.attribute("seed"), s >= 0 { seed = UInt64(s) }
      var source: String? = nil
      if case .string(let s)? = try file.attribute("parameters_source"), s != "seed" { source = s }
      spec.empirical = EmpiricalSpec(parameters: parameters, seed: seed, source: source)
      if case .string(let recorded)? = try file.attribute("parameters_checksum"), recorded != spec.empirical!.checksum {
        throw StorageError(file.path, "its /params (checksum \(spec.empirical!.checksum)) are not the weights its kernels were built with (recorded \(recorded)): the file was modified")
      }
    }
    return spec
  }

  /// Reads a spec back from kernel-file attributes. Files of release 0.1 (no `network`) are
  /// read from their fully-connected attributes (`depth`, `activation`, …).
  public init(attributes get: (String) throws -> AttributeValue?) throws {
    func string(_ k: String) throws -> String {
      guard case .string(let s)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return s
    }
    func int(_ k: String) throws -> Int {
      guard case .int(let i)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return Int(i)
    }
    func double(_ k: String) throws -> Double {
      guard case .double(let d)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return d
    }
    var precision = GramPrecision.float64  // files before the attribute used float64 dot products
    if try get("gram_precision") != nil {
      guard let g = GramPrecision(rawValue: try string("gram_precision")) else { throw KernelSpecError("unknown gram_precision") }
      precision = g
    }
    let preprocess = try get("preprocess") == nil ? Preprocess.scale : Preprocess(rawValue: try string("preprocess")) ?? .scale
    var zcaStrength: Double? = nil
    if preprocess == .zca {
      zcaStrength = try double("zca_strength")
      guard zcaStrength!.isFinite, zcaStrength! >= 0 else { throw KernelSpecError("attribute zca_strength is not finite and at least 0") }
    } else if try get("zca_strength") != nil {
      throw KernelSpecError("attribute zca_strength without preprocess zca")
    }
    var augment = Augment.none
    if try get("augment") != nil {
      guard let a = Augment(rawValue: try string("augment")) else { throw KernelSpecError("unknown augment \(try string("augment"))") }
      augment = a
    }
    if try get("network") != nil {
      let network = try Network(json: try string("network"))
      guard case .int64s(let shape)? = try get("input_shape") else { throw KernelSpecError("missing attribute input_shape") }
      self.init(network: network, inputShape: shape.map { Int($0) }, preprocess: preprocess, gramPrecision: precision,
                zcaStrength: zcaStrength, augment: augment)
      if try get("compute_precision") != nil {
        guard let c = ComputePrecision(rawValue: try string("compute_precision")) else { throw KernelSpecError("unknown compute_precision") }
        computePrecision = c
      }
      return
    }
    let name = try string("activation")
    let slope = name == "leaky_relu" ? try double("leaky_slope") : 0.01
    guard let act = Activation(name: name, leakySlope: slope) else { throw KernelSpecError("unknown activation \(name)") }
    guard let p = Parameterization(rawValue: try string("parameterization")) else { throw KernelSpecError("unknown parameterization") }
    let bStd: Double?
    if case .double(let b)? = try get("b_std") { bStd = b } else { bStd = nil }
    let network = Network.fullyConnected(depth: try int("depth"), activation: act, wStd: try double("W_std"), bStd: bStd,
                                         parameterization: p, width: try int("width"))
    self.init(network: network, inputShape: [try int("features")], preprocess: preprocess, gramPrecision: precision)
  }
}

/// The concrete network of an empirical kernel: its weights, drawn from `seed` or given.
public struct EmpiricalSpec: Sendable, Equatable {
  public var parameters: NetworkParameters
  /// The seed the weights were drawn from; nil when they were given (`--params`).
  public var seed: UInt64?
  /// The file the weights came from (`--params`), as given.
  public var source: String?
  /// `ParametersFile.checksum` of the weights.
  public let checksum: String

  public init(parameters: NetworkParameters, seed: UInt64?, source: String?) {
    self.parameters = parameters
    self.seed = seed
    self.source = source
    checksum = ParametersFile.checksum(parameters)
  }
}

/// The identity of a build's result: a checksum of the (preprocessed) samples and of the
/// canonical spec, the storage precision and the tile size. Checkpoints carry it, so a folder
/// from another job is recognised, and the kernel file records it.
func fingerprint(train: Matrix, test: Matrix?, spec: KernelSpec, dtype: ScalarType, tileSize: Int) -> String {
  fingerprint(trainValues: checksum64(train.values), trainRows: train.rows, cols: train.cols,
              testValues: checksum64(test?.values ?? []), testRows: test?.rows ?? 0, spec: spec, dtype: dtype, tileSize: tileSize)
}

/// The same from the values' checksums (`checksum64` of the preprocessed samples, or
/// `StreamingChecksum64` of them read in chunks).
func fingerprint(trainValues: UInt64, trainRows: Int, cols: Int, testValues: UInt64, testRows: Int,
                 spec: KernelSpec, dtype: ScalarType, tileSize: Int) -> String {
  let parts: [UInt64] = [
    trainValues, UInt64(trainRows), UInt64(cols),
    testValues, UInt64(testRows),
    checksum64(Array((spec.json + "|dtype=" + dtype.rawValue + "|tile=\(tileSize)").utf8)),
  ]
  return hex(checksum64(parts))
}

/// The fingerprint of a build that is not the full build of its data (a cross kernel against a
/// stored training kernel, or a chosen subset of kernels): the plain one with those folded in,
/// so such a build has its own checkpoints.
func foldedFingerprint(_ plain: String, againstFingerprint: String?, kernels: [String]) -> String {
  let extra = (againstFingerprint.map { "against=" + $0 } ?? "") + "|kernels=" + kernels.joined(separator: ",")
  return hex(checksum64(Array((plain + "|" + extra).utf8)))
}

/// The release this binary is (`ntkgram --version`, the files' `tool_version`).
public let ntkgramVersion = toolVersion
