/// A network as data: an ordered list of `stax`-like layers.
///
/// It is read from a job file's `[[kernel.layers]]` tables (or the `--layers` JSON, or a kernel
/// file's `network` attribute) through `init(tables:defaultParameterization:)`, and written back
/// by `json` in one canonical form: every parameter explicit, keys sorted. The fully-connected
/// shorthand (`depth`, `activation`, …) is `fullyConnected(…)`, the same list written out.
public struct Network: Sendable, Equatable {
  public var layers: [Layer]

  public init(layers: [Layer]) {
    self.layers = layers
  }

  /// `[Dense(width), act] × depth + [Dense(1)]`, every dense layer with the same `W_std`,
  /// `b_std` and parameterization (neural-tangents'
  /// `serial(*[Dense(width, W_std, b_std), act] * depth, Dense(1, W_std, b_std))`).
  public static func fullyConnected(depth: Int, activation: Activation, wStd: Double, bStd: Double?,
                                    parameterization: Parameterization = .ntk, width: Int = 512) -> Network {
    let hidden = Affine(wStd: wStd, bStd: bStd, width: width, parameterization: parameterization)
    var readout = hidden
    readout.width = 1
    var layers: [Layer] = []
    for _ in 0..<max(depth, 0) { layers += [.dense(hidden), .activation(activation)] }
    return Network(layers: layers + [.dense(readout)])
  }

  /// Named networks (`[kernel] preset`). The Myrtle family of neural-tangents' Myrtle
  /// notebook (Shankar et al. 2020): `[conv 3×3 SAME, relu] × a`, 2×2/2 average pooling,
  /// `× b`, pooling, `× c`, then the final average to one pixel and a dense readout, with
  /// `W_std = √2`, `b_std = 0`; (a, b, c) = (2, 1, 1), (2, 2, 2), (3, 3, 3) for depths 5, 7, 10.
  /// On 32×32 images the notebook's three closing 2×2 pools (8 → 4 → 2 → 1) are exactly a
  /// global average; here the close is `global_avg_pool` whatever the input size, so 28×28
  /// images go 28 → 14 → 7 → the average of the 7×7 map.
  public static let presets = ["myrtle5": (2, 1, 1), "myrtle7": (2, 2, 2), "myrtle10": (3, 3, 3)]

  public static func preset(_ name: String, parameterization: Parameterization = .ntk, width: Int = 1) -> Network? {
    guard let (a, b, c) = presets[name] else { return nil }
    let conv = Layer.conv(Affine(wStd: 2.0.squareRoot(), bStd: 0, width: width, parameterization: parameterization),
                          Window(size: [3, 3], strides: [1, 1], padding: .same))
    let pool = Layer.avgPool(Window(size: [2, 2], strides: [2, 2], padding: .valid), normalizeEdges: false)
    let stage = { (k: Int) in Array(repeating: [conv, Layer.activation(.relu)], count: k).flatMap { $0 } }
    let readout = Layer.dense(Affine(wStd: 2.0.squareRoot(), bStd: 0, width: 1, parameterization: parameterization))
    return Network(layers: stage(a) + [pool] + stage(b) + [pool] + stage(c) + [.globalAvgPool, readout])
  }

  // MARK: Reading

  /// Reads layer tables, checking every key: the type, unknown keys, missing required
  /// parameters, wrong types and invalid values all throw a `NetworkError` naming the layer.
  ///
  /// Defaults follow `stax`: `W_std = 1`, `b_std = none`, `strides = [1, 1]`,
  /// `padding = "VALID"`, `normalize_edges = false`, and `parameterization` from
  /// `defaultParameterization` (the `[kernel] parameterization` key). `width` (dense and conv),
  /// `filter` (conv), `window` (avg_pool) and `slope` (leaky_relu) are required.
  public init(tables: [[String: SpecValue]], defaultParameterization: Parameterization = .ntk) throws {
    guard !tables.isEmpty else { throw NetworkError(position: nil, "the layer list is empty") }
    layers = try tables.enumerated().map { try Self.layer($0.element, position: $0.offset, defaultParameterization) }
    try validateOrder()
  }

  /// Reads the canonical JSON (a list of layer objects), as `json` writes it.
  public init(json text: String) throws {
    let value: SpecValue
    do { value = try SpecValue(json: text) } catch let e as JSONError {
      throw NetworkError(position: nil, "the network is not valid JSON (\(e.description))")
    }
    guard case .list(let items) = value else { throw NetworkError(position: nil, "the network must be a JSON list of layer objects") }
    let tables = try items.enumerated().map { k, item -> [String: SpecValue] in
      guard case .table(let t) = item else { throw NetworkError(position: k, "must be an object with a \"type\" key") }
      return t
    }
    try self.init(tables: tables)
  }

