import Foundation
import GramStorage
import Testing

/// Malformed job files and datasets: non-zero exit, one clear line, and existing outputs and
/// checkpoints untouched.
@Suite("ntkgram build: malformed job files and datasets", .serialized)
struct JobFileTests {
  /// A folder with good data, a finished kernel file and a kept checkpoint folder.
  static func prepare() throws -> String {
    let d = try temporaryFolder()
    try writeRandomNPY(d + "/x.npy", rows: 20, cols: 6, seed: 3)
    try writeRawNPY(d + "/labels.npy", descr: "<i8", shape: [20], payload: (0..<20).map { Int64($0 % 3) }.withUnsafeBytes { Data($0) })
    try writeRawNPY(d + "/short_labels.npy", descr: "<i8", shape: [7], payload: [Int64](repeating: 1, count: 7).withUnsafeBytes { Data($0) })
    // IDX: good, bad magic, truncated gzip.
    var idx = Data([0, 0, 0x08, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2])
    idx.append(Data((0..<16).map { UInt8($0 * 10) }))
    try idx.write(to: URL(fileURLWithPath: d + "/images-idx3-ubyte"))
    var bad = idx; bad[2] = 0x42
    try bad.write(to: URL(fileURLWithPath: d + "/badmagic-idx3-ubyte"))
    try gzip(d + "/images-idx3-ubyte", to: d + "/images-idx3-ubyte.gz")
    let gz = try Data(contentsOf: URL(fileURLWithPath: d + "/images-idx3-ubyte.gz"))
    try gz.prefix(gz.count - 12).write(to: URL(fileURLWithPath: d + "/truncated-idx3-ubyte.gz"))
    try Data("a,b,c\n1,2,3\n4,5\n".utf8).write(to: URL(fileURLWithPath: d + "/ragged.csv"))
    try Data("f1,f2,label\n0.5,1.5,0\n1.0,2.0,1\n3.0,-1,2\n".utf8).write(to: URL(fileURLWithPath: d + "/good.csv"))
    let r = try runNTKGram(["build", "--train", d + "/x.npy", "--tile", "8", "--out", d + "/k.h5", "--checkpoints", d + "/ck", "--keep-checkpoints", "--quiet"])
    guard r.status == 0 else { throw CLIError("setup build failed: \(r.stderr)") }
    return d
  }

  static func gzip(_ source: String, to target: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["sh", "-c", "gzip -c '\(source)' > '\(target)'"]
    try p.run()
    p.waitUntilExit()
  }

  struct Case: CustomStringConvertible, Sendable {
    let description: String
    let toml: String
    let message: [String]
  }

