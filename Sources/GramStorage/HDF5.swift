import CHDF5
import Foundation

// MARK: - Library access

/// Serialises every HDF5 call (the serial library is not thread-safe) and turns return codes
/// into throws with context.
enum HDF5Library {
  static let lock = NSRecursiveLock()
  nonisolated(unsafe) private static var silenced = false

  /// Runs `body` holding the library lock, with HDF5's own error printing turned off.
  static func locked<T>(_ body: () throws -> T) rethrows -> T {
    lock.lock()
    defer { lock.unlock() }
    if !silenced {
      _ = ch5_silence_errors()
      silenced = true
    }
    return try body()
  }

  /// Throws `StorageError(path, "\(what) failed")` when an identifier is negative.
  @discardableResult
  static func check(_ id: hid_t, _ path: String, _ what: @autoclosure () -> String) throws -> hid_t {
    if id < 0 { throw StorageError(path, "HDF5 \(what()) failed" + systemReason()) }
    return id
  }

  /// The errno of a failed system call recorded in HDF5's error stack (its file drivers write
  /// "errno = N" into the message), if the last failed call holds one. `errno` itself is often
  /// overwritten by the clean-up the library does after the failure.
  static func stackErrno() -> Int32? {
    var found: Int32 = -1
    _ = withUnsafeMutablePointer(to: &found) { pointer in
      H5Ewalk2(0 /* H5E_DEFAULT */, H5E_WALK_UPWARD, { _, entry, client in
        guard let entry, let desc = entry.pointee.desc, let client else { return 0 }
        let text = String(cString: desc)
        guard let range = text.range(of: "errno = ") else { return 0 }
        let digits = text[range.upperBound...].prefix { $0.isNumber }
        guard let value = Int32(digits), value > 0 else { return 0 }
        client.assumingMemoryBound(to: Int32.self).pointee = value
        return 1  // stop: the most specific one
      }, pointer)
    }
    return found > 0 ? found : nil
  }

  /// Throws when a status is negative.
  static func check(_ status: herr_t, _ path: String, _ what: @autoclosure () -> String) throws {
    if status < 0 { throw StorageError(path, "HDF5 \(what()) failed" + systemReason()) }
  }

  /// The operating system's reason behind a failed HDF5 call, for the errors HDF5's own
  /// messages hide (a full disk, a quota, a read-only or failing filesystem).
  static func systemReason() -> String {
    let code = stackErrno() ?? errno
    switch code {
    case ENOSPC: return ": \(String(cString: strerror(code))) (the filesystem is full)"
    case EDQUOT, EFBIG, EIO, EROFS, EACCES: return ": \(String(cString: strerror(code)))"
    default: return ""
    }
  }
}

/// Storage precision of a kernel dataset.
public enum ScalarType: String, Sendable, CaseIterable {
  case float32
  case float64

  var fileType: hid_t { self == .float32 ? ch5_ieee_f32le() : ch5_ieee_f64le() }
  public var byteCount: Int { self == .float32 ? 4 : 8 }
}

/// A value stored as an HDF5 attribute.
public enum AttributeValue: Sendable, Equatable, CustomStringConvertible {
  case string(String)
  case double(Double)
  case int(Int64)
  case uint64s([UInt64])
  /// A 1-D array of signed integers (a shape, such as `input_shape`).
  case int64s([Int64])

  public var description: String {
    switch self {
    case .int64s(let v): "[" + v.map(String.init).joined(separator: ", ") + "]"
    case .string(let s): s
    case .double(let d): "\(d)"
    case .int(let i): "\(i)"
    case .uint64s(let v): v.count <= 4 ? "\(v)" : "[\(v.count) values]"
    }
  }
}

// MARK: - Object handles

/// An open HDF5 object (file, group or dataset): closes itself.
public class H5Object {
  let id: hid_t
  /// The file this object lives in, for error messages.
  public let path: String
  private let close: (hid_t) -> herr_t

  init(id: hid_t, path: String, close: @escaping (hid_t) -> herr_t) {
    self.id = id
    self.path = path
    self.close = close
  }

  deinit { HDF5Library.locked { _ = close(id) } }

  // MARK: Attributes

