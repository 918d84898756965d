import CHDF5
import Foundation

/// Opens HDF5 files written in the formats before 1.8 in a child process first.
///
/// Those formats (superblock versions 0 and 1: what h5py and most writers produce by default,
/// and kernel files of format 1) carry no checksums on their metadata, and libhdf5 1.10 trusts
/// what it reads: a damaged B-tree, heap or message size makes it read out of bounds
/// (segfault) or loop. A crash cannot be caught in-process, so before such a file is opened
/// here, a child (`ntkgram __probe-hdf5 FILE SECONDS`) opens it and reads all of its metadata: every
/// object, every attribute's value, and the data of every chunked dataset (their B-trees and
/// filters). A child that crashes or hangs means the file is reported damaged in one line;
/// one that ends, with or without errors, means the same reads are safe here (errors then come
/// back as errors). Files in the 1.8 format and later (which `ntkgram` writes) have checksummed
/// metadata and are opened directly. Each file is probed once per process (same inode, size
/// and modification time).
public enum HDF5Probe {
  /// The program that runs the probe (the command-line tool sets itself at start); nil opens
  /// every file directly (a library embedding, the unit tests).
  nonisolated(unsafe) public static var executable: String?
  /// The argument that makes the command-line tool probe instead of parsing a command.
  public static let argument = "__probe-hdf5"

  nonisolated(unsafe) private static var vetted = Set<String>()
  private static let lock = NSLock()

