import Foundation

/// One finished tile on disk: `<folder>/tile-<index>.h5`, an HDF5 file any tool can open, with
/// datasets `/ntk` and `/nngp` (`rows × cols`, in the job's storage precision) and attributes
/// naming the tile, the job fingerprint and a checksum of each dataset's bytes.
///
/// Written atomically: a temporary file in the same folder, flushed, then renamed. A reader
/// (another rank, a rerun after a killed process) therefore sees either no tile or a whole one.
/// A checkpoint is not fsynced: after a power cut or a disk error a renamed tile may be empty or
/// torn, which `read` detects (shape, attributes, checksums), and the build recomputes it. The
/// kernel file, the result, is fsynced before its rename (`KernelFileWriter.commit`).
public struct TileCheckpoint: Sendable, Equatable {
  public let index: Int
  public let rowStart: Int
  public let colStart: Int
  public let rows: Int
  public let cols: Int
  /// Values by kernel name (in the order of the `names` they are written and read with).
  public let values: [StoredValues]

  public init(index: Int, rowStart: Int, colStart: Int, rows: Int, cols: Int, values: [StoredValues]) {
    self.index = index
    self.rowStart = rowStart
    self.colStart = colStart
    self.rows = rows
    self.cols = cols
    self.values = values
  }

  public var checksums: [UInt64] { values.map(\.checksum) }

  public static func fileName(_ index: Int) -> String { String(format: "tile-%07d.h5", index) }
  public static func path(folder: String, index: Int) -> String { folder + "/" + fileName(index) }

  /// Writes the tile atomically under `folder`, stamped with `fingerprint`.
  public func write(folder: String, fingerprint: String, names: [String] = KernelFileLayout.kernelNames) throws {
    precondition(names.count == values.count, "TileCheckpoint.write: one name per value block")
    let final = Self.path(folder: folder, index: index)
    let temporary = folder + "/.\(Self.fileName(index)).tmp-\(getpid())"
    unlink(temporary)
    do {
      let f = try H5File.create(temporary)
      for (name, v) in zip(names, values) {
        let d = try f.createDataset("/" + name, shape: [rows, cols], type: v.type)
        try d.write(v, start: [0, 0], count: [rows, cols])
      }
      try f.setAttribute("tile", .int(Int64(index)))
      try f.setAttribute("row_start", .int(Int64(rowStart)))
      try f.setAttribute("col_start", .int(Int64(colStart)))
      try f.setAttribute("fingerprint", .string(fingerprint))
      try f.setAttribute("checksums", .uint64s(checksums))
      try f.flush()
    } catch {
      unlink(temporary)
      throw error
    }
    guard rename(temporary, final) == 0 else {
      let message = String(cString: strerror(errno))
      unlink(temporary)
      throw StorageError(final, "cannot rename checkpoint: \(message)")
    }
  }

  /// Why a checkpoint cannot be used.
  public enum Problem: Error, Equatable, CustomStringConvertible {
    case missing
    case unreadable(String)
    case foreign(String)
    case corrupt(String)

    public var description: String {
      switch self {
      case .missing: "missing"
      case .unreadable(let s): "unreadable (\(s))"
      case .foreign(let s): "from another job (\(s))"
      case .corrupt(let s): "corrupt (\(s))"
      }
    }
  }

  /// Reads and verifies tile `index`: shape, position, fingerprint and checksums.
  public static func read(folder: String, index: Int, rowStart: Int, colStart: Int, rows: Int, cols: Int,
                          type: ScalarType, fingerprint: String,
                          names: [String] = KernelFileLayout.kernelNames) -> Result<TileCheckpoint, Problem> {
    let path = Self.path(folder: folder, index: index)
    guard FileManager.default.fileExists(atPath: path) else { return .failure(.missing) }
    do {
      let f = try H5File.open(path)
      guard case .string(let fp)? = try f.attribute("fingerprint") else { return .failure(.corrupt("no fingerprint")) }
      guard fp == fingerprint else { return .failure(.foreign("fingerprint \(fp)")) }
      guard try f.attribute("tile") == .int(Int64(index)), try f.attribute("row_start") == .int(Int64(rowStart)),
            try f.attribute("col_start") == .int(Int64(colStart)) else { return .failure(.corrupt("wrong tile position")) }
      guard case .uint64s(let sums)? = try f.attribute("checksums"), sums.count == names.count else {
        return .failure(.corrupt("no checksums"))
      }
      var values: [StoredValues] = []
      for (k, name) in names.enumerated() {
        let d = try f.dataset("/" + name)
        guard d.shape == [rows, cols], d.scalarType == type else { return .failure(.corrupt("/\(name) has shape \(d.shape)")) }
        let v = try d.readStored(start: [0, 0], count: [rows, cols])
        guard v.checksum == sums[k] else { return .failure(.corrupt("checksum mismatch in /\(name)")) }
        values.append(v)
      }
      return .success(TileCheckpoint(index: index, rowStart: rowStart, colStart: colStart, rows: rows, cols: cols, values: values))
    } catch {
      return .failure(.unreadable("\(error)"))
    }
  }
}
