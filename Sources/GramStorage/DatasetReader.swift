import Foundation

/// Picks the reader for a dataset path:
/// - `file.h5:/path` (or `.hdf5:`): an HDF5 dataset;
/// - `*.npy`: NumPy;
/// - `*.csv`: comma-separated numbers;
/// - anything else (`*-ubyte`, `*.idx*`, `*.gz`): IDX, plain or gzip.
public enum DatasetReader {
  /// `(samples, stored as integers, labels from a CSV label column)`.
  public static func readSamples(_ path: String, limit: Int?, labelColumn: Int?) throws -> (DenseArray, Bool, [Int64]?) {
    if labelColumn != nil && !path.lowercased().hasSuffix(".csv") {
      throw StorageError(path, "a label column applies to CSV files only")
    }
    if let (file, dataset) = hdf5Location(path) {
      let (array, isInteger) = try HDF5Dataset.readMatrix(file, dataset, limit: limit)
      return (array, isInteger, nil)
    }
    switch URL(fileURLWithPath: path).pathExtension.lowercased() {
    case "npy":
      let a = try NPY.readMatrix(path)
      return (limited(a, limit), false, nil)
    case "csv":
      let (a, labels) = try CSV.read(path, limit: limit, labelColumn: labelColumn)
      return (a, false, labels)
    default:
      try refuseBareHDF5(path)
      let (a, isInteger) = try IDX.readMatrix(path, limit: limit)
      return (a, isInteger, nil)
    }
  }

  /// Labels from an NPY, IDX, HDF5 or one-column CSV file.
  public static func readLabels(_ path: String, limit: Int?) throws -> [Int64] {
    let labels: [Int64]
    if let (file, dataset) = hdf5Location(path) {
      labels = try HDF5Dataset.readLabels(file, dataset)
    } else {
      switch URL(fileURLWithPath: path).pathExtension.lowercased() {
      case "npy": labels = try NPY.readIntegers(path)
      case "csv": labels = try CSV.readLabels(path)
      default:
        try refuseBareHDF5(path)
        return try IDX.readLabels(path, limit: limit)
      }
    }
    return limit.map { Array(labels.prefix($0)) } ?? labels
  }

  /// An HDF5 file named without its dataset would be read as IDX and reported as a bad one: say
  /// what it is instead.
  static func refuseBareHDF5(_ path: String) throws {
    guard let h = FileHandle(forReadingAtPath: path) else { return }
    defer { try? h.close() }
    let magic = (try? h.read(upToCount: 8)) ?? Data()
    if magic == Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]) {
      throw StorageError(path, "is an HDF5 file: name the dataset too, as \(path):/dataset")
    }
  }

  /// Splits `file.h5:/dataset` into its parts.
  static func hdf5Location(_ path: String) -> (String, String)? {
    for ext in [".h5:", ".hdf5:", ".he5:"] {
      if let r = path.range(of: ext) {
        return (String(path[..<r.lowerBound]) + ext.dropLast(), String(path[r.upperBound...]))
      }
    }
    return nil
  }

  static func limited(_ a: DenseArray, _ limit: Int?) -> DenseArray {
    guard let limit, limit < a.rows else { return a }
    return DenseArray(rows: limit, cols: a.cols, values: Array(a.values.prefix(limit * a.cols)), sampleShape: a.sampleShape)
  }
}

/// Samples and labels stored as datasets of an HDF5 file.
enum HDF5Dataset {
  static func readMatrix(_ file: String, _ name: String, limit: Int?) throws -> (DenseArray, Bool) {
    let f = try H5File.open(file)
    let d = try f.dataset(name.hasPrefix("/") ? name : "/" + name)
    let location = "\(file):\(name)"
    guard d.shape.count >= 2 else { throw StorageError(location, "expected samples with features (≥ 2 dimensions), got shape \(d.shape)") }
    guard d.scalarType != nil || d.isInteger else { throw StorageError(location, "dataset is not numeric") }
    let rows = min(d.shape[0], limit ?? d.shape[0]), cols = d.shape.dropFirst().reduce(1, *)
    var values = [Double](repeating: 0, count: rows * cols)
    try values.withUnsafeMutableBufferPointer {
      try d.read(into: $0, start: d.shape.map { _ in 0 }, count: [rows] + d.shape.dropFirst())
    }
    return (DenseArray(rows: rows, cols: cols, values: values, sampleShape: DenseArray.sampleShape(ofArray: d.shape)), d.isInteger)
  }

  static func readLabels(_ file: String, _ name: String) throws -> [Int64] {
    let f = try H5File.open(file)
    let d = try f.dataset(name.hasPrefix("/") ? name : "/" + name)
    guard d.shape.count == 1, d.isInteger else { throw StorageError("\(file):\(name)", "expected 1-D integer labels, got shape \(d.shape)") }
    return try d.readAllInt64()
  }
}

