import GramNetwork
import Testing

@Suite("Networks as data: layer tables, canonical JSON, shapes")
struct NetworkTests {
  static func dense(_ w: Int, _ extra: [String: SpecValue] = [:]) -> [String: SpecValue] {
    ["type": .string("dense"), "width": .int(w)].merging(extra) { $1 }
  }

  @Test("the fully-connected shorthand is the explicit layer list it expands to")
  func shorthand() throws {
    let fc = Network.fullyConnected(depth: 2, activation: .erf, wStd: 1.5, bStd: 0.05, parameterization: .standard, width: 64)
    let hidden: [String: SpecValue] = ["W_std": .double(1.5), "b_std": .double(0.05), "parameterization": .string("standard")]
    let explicit = try Network(tables: [
      Self.dense(64, hidden), ["type": .string("erf")], Self.dense(64, hidden), ["type": .string("erf")], Self.dense(1, hidden),
    ])
    #expect(fc == explicit)
    #expect(fc.json == explicit.json)
    // `[kernel] parameterization` is the default of every layer that does not say otherwise.
    let viaDefault = try Network(tables: [
      Self.dense(64, ["W_std": .double(1.5), "b_std": .double(0.05)]), ["type": .string("erf")],
      Self.dense(64, ["W_std": .double(1.5), "b_std": .double(0.05)]), ["type": .string("erf")],
      Self.dense(1, ["W_std": .double(1.5), "b_std": .double(0.05)]),
    ], defaultParameterization: .standard)
    #expect(viaDefault == fc)
  }

  @Test("canonical JSON: sorted keys, every parameter explicit, and it reads back to the same network")
  func canonicalJSON() throws {
    let net = try Network(tables: [
      ["type": .string("conv"), "width": .int(8), "filter": .list([.int(3), .int(3)]), "padding": .string("same"), "b_std": .string("none")],
      ["type": .string("leaky_relu"), "slope": .double(0.2)],
      ["type": .string("avg_pool"), "window": .list([.int(2), .int(2)]), "strides": .list([.int(2), .int(2)])],
      ["type": .string("global_avg_pool")],
      Self.dense(1, ["W_std": .double(1e-05)]),
    ])
    #expect(net.json == #"[{"W_std":1.0,"b_std":"none","filter":[3,3],"padding":"SAME","parameterization":"ntk","strides":[1,1],"type":"conv","width":8},{"slope":0.2,"type":"leaky_relu"},{"normalize_edges":false,"padding":"VALID","strides":[2,2],"type":"avg_pool","window":[2,2]},{"type":"global_avg_pool"},{"W_std":1e-05,"b_std":"none","parameterization":"ntk","type":"dense","width":1}]"#)
    #expect(try Network(json: net.json) == net)
    #expect(try Network(json: net.json).json == net.json)
    // Whitespace, escapes and null (no bias) are read as JSON.
    let spaced = try Network(json: "[ {\"type\" : \"dense\", \"width\": 3, \"b_std\": null, \"W_std\": 2} ,\n {\"type\":\"relu\"}, {\"type\":\"dense\",\"width\":1}]")
    #expect(spaced.layers.count == 3)
    #expect(spaced.layers[0] == .dense(Affine(wStd: 2, bStd: nil, width: 3, parameterization: .ntk)))
  }

  struct Bad: CustomStringConvertible, Sendable {
    let description: String
    let tables: [[String: SpecValue]]
    let message: String
  }

