import GramNetwork
import GramStorage

/// The weights of a concrete network in an HDF5 file: `/params/<k>/W` (`inputs × outputs`,
/// float64) and `/params/<k>/b` (`outputs`, only for a layer with a bias) for the dense layer at
/// position k (0-based) of the layer list — the shapes and scaling of stax's `init_fn`, so that
/// `params[k] = (W, b)` (and `()` for the other layers) is what neural-tangents' `apply_fn`
/// takes. Kernel files of empirical kernels and `ntkgram train` outputs hold them.
public enum ParametersFile {
  public static let group = "/params"

  /// Writes `parameters` under `group` of `file`.
  public static func write(_ parameters: NetworkParameters, to file: H5File, group: String = group) throws {
    for p in parameters.dense {
      let w = try file.createDataset("\(group)/\(p.position)/W", shape: [p.inputs, p.outputs], type: .float64)
      try p.W.withUnsafeBufferPointer { try w.write($0, start: [0, 0], count: [p.inputs, p.outputs]) }
      try w.setAttribute("axes", .string("input unit, output unit"))
      if let b = p.b {
        let d = try file.createDataset("\(group)/\(p.position)/b", shape: [p.outputs], type: .float64)
        try b.withUnsafeBufferPointer { try d.write($0, start: [0], count: [p.outputs]) }
        try d.setAttribute("axes", .string("output unit"))
      }
    }
  }

  /// Reads the parameters under `group` of `file` for `network` on `inputShape`: every layer
  /// that has them must be a dense layer of the network, with its shapes and bias; when the file
  /// records its own network (a kernel file, a `train` output), it must be this one.
  public static func read(_ file: H5File, network: Network, inputShape: [Int], group: String = group) throws -> NetworkParameters {
    let path = file.path
    if case .string(let json)? = try file.attribute("network") {
      let theirs = try? Network(json: json)
      if theirs != network {
        throw StorageError(path, "holds the parameters of another network (its layer list \(theirs.map { "\($0.layers.count) layers: " + $0.lines.joined(separator: "; ") } ?? "is unreadable"); this job's network has \(network.layers.count) layers: \(network.lines.joined(separator: "; ")))")
      }
      if case .int64s(let shape)? = try file.attribute("input_shape"), shape.map(Int.init) != inputShape {
        throw StorageError(path, "holds the parameters of a network on inputs of shape \(shape), this job's inputs have shape \(inputShape)")
      }
    }
    // The shapes the layers need, for the messages (the network's own problems are said later).
    let expected = Dictionary((try? NetworkParameters.shapes(of: network, inputShape: inputShape))?.map { ($0.position, $0) } ?? [],
                              uniquingKeysWith: { a, _ in a })
    let members = try file.members(of: group)
    guard !members.isEmpty else { throw StorageError(path, "has no \(group) group (the weights /params/<k>/W and /params/<k>/b of the dense layer at position k)") }
    var dense: [DenseParameters] = []
    for name in members {
      guard let k = Int(name), k >= 0, String(k) == name else {
        throw StorageError(path, "\(group)/\(name): expected groups named by layer position (0, 1, …)")
      }
      guard k < network.layers.count, case .dense = network.layers[k] else {
        throw StorageError(path, "\(group)/\(k): layer \(k) of the network is \(k < network.layers.count ? network.layers[k].typeName : "missing (the network has \(network.layers.count) layers)"), not a dense layer: these parameters belong to another network")
      }
      let wanted = expected[k].map { "\($0.inputs) × \($0.outputs)" } ?? "inputs × outputs"
      guard file.exists("\(group)/\(k)/W") else {
        throw StorageError(path, "\(group)/\(k) has no W (the layer's weights: a float32 or float64 array of shape \(wanted))")
      }
      guard !file.isGroup("\(group)/\(k)/W") else {
        throw StorageError(path, "\(group)/\(k)/W is a group, expected the layer's weights: a float32 or float64 array of shape \(wanted)")
      }
      let w = try file.dataset("\(group)/\(k)/W")
      try checkNumeric(w, path: path, expected: "a float32 or float64 array of shape \(wanted)")
      guard w.shape.count == 2 else { throw StorageError(path, "\(group)/\(k)/W has shape \(w.shape), expected \(wanted)") }
      let W = try w.readAll()
      var b: [Double]? = nil
      if file.exists("\(group)/\(k)/b") {
        guard !file.isGroup("\(group)/\(k)/b") else {
          throw StorageError(path, "\(group)/\(k)/b is a group, expected the layer's bias: a float32 or float64 array of \(w.shape[1]) values")
        }
        let d = try file.dataset("\(group)/\(k)/b")
        try checkNumeric(d, path: path, expected: "a float32 or float64 array of \(w.shape[1]) values")
        // stax keeps a dense bias as 1 × outputs: accept that too.
        guard d.shape.count == 1 || (d.shape.count == 2 && d.shape[0] == 1) else {
          throw StorageError(path, "\(group)/\(k)/b has shape \(d.shape), expected \(w.shape[1]) values")
        }
        b = try d.readAll()
        guard b!.count == w.shape[1] else { throw StorageError(path, "\(group)/\(k)/b has \(b!.count) values, W has \(w.shape[1]) outputs") }
      }
      if let bad = (W + (b ?? [])).first(where: { !$0.isFinite }) {
        throw StorageError(path, "\(group)/\(k) holds a non-finite value (\(bad))")
      }
      dense.append(DenseParameters(position: k, inputs: w.shape[0], outputs: w.shape[1], W: W, b: b))
    }
    dense.sort { $0.position < $1.position }
    let parameters = NetworkParameters(dense: dense)
    do { try parameters.check(fits: network, inputShape: inputShape) } catch let e as NetworkError {
      throw StorageError(path, "\(group) does not fit the network: \(e.description)")
    }
    return parameters
  }

  /// Weights are numbers: a string, compound or other dataset is refused naming its type and
  /// what was expected (HDF5 would otherwise report a shapeless string as "shape []").
  static func checkNumeric(_ d: H5Dataset, path: String, expected: String) throws {
    guard !d.isNumeric else { return }
    throw StorageError(path, "\(d.name) has the wrong type: \(d.typeDescription)\(d.shape.isEmpty ? " (a scalar)" : " of shape \(d.shape)"), expected \(expected)")
  }

  /// Reads the parameters of `network` from the file at `path`.
  public static func read(path: String, network: Network, inputShape: [Int]) throws -> NetworkParameters {
    try read(try H5File.open(path), network: network, inputShape: inputShape)
  }

  /// A checksum of every value, layer by layer (position, W, b): the parameters' identity in
  /// the fingerprint.
  public static func checksum(_ parameters: NetworkParameters) -> String {
    var parts: [UInt64] = []
    for p in parameters.dense {
      parts += [UInt64(p.position), UInt64(p.inputs), UInt64(p.outputs), checksum64(p.W), p.b.map { checksum64($0) } ?? 0]
    }
    return hex(checksum64(parts))
  }
}