  /// Writes (or replaces) attribute `name`.
  public func setAttribute(_ name: String, _ value: AttributeValue) throws {
    try HDF5Library.locked {
      if H5Aexists(id, name) > 0 { try HDF5Library.check(H5Adelete(id, name), path, "deleting attribute \(name)") }
      switch value {
      case .string(let s):
        // Variable-length, NUL-terminated UTF-8 (`H5T_C_S1` of size `H5T_VARIABLE`): what C's
        // `%s`, h5py (`str`), R's hdf5r and MATLAB read without knowing a length.
        let type = try HDF5Library.check(H5Tcopy(ch5_c_s1()), path, "string type")
        defer { H5Tclose(type) }
        try HDF5Library.check(H5Tset_size(type, ch5_variable()), path, "string size")
        try HDF5Library.check(H5Tset_cset(type, H5T_CSET_UTF8), path, "string charset")
        let space = try HDF5Library.check(H5Screate(H5S_SCALAR), path, "scalar space")
        defer { H5Sclose(space) }
        let attr = try HDF5Library.check(H5Acreate2(id, name, type, space, ch5_p_default(), ch5_p_default()), path, "creating attribute \(name)")
        defer { H5Aclose(attr) }
        try s.withCString { c in
          var pointer: UnsafePointer<CChar>? = c
          try HDF5Library.check(H5Awrite(attr, type, &pointer), path, "writing attribute \(name)")
        }
      case .double(var d):
        try writeNumeric(name, fileType: ch5_ieee_f64le(), memType: ch5_native_double(), count: nil, &d)
      case .int(var i):
        try writeNumeric(name, fileType: ch5_std_i64le(), memType: ch5_native_int64(), count: nil, &i)
      case .uint64s(var v):
        try writeNumeric(name, fileType: ch5_std_u64le(), memType: ch5_native_uint64(), count: v.count, &v)
      case .int64s(var v):
        try writeNumeric(name, fileType: ch5_std_i64le(), memType: ch5_native_int64(), count: v.count, &v)
      }
    }
  }

  private func writeNumeric(_ name: String, fileType: hid_t, memType: hid_t, count: Int?, _ buffer: UnsafeRawPointer) throws {
    var dims = [hsize_t(count ?? 1)]
    let space = count == nil ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
    try HDF5Library.check(space, path, "attribute space")
    defer { H5Sclose(space) }
    let attr = try HDF5Library.check(H5Acreate2(id, name, fileType, space, ch5_p_default(), ch5_p_default()), path, "creating attribute \(name)")
    defer { H5Aclose(attr) }
    try HDF5Library.check(H5Awrite(attr, memType, buffer), path, "writing attribute \(name)")
  }

  /// Names of this object's attributes, in creation order.
  public func attributeNames() throws -> [String] {
    try HDF5Library.locked {
      var info = H5O_info_t()
      try HDF5Library.check(H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)), path, "object info")
      var names: [String] = []
      // Creation order when the file tracks it, else name order (files from other tools).
      let probe = info.num_attrs > 0 ? H5Aopen_by_idx(id, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, 0, ch5_p_default(), ch5_p_default()) : -1
      if probe >= 0 { H5Aclose(probe) }
      let order = probe >= 0 ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME
      for index in 0..<info.num_attrs {
        let attr = try HDF5Library.check(H5Aopen_by_idx(id, ".", order, H5_ITER_INC, index, ch5_p_default(), ch5_p_default()), path, "opening attribute")
        defer { H5Aclose(attr) }
        let length = H5Aget_name(attr, 0, nil)
        guard length >= 0, length < 1 << 16 else { throw StorageError(path, "an attribute name of \(length) bytes (damaged?)") }
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        H5Aget_name(attr, buffer.count, &buffer)
        names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
      }
      return names
    }
  }

  /// Reads attribute `name`, or nil when it does not exist.
  public func attribute(_ name: String) throws -> AttributeValue? {
    try HDF5Library.locked {
      guard H5Aexists(id, name) > 0 else { return nil }
      let attr = try HDF5Library.check(H5Aopen(id, name, ch5_p_default()), path, "opening attribute \(name)")
      defer { H5Aclose(attr) }
      let type = try HDF5Library.check(H5Aget_type(attr), path, "attribute type")
      defer { H5Tclose(type) }
      let space = try HDF5Library.check(H5Aget_space(attr), path, "attribute space")
      defer { H5Sclose(space) }
      // The buffers below hold every value the file declares (a damaged or crafted file may
      // declare several where one is expected): the library writes them all.
      let count = Int(H5Sget_simple_extent_npoints(space))
      guard count >= 0, count <= 1 << 24 else { throw StorageError(path, "attribute \(name) declares \(count) values (damaged?)") }
      switch H5Tget_class(type) {
      case H5T_STRING:
        guard count == 1 else { throw StorageError(path, "attribute \(name) holds \(count) strings, expected one") }
        if H5Tis_variable_str(type) > 0 {
          var pointer: UnsafeMutablePointer<CChar>? = nil
          let mem = H5Tcopy(ch5_c_s1()); defer { H5Tclose(mem) }
          H5Tset_size(mem, ch5_variable())
          H5Tset_cset(mem, H5Tget_cset(type))
          try HDF5Library.check(H5Aread(attr, mem, &pointer), path, "reading attribute \(name)")
          defer { free(pointer) }
          return .string(pointer.map { String(cString: $0) } ?? "")
        }
        let size = H5Tget_size(type)
        guard size > 0, size <= 1 << 24 else { throw StorageError(path, "attribute \(name) declares a string of \(size) bytes (damaged?)") }
        var bytes = [UInt8](repeating: 0, count: size + 1)
        try HDF5Library.check(H5Aread(attr, type, &bytes), path, "reading attribute \(name)")
        let end = bytes.firstIndex(of: 0) ?? size
        return .string(String(decoding: bytes[..<end], as: UTF8.self))
      case H5T_FLOAT:
        guard count == 1 else { throw StorageError(path, "attribute \(name) holds \(count) numbers, expected one") }
        var d = 0.0
        try HDF5Library.check(H5Aread(attr, ch5_native_double(), &d), path, "reading attribute \(name)")
        return .double(d)
      case H5T_INTEGER:
        if H5Sget_simple_extent_ndims(space) == 0 {
          var i: Int64 = 0
          try HDF5Library.check(H5Aread(attr, ch5_native_int64(), &i), path, "reading attribute \(name)")
          return .int(i)
        }
        if H5Tget_sign(type) == H5T_SGN_2 {
          var v = [Int64](repeating: 0, count: count)
          try HDF5Library.check(H5Aread(attr, ch5_native_int64(), &v), path, "reading attribute \(name)")
          return .int64s(v)
        }
        var v = [UInt64](repeating: 0, count: count)
        try HDF5Library.check(H5Aread(attr, ch5_native_uint64(), &v), path, "reading attribute \(name)")
        return .uint64s(v)
      default:
        throw StorageError(path, "attribute \(name) has an unsupported type")
      }
    }
  }
}

