import CZlib
import Foundation

/// Reader for the IDX format of the MNIST family, plain or gzip-compressed (read through zlib's
/// `gzread`, which passes uncompressed files through unchanged).
///
/// Layout: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
/// 0x0E f64), the number of dimensions, each dimension as a big-endian `UInt32`, then the
/// values, big-endian, row-major.
public enum IDX {
  /// An IDX array: its shape, values as `Double`, and whether the element type is an integer.
  public struct Array: Sendable {
    public let shape: [Int]
    public let values: [Double]
    public let isInteger: Bool
  }

  /// Reads the whole file. `limit` keeps only the first `limit` entries of the first axis.
  public static func read(_ path: String, limit: Int? = nil) throws -> Array {
    let reader = try Reader(path, limit: limit)
    let count = try Self.product(reader.shape, path: path)
    // In chunks that grow only as data arrives: a header that declares more values than the
    // file holds fails at the end of the data, never by allocating what it declares.
    var values: [Double] = []
    while values.count < count { values += try reader.next(min(count - values.count, (64 << 20) / reader.width)) }
    try reader.finish()
    return Array(shape: reader.shape, values: values, isInteger: reader.isInteger)
  }

  /// An IDX file read in order, a run of values at a time (through zlib: plain or gzip).
  public final class Reader {
    public let path: String
    /// The shape, its first axis cut to the limit.
    public let shape: [Int]
    public let isInteger: Bool
    let limited: Bool
    let width: Int
    let kind: UInt8
    let file: gzFile
    var closed = false
    var remaining: Int

    public init(_ path: String, limit: Int? = nil) throws {
      self.path = path
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw StorageError(path, "no such file") }
      if isDirectory.boolValue { throw StorageError(path, "is a directory, not an IDX file") }
      guard let file = gzopen(path, "rb") else { throw StorageError(path, "cannot open (permission denied?)") }
      self.file = file
      do {
        let header = try Self.header(file, path: path, limit: limit)
        (width, kind, shape, isInteger, limited, remaining) = (header.width, header.kind, header.shape, header.kind <= 0x0C, header.cut, header.count)
      } catch {
        gzclose_r(file)
        throw error
      }
    }

    static func header(_ file: gzFile, path: String, limit: Int?) throws -> (width: Int, kind: UInt8, shape: [Int], cut: Bool, count: Int) {
      func readExactly(_ count: Int, _ what: String) throws -> [UInt8] { try IDX.readExactly(file, count, what, path: path) }
      let magic = try readExactly(4, "the header")
      guard magic[0] == 0, magic[1] == 0 else { throw StorageError(path, "not an IDX file (bad magic \(magic.map { String(format: "%02x", $0) }.joined()))") }
      let layout: (Int, UInt8)
      switch magic[2] {
      case 0x08, 0x09: layout = (1, magic[2])
      case 0x0B: layout = (2, magic[2])
      case 0x0C, 0x0D: layout = (4, magic[2])
      case 0x0E: layout = (8, magic[2])
      default: throw StorageError(path, "not an IDX file (unknown type byte 0x\(String(format: "%02x", magic[2])))")
      }
      let rank = Int(magic[3])
      guard rank >= 1 else { throw StorageError(path, "IDX file has no dimensions") }
      let dimBytes = try readExactly(4 * rank, "the dimensions")
      var shape = (0..<rank).map { k in dimBytes[4 * k ..< 4 * k + 4].reduce(0) { $0 << 8 | Int($1) } }
      var cut = false
      if let limit {
        guard limit >= 1 else { throw StorageError(path, "limit must be at least 1 (got \(limit))") }
        cut = limit < shape[0]
        shape[0] = min(shape[0], limit)
      }
      let count = try IDX.product(shape, path: path)
      guard !count.multipliedReportingOverflow(by: layout.0).overflow else { throw StorageError(path, "IDX header declares \(shape) values: too many") }
      // What the file can hold: its size, or for gzip its size times deflate's largest ratio
      // (1032:1). A header declaring more is refused now, before a reader sizes a buffer (a
      // row, a chunk) by it.
      var st = stat()
      if stat(path, &st) == 0 {
        let size = Int(st.st_size)
        let compressed = gzdirect(file) == 0
        let (capacity, overflow) = size.multipliedReportingOverflow(by: compressed ? 1032 : 1)
        let declared = count * layout.0
        if !overflow && declared > capacity {
          throw StorageError(path, "IDX header declares \(shape) values (\(declared) bytes), more than this \(compressed ? "gzip " : "")file of \(size) bytes can hold")
        }
      }
      return (layout.0, layout.1, shape, cut, count)
    }

    deinit { if !closed { gzclose_r(file) } }

    func readExactly(_ count: Int, _ what: String) throws -> [UInt8] { try IDX.readExactly(file, count, what, path: path) }

