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
    #expect(try f.attribute("depth") == .int(3))
    #expect(try f.attribute("b_std") == .string("none"))
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