/// An HDF5 file. The corresponding C functions are `H5Fcreate`, `H5Fopen` and `H5Fclose`.
public final class H5File: H5Object {
  /// Creates `path`, failing if it exists (`H5F_ACC_EXCL`), in the HDF5 1.8 file format: its
  /// superblock and object headers carry checksums, so a damaged header is an error on open
  /// instead of a crash inside the library (found by `Tests/interop/test_fuzz.py`). Every HDF5
  /// reader since 1.8 (2008) opens it.
  ///
  /// `chunkBytes` (for tiled kernels): the HDF5 1.10 format instead (every reader since 1.10,
  /// 2016), whose implicit chunk index lets a chunked dataset's chunks sit side by side in one
  /// allocation (`createTiledDataset`), and objects of 1 MiB or more start on a boundary
  /// (`tileAlignment`): page-aligned chunks can be written to the disk directly, and a mapped
  /// chunk takes in none of its neighbours' pages.
  public static func create(_ path: String, chunkBytes: Int? = nil) throws -> H5File {
    try HDF5Library.locked {
      let fapl = H5Pcreate(ch5_p_file_access())
      defer { H5Pclose(fapl) }
      if let chunkBytes {
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110)
        H5Pset_alignment(fapl, 1 << 20, hsize_t(tileAlignment(chunkBytes: chunkBytes)))
      } else {
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18)
      }
      // No modification times in object headers: the same content gives the same bytes.
      let fcpl = H5Pcreate(ch5_p_file_create())
      defer { H5Pclose(fcpl) }
      H5Pset_obj_track_times(fcpl, false)
      let existed = access(path, F_OK) == 0
      let id = H5Fcreate(path, ch5_f_acc_excl(), fcpl, fapl)
      if id < 0 {
        let reason = HDF5Library.systemReason()
        // Made but not written (a full disk fails at the superblock): nothing is left behind.
        if !existed { unlink(path) }
        throw StorageError(path, "cannot create HDF5 file" + reason)
      }
      return H5File(id: id, path: path, close: H5Fclose)
    }
  }

  /// Where tiled kernels' chunks start in the file: on 2 MiB for chunks of 2 MiB or more, so
  /// that a chunk whose size is a multiple of 2 MiB (tiles of 1024 in float32) maps none of its
  /// neighbours' pages (the kernel maps whole page-cache folios, up to 2 MiB, aligned in the
  /// file); on 64 KiB (the fault-around window) for smaller ones, whose folios may straddle
  /// chunks anyway. What is skipped to get there is at most that much per kernel dataset.
  public static func tileAlignment(chunkBytes: Int) -> Int { chunkBytes >= 2 << 20 ? 2 << 20 : 64 << 10 }

  /// Opens an existing file. `chunkCacheBytes` sizes the raw-data chunk cache of the datasets
  /// opened through it (the library default of 1 MiB holds less than one kernel tile).
  public static func open(_ path: String, writable: Bool = false, chunkCacheBytes: Int = 64 << 20) throws -> H5File {
    guard FileManager.default.fileExists(atPath: path) else { throw StorageError(path, "no such file") }
    try HDF5Probe.vet(path)
    return try HDF5Library.locked {
      guard H5Fis_hdf5(path) > 0 else { throw StorageError(path, "not an HDF5 file") }
      let fapl = H5Pcreate(ch5_p_file_access())
      defer { H5Pclose(fapl) }
      H5Pset_cache(fapl, 0, 12_421, chunkCacheBytes, 0.75)
      let id = H5Fopen(path, writable ? ch5_f_acc_rdwr() : ch5_f_acc_rdonly(), fapl)
      if id < 0 { throw StorageError(path, "cannot open HDF5 file (damaged or truncated?)") }
      let file = H5File(id: id, path: path, close: H5Fclose)
      try file.checkGlobalHeaps()
      return file
    }
  }

  /// Variable-length strings live in global heap collections ("GCOL"), which no HDF5 format
  /// protects with a checksum, and libhdf5 1.10 copies a damaged object size into memory
  /// unchecked (a segfault in h5dump too; found by `Tests/interop/test_fuzz.py`). Before any
  /// such string is read, every collection outside the datasets' contiguous data is walked:
  /// each object must fit its collection and the collection its file, else the file is
  /// reported damaged. Files whose metadata cannot be told from data cheaply (more than 64 MiB
  /// outside contiguous datasets and side-by-side chunks: other chunked or compact data) are
  /// left to the library.
  func checkGlobalHeaps() throws {
    var st = stat()
    guard stat(path, &st) == 0 else { return }
    let size = Int(st.st_size)
    // The contiguous datasets' data, found through the (checksummed) object headers alone.
    var data: [(Int, Int)] = []
    var visited = Set<String>()
    func walk(_ group: String, depth: Int) {
      guard depth < 32, visited.insert(group).inserted, let names = try? members(of: group) else { return }
      for name in names {
        let full = (group == "/" ? "" : group) + "/" + name
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, full, &info, UInt32(H5O_INFO_BASIC), ch5_p_default()) >= 0 else { continue }
        if info.type == H5O_TYPE_GROUP { walk(full, depth: depth + 1) }
        guard info.type == H5O_TYPE_DATASET else { continue }
        let d = H5Dopen2(id, full, ch5_p_default())
        guard d >= 0 else { continue }
        defer { H5Dclose(d) }
        // Contiguous data, or side-by-side chunks (implicit index): one range either way.
        let contiguous = H5Dget_offset(d)
        let offset = contiguous != ch5_haddr_undef() ? contiguous : H5Dataset.firstChunkAddress(d) ?? ch5_haddr_undef()
        let bytes = H5Dget_storage_size(d)
        if offset != ch5_haddr_undef(), bytes > 0, UInt64(offset) < UInt64(size) {
          data.append((Int(offset), Int(min(UInt64(bytes), UInt64(size) - UInt64(offset)))))
        }
      }
    }
    walk("/", depth: 0)
    data.sort { $0.0 < $1.0 }
    var gaps: [(Int, Int)] = []
    var position = 0
    for (offset, bytes) in data {
      if offset > position { gaps.append((position, offset)) }
      position = max(position, offset + bytes)
    }
    if position < size { gaps.append((position, size)) }
    guard gaps.reduce(0, { $0 + $1.1 - $1.0 }) <= 64 << 20 else { return }
    let fd = Glibc.open(path, O_RDONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    func read(_ offset: Int, _ count: Int) -> [UInt8] {
      var buffer = [UInt8](repeating: 0, count: max(0, count))
      let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
      return n > 0 ? Array(buffer.prefix(n)) : []
    }
    func le(_ b: [UInt8], _ at: Int, _ width: Int) -> Int {
      (0..<width).reversed().reduce(0) { $0 << 8 | Int(b[at + $1]) }
    }
    let signature: [UInt8] = Array("GCOL".utf8)
    for (start, end) in gaps {
      let bytes = read(start, end - start)
      var k = 0
      while k + 16 <= bytes.count {
        guard bytes[k] == signature[0], bytes[k + 1] == signature[1], bytes[k + 2] == signature[2], bytes[k + 3] == signature[3] else { k += 1; continue }
        let at = start + k
        let collection = le(bytes, k + 8, 8)
        // Not a collection header (the library checks signature and version itself, and fails
        // cleanly): bytes that merely spell "GCOL" are passed over.
        guard bytes[k + 4] == 1, collection >= 16, at + collection <= size else { k += 1; continue }
        let heap = read(at, collection)
        guard heap.count == collection else { throw StorageError(path, "damaged HDF5 file: global heap at byte \(at) runs past the end") }
        // The objects must tile the collection exactly: each fits, no index repeats, and the
        // walk ends at the collection's end or at the free-space object (index 0), whose size
        // (its header included) is the rest of the collection.
        var o = 16
        var seen = Set<Int>()
        var consistent = false
        while o + 16 <= collection {
          let index = le(heap, o, 2), objectSize = le(heap, o + 8, 8)
          if index == 0 {
            consistent = objectSize == collection - o
            break
          }
          guard objectSize >= 0, objectSize <= collection, seen.insert(index).inserted,
                o + 16 + ((objectSize + 7) & ~7) <= collection else { break }
          o += 16 + ((objectSize + 7) & ~7)
          if collection - o < 16 { consistent = true }
        }
        guard consistent else {
          throw StorageError(path, "damaged HDF5 file: the global heap at byte \(at) (variable-length strings) is inconsistent")
        }
        k += max(16, min(collection, bytes.count - k))
      }
    }
  }

  /// Flushes buffers to the operating system (`H5Fflush`).
  public func flush() throws {
    try HDF5Library.locked { try HDF5Library.check(H5Fflush(id, H5F_SCOPE_GLOBAL), path, "flush") }
  }

  /// Whether a link (group or dataset) exists at `name` (an absolute path like `/train/ntk`).
  public func exists(_ name: String) -> Bool {
    HDF5Library.locked {
      var prefix = ""
      for part in name.split(separator: "/") {
        prefix += "/" + part
        if H5Lexists(id, prefix, ch5_p_default()) <= 0 { return false }
      }
      return true
    }
  }

  /// Whether `name` exists and is a group (not a dataset).
  public func isGroup(_ name: String) -> Bool {
    guard exists(name) else { return false }
    return HDF5Library.locked {
      var info = H5O_info_t()
      return H5Oget_info_by_name2(id, name, &info, UInt32(H5O_INFO_BASIC), ch5_p_default()) >= 0 && info.type == H5O_TYPE_GROUP
    }
  }

  /// The names of the links inside the group `group` (`"/params"`), in name order; empty when
  /// there is no such group.
  public func members(of group: String) throws -> [String] {
    guard exists(group) else { return [] }
    return try HDF5Library.locked {
      let gid = try HDF5Library.check(H5Gopen2(id, group, ch5_p_default()), path, "opening group \(group)")
      defer { H5Gclose(gid) }
      var info = H5G_info_t()
      try HDF5Library.check(H5Gget_info(gid, &info), path, "listing group \(group)")
      var names: [String] = []
      for i in 0..<info.nlinks {
        let size = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, ch5_p_default())
        guard size >= 0, size < 1 << 16 else { throw StorageError(path, "cannot read a link name in group \(group)") }
        var buffer = [CChar](repeating: 0, count: Int(size) + 1)
        _ = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, ch5_p_default())
        names.append(String(decoding: buffer.prefix(Int(size)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
      }
      return names
    }
  }

  /// Creates a dataset, with intermediate groups, at `name`.
  public func createDataset(_ name: String, shape: [Int], type: ScalarType, chunk: [Int]? = nil) throws -> H5Dataset {
    try createDataset(name, shape: shape, fileType: type.fileType, chunk: chunk)
  }

  /// Creates an integer dataset (labels).
  public func createInt64Dataset(_ name: String, shape: [Int]) throws -> H5Dataset {
    try createDataset(name, shape: shape, fileType: ch5_std_i64le(), chunk: nil)
  }

  /// Creates an unsigned 64-bit dataset.
  public func createUInt64Dataset(_ name: String, shape: [Int]) throws -> H5Dataset {
    try createDataset(name, shape: shape, fileType: ch5_std_u64le(), chunk: nil)
  }

  /// Creates an unsigned 32-bit dataset (checksums as two 32-bit words: every reader, R's
  /// included, keeps them exactly).
  public func createUInt32Dataset(_ name: String, shape: [Int], allocated: Bool = false) throws -> H5Dataset {
    try createDataset(name, shape: shape, fileType: ch5_std_u32le(), chunk: nil, allocated: allocated)
  }

  /// Creates a contiguous dataset whose space is allocated now (`H5D_ALLOC_TIME_EARLY`) and
  /// never filled (`H5D_FILL_TIME_NEVER`): its bytes sit at `fileOffset`, row-major, for
  /// writers outside HDF5 (`pwrite`), and creating it writes no data.
  public func createAllocatedDataset(_ name: String, shape: [Int], type: ScalarType) throws -> H5Dataset {
    try createDataset(name, shape: shape, fileType: type.fileType, chunk: nil, allocated: true)
  }

  /// Creates a dataset of `chunk`-shaped chunks (clamped to the shape) allocated now, side by
  /// side in row-major chunk order (HDF5's implicit index: a file made with `tiles`), never
  /// filled: writers outside HDF5 put each chunk at `H5Dataset.tiledStorage`'s offset. Fails
  /// when the library laid it out otherwise.
  public func createTiledDataset(_ name: String, shape: [Int], type: ScalarType, chunk: [Int]) throws -> H5Dataset {
    let d = try createDataset(name, shape: shape, fileType: type.fileType, chunk: chunk, allocated: true)
    guard d.tiledStorage != nil else { throw StorageError(path, "HDF5 did not lay out \(name) as side-by-side chunks (a file made without tiles?)") }
    return d
  }

  private func createDataset(_ name: String, shape: [Int], fileType: hid_t, chunk: [Int]?, allocated: Bool = false) throws -> H5Dataset {
    try HDF5Library.locked {
      var dims = shape.map { hsize_t($0) }
      let space = try HDF5Library.check(H5Screate_simple(Int32(dims.count), &dims, nil), path, "dataspace for \(name)")
      defer { H5Sclose(space) }
      // Intermediate groups, like the dataset, without modification times (same content, same bytes).
      let gcpl = H5Pcreate(ch5_p_group_create())
      defer { H5Pclose(gcpl) }
      H5Pset_obj_track_times(gcpl, false)
      var prefix = ""
      for part in name.split(separator: "/").dropLast() {
        prefix += "/" + part
        if H5Lexists(self.id, prefix, ch5_p_default()) <= 0 {
          let g = try HDF5Library.check(H5Gcreate2(self.id, prefix, ch5_p_default(), gcpl, ch5_p_default()), path, "creating group \(prefix)")
          H5Gclose(g)
        }
      }
      let lcpl = ch5_p_default()
      let dcpl = H5Pcreate(ch5_p_dataset_create())
      defer { H5Pclose(dcpl) }
      H5Pset_obj_track_times(dcpl, false)
      if let chunk, shape.allSatisfy({ $0 > 0 }) {
        var c = zip(chunk, shape).map { hsize_t(max(1, min($0, $1))) }
        try HDF5Library.check(H5Pset_chunk(dcpl, Int32(c.count), &c), path, "chunking \(name)")
      }
      if allocated {
        if chunk == nil { try HDF5Library.check(H5Pset_layout(dcpl, H5D_CONTIGUOUS), path, "layout of \(name)") }
        try HDF5Library.check(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), path, "allocation of \(name)")
        try HDF5Library.check(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), path, "fill of \(name)")
      }
      let id = try HDF5Library.check(H5Dcreate2(self.id, name, fileType, space, lcpl, dcpl, ch5_p_default()), path, "creating dataset \(name)")
      return H5Dataset(id: id, path: path, name: name, shape: shape)
    }
  }

  /// A dataset's shape comes from the file: a damaged one may declare more values than any
  /// memory holds, or than fit an `Int`. Its bytes must fit the file (× 1,100 for filtered
  /// data, deflate's largest ratio being about 1,032), so that a reader never allocates
  /// what a few flipped bits declare.
  private func checkDeclaredSize(_ name: String, dataset: hid_t, dims: [hsize_t]) throws {
    let type = H5Dget_type(dataset)
    let elementSize = type >= 0 ? UInt64(H5Tget_size(type)) : 1
    if type >= 0 { H5Tclose(type) }
    var bytes = max(elementSize, 1)
    var overflow = false
    for d in dims {
      guard d <= UInt64(Int.max) else { overflow = true; break }
      let (product, over) = bytes.multipliedReportingOverflow(by: d)
      if over { overflow = true; break }
      bytes = product
    }
    let plist = H5Dget_create_plist(dataset)
    let filtered = plist >= 0 && H5Pget_nfilters(plist) > 0
    let compact = plist >= 0 && H5Pget_layout(plist) == H5D_COMPACT
    if plist >= 0 { H5Pclose(plist) }
    var st = stat()
    let fileBytes = stat(path, &st) == 0 ? UInt64(max(st.st_size, 0)) : UInt64.max / 2048
    let limit = (filtered ? fileBytes.multipliedReportingOverflow(by: 1_100).partialValue : fileBytes) + (compact ? 65_536 : 0)
    guard !overflow, bytes <= limit else {
      throw StorageError(path, "dataset \(name) declares shape \(dims) (\(overflow ? "more than 2^63" : "\(bytes)") bytes), more than its file of \(fileBytes) bytes can hold: damaged, or never written")
    }
  }

  /// Opens the dataset at `name`. `chunkCacheBytes` sizes its raw-data chunk cache (`H5Pset_chunk_cache`):
  /// 0 makes reads of whole chunks go straight to the caller's buffer, which is what streaming
  /// tile-aligned blocks wants; nil keeps the file's setting.
  public func dataset(_ name: String, chunkCacheBytes: Int? = nil) throws -> H5Dataset {
    guard exists(name) else { throw StorageError(path, "no dataset \(name)") }
    return try HDF5Library.locked {
      let dapl = H5Pcreate(ch5_p_dataset_access())
      defer { H5Pclose(dapl) }
      if let bytes = chunkCacheBytes { H5Pset_chunk_cache(dapl, 521, bytes, 1.0) }
      let id = H5Dopen2(self.id, name, dapl)
      if id < 0 { throw StorageError(path, "cannot open dataset \(name)") }
      let space = H5Dget_space(id)
      defer { H5Sclose(space) }
      let rank = Int(H5Sget_simple_extent_ndims(space))
      guard space >= 0, (0...32).contains(rank) else {
        H5Dclose(id)
        throw StorageError(path, "dataset \(name) has an unreadable shape (damaged?)")
      }
      var dims = [hsize_t](repeating: 0, count: max(rank, 1))
      H5Sget_simple_extent_dims(space, &dims, nil)
      do {
        try checkDeclaredSize(name, dataset: id, dims: Array(dims.prefix(rank)))
      } catch {
        H5Dclose(id)
        throw error
      }
      return H5Dataset(id: id, path: path, name: name, shape: dims.prefix(rank).map { Int($0) })
    }
  }
}