  /// The superblock version of the HDF5 file at `path` (its signature is at offset 0, 512,
  /// 1024, …), or nil when none is found in the first 64 KiB.
  static func superblockVersion(_ path: String) -> Int? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
    var offset = 0
    while offset <= 65_536 {
      var bytes = [UInt8](repeating: 0, count: 9)
      let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 9, off_t(offset)) }
      guard n == 9 else { return nil }
      if Array(bytes[0..<8]) == signature { return Int(bytes[8]) }
      offset = offset == 0 ? 512 : offset * 2
    }
    return nil
  }

  /// Throws when the file is in a pre-1.8 format and a child process reading its metadata
  /// crashed or hung.
  static func vet(_ path: String) throws {
    guard let executable, let version = superblockVersion(path), version < 2 else { return }
    var st = stat()
    guard stat(path, &st) == 0 else { return }
    let key = "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    if lock.withLock({ vetted.contains(key) }) { return }
    // Generous: the metadata takes milliseconds, the chunked data one read (50 MB/s at worst).
    let seconds = 5 + Double(st.st_size) / 50e6
    switch runChild(executable, path, timeout: seconds) {
    case .ended:
      _ = lock.withLock { vetted.insert(key) }
    case .crashed(let signal):
      throw StorageError(path, "damaged: the HDF5 library crashes reading its metadata (signal \(signal)); files in HDF5's format before 1.8 have no checksums to catch this")
    case .hung:
      throw StorageError(path, "damaged: the HDF5 library did not finish reading its metadata in \(Int(seconds)) s; files in HDF5's format before 1.8 have no checksums to catch this")
    case .unavailable:
      return  // no child could be started: open directly, as before
    }
  }

  enum ChildOutcome { case ended, crashed(Int32), hung, unavailable }

  static func runChild(_ executable: String, _ path: String, timeout: Double) -> ChildOutcome {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] {
      posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
    }
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("ntkgram"), strdup(argument), strdup(path), strdup(String(Int(timeout.rounded(.up)) + 1)), nil]
    defer { for p in argv { free(p) } }
    // Not an MPI process: the launcher's variables stay with the parent. glibc fills freed and
    // fresh memory with a pattern, so that the library's reads of freed or uninitialised memory
    // (what a damaged file provokes) crash the child every time instead of now and then.
    var variables = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
    variables["GLIBC_TUNABLES"] = (variables["GLIBC_TUNABLES"].map { $0 + ":" } ?? "") + "glibc.malloc.perturb=165"
    let environment = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in environment { free(p) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, executable, &actions, nil, argv, environment) == 0 else { return .unavailable }
    let deadline = Date().addingTimeInterval(timeout)
    var status: Int32 = 0
    var pause: useconds_t = 200
    while true {
      let r = waitpid(pid, &status, WNOHANG)
      if r == pid { break }
      if r < 0 && errno != EINTR { return .unavailable }
      if Date() > deadline {
        kill(pid, SIGKILL)
        _ = waitpid(pid, &status, 0)
        return .hung
      }
      usleep(pause)
      pause = min(pause * 2, 50_000)
    }
    // WIFSIGNALED / WTERMSIG, spelled out (the macros are not imported).
    let signal = status & 0x7f
    if signal != 0 && signal != 0x7f { return .crashed(signal) }
    return .ended
  }

  // MARK: the child

  /// Runs in the child: opens `path` as the commands do (`H5File.open`: its global heap check
  /// included) and reads, through the same functions, every link, every attribute, every
  /// dataset's shape and type, the first values of each converted to double, and the whole of
  /// each chunked dataset. Returns the exit status: 0 whether or not HDF5 reported errors (only
  /// a crash or a hang tells the parent something).
  public static func probe(_ path: String, seconds: UInt32) -> Int32 {
    // Bounded whatever happens to the parent: an alarm ends a hang, a cap on address space a
    // runaway allocation.
    alarm(seconds)
    var cap = rlimit(rlim_cur: 8 << 30, rlim_max: 8 << 30)
    setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &cap)
    // Twice: the library caches what it decoded, and some damage only bites on the second
    // visit (attributes listed by index after being read by name, as `info` does).
    for _ in 0..<2 { walkAll(path) }
    return 0
  }

  private static func walkAll(_ path: String) {
    guard let file = try? H5File.open(path) else { return }
    // Attributes looked up by a name none has (which decodes every attribute message, as the
    // commands' optional attributes do), listed by index, and read by name; then again.
    func attributes(_ object: H5Object) {
      for _ in 0..<2 {
        _ = try? object.attribute("ntkgram-probe: no such attribute")
        for name in (try? object.attributeNames()) ?? [] { _ = try? object.attribute(name) }
      }
    }
    attributes(file)
    var visited = Set<String>()
    func walk(_ group: String, depth: Int) {
      guard depth < 64, visited.insert(group).inserted else { return }
      for name in (try? file.members(of: group)) ?? [] {
        let full = (group == "/" ? "" : group) + "/" + name
        var info = H5O_info_t()
        let known = HDF5Library.locked { H5Oget_info_by_name2(file.id, full, &info, UInt32(H5O_INFO_BASIC), ch5_p_default()) >= 0 }
        guard known else { continue }
        if info.type == H5O_TYPE_GROUP {
          let id = HDF5Library.locked { H5Gopen2(file.id, full, ch5_p_default()) }
          if id >= 0 { attributes(H5Object(id: id, path: path, close: H5Gclose)) }
          walk(full, depth: depth + 1)
        } else if info.type == H5O_TYPE_DATASET, let d = try? file.dataset(full) {
          attributes(d)
          if !d.shape.isEmpty, d.shape.allSatisfy({ $0 > 0 }), d.scalarType != nil || d.isInteger {
            // The first rows (up to 2^17 values), converted to double as the readers do.
            let row = d.shape.dropFirst().reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            if row > 0, row <= 1 << 17 {
              let count = [min(d.shape[0], (1 << 17) / row)] + d.shape.dropFirst()
              var buffer = [Double](repeating: 0, count: count[0] * row)
              _ = try? buffer.withUnsafeMutableBufferPointer { try d.read(into: $0, start: d.shape.map { _ in 0 }, count: count) }
            }
          }
          HDF5Library.locked { readIfChunked(d.id) }
        }
      }
    }
    walk("/", depth: 0)
  }

  /// Reads the whole of a chunked dataset (its chunk B-tree and filters) in bounded pieces.
  static func readIfChunked(_ dataset: hid_t) {
    let plist = H5Dget_create_plist(dataset)
    guard plist >= 0 else { return }
    defer { H5Pclose(plist) }
    guard H5Pget_layout(plist) == H5D_CHUNKED else { return }
    let space = H5Dget_space(dataset), type = H5Dget_type(dataset)
    defer {
      if space >= 0 { H5Sclose(space) }
      if type >= 0 { H5Tclose(type) }
    }
    guard space >= 0, type >= 0 else { return }
    let rank = Int(H5Sget_simple_extent_ndims(space))
    guard rank > 0, rank <= 32 else { return }
    var dims = [hsize_t](repeating: 0, count: rank)
    H5Sget_simple_extent_dims(space, &dims, nil)
    let size = H5Tget_size(type)
    guard size > 0, size <= 1 << 16 else { return }
    // One leading-axis slice at a time, up to 64 MiB per read.
    var perRow: UInt64 = UInt64(size)
    for d in dims.dropFirst() {
      let (product, overflow) = perRow.multipliedReportingOverflow(by: UInt64(d))
      guard !overflow else { return }
      perRow = product
    }
    guard perRow > 0, perRow <= 64 << 20 else { return }
    let rowsPerRead = max(1, (64 << 20) / Int(perRow))
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: rowsPerRead * Int(perRow), alignment: 16)
    defer { buffer.deallocate() }
    let memoryType = H5Tget_class(type) == H5T_FLOAT || H5Tget_class(type) == H5T_INTEGER ? H5Tcopy(type) : -1
    guard memoryType >= 0 else { return }
    defer { H5Tclose(memoryType) }
    var start: hsize_t = 0
    while start < dims[0] {
      let count = min(hsize_t(rowsPerRead), dims[0] - start)
      var offset = [hsize_t](repeating: 0, count: rank), extent = dims
      offset[0] = start
      extent[0] = count
      let fileSpace = H5Scopy(space)
      let memorySpace = H5Screate_simple(Int32(rank), extent, nil)
      defer {
        H5Sclose(fileSpace)
        H5Sclose(memorySpace)
      }
      guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, offset, nil, extent, nil) >= 0,
            H5Dread(dataset, memoryType, memorySpace, fileSpace, ch5_p_default(), buffer) >= 0 else { return }
      start += count
    }
  }
}