  static let bad: [Bad] = [
    Bad(description: "unknown type", tables: [["type": .string("attention")]], message: "kernel.layers[0]: unknown layer type 'attention'"),
    Bad(description: "no type", tables: [["width": .int(3)]], message: "kernel.layers[0]: missing 'type'"),
    Bad(description: "missing width", tables: [dense(3), ["type": .string("relu")], ["type": .string("dense")]],
        message: "kernel.layers[2] (dense): missing 'width'"),
    Bad(description: "wrong type", tables: [dense(3, ["W_std": .string("big")])], message: "kernel.layers[0] (dense): W_std must be a number, got a string"),
    Bad(description: "negative W_std", tables: [dense(3, ["W_std": .double(-1)])], message: "kernel.layers[0] (dense): W_std must be a finite number ≥ 0"),
    Bad(description: "activation first", tables: [["type": .string("relu")], dense(1)],
        message: "kernel.layers[0] (relu): an activation cannot be the first layer"),
    Bad(description: "unknown key", tables: [dense(3, ["dropout": .double(0.5)])], message: "kernel.layers[0] (dense): unknown key 'dropout'"),
    Bad(description: "key on a layer without parameters", tables: [dense(3), ["type": .string("relu"), "slope": .double(1)], dense(1)],
        message: "kernel.layers[1] (relu): unknown key 'slope' (this layer takes no parameters)"),
    Bad(description: "leaky_relu without slope", tables: [dense(3), ["type": .string("leaky_relu")], dense(1)],
        message: "kernel.layers[1] (leaky_relu): missing 'slope'"),
    Bad(description: "conv without filter", tables: [["type": .string("conv"), "width": .int(4)]], message: "kernel.layers[0] (conv): missing 'filter'"),
    Bad(description: "bad padding", tables: [["type": .string("conv"), "width": .int(4), "filter": .list([.int(3), .int(3)]), "padding": .string("FULL")]],
        message: "kernel.layers[0] (conv): unknown padding 'FULL'"),
    Bad(description: "filter of three sizes", tables: [["type": .string("conv"), "width": .int(4), "filter": .list([.int(3), .int(3), .int(3)])]],
        message: "kernel.layers[0] (conv): filter must be a list of two integers"),
    Bad(description: "empty list", tables: [], message: "the layer list is empty"),
  ]

  @Test("a bad layer table names its position and the problem", arguments: bad)
  func badTables(_ b: Bad) {
    do {
      _ = try Network(tables: b.tables)
      Issue.record("accepted: \(b)")
    } catch let e as NetworkError {
      #expect(e.description.hasPrefix(b.message), "\(b): \(e.description)")
    } catch {
      Issue.record("\(b): \(error)")
    }
  }

  @Test("shapes: flat rows, images, SAME and VALID, and the errors of a convolution over flat rows")
  func shapes() throws {
    let cnn = try Network(tables: [
      ["type": .string("conv"), "width": .int(16), "filter": .list([.int(3), .int(3)]), "padding": .string("SAME"), "strides": .list([.int(2), .int(2)])],
      ["type": .string("relu")],
      ["type": .string("conv"), "width": .int(8), "filter": .list([.int(3), .int(2)])],
      ["type": .string("avg_pool"), "window": .list([.int(2), .int(2)])],
      ["type": .string("flatten")],
      Self.dense(1),
    ])
    // 28 → SAME stride 2 → 14; VALID 3×2 → 12×13; pool 2×2 stride 1 VALID → 11×12.
    #expect(try cnn.shapes(input: [28, 28, 1]) == [[14, 14, 16], [14, 14, 16], [12, 13, 8], [11, 12, 8], [1056], [1]])
    // 5 with SAME stride 2: the odd pixel goes at the end, output ⌈5/2⌉ = 3.
    let same = try Network(tables: [
      ["type": .string("conv"), "width": .int(16), "filter": .list([.int(3), .int(3)]), "padding": .string("SAME"), "strides": .list([.int(2), .int(2)])],
      ["type": .string("global_avg_pool")],
    ])
    #expect(try same.shapes(input: [5, 7, 3]) == [[3, 4, 16], [16]])
    do {
      _ = try cnn.shapes(input: [784])
      Issue.record("a convolution over flat rows was accepted")
    } catch let e as NetworkError {
      #expect(e.description.hasPrefix("kernel.layers[0] (conv): a convolution needs images"))
      #expect(e.description.contains("--input-shape"))
    }
    do {
      _ = try cnn.shapes(input: [4, 4, 1])  // VALID 3×2 on 2×2
      Issue.record("a window larger than a VALID input was accepted")
    } catch let e as NetworkError {
      #expect(e.description.hasPrefix("kernel.layers[2] (conv): height window 3 is larger than its input (2)"))
    }
    let spatialEnd = try Network(tables: [["type": .string("conv"), "width": .int(2), "filter": .int(1)]])
    #expect(throws: NetworkError.self) { try spatialEnd.shapes(input: [3, 3, 1]) }
    // A dense layer sees an image as its flat vector.
    #expect(try Network.fullyConnected(depth: 1, activation: .relu, wStd: 1, bStd: nil).shapes(input: [28, 28, 1]).last == [1])
    #expect(throws: NetworkError.self) { try Network.checkInputShape([28, 28]) }
    #expect(throws: NetworkError.self) { try Network.checkInputShape([1 << 30, 1 << 30, 1 << 30]) }
  }