/// A dataset: rectangular blocks are read and written through hyperslab selections.
public final class H5Dataset: H5Object {
  public let name: String
  public let shape: [Int]

  init(id: hid_t, path: String, name: String, shape: [Int]) {
    self.name = name
    self.shape = shape
    super.init(id: id, path: path, close: H5Dclose)
  }

  /// The stored element type, when it is a float.
  public var scalarType: ScalarType? {
    HDF5Library.locked {
      let type = H5Dget_type(id)
      defer { H5Tclose(type) }
      guard H5Tget_class(type) == H5T_FLOAT else { return nil }
      return H5Tget_size(type) == 4 ? .float32 : .float64
    }
  }

  /// The byte offset of the data in the file (`H5Dget_offset`): nil unless the dataset is
  /// contiguous and allocated.
  public var fileOffset: Int? {
    HDF5Library.locked {
      let plist = H5Dget_create_plist(id)
      defer { H5Pclose(plist) }
      guard H5Pget_layout(plist) == H5D_CONTIGUOUS else { return nil }
      let offset = H5Dget_offset(id)
      return offset == ch5_haddr_undef() ? nil : Int(offset)
    }
  }

  /// The file address of the first chunk of the open dataset `id` when its chunks sit side by
  /// side (HDF5's implicit index); nil for any other layout. The caller holds the library lock.
  static func firstChunkAddress(_ id: hid_t) -> haddr_t? {
    var index = H5D_CHUNK_IDX_BTREE
    guard H5Dget_chunk_index_type(id, &index) >= 0, index == H5D_CHUNK_IDX_NONE else { return nil }
    var origin = [hsize_t](repeating: 0, count: 32)
    var mask: UInt32 = 0
    var address: haddr_t = 0
    var bytes: hsize_t = 0
    guard H5Dget_chunk_info_by_coord(id, &origin, &mask, &address, &bytes) >= 0, address != ch5_haddr_undef() else { return nil }
    return address
  }