  static let cases: [Case] = [
    Case(description: "unknown key", toml: "[data]\ntrain = \"x.npy\"\ncolour = 3\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml", "unknown key 'colour' in [data]"]),
    Case(description: "unknown section", toml: "[data]\ntrain = \"x.npy\"\n[solver]\nridge = 1\n", message: ["job.toml", "unknown section [solver]"]),
    Case(description: "wrong type", toml: "[data]\ntrain = \"x.npy\"\n[kernel]\ndepth = \"three\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml", "[kernel] depth must be an integer"]),
    Case(description: "not TOML", toml: "[data\ntrain = \n", message: ["job.toml", "not valid TOML"]),
    Case(description: "missing data file", toml: "[data]\ntrain = \"missing.npy\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["missing.npy", "no such file"]),
    Case(description: "labels count differs from rows", toml: "[data]\ntrain = \"x.npy\"\ntrain_labels = \"short_labels.npy\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["short_labels.npy", "7 labels", "20 rows"]),
    Case(description: "bad IDX magic", toml: "[data]\ntrain = \"badmagic-idx3-ubyte\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["badmagic-idx3-ubyte", "not an IDX file"]),
    Case(description: "truncated gzip", toml: "[data]\ntrain = \"truncated-idx3-ubyte.gz\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["truncated-idx3-ubyte.gz", "truncated"]),
    Case(description: "ragged CSV", toml: "[data]\ntrain = \"ragged.csv\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["ragged.csv", "line 3 has 2 fields, expected 3"]),
    Case(description: "negative W_std", toml: "[data]\ntrain = \"x.npy\"\n[kernel]\nW_std = -2.0\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml", "W_std"]),
    Case(description: "unknown layer", toml: "[data]\ntrain = \"x.npy\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 4\n[[kernel.layers]]\ntype = \"softmax\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[1]: unknown layer type 'softmax'"]),
    Case(description: "layer missing a parameter", toml: "[data]\ntrain = \"x.npy\"\n[[kernel.layers]]\ntype = \"dense\"\nW_std = 1.5\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[0] (dense): missing 'width'"]),
    Case(description: "layer parameter of the wrong type", toml: "[data]\ntrain = \"x.npy\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = \"wide\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[0] (dense): width must be an integer, got a string"]),
    Case(description: "activation first", toml: "[data]\ntrain = \"x.npy\"\n[[kernel.layers]]\ntype = \"relu\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 1\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[0] (relu): an activation cannot be the first layer"]),
    Case(description: "convolution over flat rows", toml: "[data]\ntrain = \"x.npy\"\n[[kernel.layers]]\ntype = \"conv\"\nwidth = 8\nfilter = [3, 3]\n[[kernel.layers]]\ntype = \"relu\"\n[[kernel.layers]]\ntype = \"flatten\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 1\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[0] (conv): a convolution needs images", "--input-shape"]),
    Case(description: "two activations in a row", toml: "[data]\ntrain = \"x.npy\"\ninput_shape = [3, 2, 1]\n[[kernel.layers]]\ntype = \"conv\"\nwidth = 8\nfilter = [2, 2]\npadding = \"SAME\"\n[[kernel.layers]]\ntype = \"relu\"\n[[kernel.layers]]\ntype = \"erf\"\n[[kernel.layers]]\ntype = \"global_avg_pool\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 1\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[2] (erf): two activations in a row are not implemented"]),
    Case(description: "a pooling window larger than its VALID input", toml: "[data]\ntrain = \"x.npy\"\ninput_shape = [3, 2, 1]\n[[kernel.layers]]\ntype = \"conv\"\nwidth = 8\nfilter = [2, 2]\n[[kernel.layers]]\ntype = \"avg_pool\"\nwindow = [3, 3]\n[[kernel.layers]]\ntype = \"flatten\"\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 1\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[1] (avg_pool): height window 3 is larger than its input (2)"]),
    Case(description: "layers and the shorthand together", toml: "[data]\ntrain = \"x.npy\"\n[kernel]\ndepth = 2\n[[kernel.layers]]\ntype = \"dense\"\nwidth = 1\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: give either a layer list", "not both (found depth)"]),
    Case(description: "layers not a list of tables", toml: "[data]\ntrain = \"x.npy\"\n[kernel]\nlayers = [1, 2]\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: kernel.layers[0]: must be a table"]),
    Case(description: "input shape that does not fit the data", toml: "[data]\ntrain = \"x.npy\"\ninput_shape = [2, 2, 2]\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["job.toml: input shape 2,2,2 has 8 values per sample, the data has 6 features"]),
    Case(description: "unknown activation", toml: "[data]\ntrain = \"x.npy\"\n[kernel]\nactivation = \"swish\"\n[build]\nout = \"k.h5\"\ncheckpoints = \"ck\"\n",
         message: ["unknown activation 'swish'", "relu, erf"]),
  ]

  @Test("each malformed input: one line, non-zero exit, outputs and checkpoints untouched", arguments: cases)
  func malformed(_ c: Case) throws {
    let d = try Self.prepare()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Data(c.toml.utf8).write(to: URL(fileURLWithPath: d + "/job.toml"))
    let before = try snapshot(d)
    let r = try runNTKGram(["build", d + "/job.toml", "--force", "--quiet"])
    #expect(r.status != 0)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(c): \(r.stderr)")
    for part in c.message { #expect(r.stderr.contains(part), "\(c): lacks '\(part)': \(r.stderr)") }
    #expect(try snapshot(d) == before, "\(c): files changed")
  }

  @Test("a job file builds; flags override its keys; IDX, gzip, CSV with labels and HDF5 datasets all load")
  func goodJobs() throws {
    let d = try Self.prepare()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Data("""
      [data]
      train = "images-idx3-ubyte.gz"
      train_labels = "labels.npy"
      train_limit = 3
      test = "good.csv"
      [kernel]
      depth = 2
      b_std = "none"
      [build]
      tile = 2
      dtype = "float64"
      out = "sub/dir/job.h5"
      """.utf8).write(to: URL(fileURLWithPath: d + "/job.toml"))
    // The CSV has 3 columns, the IDX images 4 features: the flag replaces the test set by IDX rows.
    let mismatch = try runNTKGram(["build", d + "/job.toml", "--quiet"])
    #expect(mismatch.status != 0 && mismatch.stderr.contains("good.csv") && mismatch.stderr.contains("features"), "\(mismatch.stderr)")
    let r = try runNTKGram(["build", d + "/job.toml", "--test", d + "/images-idx3-ubyte", "--test-limit", "2", "--depth", "3", "--quiet"])
    #expect(r.status == 0, "\(r.stderr)")
    let f = try H5File.open(d + "/sub/dir/job.h5")
    #expect(try f.dataset("/train/ntk").shape == [3, 3])
    #expect(try f.dataset("/test/ntk").shape == [2, 3])
    #expect(try f.dataset("/train/labels").readAllInt64() == [0, 1, 2])
    // The shorthand expanded: depth 3 from the flag, no bias from the job file; IDX images keep their shape.
    guard case .string(let network)? = try f.attribute("network") else { Issue.record("no network attribute"); return }
    #expect(network.components(separatedBy: "\"type\":\"dense\"").count - 1 == 4)
    #expect(network.components(separatedBy: "\"b_std\":\"none\"").count - 1 == 4)
    #expect(try f.attribute("input_shape") == .int64s([2, 2, 1]))
    #expect(try f.attribute("preprocess") == .string("scale"))
    // The same rows through an HDF5 dataset source and CSV with a label column.
    let h = try runNTKGram(["build", "--train", d + "/sub/dir/job.h5:/train/ntk", "--test", d + "/good.csv",
                            "--test-label-column", "2", "--out", d + "/h.h5", "--quiet"])
    #expect(h.status != 0 && h.stderr.contains("features"), "3 features vs 2: \(h.stderr)")
    let c = try runNTKGram(["build", "--train", d + "/good.csv", "--train-label-column", "2", "--out", d + "/c.h5", "--quiet", "--dtype", "float64"])
    #expect(c.status == 0, "\(c.stderr)")
    let cf = try H5File.open(d + "/c.h5")
    #expect(try cf.dataset("/train/labels").readAllInt64() == [0, 1, 2])
    let viaH5 = try runNTKGram(["build", "--train", d + "/sub/dir/job.h5:/train/ntk", "--out", d + "/viah5.h5", "--quiet"])
    #expect(viaH5.status == 0, "\(viaH5.stderr)")
    #expect(try H5File.open(d + "/viah5.h5").dataset("/train/ntk").shape == [3, 3])
  }
}