  @Test("the smallest image a network takes: every window fits, and one pixel smaller does not", arguments: ["myrtle5", "myrtle7", "myrtle10"])
  func smallestImageOfPresets(_ name: String) throws {
    let net = try #require(Network.preset(name))
    #expect(net.smallestImage == (4, 4))
    #expect(try net.shapes(input: [4, 4, 3]).last == [1])
    #expect(throws: NetworkError.self) { try net.shapes(input: [3, 4, 3]) }
    #expect(throws: NetworkError.self) { try net.shapes(input: [4, 3, 3]) }
  }

  @Test("the smallest image: VALID windows and strides per axis, SAME ones, and layers after the images end")
  func smallestImage() throws {
    func conv(_ h: Int, _ w: Int, stride: [Int] = [1, 1], padding: String = "VALID") -> [String: SpecValue] {
      ["type": .string("conv"), "width": .int(2), "filter": .list([.int(h), .int(w)]), "strides": .list(stride.map { .int($0) }),
       "padding": .string(padding)]
    }
    let cases: [([[String: SpecValue]], (Int, Int))] = [
      ([conv(3, 5), ["type": .string("flatten")], Self.dense(1)], (3, 5)),
      ([conv(3, 2, stride: [2, 3]), ["type": .string("relu")], conv(2, 2), ["type": .string("global_avg_pool")], Self.dense(1)], (5, 5)),
      ([conv(7, 7, padding: "SAME"), ["type": .string("flatten")], Self.dense(1)], (1, 1)),
      ([Self.dense(4), ["type": .string("relu")], Self.dense(1)], (1, 1)),
    ]
    for (tables, expected) in cases {
      let net = try Network(tables: tables)
      let smallest = net.smallestImage
      #expect(smallest == expected, "\(net.lines)")
      #expect(throws: Never.self) { try net.shapes(input: [smallest.height, smallest.width, 1]) }
      if smallest.height > 1 { #expect(throws: NetworkError.self) { try net.shapes(input: [smallest.height - 1, smallest.width, 1]) } }
      if smallest.width > 1 { #expect(throws: NetworkError.self) { try net.shapes(input: [smallest.height, smallest.width - 1, 1]) } }
    }
  }

  @Test("JSON reader: numbers, escapes, errors")
  func json() throws {
    #expect(try SpecValue(json: "[1, 2.5, -3e2, \"a\\\"b\\u00e9\", true, null, {}]") ==
      .list([.int(1), .double(2.5), .double(-300), .string("a\"bé"), .bool(true), .null, .table([:])]))
    #expect(SpecValue.string("tab\there \"q\"").json == #""tab\there \"q\"""#)
    for bad in ["[1,", "{\"a\" 1}", "[1] x", "", "[nan]", "{\"a\":1,\"a\":2}", String(repeating: "[", count: 100)] {
      #expect(throws: JSONError.self, "\(bad)") { try SpecValue(json: bad) }
    }
  }
}
