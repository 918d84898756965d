import GramData
import GramKernels
import GramStorage

/// What a kernel file records of its training side, for `build --against`: the spec, the
/// training data's source, size and content checksum, the preprocessing statistics, and the
/// identities (`fingerprint` of the whole file, `train_fingerprint` of the training kernel).
public struct StoredTraining: Sendable {
  public let path: String
  public let spec: KernelSpec
  public let trainCount: Int
  /// The recorded training source (absolute path, limit).
  public let source: DataSource
  /// `checksum64` of the training samples as read (before preprocessing), hex.
  public let dataChecksum: String
  public let fingerprint: String
  public let trainFingerprint: String
  public let dtype: ScalarType
  public let tileSize: Int
  /// The kernels the file holds.
  public let kernels: [String]
  public let statistics: PreprocessStatistics?

  public static func read(_ path: String) throws -> StoredTraining {
    let f = try H5File.open(path)
    func string(_ k: String) throws -> String {
      guard case .string(let s)? = try f.attribute(k) else {
        throw StorageError(path, "records no \(k): not a training kernel file of ntkgram 0.2 or later (rebuild it to build against it)")
      }
      return s
    }
    func int(_ k: String) throws -> Int {
      guard case .int(let i)? = try f.attribute(k) else { throw StorageError(path, "records no \(k): not a kernel file of ntkgram") }
      return Int(i)
    }
    if case .string(let other)? = try f.attribute("against_fingerprint") {
      throw StorageError(path, "is itself a cross kernel (against the training kernel \(other)): give the training kernel file")
    }
    // What the training side was, first: a file without it (another tool's, or an older
    // release's) cannot be built against, whatever else it holds.
    let checksum = try string("train_data_checksum")
    let source = try string("train_source")
    guard !source.isEmpty else { throw StorageError(path, "records no training data source") }
    let spec: KernelSpec
    do { spec = try KernelSpec.read(from: f) } catch {
      throw StorageError(path, "kernel spec attributes: \(error)")
    }
    // The spec attributes must be those the training kernel was built with.
    try KernelIdentity.checkTrainFingerprint(f, spec: spec)
    let limit = try int("train_limit")
    let labelColumn = (try? int("train_label_column")) ?? -1
    guard let dtype = ScalarType(rawValue: try string("dtype")) else { throw StorageError(path, "attribute dtype is not float32 or float64") }
    // The statistics its preprocess uses and no others (`standardize`: mean and std; `zca`:
    // mean and whitening), against the checksum the build recorded (files since it);
    // `checkAgainst` also compares them with those of the training data, recomputed (every file).
    let statistics = try PreprocessStatistics.read(from: f, preprocess: spec.preprocess, features: try int("features"))
    if statistics != nil { _ = try f.checkedPreprocessChecksum() }
    let kernels = (try? string("kernels")).map { $0.split(separator: ",").map(String.init) } ?? KernelFileLayout.kernelNames
    return StoredTraining(path: path, spec: spec, trainCount: try int("N"),
                          source: DataSource(samples: source, limit: limit > 0 ? limit : nil, labelColumn: labelColumn >= 0 ? labelColumn : nil,
                                             augment: spec.augment),
                          dataChecksum: checksum, fingerprint: try string("fingerprint"), trainFingerprint: try string("train_fingerprint"),
                          dtype: dtype, tileSize: try int("tile"), kernels: kernels, statistics: statistics)
  }
}

/// The identity of a training kernel, whatever test set or tiling built it: the training
/// samples as read, the spec. Kernel files record it (`train_fingerprint`), solutions record
/// the one they were solved on, and `predict` refuses a cross kernel of another.
func trainFingerprint(dataChecksum: UInt64, rows: Int, cols: Int, spec: KernelSpec) -> String {
  hex(checksum64([dataChecksum, UInt64(rows), UInt64(cols), checksum64(Array(spec.json.utf8))]))
}

/// The checksum of samples as read (before preprocessing).
func dataChecksum(_ m: Matrix) -> UInt64 {
  dataChecksum(valuesChecksum: checksum64(m.values), rows: m.rows, cols: m.cols)
}

/// `dataChecksum` from the checksum of the values (streamed or whole) and the shape.
func dataChecksum(valuesChecksum: UInt64, rows: Int, cols: Int) -> UInt64 {
  checksum64([valuesChecksum, UInt64(rows), UInt64(cols)])
}
