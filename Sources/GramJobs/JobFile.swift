import Foundation
import GramNetwork
import GramStorage
@preconcurrency import TOMLKit

/// A declarative job file (`jobs/*.toml`), parsed with TOMLKit.
///
/// ```toml
/// [data]    train, train_labels, train_label_column, train_limit,
///           test, test_labels, test_label_column, test_limit, preprocess, zca_strength, augment,
///           input_shape
/// [kernel]  parameterization, gram_precision, and one of
///           [[kernel.layers]] tables (type = "dense" | "conv" | "avg_pool" | … , see `Network`),
///           preset (a named network: myrtle5, myrtle7, myrtle10),
///           or the fully-connected shorthand: architecture, depth, activation, leaky_slope,
///           W_std, b_std, width, readout_width;
///           empirical, seed, params (the empirical kernels of one concrete network)
/// [build]   tile, dtype, out, checkpoints, keep_checkpoints
/// ```
/// Relative paths are relative to the job file's folder. Every key has a command-line flag of
/// the same name (`train_limit` → `--train-limit`) that overrides it. Unknown keys, wrong
/// types and missing required keys are errors naming the file and the key.
public struct JobFile: Sendable {
  /// Every key, by section, with its TOML type.
  public static let schema: [String: [String: KeyType]] = [
    "data": ["train": .string, "train_labels": .string, "train_label_column": .int, "train_limit": .int,
             "test": .string, "test_labels": .string, "test_label_column": .int, "test_limit": .int,
             "preprocess": .string, "zca_strength": .double, "augment": .string, "input_shape": .ints],
    "kernel": ["architecture": .string, "depth": .int, "activation": .string, "leaky_slope": .double,
               "W_std": .double, "b_std": .double, "parameterization": .string, "width": .int,
               "gram_precision": .string, "compute_precision": .string, "layers": .layers, "preset": .string, "readout_width": .int,
               "empirical": .bool, "seed": .int, "params": .string],
    "build": ["tile": .int, "dtype": .string, "out": .string, "checkpoints": .string, "keep_checkpoints": .bool, "kernels": .string, "layout": .string],
  ]
  /// Keys holding paths (resolved against the job file's folder).
  static let pathKeys: Set<String> = ["train", "train_labels", "test", "test_labels", "out", "checkpoints", "params"]

  public let path: String
  /// Values by key (keys are unique across sections), paths already resolved.
  public private(set) var values: [String: Value] = [:]

  /// The type a key takes.
  public enum KeyType: Sendable { case string, int, double, bool, ints, layers }

  public enum Value: Sendable, Equatable {
    case string(String), int(Int), double(Double), bool(Bool), ints([Int])
    /// `[[kernel.layers]]`: one table per layer, in order.
    case layers([[String: SpecValue]])
  }

