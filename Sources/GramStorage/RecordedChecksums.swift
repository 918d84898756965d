import Foundation

// What a reader checks of the files it reads, against the checksums they record: a kernel
// file's tiles (`/tiles/checksums`), its labels (`<split>_labels_checksum`), its training
// statistics (`preprocess_checksum`), and a solution's α (`alpha_checksum`). A value changed on
// disk is an error naming the file, the dataset and the place, never a silently wrong result.

/// The remedy for a kernel file whose stored values no longer match their checksums.
public let repairRemedy = "mend it with `ntkgram build <its build command> --repair`"

/// A kernel file's stored tile checksums (`/tiles/checksums`), looked up by tile (the build's
/// `TilePlan` order) and kernel name.
public struct TileChecksums: Sendable {
  public let path: String
  /// The tiles recorded: the full plan's count, or only the test tiles (a cross kernel).
  public let tiles: Int
  let kernels: [String]
  let sums: [UInt64]

  /// The checksums of `file`; nil when it records none (a file written by another tool).
  /// Format 2 and later: `T × K × 2` 32-bit words (high, low); format 1: `T × K` uint64.
  public static func read(_ file: H5File) throws -> TileChecksums? {
    guard file.exists(KernelFileLayout.tileChecksums) else { return nil }
    let d = try file.dataset(KernelFileLayout.tileChecksums)
    var names = KernelFileLayout.kernelNames
    if case .string(let list)? = try d.attribute("kernels") ?? file.attribute("kernels") {
      names = list.split(separator: ",").map(String.init)
    }
    let shape = d.shape
    let sums: [UInt64]
    if shape.count == 3, shape[1] == names.count, shape[2] == 2 {
      let words = try d.readAll(as: UInt32.self)
      sums = (0..<(shape[0] * shape[1])).map { UInt64(words[2 * $0]) << 32 | UInt64(words[2 * $0 + 1]) }
    } else if shape.count == 2, shape[1] == names.count {
      sums = try d.readAllUInt64()
    } else {
      throw StorageError(file.path, "\(KernelFileLayout.tileChecksums) has shape \(shape) for the kernels \(names.joined(separator: ",")) (damaged?); \(repairRemedy)")
    }
    return TileChecksums(path: file.path, tiles: shape[0], kernels: names, sums: sums)
  }

  /// The recorded checksum of `kernel` in tile `index`; nil when the file does not record that kernel.
  public func checksum(tile index: Int, kernel: String) -> UInt64? {
    guard index >= 0, index < tiles, let k = kernels.firstIndex(of: kernel) else { return nil }
    return sums[index * kernels.count + k]
  }

  /// Fails in one line when `checksum` (of `dataset`'s block `tile`, as stored) is not the
  /// recorded one. `index` is the tile's place in the table; `tile` names it in the message.
  public func check(_ checksum: UInt64, index: Int, kernel: String, dataset: String, tile: CustomStringConvertible) throws {
    guard let recorded = self.checksum(tile: index, kernel: kernel) else {
      throw StorageError(path, "\(KernelFileLayout.tileChecksums) records no checksum of \(dataset) for \(tile) (damaged?); \(repairRemedy)")
    }
    guard recorded == checksum else {
      throw StorageError(path, "\(dataset) \(tile) does not match its stored checksum (the file changed since its build); \(repairRemedy)")
    }
  }
}

extension H5File {
  /// The labels `name` (`/train/labels` or `/test/labels`), checked against the checksum the
  /// build recorded (`train_labels_checksum`, `test_labels_checksum`) when there is one.
  public func readCheckedLabels(_ name: String) throws -> [Int64] {
    let labels = try dataset(name).readAllInt64()
    let split = name == KernelFileLayout.testLabels ? "test" : "train"
    if case .string(let recorded)? = try attribute("\(split)_labels_checksum") {
      let now = hex(checksum64(labels))
      guard now == recorded else {
        throw StorageError(path, "\(name) does not match its recorded checksum (\(now), recorded \(recorded)): the labels were modified after the build; \(repairRemedy)")
      }
    }
    return labels
  }
}

/// `checksum64` of a file's training statistics, mean then std (`standardize`) or the whitening
/// matrix (`zca`, passed as `std`: its d² values) (the `preprocess_checksum` attribute of kernel
/// files, `kernel_preprocess_checksum` of solutions), hex.
public func preprocessChecksum(mean: [Double], std: [Double]) -> String {
  hex(checksum64([checksum64(mean), UInt64(mean.count), checksum64(std), UInt64(std.count)]))
}

extension H5File {
  /// The checksum of the training statistics this file stores (`/preprocess/*`); nil without them.
  public func storedPreprocessChecksum() throws -> String? {
    let second = [KernelFileLayout.preprocessStd, KernelFileLayout.preprocessZCA].filter(exists)
    guard exists(KernelFileLayout.preprocessMean), let name = second.first else { return nil }
    guard second.count == 1 else {
      throw StorageError(path, "stores both \(KernelFileLayout.preprocessStd) and \(KernelFileLayout.preprocessZCA): the file was modified; rebuild it")
    }
    return preprocessChecksum(mean: try dataset(KernelFileLayout.preprocessMean).readAll(), std: try dataset(name).readAll())
  }

  /// The training statistics' checksum as the build recorded it (`preprocess_checksum`), after
  /// checking the stored `/preprocess/*` against it; for files without the attribute (written
  /// before it), the stored statistics' own checksum. Nil without statistics.
  public func checkedPreprocessChecksum() throws -> String? {
    let stored = try storedPreprocessChecksum()
    guard case .string(let recorded)? = try attribute("preprocess_checksum") else { return stored }
    guard stored == recorded else {
      let second = exists(KernelFileLayout.preprocessZCA) ? KernelFileLayout.preprocessZCA : KernelFileLayout.preprocessStd
      throw StorageError(path, "\(KernelFileLayout.preprocessMean) and \(second) do not match the training statistics the build recorded (preprocess_checksum \(recorded), now \(stored ?? "absent")): the file was modified; rebuild it")
    }
    return recorded
  }
}

/// The checksum of what `predict` reads from a solution file (`solution_checksum`): α (its
/// shape and values), the classes, the kernel's name and the training kernel it belongs to
/// (`kernel_train_fingerprint`, `kernel_preprocess_checksum`), hex.
public func solutionChecksum(alpha: [Double], shape: [Int], classes: [Int64]?, kernel: String,
                             trainFingerprint: String?, preprocess: String?) -> String {
  let text = "kernel=\(kernel)|train_fingerprint=\(trainFingerprint ?? "-")|preprocess=\(preprocess ?? "-")"
  let parts: [UInt64] = [checksum64(alpha), UInt64(shape.count)] + shape.map { UInt64($0) } +
    [classes == nil ? 0 : 1, checksum64(classes ?? []), checksum64(Array(text.utf8))]
  return hex(checksum64(parts))
}