  /// A chunked dataset whose chunks sit side by side in one allocation (HDF5's implicit index:
  /// allocated early, unfiltered, fixed shape): the byte offset of its first chunk and the
  /// chunk shape; chunk k in row-major chunk order starts k whole chunks further. Nil for
  /// any other layout.
  public var tiledStorage: (offset: Int, chunk: [Int])? {
    HDF5Library.locked {
      let plist = H5Dget_create_plist(id)
      defer { H5Pclose(plist) }
      guard H5Pget_layout(plist) == H5D_CHUNKED, H5Pget_nfilters(plist) == 0, let address = Self.firstChunkAddress(id) else { return nil }
      let rank = Int(H5Pget_chunk(plist, 0, nil))
      guard rank == shape.count, rank > 0 else { return nil }
      var dims = [hsize_t](repeating: 0, count: rank)
      guard H5Pget_chunk(plist, Int32(rank), &dims) == rank, dims.allSatisfy({ $0 > 0 }) else { return nil }
      return (Int(address), dims.map { Int($0) })
    }
  }

  /// The size of one stored element in bytes.
  public var elementSize: Int {
    HDF5Library.locked {
      let type = H5Dget_type(id)
      defer { H5Tclose(type) }
      return H5Tget_size(type)
    }
  }

  /// The stored element type in a user's words: `float32`, `float64`, `int64`, `uint8`, …,
  /// `string`, or the HDF5 class of anything else (`compound`, `enum`, …).
  public var typeDescription: String {
    HDF5Library.locked {
      let type = H5Dget_type(id)
      defer { H5Tclose(type) }
      let bits = 8 * H5Tget_size(type)
      switch H5Tget_class(type) {
      case H5T_FLOAT: return "float\(bits)"
      case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + "\(bits)"
      case H5T_STRING: return "string"
      case H5T_COMPOUND: return "compound"
      case H5T_ENUM: return "enum"
      case H5T_ARRAY: return "array"
      case H5T_VLEN: return "variable-length"
      case H5T_OPAQUE: return "opaque"
      case H5T_BITFIELD: return "bitfield"
      case H5T_REFERENCE: return "reference"
      default: return "unknown"
      }
    }
  }

