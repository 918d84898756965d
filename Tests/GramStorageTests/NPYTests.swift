import Foundation
import Testing
@testable import GramStorage

@Suite("NPY reader")
struct NPYTests {
  func folder() throws -> String {
    let p = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
  }

  func write(_ path: String, descr: String, shape: [Int], payload: Data, version: UInt8 = 1, fortran: Bool = false) throws {
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': (\(shape.map(String.init).joined(separator: ", "))\(shape.count == 1 ? "," : "")), }"
    let prefix = version == 1 ? 10 : 12
    header += String(repeating: " ", count: (64 - (prefix + header.utf8.count + 1) % 64) % 64) + "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
    let n = header.utf8.count
    bytes += version == 1 ? [UInt8(n & 0xff), UInt8(n >> 8)] : [UInt8(n & 0xff), UInt8(n >> 8), 0, 0]
    try (Data(bytes + Array(header.utf8)) + payload).write(to: URL(fileURLWithPath: path))
  }

  @Test("3-D and 4-D arrays keep the sample shape (N×H×W → H×W×1, NHWC), in C and Fortran order")
  func images() throws {
    let d = try folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    // x[n, h, w, c] = 1000n + 100h + 10w + c for a 2×3×4×2 array.
    let shape = [2, 3, 4, 2]
    var cOrder: [Double] = [], fOrder = [Double](repeating: 0, count: 48)
    for n in 0..<2 { for h in 0..<3 { for w in 0..<4 { for c in 0..<2 {
      let v = Double(1000 * n + 100 * h + 10 * w + c)
      cOrder.append(v)
      fOrder[n + 2 * (h + 3 * (w + 4 * c))] = v
    } } } }
    try write(d + "/c.npy", descr: "<f8", shape: shape, payload: cOrder.withUnsafeBytes { Data($0) })
    try write(d + "/f.npy", descr: "<f8", shape: shape, payload: fOrder.withUnsafeBytes { Data($0) }, fortran: true)
    for name in ["c", "f"] {
      let a = try NPY.readMatrix(d + "/\(name).npy")
      #expect(a.rows == 2 && a.cols == 24 && a.sampleShape == [3, 4, 2], "\(name)")
      #expect(a.values == cOrder, "\(name)")
    }
    try write(d + "/g.npy", descr: "<f8", shape: [2, 3, 4], payload: Array(cOrder.prefix(24)).withUnsafeBytes { Data($0) })
    #expect(try NPY.readMatrix(d + "/g.npy").sampleShape == [3, 4, 1])
    #expect(try DatasetReader.sampleShape(d + "/c.npy").1 == [3, 4, 2])
  }

  @Test("float64 and float32, versions 1 and 2, both byte orders, C and Fortran order")
  func variants() throws {
    let d = try folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let values: [Double] = [1, 2.5, -3, 4, 5e-3, 6]  // 2×3, row-major
    let f64 = values.withUnsafeBytes { Data($0) }
    let f32 = values.map { Float($0) }.withUnsafeBytes { Data($0) }
    let f64be = Data(values.flatMap { withUnsafeBytes(of: $0.bitPattern.bigEndian) { Array($0) } })
    let fortran = [1, 4, 2.5, 5e-3, -3, 6].withUnsafeBytes { Data($0) }
    let cases: [(String, String, Data, UInt8, Bool)] = [
      ("v1f8", "<f8", f64, 1, false), ("v2f8", "<f8", f64, 2, false), ("v1f4", "<f4", f32, 1, false),
      ("be", ">f8", f64be, 1, false), ("fortran", "<f8", fortran, 1, true),
    ]
    for (name, descr, payload, version, isFortran) in cases {
      try write(d + "/\(name).npy", descr: descr, shape: [2, 3], payload: payload, version: version, fortran: isFortran)
      let a = try NPY.readMatrix(d + "/\(name).npy")
      #expect(a.rows == 2 && a.cols == 3, "\(name)")
      #expect(a.values == (descr == "<f4" ? values.map { Double(Float($0)) } : values), "\(name)")
    }
  }

  @Test("the writer round-trips")
  func roundTrip() throws {
    let d = try folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let a = DenseArray(rows: 3, cols: 2, values: [1, 2, 3, 4, 5, .pi])
    try NPY.write(a, to: d + "/a.npy")
    #expect(try NPY.readMatrix(d + "/a.npy") == a)
  }

  @Test("labels of any integer width")
  func labels() throws {
    let d = try folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try write(d + "/u1.npy", descr: "|u1", shape: [3], payload: Data([0, 9, 255]))
    #expect(try NPY.readIntegers(d + "/u1.npy") == [0, 9, 255])
    try write(d + "/i4.npy", descr: "<i4", shape: [2], payload: [Int32(-2), 7].withUnsafeBytes { Data($0) })
    #expect(try NPY.readIntegers(d + "/i4.npy") == [-2, 7])
    try write(d + "/f8.npy", descr: "<f8", shape: [2], payload: [1.0, 2.0].withUnsafeBytes { Data($0) })
    #expect(throws: StorageError.self) { try NPY.readIntegers(d + "/f8.npy") }
  }

  @Test("malformed headers are errors naming the file")
  func malformed() throws {
    let d = try folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try write(d + "/noshape.npy", descr: "<f8", shape: [], payload: Data())
    #expect(throws: StorageError.self) { try NPY.readMatrix(d + "/noshape.npy") }
    var bytes = Data([0x93] + Array("NUMPY".utf8) + [1, 0, 10, 0]) + Data("{'descr': ".utf8)
    try bytes.write(to: URL(fileURLWithPath: d + "/cut.npy"))
    do { _ = try NPY.readMatrix(d + "/cut.npy"); Issue.record("accepted a cut header") }
    catch let e as StorageError { #expect(e.path == d + "/cut.npy") }
    bytes = Data([0x93] + Array("NUMPY".utf8) + [9, 0, 0, 0])
    try bytes.write(to: URL(fileURLWithPath: d + "/v9.npy"))
    #expect(throws: StorageError(d + "/v9.npy", "unsupported NPY format version 9.0")) { try NPY.readMatrix(d + "/v9.npy") }
  }
}
