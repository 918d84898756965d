import Foundation
import GramStorage
import Testing

/// Each bad input: non-zero exit, one line on stderr naming the problem (and the file), and
/// the output folder exactly as it was (no partial file, no changed file).
@Suite("ntkgram build: bad input")
struct BadInputTests {
  struct Case: CustomStringConvertible, Sendable {
    let description: String
    /// Arguments after `build`; `$D` is the test folder.
    let arguments: [String]
    /// Substrings the one error line must contain.
    let message: [String]
  }

  static let cases: [Case] = [
    Case(description: "missing file", arguments: ["--train", "$D/nope.npy"], message: ["$D/nope.npy", "no such file"]),
    Case(description: "unreadable (a folder)", arguments: ["--train", "$D/folder.npy"], message: ["$D/folder.npy", "directory"]),
    Case(description: "not an NPY file", arguments: ["--train", "$D/text.npy"], message: ["$D/text.npy", "not an NPY file"]),
    Case(description: "truncated NPY", arguments: ["--train", "$D/truncated.npy"], message: ["$D/truncated.npy", "truncated"]),
    Case(description: "1-D array", arguments: ["--train", "$D/one_d.npy"], message: ["$D/one_d.npy", "2-D"]),
    Case(description: "5-D array", arguments: ["--train", "$D/five_d.npy"], message: ["$D/five_d.npy", "2-D", "4-D"]),
    Case(description: "integer dtype", arguments: ["--train", "$D/ints.npy"], message: ["$D/ints.npy", "dtype '<i8'", "float32 or float64"]),
    Case(description: "NaN in the data", arguments: ["--train", "$D/nan.npy"], message: ["$D/nan.npy", "NaN at row 2, column 1"]),
    Case(description: "Inf in the test data", arguments: ["--train", "$D/good.npy", "--test", "$D/inf.npy"], message: ["$D/inf.npy", "infinity"]),
    Case(description: "feature counts differ", arguments: ["--train", "$D/good.npy", "--test", "$D/narrow.npy"], message: ["$D/narrow.npy", "3 features", "5"]),
    Case(description: "depth 0", arguments: ["--train", "$D/good.npy", "--depth", "0"], message: ["depth must be at least 1"]),
    Case(description: "negative W_std", arguments: ["--train", "$D/good.npy", "--W-std=-1"], message: ["W_std", "≥ 0"]),
    Case(description: "unknown activation", arguments: ["--train", "$D/good.npy", "--activation", "gelu"],
         message: ["unknown activation 'gelu'", "relu, erf, leaky_relu, abs, identity"]),
    Case(description: "bad b_std", arguments: ["--train", "$D/good.npy", "--b-std", "lots"], message: ["--b-std"]),
    Case(description: "existing output without --force", arguments: ["--train", "$D/good.npy", "--out", "$D/existing.h5"],
         message: ["$D/existing.h5", "already exists", "--force"]),
    Case(description: "bad input with --force keeps the existing output", arguments: ["--train", "$D/nan.npy", "--out", "$D/existing.h5", "--force"],
         message: ["$D/nan.npy", "NaN"]),
    Case(description: "parameters that overflow", arguments: ["--train", "$D/good.npy", "--W-std", "1e200"],
         message: ["$D/good.npy", "overflow float64"]),
    Case(description: "entries beyond float32", arguments: ["--train", "$D/huge.npy"], message: ["$D/huge.npy", "beyond float32's range", "--dtype float64"]),
    Case(description: "an HDF5 file without its dataset", arguments: ["--train", "$D/data.h5"],
         message: ["$D/data.h5", "is an HDF5 file", ":/dataset"]),
    Case(description: "the output inside the checkpoint folder", arguments: ["--train", "$D/good.npy", "--out", "$D/ck/out.h5", "--checkpoints", "$D/ck"],
         message: ["$D/ck/out.h5", "inside the checkpoint folder"]),
    Case(description: "an NPY header with an absurd sample shape", arguments: ["--train", "$D/absurd.npy"],
         message: ["$D/absurd.npy", "absurdly large"]),
    Case(description: "the output is the input", arguments: ["--train", "$D/good.npy", "--out", "$D/good.npy", "--force"],
         message: ["$D/good.npy", "is also the training data", "refusing"]),
  ]

  static func makeFixtures(_ d: String) throws {
    try FileManager.default.createDirectory(atPath: d + "/folder.npy", withIntermediateDirectories: true)
    try Data("just some text, not an array\n".utf8).write(to: URL(fileURLWithPath: d + "/text.npy"))
    try writeRandomNPY(d + "/good.npy", rows: 6, cols: 5, seed: 1)
    try writeRandomNPY(d + "/narrow.npy", rows: 4, cols: 3, seed: 2)
    let good = FileManager.default.contents(atPath: d + "/good.npy")!
    try good.prefix(good.count - 17).write(to: URL(fileURLWithPath: d + "/truncated.npy"))
    let doubles = { (v: [Double]) in v.withUnsafeBytes { Data($0) } }
    try writeRawNPY(d + "/one_d.npy", descr: "<f8", shape: [4], payload: doubles([1, 2, 3, 4]))
    try writeRawNPY(d + "/five_d.npy", descr: "<f8", shape: [2, 1, 2, 2, 1], payload: doubles([Double](repeating: 1, count: 8)))
    try writeRawNPY(d + "/absurd.npy", descr: "<f8", shape: [1 << 40, 1 << 30, 1 << 30], payload: Data())
    try writeRawNPY(d + "/ints.npy", descr: "<i8", shape: [2, 2], payload: [Int64](repeating: 3, count: 4).withUnsafeBytes { Data($0) })
    var withNaN = [Double](repeating: 0.5, count: 12); withNaN[2 * 4 + 1] = .nan
    try NPY.write(DenseArray(rows: 3, cols: 4, values: withNaN), to: d + "/nan.npy")
    var withInf = [Double](repeating: 0.5, count: 10); withInf[7] = -.infinity
    try NPY.write(DenseArray(rows: 2, cols: 5, values: withInf), to: d + "/inf.npy")
    try Data("precious existing kernel".utf8).write(to: URL(fileURLWithPath: d + "/existing.h5"))
    try NPY.write(DenseArray(rows: 3, cols: 4, values: [Double](repeating: 1e30, count: 12)), to: d + "/huge.npy")
    do {
      let f = try H5File.create(d + "/data.h5")
      let x = try f.createDataset("/x", shape: [3, 2], type: .float64)
      try [1.0, 2, 3, 4, 5, 6].withUnsafeBufferPointer { try x.write($0, start: [0, 0], count: [3, 2]) }
      try f.flush()
    }
  }

  @Test("exit status, one-line message, nothing created or changed", arguments: cases)
  func badInput(_ c: Case) throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.makeFixtures(d)
    var args = ["build"] + c.arguments.map { $0.replacingOccurrences(of: "$D", with: d) }
    if !args.contains("--out") { args += ["--out", d + "/out.h5"] }
    let before = try snapshot(d)
    let r = try runNTKGram(args)
    #expect(r.status != 0, "\(c): exit status 0")
    let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1, "\(c): stderr is not one line: \(r.stderr)")
    for part in c.message.map({ $0.replacingOccurrences(of: "$D", with: d) }) {
      #expect(r.stderr.contains(part), "\(c): message lacks '\(part)': \(r.stderr)")
    }
    #expect(try snapshot(d) == before, "\(c): the folder changed")
  }
}
