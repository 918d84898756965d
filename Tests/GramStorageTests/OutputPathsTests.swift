import Foundation
import Testing
@testable import GramStorage

@Suite("Output paths: derived names and the checks before any work")
struct OutputPathsTests {
  @Test("derived names are unchanged while they fit, and at most 255 bytes, distinct and stable past that")
  func derivedNames() {
    #expect(derivedPath(of: "runs/k.h5", suffix: ".lock") == "runs/.k.h5.lock")
    #expect(derivedPath(of: "k.h5", prefix: "", suffix: ".solve-state.h5") == "k.h5.solve-state.h5")
    #expect(derivedPath(of: "/a/b/", suffix: ".lock") == "/a/.b.lock")
    for length in [200, 240, 249, 250, 255] {
      for fill in ["k", "é", "日"] {
        var name = String(repeating: fill, count: length)
        while name.utf8.count > length { name.removeLast() }
        for (suffix, reserve) in [(".lock", 0), (".partial-", 10), (".solve-state.h5", 16)] {
          let derived = derivedName(name, suffix: suffix, reserve: reserve)
          #expect(derived.utf8.count + reserve <= nameLimit)
          #expect(derived.hasPrefix(".") && derived.hasSuffix(suffix))
          #expect(derivedName(name, suffix: suffix, reserve: reserve) == derived)
          if 1 + name.utf8.count + suffix.utf8.count + reserve <= nameLimit { #expect(derived == "." + name + suffix) }
          // Another name with the same first 250 bytes gets another derived name.
          let other = String(name.dropLast()) + "x"
          if other != name { #expect(derivedName(other, suffix: suffix, reserve: reserve) != derived) }
        }
      }
    }
  }

  @Test("outputs are checked against inputs, each other, existing files and node types")
  func checks() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-\(getpid())").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let existing = folder + "/old.json"
    FileManager.default.createFile(atPath: existing, contents: Data("x".utf8))
    let input = folder + "/in.npy"
    FileManager.default.createFile(atPath: input, contents: Data("x".utf8))
    func refused(_ outputs: [PlannedOutput], force: Bool = false, _ words: String) {
      do {
        try CommandPaths(inputs: [(input, "the data")], outputs: outputs, force: force).check()
        Issue.record("accepted \(outputs.map(\.path)), expected '\(words)'")
      } catch let e as StorageError {
        #expect(e.description.contains(words), "\(e.description)")
      } catch { Issue.record("\(error)") }
    }
    refused([PlannedOutput("", "the output")], "empty")
    refused([PlannedOutput(folder + "/" + String(repeating: "a", count: 256), "the output")], "longer than")
    refused([PlannedOutput(input, "the output")], force: true, "is also the data")
    refused([PlannedOutput(folder + "/a", "the output"), PlannedOutput(folder + "/./a", "the metrics", kind: .text)], "is both")
    refused([PlannedOutput(existing, "the metrics", kind: .text)], "already exists")
    refused([PlannedOutput(folder, "the output")], "is a folder")
    refused([PlannedOutput("/dev/null", "the output")], force: true, "not a regular file")
    try CommandPaths(outputs: [PlannedOutput(existing, "the metrics", kind: .text)], force: true).check()
    try CommandPaths(outputs: [PlannedOutput(existing, "the log", kind: .text, mayExist: true)]).check()
    try CommandPaths(outputs: [PlannedOutput("/dev/null", "the metrics", kind: .text), PlannedOutput("/dev/null", "the log", kind: .text)]).check()
    try CommandPaths(outputs: [PlannedOutput(folder, "the checkpoint folder", kind: .folder)]).check()
  }

  @Test("writeOutputFile replaces a file whole and writes a device in place")
  func writes() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("writes-\(getpid())").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/m.json"
    try writeOutputFile(Array("first".utf8), to: path, what: "the metrics")
    try writeOutputFile(Array("second".utf8), to: path, what: "the metrics")
    #expect(FileManager.default.contents(atPath: path) == Data("second".utf8))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["m.json"])
    try writeOutputFile(Array("gone".utf8), to: "/dev/null", what: "the metrics")
    #expect(FileType.of("/dev/null") == .characterDevice)
  }
}