    /// The next `count` values (at most what is left), converted to `Double`.
    public func next(_ count: Int) throws -> [Double] {
      let n = min(count, remaining)
      let raw = try readExactly(n * width, "the data (\(shape) values)")
      remaining -= n
      var values = [Double](repeating: 0, count: n)
      raw.withUnsafeBytes { p in
        for k in 0..<n {
          let o = k * width
          switch kind {
          case 0x08: values[k] = Double(p[o])
          case 0x09: values[k] = Double(Int8(bitPattern: p[o]))
          case 0x0B: values[k] = Double(Int16(bitPattern: UInt16(p[o]) << 8 | UInt16(p[o + 1])))
          case 0x0C: values[k] = Double(Int32(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt32.self).bigEndian))
          case 0x0D: values[k] = Double(Float(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt32.self).bigEndian))
          default: values[k] = Double(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt64.self).bigEndian)
          }
        }
      }
      return values
    }

    /// Closes the file; after reading everything (no limit), checks the gzip trailer, so a
    /// truncated or corrupt stream is caught.
    public func finish() throws {
      guard !closed else { return }
      if !limited && remaining == 0 {
        var probe = [UInt8](repeating: 0, count: 1)
        let n = gzread(file, &probe, 1)
        if n < 0 {
          var code: Int32 = 0
          throw StorageError(path, "corrupt or truncated gzip data (\(gzerror(file, &code).map { String(cString: $0) } ?? ""))")
        }
      }
      closed = true
      let status = gzclose_r(file)
      if status != Z_OK && status != Z_BUF_ERROR {
        throw StorageError(path, "corrupt gzip stream (zlib status \(status))")
      }
    }
  }

  /// Exactly `count` bytes from `file`, or an error naming `what` was being read.
  static func readExactly(_ file: gzFile, _ count: Int, _ what: String, path: String) throws -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
      let chunk = Int32(min(count - done, 1 << 30))
      let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress! + done, UInt32(chunk)) }
      if n < 0 {
        var code: Int32 = 0
        let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
        throw StorageError(path, "corrupt or truncated gzip data (\(message)) while reading \(what)")
      }
      if n == 0 {
        var code: Int32 = 0
        let message = gzerror(file, &code).map { String(cString: $0) } ?? ""
        let reason = code != Z_OK && !message.isEmpty ? " (\(message))" : ""
        throw StorageError(path, "truncated: file ends while reading \(what)\(reason)")
      }
      done += Int(n)
    }
    return buffer
  }

  /// The shape from the header alone.
  public static func shape(_ path: String) throws -> [Int] {
    guard FileManager.default.fileExists(atPath: path) else { throw StorageError(path, "no such file") }
    guard let file = gzopen(path, "rb") else { throw StorageError(path, "cannot open") }
    defer { gzclose_r(file) }
    var head = [UInt8](repeating: 0, count: 4)
    guard gzread(file, &head, 4) == 4, head[0] == 0, head[1] == 0, head[3] >= 1 else { throw StorageError(path, "not an IDX file (bad magic)") }
    var dims = [UInt8](repeating: 0, count: 4 * Int(head[3]))
    guard gzread(file, &dims, UInt32(dims.count)) == Int32(dims.count) else { throw StorageError(path, "truncated IDX header") }
    let shape = (0..<Int(head[3])).map { k in dims[4 * k ..< 4 * k + 4].reduce(0) { $0 << 8 | Int($1) } }
    _ = try product(shape, path: path)
    return shape
  }

  /// The number of values a shape declares, or an error when it overflows.
  static func product(_ shape: [Int], path: String) throws -> Int {
    var count = 1
    for d in shape {
      let (p, overflow) = count.multipliedReportingOverflow(by: d)
      guard !overflow, p <= 1 << 48 else { throw StorageError(path, "IDX header declares \(shape) values: too many") }
      count = p
    }
    return count
  }

  /// Reads samples: the first axis is the sample, the others are flattened into features.
  public static func readMatrix(_ path: String, limit: Int? = nil) throws -> (DenseArray, isInteger: Bool) {
    let a = try read(path, limit: limit)
    guard a.shape.count >= 2 else { throw StorageError(path, "expected samples with features (≥ 2 dimensions), got shape \(a.shape)") }
    let rows = a.shape[0], cols = a.shape.dropFirst().reduce(1, *)
    return (DenseArray(rows: rows, cols: cols, values: a.values, sampleShape: DenseArray.sampleShape(ofArray: a.shape)), a.isInteger)
  }

  /// Reads labels: a 1-D integer array.
  public static func readLabels(_ path: String, limit: Int? = nil) throws -> [Int64] {
    let a = try read(path, limit: limit)
    guard a.shape.count == 1, a.isInteger else { throw StorageError(path, "expected 1-D integer labels, got shape \(a.shape)") }
    return a.values.map { Int64($0) }
  }
}
