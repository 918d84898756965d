import Foundation
import Testing
@testable import GramStorage

@Suite("samples read in chunks")
struct SampleStreamTests {
  /// Every chunk size gives the rows of the whole-file reader, in order, with the same shape.
  func expectSameAsWhole(_ path: String, limit: Int? = nil, labelColumn: Int? = nil) throws {
    let (whole, isInteger, labels) = try DatasetReader.readSamples(path, limit: limit, labelColumn: labelColumn)
    for chunk in [1, 3, 7, 1000] {
      let s = try SampleStream(path, limit: limit, labelColumn: labelColumn)
      #expect(s.rows == whole.rows && s.cols == whole.cols && s.sampleShape == whole.sampleShape && s.isInteger == isInteger, "\(path)")
      #expect(s.csvLabels == labels)
      var values: [Double] = [], next = 0
      try s.forEachChunk(rows: chunk) { first, a in
        #expect(first == next && a.rows <= chunk && a.cols == whole.cols)
        next += a.rows
        values += a.values
      }
      #expect(values == whole.values, "\(path) in chunks of \(chunk)")
    }
  }

  @Test("IDX (gzip, with and without a limit), NPY (both byte orders, float32, Fortran order), HDF5 and CSV")
  func formats() throws {
    let train = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    try expectSameAsWhole(train, limit: 25)
    try expectSameAsWhole(train)
    let d = try NPYTests().folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let values: [Double] = (0..<30).map { Double($0) * 0.37 - 4 }  // 10 × 3
    let npy = NPYTests()
    try npy.write(d + "/le.npy", descr: "<f8", shape: [10, 3], payload: values.withUnsafeBytes { Data($0) })
    try npy.write(d + "/be.npy", descr: ">f8", shape: [10, 3], payload: Data(values.flatMap { withUnsafeBytes(of: $0.bitPattern.bigEndian) { Array($0) } }))
    try npy.write(d + "/f4.npy", descr: "<f4", shape: [10, 3], payload: values.map { Float($0) }.withUnsafeBytes { Data($0) }, version: 2)
    var fortran = [Double](repeating: 0, count: 30)
    for i in 0..<10 { for k in 0..<3 { fortran[i + 10 * k] = values[i * 3 + k] } }
    try npy.write(d + "/f.npy", descr: "<f8", shape: [10, 3], payload: fortran.withUnsafeBytes { Data($0) }, fortran: true)
    for name in ["le", "be", "f4", "f"] {
      try expectSameAsWhole(d + "/\(name).npy")
      try expectSameAsWhole(d + "/\(name).npy", limit: 4)
    }
    do {
      let h5 = try H5File.create(d + "/x.h5")
      let x = try h5.createDataset("/x", shape: [10, 3], type: .float64)
      try values.withUnsafeBufferPointer { try x.write($0, start: [0, 0], count: [10, 3]) }
    }
    try expectSameAsWhole(d + "/x.h5:/x")
    try expectSameAsWhole(d + "/x.h5:/x", limit: 6)
    try "a,b,label\n1,2,0\n3,4,1\r\n5,6,0\n".write(toFile: d + "/x.csv", atomically: true, encoding: .utf8)
    try expectSameAsWhole(d + "/x.csv", labelColumn: 2)
  }

  @Test("a truncated NPY fails when opened; a NaN is named by its row in the whole file")
  func faults() throws {
    let d = try NPYTests().folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    var values: [Double] = (0..<30).map(Double.init)
    let npy = NPYTests()
    try npy.write(d + "/short.npy", descr: "<f8", shape: [10, 3], payload: values.prefix(20).withUnsafeBytes { Data($0) })
    #expect(throws: StorageError.self) { try SampleStream(d + "/short.npy", limit: nil, labelColumn: nil) }
    values[7 * 3 + 1] = .nan
    try npy.write(d + "/nan.npy", descr: "<f8", shape: [10, 3], payload: values.withUnsafeBytes { Data($0) })
    let s = try SampleStream(d + "/nan.npy", limit: nil, labelColumn: nil)
    do {
      try s.forEachChunk(rows: 3) { _, _ in }
      Issue.record("a NaN was not reported")
    } catch let e as StorageError {
      #expect(e.description.contains("NaN at row 7, column 1"), "\(e)")
    }
  }

  @Test("a checksum given in parts equals the checksum of the whole")
  func streamingChecksum() {
    let values: [Double] = (0..<1001).map { sin(Double($0)) }
    for cut in [0, 1, 500, 1001] {
      var s = StreamingChecksum64()
      s.add(Array(values[..<cut]))
      s.add(Array(values[cut...]))
      #expect(s.finish() == checksum64(values))
    }
    #expect(StreamingChecksum64().finish() == checksum64([Double]()))
  }
}
