import Foundation
import GramStorage
import Testing

/// The `ntkgram` binary built beside this test bundle (or `$NTKGRAM_BIN`).
func ntkgramBinary() throws -> String {
  if let path = ProcessInfo.processInfo.environment["NTKGRAM_BIN"] { return path }
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
  for _ in 0..<4 {
    let candidate = dir.appendingPathComponent("ntkgram").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    dir = dir.deletingLastPathComponent()
  }
  throw CLIError("ntkgram binary not found beside \(CommandLine.arguments[0]); run `swift build` first or set NTKGRAM_BIN")
}

struct CLIError: Error, CustomStringConvertible {
  let description: String
  init(_ d: String) { description = d }
}

struct RunResult {
  let status: Int32
  let stdout: String
  let stderr: String
}

/// Runs `executable arguments…` and waits for it.
func runProcess(_ executable: String, _ arguments: [String], cwd: String? = nil) throws -> RunResult {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: executable)
  p.arguments = arguments
  if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile()
  let e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Runs `ntkgram` with `arguments` and waits for it.
func runNTKGram(_ arguments: [String], cwd: String? = nil) throws -> RunResult {
  try runProcess(try ntkgramBinary(), arguments, cwd: cwd)
}

/// A fresh temporary folder, removed by the caller with `cleanup`.
func temporaryFolder() throws -> String {
  let path = FileManager.default.temporaryDirectory.appendingPathComponent("ntkgram-test-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// Every file in `folder` with its contents (to check that nothing was created or changed).
func snapshot(_ folder: String) throws -> [String: Data] {
  var result: [String: Data] = [:]
  for name in try FileManager.default.subpathsOfDirectory(atPath: folder) {
    var isDir: ObjCBool = false
    let path = folder + "/" + name
    FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
    result[name] = isDir.boolValue ? Data() : FileManager.default.contents(atPath: path) ?? Data()
  }
  return result
}

/// Writes an NPY file with any dtype string and shape (little-endian raw `payload`).
func writeRawNPY(_ path: String, descr: String, shape: [Int], payload: Data, version: UInt8 = 1, fortran: Bool = false) throws {
  let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
  var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
  let prefix = version == 1 ? 10 : 12
  header += String(repeating: " ", count: (64 - (prefix + header.utf8.count + 1) % 64) % 64) + "\n"
  var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
  let n = header.utf8.count
  bytes += version == 1 ? [UInt8(n & 0xff), UInt8(n >> 8)] : [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)]
  var data = Data(bytes + Array(header.utf8))
  data.append(payload)
  try data.write(to: URL(fileURLWithPath: path))
}

/// Random standard-normal-ish rows as an NPY float64 file.
func writeRandomNPY(_ path: String, rows: Int, cols: Int, seed: UInt64) throws {
  var state = seed
  let values = (0..<(rows * cols)).map { _ -> Double in
    state = state &* 6364136223846793005 &+ 1442695040888963407
    return Double(state >> 11) / Double(1 << 53) * 2 - 1
  }
  try NPY.write(DenseArray(rows: rows, cols: cols, values: values), to: path)
}