  private static func layer(_ table: [String: SpecValue], position: Int, _ defaultParameterization: Parameterization) throws -> Layer {
    guard let typeValue = table["type"] else {
      throw NetworkError(position: position, "missing 'type' (valid: \(Layer.typeNames.joined(separator: ", ")))")
    }
    guard case .string(let type) = typeValue else {
      throw NetworkError(position: position, "'type' must be a string, got \(typeValue.kindName)")
    }
    var reader = TableReader(table: table, position: position, type: type)
    let layer: Layer
    switch type {
    case "dense":
      layer = .dense(try reader.affine(defaultParameterization))
    case "conv":
      let affine = try reader.affine(defaultParameterization)
      layer = .conv(affine, try reader.window(sizeKey: "filter"))
    case "avg_pool":
      let window = try reader.window(sizeKey: "window")
      layer = .avgPool(window, normalizeEdges: try reader.bool("normalize_edges") ?? false)
    case "global_avg_pool": layer = .globalAvgPool
    case "flatten": layer = .flatten
    case "leaky_relu":
      guard let slope = try reader.double("slope") else { throw reader.fail("missing 'slope' (the negative slope)") }
      guard slope.isFinite else { throw reader.fail("slope must be finite (got \(slope))") }
      layer = .activation(.leakyReLU(slope: slope))
    default:
      guard let activation = Activation(name: type) else {
        throw NetworkError(position: position, "unknown layer type '\(type)' (valid: \(Layer.typeNames.joined(separator: ", ")))")
      }
      layer = .activation(activation)
    }
    try reader.checkAllRead()
    return layer
  }

  /// Order rules that hold whatever the input: an activation never comes first.
  func validateOrder() throws {
    if let first = layers.first, first.isActivation {
      throw NetworkError(position: 0, layerType: first.typeName,
                         "an activation cannot be the first layer (its kernel map assumes Gaussian pre-activations): start with dense or conv")
    }
  }

  // MARK: Writing

  /// One table per layer, every parameter explicit.
  public var tables: [[String: SpecValue]] {
    layers.map { layer in
      var t: [String: SpecValue] = ["type": .string(layer.typeName)]
      func affine(_ a: Affine) {
        t["W_std"] = .double(a.wStd)
        t["b_std"] = a.bStd.map { .double($0) } ?? .string("none")
        t["width"] = .int(a.width)
        t["parameterization"] = .string(a.parameterization.rawValue)
      }
      func window(_ w: Window, _ key: String) {
        t[key] = .list(w.size.map { .int($0) })
        t["strides"] = .list(w.strides.map { .int($0) })
        t["padding"] = .string(w.padding.rawValue)
      }
      switch layer {
      case .dense(let a): affine(a)
      case .conv(let a, let w): affine(a); window(w, "filter")
      case .avgPool(let w, let normalize): window(w, "window"); t["normalize_edges"] = .bool(normalize)
      case .activation(.leakyReLU(let slope)): t["slope"] = .double(slope)
      case .globalAvgPool, .flatten, .activation: break
      }
      return t
    }
  }

  /// The canonical encoding: a JSON list of layer objects (see `SpecValue.json`).
  public var json: String { SpecValue.list(tables.map { .table($0) }).json }

  /// One line per layer, for `ntkgram info` and logs: `0 dense W_std=1.4 b_std=0.1 width=512 ntk`.
  public var lines: [String] {
    tables.enumerated().map { k, t in
      let type = t["type"].map { if case .string(let s) = $0 { s } else { "?" } } ?? "?"
      let rest = t.keys.sorted().filter { $0 != "type" }.map { "\($0)=\(t[$0]!.json.replacingQuotes())" }
      return ([String(k), type] + rest).joined(separator: " ")
    }
  }

  // MARK: Shapes

