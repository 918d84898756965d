/// A value of a layer table (from a job file's `[[kernel.layers]]` or from the JSON encoding),
/// and the small JSON reader and canonical writer of those values.
///
/// Canonical JSON: objects with their keys sorted, no whitespace, integers as integers, every
/// other number as Swift's shortest round-trip form (`0.1`, `1.4142135623730951`, `1e-05`),
/// strings with `"`, `\` and control characters escaped. The same network always gives the
/// same bytes, which is what the fingerprint hashes; h5py (`json.loads`) and R (`jsonlite`)
/// read it as plain lists and dictionaries.
public indirect enum SpecValue: Sendable, Equatable {
  case string(String)
  case int(Int)
  case double(Double)
  case bool(Bool)
  case list([SpecValue])
  case table([String: SpecValue])
  case null

  /// What a message calls this kind of value.
  public var kindName: String {
    switch self {
    case .string: "a string"
    case .int: "an integer"
    case .double: "a number"
    case .bool: "a boolean"
    case .list: "a list"
    case .table: "a table"
    case .null: "null"
    }
  }

  /// The canonical JSON text of this value.
  public var json: String {
    var out = ""
    write(into: &out)
    return out
  }

  private func write(into out: inout String) {
    switch self {
    case .string(let s): out += Self.quoted(s)
    case .int(let i): out += String(i)
    case .double(let d):
      precondition(d.isFinite, "SpecValue.json: non-finite number")
      out += "\(d)"
    case .bool(let b): out += b ? "true" : "false"
    case .null: out += "null"
    case .list(let items):
      out += "["
      for (k, item) in items.enumerated() {
        if k > 0 { out += "," }
        item.write(into: &out)
      }
      out += "]"
    case .table(let fields):
      out += "{"
      for (k, key) in fields.keys.sorted().enumerated() {
        if k > 0 { out += "," }
        out += Self.quoted(key) + ":"
        fields[key]!.write(into: &out)
      }
      out += "}"
    }
  }

  static func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      case "\r": out += "\\r"
      default:
        if u.value < 0x20 {
          let hex = String(u.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(u)
        }
      }
    }
    return out + "\""
  }

  /// Parses JSON text (RFC 8259; numbers with a fraction or exponent are `double`, others `int`).
  public init(json text: String) throws {
    var parser = JSONParser(Array(text.utf8))
    parser.skipSpace()
    self = try parser.value(depth: 0)
    parser.skipSpace()
    guard parser.atEnd else { throw parser.error("unexpected text after the JSON value") }
  }
}

/// A JSON text that does not parse: where and why.
public struct JSONError: Error, CustomStringConvertible, Equatable {
  public let description: String
}

private struct JSONParser {
  let bytes: [UInt8]
  var i = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  var atEnd: Bool { i >= bytes.count }

  func error(_ what: String) -> JSONError { JSONError(description: "JSON: \(what) at byte \(i)") }

  mutating func skipSpace() {
    while i < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[i]) { i += 1 }
  }

  mutating func expect(_ literal: String) throws {
    let l = Array(literal.utf8)
    guard i + l.count <= bytes.count, Array(bytes[i..<(i + l.count)]) == l else { throw error("expected \(literal)") }
    i += l.count
  }

  mutating func value(depth: Int) throws -> SpecValue {
    guard depth < 64 else { throw error("nested too deeply") }
    guard i < bytes.count else { throw error("unexpected end") }
    switch bytes[i] {
    case UInt8(ascii: "{"):
      i += 1
      var fields: [String: SpecValue] = [:]
      skipSpace()
      if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .table(fields) }
      while true {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a key") }
        let key = try string()
        skipSpace()
        try expect(":")
        skipSpace()
        guard fields[key] == nil else { throw error("duplicate key \(key)") }
        fields[key] = try value(depth: depth + 1)
        skipSpace()
        guard i < bytes.count else { throw error("unexpected end") }
        if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
        if bytes[i] == UInt8(ascii: "}") { i += 1; return .table(fields) }
        throw error("expected , or }")
      }
    case UInt8(ascii: "["):
      i += 1
      var items: [SpecValue] = []
      skipSpace()
      if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
      while true {
        skipSpace()
        items.append(try value(depth: depth + 1))
        skipSpace()
        guard i < bytes.count else { throw error("unexpected end") }
        if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
        if bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
        throw error("expected , or ]")
      }
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): try expect("true"); return .bool(true)
    case UInt8(ascii: "f"): try expect("false"); return .bool(false)
    case UInt8(ascii: "n"): try expect("null"); return .null
    default: return try number()
    }
  }

  mutating func string() throws -> String {
    i += 1  // opening quote
    var scalars = String.UnicodeScalarView()
    var run: [UInt8] = []
    func flush() { scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars); run.removeAll() }
    while i < bytes.count {
      let b = bytes[i]
      if b == UInt8(ascii: "\"") { i += 1; flush(); return String(scalars) }
      if b < 0x20 { throw error("control character in a string") }
      if b == UInt8(ascii: "\\") {
        flush()
        guard i + 1 < bytes.count else { throw error("unexpected end") }
        let e = bytes[i + 1]
        i += 2
        switch e {
        case UInt8(ascii: "\""): scalars.append("\"")
        case UInt8(ascii: "\\"): scalars.append("\\")
        case UInt8(ascii: "/"): scalars.append("/")
        case UInt8(ascii: "n"): scalars.append("\n")
        case UInt8(ascii: "t"): scalars.append("\t")
        case UInt8(ascii: "r"): scalars.append("\r")
        case UInt8(ascii: "b"): scalars.append("\u{08}")
        case UInt8(ascii: "f"): scalars.append("\u{0c}")
        case UInt8(ascii: "u"):
          guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16),
                let u = Unicode.Scalar(v) else { throw error("bad \\u escape") }
          scalars.append(u)
          i += 4
        default: throw error("bad escape")
        }
        continue
      }
      run.append(b)
      i += 1
    }
    throw error("unterminated string")
  }

  mutating func number() throws -> SpecValue {
    let start = i
    var isInteger = true
    while i < bytes.count {
      let b = bytes[i]
      if (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
        i += 1
      } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
        isInteger = false
        i += 1
      } else {
        break
      }
    }
    let text = String(decoding: bytes[start..<i], as: UTF8.self)
    guard !text.isEmpty else { throw error("unexpected character") }
    if isInteger, let v = Int(text) { return .int(v) }
    guard let d = Double(text), d.isFinite else { throw error("bad number \(text)") }
    return .double(d)
  }
}