  /// Inputs on which the TOML parser (toml++ inside TOMLKit) stops the process on an internal
  /// assertion instead of reporting an error, found by `Tests/interop/test_fuzz.py`: a table
  /// header whose name does not start with a key character, and NUL bytes. Refused here with
  /// the line, like any other syntax error.
  static func refuseParserTraps(_ text: String, path: String) throws {
    if text.utf8.contains(0) { throw StorageError(path, "not valid TOML: a NUL byte") }
    var depth = 0  // brackets open in a multi-line value: a line starting with "[" there is not a header
    for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
      var rest = line.drop { $0 == " " || $0 == "\t" }
      if depth == 0 && rest.first == "[" {
        rest = rest.dropFirst()
        if rest.first == "[" { rest = rest.dropFirst() }
        rest = rest.drop { $0 == " " || $0 == "\t" }
        guard let c = rest.first, c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-" || c == "\"" || c == "'") else {
          throw StorageError(path, "not valid TOML: a table header without a name at line \(index + 1)")
        }
      }
      var quote: Character? = nil
      for c in line {
        if let q = quote { if c == q { quote = nil }; continue }
        if c == "#" { break }
        if c == "\"" || c == "'" { quote = c } else if c == "[" { depth += 1 } else if c == "]" { depth = max(0, depth - 1) }
      }
    }
  }

  public init(path: String) throws {
    self.path = path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
      throw StorageError(path, "no such job file")
    }
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
      throw StorageError(path, "cannot read job file")
    }
    try Self.refuseParserTraps(text, path: path)
    let table: TOMLTable
    do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
      throw StorageError(path, "not valid TOML: \(e.description) at line \(e.source.begin.line)")
    }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    for section in table.keys.sorted() {
      guard let keys = Self.schema[section] else {
        throw StorageError(path, "unknown section [\(section)] (valid: \(Self.schema.keys.sorted().map { "[\($0)]" }.joined(separator: ", ")))")
      }
      guard let sub = table[section]?.table else { throw StorageError(path, "'\(section)' must be a table [\(section)]") }
      for key in sub.keys.sorted() {
        guard let type = keys[key] else {
          throw StorageError(path, "unknown key '\(key)' in [\(section)] (valid: \(keys.keys.sorted().joined(separator: ", ")))")
        }
        let raw = sub[key]!
        let value: Value
        switch (type, raw.type) {
        case (.string, TOMLType.string): value = .string(raw.string!)
        case (.int, TOMLType.int): value = .int(raw.int!)
        case (.double, TOMLType.double): value = .double(raw.double!)
        case (.double, TOMLType.int): value = .double(Double(raw.int!))
        case (.bool, TOMLType.bool): value = .bool(raw.bool!)
        case (.double, TOMLType.string) where key == "b_std" && raw.string! == "none": value = .string("none")
        case (.ints, TOMLType.array):
          let items = raw.array!.map { $0.int }
          guard items.allSatisfy({ $0 != nil }) else { throw StorageError(path, "[\(section)] \(key) must be a list of integers") }
          value = .ints(items.map { $0! })
        case (.layers, TOMLType.array):
          var tables: [[String: SpecValue]] = []
          for (k, item) in raw.array!.enumerated() {
            guard let t = item.table else {
              throw StorageError(path, "kernel.layers[\(k)]: must be a table ([[kernel.layers]] with a type key)")
            }
            tables.append(try Self.specTable(t, path: path, position: k))
          }
          value = .layers(tables)
        default:
          let expected: String
          switch type {
          case .int: expected = "an integer"
          case .double: expected = "a number"
          case .bool: expected = "true or false"
          case .string: expected = "a string"
          case .ints: expected = "a list of integers"
          case .layers: expected = "a list of [[kernel.layers]] tables"
          }
          throw StorageError(path, "[\(section)] \(key) must be \(expected), got \(raw.type)")
        }
        if Self.pathKeys.contains(key), case .string(let p) = value {
          values[key] = .string(Self.resolve(p, against: folder))
        } else {
          values[key] = value
        }
      }
    }
  }

  /// A layer table's values as `SpecValue`s (numbers, strings, booleans, lists of them).
  static func specTable(_ table: TOMLTable, path: String, position: Int) throws -> [String: SpecValue] {
    func convert(_ v: TOMLValueConvertible, key: String) throws -> SpecValue {
      switch v.type {
      case .string: return .string(v.string!)
      case .int: return .int(v.int!)
      case .double: return .double(v.double!)
      case .bool: return .bool(v.bool!)
      case .array: return .list(try v.array!.map { try convert($0, key: key) })
      default:
        throw StorageError(path, "kernel.layers[\(position)]: \(key) must be a number, a string, a boolean or a list, got \(v.type)")
      }
    }
    var out: [String: SpecValue] = [:]
    for key in table.keys { out[key] = try convert(table[key]!, key: key) }
    return out
  }

  /// `p` relative to `folder` unless absolute; an HDF5 `file.h5:/dataset` keeps its dataset part.
  static func resolve(_ p: String, against folder: String) -> String {
    if p.hasPrefix("/") { return p }
    let base = folder.hasPrefix("/") ? folder : FileManager.default.currentDirectoryPath + "/" + folder
    return URL(fileURLWithPath: base + "/" + p).standardized.path
  }

  public func string(_ key: String) -> String? { if case .string(let s)? = values[key] { s } else { nil } }
  public func int(_ key: String) -> Int? { if case .int(let i)? = values[key] { i } else { nil } }
  public func double(_ key: String) -> Double? { if case .double(let d)? = values[key] { d } else { nil } }
  public func bool(_ key: String) -> Bool? { if case .bool(let b)? = values[key] { b } else { nil } }
  public func ints(_ key: String) -> [Int]? { if case .ints(let v)? = values[key] { v } else { nil } }
  public var layers: [[String: SpecValue]]? { if case .layers(let v)? = values["layers"] { v } else { nil } }
}