  /// The shape of one sample after each layer, from the input's: `[d]` for flat rows,
  /// `[H, W, C]` for images. Throws a `NetworkError` naming the first layer that cannot take
  /// its input (a convolution over flat rows, a window larger than a VALID input, …), or the
  /// whole list when the output is not one vector per sample.
  public func shapes(input: [Int]) throws -> [[Int]] {
    try Self.checkInputShape(input)
    var shape = input
    var out: [[Int]] = []
    for (k, layer) in layers.enumerated() {
      func fail(_ problem: String) -> NetworkError { NetworkError(position: k, layerType: layer.typeName, problem) }
      func spatial(_ what: String) throws -> (Int, Int, Int) {
        guard shape.count == 3 else {
          throw fail("\(what) needs images (H×W×C samples), but its input is flat rows of \(shape[0]) features: give the data's shape with --input-shape H,W,C ([data] input_shape)")
        }
        return (shape[0], shape[1], shape[2])
      }
      func reduce(_ size: Int, _ w: Int, _ s: Int, _ padding: Padding, _ axis: String) throws -> Int {
        switch padding {
        case .same, .circular: return (size + s - 1) / s
        case .valid:
          guard w <= size else { throw fail("\(axis) window \(w) is larger than its input (\(size)) with VALID padding") }
          return (size - w) / s + 1
        }
      }
      switch layer {
      case .dense(let a): shape = [a.width]
      case .conv(let a, let w):
        let (h, wd, _) = try spatial("a convolution")
        shape = [try reduce(h, w.size[0], w.strides[0], w.padding, "height"),
                 try reduce(wd, w.size[1], w.strides[1], w.padding, "width"), a.width]
      case .avgPool(let w, _):
        let (h, wd, c) = try spatial("average pooling")
        shape = [try reduce(h, w.size[0], w.strides[0], w.padding, "height"),
                 try reduce(wd, w.size[1], w.strides[1], w.padding, "width"), c]
      case .globalAvgPool:
        let (_, _, c) = try spatial("global average pooling")
        shape = [c]
      case .flatten:
        shape = [shape.reduce(1, *)]
      case .activation: break
      }
      out.append(shape)
    }
    if shape.count != 1 {
      throw NetworkError(position: nil, "the layer list has no readout: it ends with images (\(shape.map(String.init).joined(separator: "×")) values per sample), not one vector per sample; \(Self.readoutAdvice)")
    }
    return out
  }

  /// What a layer list without a readout needs, in the terms of a layer list.
  public static let readoutAdvice = "end it with a readout: a flatten or global_avg_pool layer (images to one vector), then a dense layer (width = the outputs per sample, 1 for a kernel)"

  /// The smallest image (height, width) every window of the network fits: each VALID window of
  /// size w and stride s needs (o − 1)·s + w input pixels for o output pixels, SAME and
  /// CIRCULAR ones (o − 1)·s + 1; worked back from one pixel where the images end (the first
  /// flatten, global_avg_pool or dense). (1, 1) for a network without windows.
  public var smallestImage: (height: Int, width: Int) {
    let end = layers.firstIndex { switch $0 { case .flatten, .globalAvgPool, .dense: true; default: false } } ?? layers.count
    var size = [1, 1]
    for layer in layers[..<end].reversed() {
      let window: Window
      switch layer {
      case .conv(_, let w), .avgPool(let w, _): window = w
      default: continue
      }
      for axis in 0..<2 {
        let span = window.padding == .valid ? window.size[axis] : 1
        let (scaled, overflow) = (size[axis] - 1).multipliedReportingOverflow(by: window.strides[axis])
        size[axis] = overflow ? Int.max / 2 : min(scaled + span, Int.max / 2)
      }
    }
    return (size[0], size[1])
  }

  /// An input shape is `[d]` or `[H, W, C]`, every size at least 1, at most 2⁴⁰ values.
  public static func checkInputShape(_ shape: [Int]) throws {
    guard shape.count == 1 || shape.count == 3 else {
      throw NetworkError(position: nil, "input shape \(shape) must be [features] or [H, W, C]")
    }
    guard shape.allSatisfy({ $0 >= 1 && $0 <= 1 << 40 }) else {
      throw NetworkError(position: nil, "input shape \(shape) has a size below 1 or absurdly large")
    }
    let (total, overflow) = shape.reduce((1, false)) { acc, v in
      let (p, o) = acc.0.multipliedReportingOverflow(by: v)
      return (p, acc.1 || o)
    }
    guard !overflow, total <= 1 << 40 else { throw NetworkError(position: nil, "input shape \(shape) is absurdly large") }
  }

  /// Whether any layer needs the spatial structure of its input.
  public var isConvolutional: Bool {
    layers.contains { switch $0 { case .conv, .avgPool, .globalAvgPool: true; default: false } }
  }
}

extension String {
  fileprivate func replacingQuotes() -> String { filter { $0 != "\"" } }
}

/// Reads one layer table, remembering which keys were read so that the rest are reported.
private struct TableReader {
  let table: [String: SpecValue]
  let position: Int
  let type: String
  var read: Set<String> = ["type"]