  /// Whether the stored element type is a number (a float or an integer).
  public var isNumeric: Bool { scalarType != nil || isInteger }

  /// Whether the stored element type is an integer.
  public var isInteger: Bool {
    HDF5Library.locked {
      let type = H5Dget_type(id)
      defer { H5Tclose(type) }
      return H5Tget_class(type) == H5T_INTEGER
    }
  }

  private func transfer(start: [Int], count: [Int], memType: hid_t, _ op: String,
                        _ io: (hid_t, hid_t) -> herr_t) throws {
    precondition(start.count == shape.count && count.count == shape.count, "H5Dataset: rank mismatch")
    for k in shape.indices where start[k] < 0 || count[k] < 0 || start[k] + count[k] > shape[k] {
      throw StorageError(path, "\(op) of \(name): block \(start)+\(count) outside shape \(shape)")
    }
    if count.contains(0) { return }
    try HDF5Library.locked {
      let fileSpace = try HDF5Library.check(H5Dget_space(id), path, "dataspace of \(name)")
      defer { H5Sclose(fileSpace) }
      var s = start.map { hsize_t($0) }, c = count.map { hsize_t($0) }
      try HDF5Library.check(H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &s, nil, &c, nil), path, "selecting block of \(name)")
      let memSpace = try HDF5Library.check(H5Screate_simple(Int32(c.count), &c, nil), path, "memory space")
      defer { H5Sclose(memSpace) }
      try HDF5Library.check(io(memSpace, fileSpace), path, "\(op) of \(name)")
    }
  }

  /// Writes a row-major block at `start`; HDF5 converts to the stored type (`H5Dwrite`).
  public func write<T: HDF5Element>(_ values: UnsafeBufferPointer<T>, start: [Int], count: [Int]) throws {
    precondition(values.count >= count.reduce(1, *), "H5Dataset.write: buffer too small")
    try transfer(start: start, count: count, memType: T.nativeType, "writing") { mem, file in
      H5Dwrite(id, T.nativeType, mem, file, ch5_p_default(), values.baseAddress)
    }
  }

  /// Reads a row-major block at `start`, converted to `T` by HDF5 (`H5Dread`).
  public func read<T: HDF5Element>(into values: UnsafeMutableBufferPointer<T>, start: [Int], count: [Int]) throws {
    precondition(values.count >= count.reduce(1, *), "H5Dataset.read: buffer too small")
    try transfer(start: start, count: count, memType: T.nativeType, "reading") { mem, file in
      H5Dread(id, T.nativeType, mem, file, ch5_p_default(), values.baseAddress)
    }
  }

  /// Reads the whole dataset as `T`.
  public func readAll<T: HDF5Element>(as type: T.Type) throws -> [T] {
    var out = [T](repeating: .zero, count: shape.reduce(1, *))
    try out.withUnsafeMutableBufferPointer { try read(into: $0, start: shape.map { _ in 0 }, count: shape) }
    return out
  }

  /// Reads the whole dataset as doubles.
  public func readAll() throws -> [Double] { try readAll(as: Double.self) }
  /// Reads the whole dataset as `Int64`s.
  public func readAllInt64() throws -> [Int64] { try readAll(as: Int64.self) }
  /// Reads the whole dataset as `UInt64`s.
  public func readAllUInt64() throws -> [UInt64] { try readAll(as: UInt64.self) }
}

/// Element types that HDF5 reads and writes natively (their `H5T_NATIVE_*` memory type).
public protocol HDF5Element: Numeric {
  static var nativeType: hid_t { get }
}
extension Double: HDF5Element { public static var nativeType: hid_t { ch5_native_double() } }
extension Float: HDF5Element { public static var nativeType: hid_t { ch5_native_float() } }
extension Int64: HDF5Element { public static var nativeType: hid_t { ch5_native_int64() } }
extension UInt64: HDF5Element { public static var nativeType: hid_t { ch5_native_uint64() } }
extension UInt32: HDF5Element { public static var nativeType: hid_t { ch5_native_uint32() } }