/// Comma-separated numbers, one sample per line (LF or CRLF line ends, a UTF-8 byte-order mark,
/// numbers optionally in double quotes). A first line none of whose fields is a number is a
/// header; a first line with some numbers and some not is an error (a typo, not a header).
/// Every line must have the same number of fields.
enum CSV {
  /// A field's text without surrounding blanks and double quotes.
  static func unquoted(_ field: Substring) -> String {
    var f = field.trimmingCharacters(in: .whitespaces)
    if f.count >= 2, f.hasPrefix("\""), f.hasSuffix("\"") { f = String(f.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces) }
    return f
  }

  static func read(_ path: String, limit: Int?, labelColumn: Int?) throws -> (DenseArray, [Int64]?) {
    var text = try contents(path)
    if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
    var values: [Double] = []
    var labels: [Int64] = []
    var cols = -1, rows = 0
    // Character.isNewline covers "\r\n", which Swift keeps as one Character.
    for (lineIndex, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
      if trimmed.isEmpty { continue }
      if let limit, rows >= limit { break }
      let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false).map(unquoted)
      let numbers = fields.map { Double($0) }
      if numbers.contains(where: { $0 == nil }) {
        if rows == 0 && cols < 0 && numbers.allSatisfy({ $0 == nil }) { cols = fields.count; continue }  // header
        if rows == 0 && cols < 0 {
          throw StorageError(path, "line \(lineIndex + 1): not a number: '\(fields[numbers.firstIndex { $0 == nil }!])' (a header line has no numbers; this one mixes both)")
        }
        throw StorageError(path, "line \(lineIndex + 1): not a number: '\(fields[numbers.firstIndex { $0 == nil }!])'")
      }
      if cols >= 0 && fields.count != cols {
        throw StorageError(path, "line \(lineIndex + 1) has \(fields.count) fields, expected \(cols) (ragged rows)")
      }
      cols = fields.count
      if let c = labelColumn {
        guard c >= 0 && c < fields.count else { throw StorageError(path, "label column \(c) does not exist (\(fields.count) columns)") }
        let v = numbers[c]!
        guard v == v.rounded() else { throw StorageError(path, "line \(lineIndex + 1): label '\(fields[c])' is not an integer") }
        labels.append(Int64(v))
        values += numbers.enumerated().filter { $0.offset != c }.map { $0.element! }
      } else {
        values += numbers.map { $0! }
      }
      rows += 1
    }
    guard rows > 0 else { throw StorageError(path, "no data rows") }
    let featureCount = labelColumn == nil ? cols : cols - 1
    guard featureCount > 0 else { throw StorageError(path, "no feature columns") }
    return (DenseArray(rows: rows, cols: featureCount, values: values), labelColumn == nil ? nil : labels)
  }

  static func readLabels(_ path: String) throws -> [Int64] {
    let (a, _) = try read(path, limit: nil, labelColumn: nil)
    guard a.cols == 1 else { throw StorageError(path, "expected one column of labels, got \(a.cols)") }
    return try a.values.enumerated().map { (i, v) in
      guard v == v.rounded() else { throw StorageError(path, "label \(i) ('\(v)') is not an integer") }
      return Int64(v)
    }
  }

  static func contents(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw StorageError(path, "no such file") }
    if isDirectory.boolValue { throw StorageError(path, "is a directory, not a CSV file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw StorageError(path, "cannot read file") }
    guard let s = String(data: data, encoding: .utf8) else { throw StorageError(path, "not a text file") }
    return s
  }
}

extension DatasetReader {
  /// `(rows, features)` of a samples file, reading headers only where the format allows.
  public static func shape(_ path: String, labelColumn: Int? = nil) throws -> (Int, Int) {
    let (rows, sample) = try sampleShape(path, labelColumn: labelColumn)
    return (rows, sample.reduce(1, *))
  }

  /// The sample count and the shape of one sample (`DenseArray.sampleShape(ofArray:)`), from
  /// the file's header where it has one.
  public static func sampleShape(_ path: String, labelColumn: Int? = nil) throws -> (Int, [Int]) {
    if let (file, dataset) = hdf5Location(path) {
      let d = try H5File.open(file).dataset(dataset.hasPrefix("/") ? dataset : "/" + dataset)
      guard d.shape.count >= 2 else { throw StorageError(path, "expected samples with features, got shape \(d.shape)") }
      return (d.shape[0], DenseArray.sampleShape(ofArray: d.shape))
    }
    switch URL(fileURLWithPath: path).pathExtension.lowercased() {
    case "npy":
      let (h, _) = try NPY.parseHeader(NPY.readFile(path), path: path)
      guard (2...4).contains(h.shape.count) else { throw StorageError(path, "expected a 2-D, 3-D or 4-D array, got shape \(h.shape)") }
      return (h.shape[0], DenseArray.sampleShape(ofArray: h.shape))
    case "csv":
      let (a, _) = try CSV.read(path, limit: nil, labelColumn: labelColumn)
      return (a.rows, [a.cols])
    default:
      try refuseBareHDF5(path)
      let s = try IDX.shape(path)
      guard s.count >= 2 else { throw StorageError(path, "expected samples with features, got shape \(s)") }
      return (s[0], DenseArray.sampleShape(ofArray: s))
    }
  }
}
