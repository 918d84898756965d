import GramData
import GramStorage

/// The checks of a kernel file's recorded identity against what it stores: the spec
/// attributes (`network`, `input_shape`, `preprocess`, `gram_precision`, `/params`) and the
/// training data's checksum must give its `train_fingerprint`, and its training statistics
/// (`/preprocess/*`) must be those of its training data (recorded in `preprocess_checksum`,
/// recomputed from the data where it is read). What `build --against`, `verify` and `predict`
/// rely on: a modified attribute is refused, never computed with.
public enum KernelIdentity {
  /// Fails when `file`'s spec attributes and recorded training data (`train_data_checksum`, `N`,
  /// `features`) do not give its recorded `train_fingerprint`. Files without them (other
  /// tools', releases before 0.2) are not checked.
  public static func checkTrainFingerprint(_ file: H5File, spec: KernelSpec) throws {
    guard case .string(let recorded)? = try file.attribute("train_fingerprint"),
          case .string(let data)? = try file.attribute("train_data_checksum"), let checksum = UInt64(data, radix: 16),
          case .int(let n)? = try file.attribute("N"), case .int(let features)? = try file.attribute("features") else { return }
    let now = trainFingerprint(dataChecksum: checksum, rows: Int(n), cols: Int(features), spec: spec)
    guard now == recorded else {
      throw StorageError(file.path, "its network, input_shape, preprocess and gram_precision attributes (or its weights) and train_data_checksum do not give its recorded train_fingerprint \(recorded) (they give \(now)): the file was modified since its build; rebuild it")
    }
  }

  /// Fails when the stored statistics are not `recomputed` (those of the training data, bit for
  /// bit; a `zca` whitening matrix within `zcaTolerance`, since LAPACK's last bits may differ
  /// between CPU kinds), naming the dataset that differs.
  public static func checkStatistics(_ stored: PreprocessStatistics?, recomputed: PreprocessStatistics?, path: String, data: String) throws {
    guard let stored else { return }
    guard let recomputed else {
      throw StorageError(path, "stores training statistics (\(KernelFileLayout.preprocessMean)) although its preprocess needs none: the file was modified; rebuild it")
    }
    func same(_ a: [Double], _ b: [Double]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern } }
    let pairs = zip(stored.stored, recomputed.stored)
    guard stored.stored.map(\.name) == recomputed.stored.map(\.name) else {
      throw StorageError(path, "stores other training statistics than its preprocess makes: the file was modified since its build; rebuild it")
    }
    for (a, b) in pairs where !(a.name == KernelFileLayout.preprocessZCA ? sameWhitening(a.values, b.values) : same(a.values, b.values)) {
      throw StorageError(path, "\(a.name) is not the statistics of its training data \(data) (recomputed): the file was modified since its build; rebuild it")
    }
  }

  /// `predict`'s check of the kernel file it reads the cross kernel from: its own identity
  /// (spec attributes against `train_fingerprint`, statistics against `preprocess_checksum`),
  /// and its statistics against those of the training kernel `solution` was solved on
  /// (`kernel_preprocess_checksum`, when the solution records it).
  public static func checkPredictionKernel(_ path: String, solution: String) throws {
    let file = try H5File.open(path)
    if try file.attribute("train_fingerprint") != nil {
      let spec: KernelSpec
      do { spec = try KernelSpec.read(from: file) } catch let e as StorageError { throw e } catch {
        throw StorageError(path, "kernel spec attributes: \(error)")
      }
      try checkTrainFingerprint(file, spec: spec)
    }
    let own = try file.checkedPreprocessChecksum()
    let solved = try H5File.open(solution)
    if case .string(let expected)? = try solved.attribute("kernel_preprocess_checksum"), own != expected {
      throw StorageError(path, "its training statistics (\(KernelFileLayout.preprocessMean), checksum \(own ?? "absent")) are not those of the training kernel \(solution) was solved on (\(expected)): it was built against a modified training kernel; build it again against the original")
    }
  }
}
