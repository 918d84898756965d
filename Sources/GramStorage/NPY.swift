import Foundation

/// Reader and writer for NumPy's `.npy` format (versions 1.0, 2.0 and 3.0).
///
/// Layout: the magic `\x93NUMPY`, major and minor version bytes, the header length (2 bytes
/// little-endian in version 1, 4 bytes in versions 2 and 3), then an ASCII Python dict literal
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (N, D), }` padded to 64 bytes, then the data.
public enum NPY {
  /// The parsed header of an `.npy` file.
  public struct Header: Equatable {
    public var descr: String
    public var fortranOrder: Bool
    public var shape: [Int]
  }

  /// Reads a float32 or float64 array whose first axis is the sample and converts it to
  /// `Double`: 2-D (samples × features), 3-D (N×H×W, one channel) or 4-D (NHWC), the sample
  /// shape kept (`DenseArray.sampleShape`).
  public static func readMatrix(_ path: String, shapeOverride: [Int]? = nil) throws -> DenseArray {
    let data = try readFile(path)
    var (header, offset) = try parseHeader(data, path: path)
    if let shapeOverride { header.shape = shapeOverride }
    let (rows, cols) = try matrixShape(header, path: path)
    let (width, bigEndian) = try floatLayout(header.descr, path: path)
    let count = rows * cols
    guard data.count - offset >= count * width else {
      throw StorageError(path, "truncated: shape \(header.shape) needs \(count * width) data bytes, file has \(data.count - offset)")
    }
    var values = decodeFloats(data[(data.startIndex + offset)...], count: count, width: width, bigEndian: bigEndian)
    if header.fortranOrder {  // column-major on disk: back to C order (rows of samples)
      var transposed = values
      let dims = header.shape
      // Fortran strides of every axis; walk each sample's values in C order.
      var fStride = [Int](repeating: 1, count: dims.count)
      for k in 1..<dims.count { fStride[k] = fStride[k - 1] * dims[k - 1] }
      var index = [Int](repeating: 0, count: dims.count)
      for c in 0..<(rows * cols) {
        var f = 0
        for k in 0..<dims.count { f += index[k] * fStride[k] }
        transposed[c] = values[f]
        var k = dims.count - 1
        while k >= 0 { index[k] += 1; if index[k] < dims[k] { break }; index[k] = 0; k -= 1 }
      }
      values = transposed
    }
    return DenseArray(rows: rows, cols: cols, values: values, sampleShape: DenseArray.sampleShape(ofArray: header.shape))
  }

  /// `(rows, values per row)` of a samples array: 2-D, 3-D or 4-D, not empty, not overflowing.
  static func matrixShape(_ header: Header, path: String) throws -> (Int, Int) {
    guard (2...4).contains(header.shape.count) else {
      throw StorageError(path, "expected a 2-D (samples × features), 3-D (N×H×W) or 4-D (N×H×W×C) array, got \(header.shape.count)-D shape \(header.shape)")
    }
    let rows = header.shape[0]
    let (cols, overflow) = header.shape.dropFirst().reduce((1, false)) { acc, v in
      let (p, o) = acc.0.multipliedReportingOverflow(by: v)
      return (p, acc.1 || o)
    }
    guard !overflow, rows.multipliedReportingOverflow(by: cols).overflow == false,
          (rows * cols).multipliedReportingOverflow(by: 8).overflow == false else {
      throw StorageError(path, "shape \(header.shape) is too large")
    }
    guard rows > 0, cols > 0 else { throw StorageError(path, "empty array of shape \(header.shape)") }
    return (rows, cols)
  }

  /// `count` float32 or float64 values (`width` 4 or 8) from the start of `data`, as `Double`.
  static func decodeFloats(_ data: Data, count: Int, width: Int, bigEndian: Bool) -> [Double] {
    var values = [Double](repeating: 0, count: count)
    data.withUnsafeBytes { raw in
      let base = raw.baseAddress!
      for k in 0..<count {
        if width == 8 {
          let bits = base.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self)
          values[k] = Double(bitPattern: bigEndian ? bits.byteSwapped : bits)
        } else {
          let bits = base.loadUnaligned(fromByteOffset: k * 4, as: UInt32.self)
          values[k] = Double(Float(bitPattern: bigEndian ? bits.byteSwapped : bits))
        }
      }
    }
    return values
  }

  /// The header of `path` and the offset of its data, reading the header bytes only.
  static func readHeader(_ path: String) throws -> (Header, Int) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw StorageError(path, "no such file") }
    if isDirectory.boolValue { throw StorageError(path, "is a directory, not an NPY file") }
    guard let handle = FileHandle(forReadingAtPath: path) else { throw StorageError(path, "cannot read file (permission denied?)") }
    defer { try? handle.close() }
    let prefix = (try handle.read(upToCount: 12)) ?? Data()
    var length = 0
    if prefix.count >= 10 {
      let fourBytes = prefix[prefix.startIndex + 6] >= 2 && prefix.count >= 12
      let bytes = [UInt8](prefix)
      length = fourBytes ? (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) } : Int(bytes[8]) | Int(bytes[9]) << 8
    }
    // Bounded: a header longer than 16 MiB is refused by the parser as truncated.
    try handle.seek(toOffset: 0)
    let head = (try handle.read(upToCount: 12 + min(length, 16 << 20))) ?? Data()
    return try parseHeader(head, path: path)
  }

  /// Reads a 1-D array of integers (labels): any signed or unsigned integer width.
  public static func readIntegers(_ path: String) throws -> [Int64] {
    let data = try readFile(path)
    let (header, offset) = try parseHeader(data, path: path)
    let count = header.shape.reduce(1, *)
    guard header.shape.count == 1 || (header.shape.count == 2 && header.shape[1] == 1) else {
      throw StorageError(path, "expected a 1-D array of labels, got shape \(header.shape)")
    }
    let descr = header.descr
    guard descr.count >= 3, let width = Int(descr.dropFirst(2)), ["i", "u"].contains(descr.dropFirst().first.map(String.init)),
          [1, 2, 4, 8].contains(width) else {
      throw StorageError(path, "labels must be integers, got dtype '\(Self.printable(descr))'")
    }
    let signed = descr.dropFirst().first == "i"
    let bigEndian = descr.first == ">"
    guard data.count - offset >= count * width else { throw StorageError(path, "truncated label data") }
    return data.withUnsafeBytes { raw -> [Int64] in
      let base = raw.baseAddress! + offset
      return (0..<count).map { k -> Int64 in
        var bits: UInt64 = 0
        for b in 0..<width {
          let byte = UInt64(base.load(fromByteOffset: k * width + (bigEndian ? width - 1 - b : b), as: UInt8.self))
          bits |= byte << (8 * UInt64(b))
        }
        if signed && width < 8 && bits & (1 << (8 * UInt64(width) - 1)) != 0 { bits |= ~0 << (8 * UInt64(width)) }
        return Int64(bitPattern: bits)
      }
    }
  }

  /// Writes a 2-D little-endian float64 array in format version 1.0.
  public static func write(_ array: DenseArray, to path: String) throws {
    var header = "{'descr': '<f8', 'fortran_order': False, 'shape': (\(array.rows), \(array.cols)), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    let length = UInt16(header.utf8.count)
    bytes += [UInt8(length & 0xff), UInt8(length >> 8)] + Array(header.utf8)
    var data = Data(bytes)
    array.values.withUnsafeBytes { data.append(contentsOf: $0) }
    do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) }
    catch { throw StorageError(path, "cannot write: \(error.localizedDescription)") }
  }

  // MARK: Header parsing

  public static func readFile(_ path: String) throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw StorageError(path, "no such file") }
    if isDirectory.boolValue { throw StorageError(path, "is a directory, not an NPY file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw StorageError(path, "cannot read file (permission denied?)") }
    return data
  }

  /// Parses the header; returns it and the offset of the first data byte.
  public static func parseHeader(_ data: Data, path: String) throws -> (Header, Int) {
    let bytes = [UInt8](data.prefix(12))
    guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
      throw StorageError(path, "not an NPY file (bad magic)")
    }
    let major = bytes[6]
    let lengthBytes: Int
    switch major {
    case 1: lengthBytes = 2
    case 2, 3: lengthBytes = 4
    default: throw StorageError(path, "unsupported NPY format version \(major).\(bytes[7])")
    }
    guard bytes.count >= 8 + lengthBytes else { throw StorageError(path, "truncated NPY header") }
    var length = 0
    for k in 0..<lengthBytes { length |= Int(bytes[8 + k]) << (8 * k) }
    let start = 8 + lengthBytes
    guard data.count >= start + length else { throw StorageError(path, "truncated NPY header") }
    let encoding: String.Encoding = major == 3 ? .utf8 : .isoLatin1
    guard let text = String(data: data.subdata(in: start ..< start + length), encoding: encoding) else {
      throw StorageError(path, "unreadable NPY header")
    }
    var parser = DictLiteralParser(text: text)
    guard let dict = try? parser.parseDict() else { throw StorageError(path, "malformed NPY header: \(Self.printable(text))") }
    guard case .string(let descr)? = dict["descr"] else { throw StorageError(path, "NPY header has no 'descr' string (structured dtypes are not supported)") }
    guard case .bool(let fortran)? = dict["fortran_order"] else { throw StorageError(path, "NPY header has no 'fortran_order'") }
    guard case .tuple(let shape)? = dict["shape"] else { throw StorageError(path, "NPY header has no 'shape'") }
    return (Header(descr: descr, fortranOrder: fortran, shape: shape), start + length)
  }

  /// `(bytes per value, big-endian)` of a float dtype, or a clear error for any other dtype.
  static func floatLayout(_ descr: String, path: String) throws -> (Int, Bool) {
    switch descr {
    case "<f8", "=f8": return (8, false)
    case ">f8": return (8, true)
    case "<f4", "=f4": return (4, false)
    case ">f4": return (4, true)
    default: throw StorageError(path, "unsupported dtype '\(Self.printable(descr))': expected float32 or float64")
    }
  }
}

/// The subset of Python literal syntax used by NPY headers: a dict of string keys whose values
/// are strings, `True`/`False`, or tuples of integers.
struct DictLiteralParser {
  enum Value: Equatable { case string(String), bool(Bool), tuple([Int]) }
  struct Failure: Error {}

  private let chars: [Character]
  private var index = 0

  init(text: String) { chars = Array(text) }

  mutating func parseDict() throws -> [String: Value] {
    try expect("{")
    var result: [String: Value] = [:]
    while true {
      skipSpace()
      if peek() == "}" { index += 1; break }
      let key = try parseString()
      try expect(":")
      result[key] = try parseValue()
      skipSpace()
      if peek() == "," { index += 1; continue }
      try expect("}")
      break
    }
    return result
  }

  private mutating func parseValue() throws -> Value {
    skipSpace()
    switch peek() {
    case "'", "\"": return .string(try parseString())
    case "(":
      index += 1
      var items: [Int] = []
      while true {
        skipSpace()
        if peek() == ")" { index += 1; return .tuple(items) }
        var digits = ""
        while let c = peek(), c.isNumber { digits.append(c); index += 1 }
        if peek() == "L" { index += 1 }
        guard let n = Int(digits) else { throw Failure() }
        items.append(n)
        skipSpace()
        if peek() == "," { index += 1 } else if peek() != ")" { throw Failure() }
      }
    default:
      for (word, value) in [("True", true), ("False", false)] where chars[index...].starts(with: word) {
        index += word.count
        return .bool(value)
      }
      throw Failure()
    }
  }

  private mutating func parseString() throws -> String {
    skipSpace()
    guard let quote = peek(), quote == "'" || quote == "\"" else { throw Failure() }
    index += 1
    var s = ""
    while let c = peek(), c != quote { s.append(c); index += 1 }
    try expect(quote)
    return s
  }

  private mutating func expect(_ c: Character) throws {
    skipSpace()
    guard peek() == c else { throw Failure() }
    index += 1
  }

  private mutating func skipSpace() { while let c = peek(), c.isWhitespace { index += 1 } }
  private func peek() -> Character? { index < chars.count ? chars[index] : nil }
}

extension NPY {
  /// Header text for a one-line message: control characters (newlines included) escaped, at
  /// most 120 characters.
  static func printable(_ text: String) -> String {
    var out = ""
    for scalar in text.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars {
      out += scalar.properties.generalCategory == .control ? String(format: "\\x%02x", scalar.value & 0xff) : String(scalar)
      if out.count >= 120 { return out + "…" }
    }
    return out
  }
}
