import Foundation
import Testing
@testable import GramStorage

@Suite("IDX reader")
struct IDXTests {
  @Test("reads the real Fashion-MNIST files, plain gzip, with a limit")
  func fashionMNIST() throws {
    let images = try IDX.readMatrix("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", limit: 5)
    #expect(images.0.rows == 5 && images.0.cols == 784 && images.isInteger)
    #expect(images.0.sampleShape == [28, 28, 1])
    #expect(images.0.values.allSatisfy { $0 >= 0 && $0 <= 255 })
    let labels = try IDX.readLabels("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz")
    #expect(labels.count == 60_000)
    #expect(labels.prefix(5) == [9, 0, 0, 3, 0])  // the first Fashion-MNIST labels
  }

  @Test("big-endian types and shapes")
  func types() throws {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: d) }
    var f64 = Data([0, 0, 0x0E, 2, 0, 0, 0, 2, 0, 0, 0, 1])
    for v in [1.5, -2.25] { withUnsafeBytes(of: v.bitPattern.bigEndian) { f64.append(contentsOf: $0) } }
    try f64.write(to: URL(fileURLWithPath: d + "/f64.idx"))
    let a = try IDX.readMatrix(d + "/f64.idx")
    #expect(a.0.values == [1.5, -2.25] && !a.isInteger)
    let i16 = Data([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x00])
    try i16.write(to: URL(fileURLWithPath: d + "/i16.idx"))
    #expect(try IDX.readMatrix(d + "/i16.idx").0.values == [-2, 256])
    try Data([0, 0, 0x08, 2, 0, 0, 0, 3, 0, 0, 0, 2, 1, 2, 3]).write(to: URL(fileURLWithPath: d + "/short.idx"))
    #expect(throws: StorageError.self) { try IDX.readMatrix(d + "/short.idx") }
  }

  @Test("a header declaring more than the file can hold is refused before any buffer is sized by it (plain and gzip)")
  func declaredBeyondTheFile() throws {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: d) }
    // 12 samples of 244 × 2,064,051,084 bytes (found by the fuzz test: one row is 503 GB).
    var bytes = Data([0, 0, 0x08, 3, 0, 0, 0, 12, 0, 0, 0, 0xF4, 0x7B, 0x06, 0xEB, 0x8C])
    bytes.append(Data(repeating: 7, count: 5000))
    try bytes.write(to: URL(fileURLWithPath: d + "/big.idx"))
    let gzip = Process()
    gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
    gzip.arguments = ["-k", d + "/big.idx"]
    try gzip.run()
    gzip.waitUntilExit()
    #expect(gzip.terminationStatus == 0)
    for path in [d + "/big.idx", d + "/big.idx.gz"] {
      for limit in [nil, 1] as [Int?] {
        do {
          _ = try IDX.Reader(path, limit: limit)
          Issue.record("\(path) was accepted")
        } catch let error as StorageError {
          #expect("\(error)".contains("can hold"), "\(error)")
        }
      }
    }
    // A file that holds what its header declares is still read, gzip included.
    var small = Data([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    small.append(Data([1, 2, 3, 4, 5, 6]))
    try small.write(to: URL(fileURLWithPath: d + "/small.idx"))
    #expect(try IDX.readMatrix(d + "/small.idx").0.values == [1, 2, 3, 4, 5, 6])
  }
}