/// The fully-connected shorthand and the layer list it expands to: one fingerprint, one set of bytes.
@Suite("networks as data through the CLI", .serialized)
struct LayerListTests {
  @Test("the shorthand and its explicit [[kernel.layers]] list give the same fingerprint and bytes; info prints the list")
  func shorthandEqualsList() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 30, cols: 5, seed: 11)
    try Data("""
      [data]
      train = "x.npy"
      [kernel]
      depth = 2
      activation = "leaky_relu"
      leaky_slope = 0.1
      W_std = 1.3
      b_std = 0.2
      width = 40
      parameterization = "standard"
      [build]
      out = "short.h5"
      tile = 8
      dtype = "float64"
      """.utf8).write(to: URL(fileURLWithPath: d + "/short.toml"))
    let dense = "W_std = 1.3\nb_std = 0.2\n"
    try Data(("""
      [data]
      train = "x.npy"
      [kernel]
      parameterization = "standard"
      [[kernel.layers]]
      type = "dense"
      width = 40
      \(dense)[[kernel.layers]]
      type = "leaky_relu"
      slope = 0.1
      [[kernel.layers]]
      type = "dense"
      width = 40
      \(dense)[[kernel.layers]]
      type = "leaky_relu"
      slope = 0.1
      [[kernel.layers]]
      type = "dense"
      width = 1
      \(dense)[build]
      out = "list.h5"
      tile = 8
      dtype = "float64"
      """).utf8).write(to: URL(fileURLWithPath: d + "/list.toml"))
    for job in ["short", "list"] {
      let r = try runNTKGram(["build", d + "/\(job).toml", "--quiet"])
      #expect(r.status == 0, "\(job): \(r.stderr)")
    }
    let a = try H5File.open(d + "/short.h5"), b = try H5File.open(d + "/list.h5")
    #expect(try a.attribute("fingerprint") == b.attribute("fingerprint"))
    #expect(try a.attribute("network") == b.attribute("network"))
    for name in ["/train/ntk", "/train/nngp"] {
      #expect(try a.dataset(name).readStored(start: [0, 0], count: [30, 30]) == b.dataset(name).readStored(start: [0, 0], count: [30, 30]))
    }
    let info = try runNTKGram(["info", d + "/list.h5"])
    #expect(info.status == 0)
    #expect(info.stdout.contains("network (5 layers"), "\(info.stdout)")
    #expect(info.stdout.contains("  0 dense W_std=1.3 b_std=0.2 parameterization=standard width=40"), "\(info.stdout)")
    #expect(info.stdout.contains("  1 leaky_relu slope=0.1"), "\(info.stdout)")
    #expect(info.stdout.contains("  4 dense W_std=1.3 b_std=0.2 parameterization=standard width=1"), "\(info.stdout)")
    // verify rebuilds the kernel from the stored list.
    let v = try runNTKGram(["verify", d + "/list.h5", "--samples", "50"])
    #expect(v.status == 0, "\(v.stderr)")
  }
}