  init(table: [String: SpecValue], position: Int, type: String) {
    self.table = table
    self.position = position
    self.type = type
  }

  func fail(_ problem: String) -> NetworkError { NetworkError(position: position, layerType: type, problem) }

  mutating func value(_ key: String) -> SpecValue? {
    read.insert(key)
    if case .null? = table[key] { return nil }
    return table[key]
  }

  mutating func double(_ key: String) throws -> Double? {
    switch value(key) {
    case nil: return nil
    case .double(let d)?: return d
    case .int(let i)?: return Double(i)
    case let v?: throw fail("\(key) must be a number, got \(v.kindName)")
    }
  }

  mutating func int(_ key: String) throws -> Int? {
    switch value(key) {
    case nil: return nil
    case .int(let i)?: return i
    case .double(let d)? where d == d.rounded() && abs(d) < 1e15: return Int(d)
    case let v?: throw fail("\(key) must be an integer, got \(v.kindName)")
    }
  }

  mutating func bool(_ key: String) throws -> Bool? {
    switch value(key) {
    case nil: return nil
    case .bool(let b)?: return b
    case let v?: throw fail("\(key) must be true or false, got \(v.kindName)")
    }
  }

  mutating func string(_ key: String) throws -> String? {
    switch value(key) {
    case nil: return nil
    case .string(let s)?: return s
    case let v?: throw fail("\(key) must be a string, got \(v.kindName)")
    }
  }

  /// A pair of positive integers `[h, w]` (a single integer means both).
  mutating func pair(_ key: String) throws -> [Int]? {
    switch value(key) {
    case nil: return nil
    case .int(let i)?:
      guard i >= 1 && i <= 1 << 20 else { throw fail("\(key) must be between 1 and 1048576 (got \(i))") }
      return [i, i]
    case .list(let items)?:
      let values = items.compactMap { if case .int(let i) = $0 { i } else { nil } }
      guard values.count == items.count, values.count == 2 else { throw fail("\(key) must be a list of two integers [h, w]") }
      guard values.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else { throw fail("\(key) must be between 1 and 1048576 (got \(values))") }
      return values
    case let v?: throw fail("\(key) must be a list of two integers [h, w], got \(v.kindName)")
    }
  }

  mutating func affine(_ defaultParameterization: Parameterization) throws -> Affine {
    let wStd = try double("W_std") ?? 1
    guard wStd.isFinite, wStd >= 0 else { throw fail("W_std must be a finite number ≥ 0 (got \(wStd))") }
    var bStd: Double? = nil
    if case .string(let s)? = table["b_std"] {
      read.insert("b_std")
      guard s == "none" else { throw fail("b_std must be a number or \"none\" (got \"\(s)\")") }
    } else if let b = try double("b_std") {
      guard b.isFinite, b >= 0 else { throw fail("b_std must be a finite number ≥ 0 or \"none\" (got \(b))") }
      bStd = b
    }
    guard let width = try int("width") else {
      throw fail("missing 'width' (the \(type == "conv" ? "output channels" : "output features"); stax's out_\(type == "conv" ? "chan" : "dim"))")
    }
    guard width >= 1, width <= 1 << 40 else { throw fail("width must be between 1 and 2^40 (got \(width))") }
    var parameterization = defaultParameterization
    if let p = try string("parameterization") {
      guard let v = Parameterization(rawValue: p) else { throw fail("unknown parameterization '\(p)' (valid: ntk, standard)") }
      parameterization = v
    }
    return Affine(wStd: wStd, bStd: bStd, width: width, parameterization: parameterization)
  }

  mutating func window(sizeKey: String) throws -> Window {
    guard let size = try pair(sizeKey) else { throw fail("missing '\(sizeKey)' ([h, w])") }
    let strides = try pair("strides") ?? [1, 1]
    var padding = Padding.valid
    if let p = try string("padding") {
      guard let v = Padding(rawValue: p.uppercased()) else { throw fail("unknown padding '\(p)' (valid: SAME, VALID, CIRCULAR)") }
      padding = v
    }
    return Window(size: size, strides: strides, padding: padding)
  }

  func checkAllRead() throws {
    let unknown = table.keys.filter { !read.contains($0) }.sorted()
    if let key = unknown.first {
      throw fail("unknown key '\(key)'" + (read.count > 1 ? " (valid: \(read.subtracting(["type"]).sorted().joined(separator: ", ")))" : " (this layer takes no parameters)"))
    }
  }
}
