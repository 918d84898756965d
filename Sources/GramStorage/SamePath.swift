import Foundation

/// Whether two paths name the same file or folder: the same device and inode when both exist
/// (hard links, symbolic links, `..`, `./` all resolved by the file system), else the same
/// absolute path once the existing part is resolved. An HDF5 `file.h5:/dataset` names its file.
public func samePath(_ a: String, _ b: String) -> Bool {
  func file(_ p: String) -> String {
    for ext in [".h5:", ".hdf5:", ".he5:"] {
      if let r = p.range(of: ext) { return String(p[..<r.lowerBound]) + ext.dropLast() }
    }
    return p
  }
  let (x, y) = (file(a), file(b))
  var sx = stat(), sy = stat()
  if stat(x, &sx) == 0, stat(y, &sy) == 0 { return sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino }
  return canonicalPath(x) == canonicalPath(y)
}

/// The absolute path of `p` with its existing ancestors resolved by the file system.
public func canonicalPath(_ p: String) -> String {
  let absolute = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
  var head = URL(fileURLWithPath: absolute).standardized.path
  var tail: [String] = []
  while !head.isEmpty && head != "/" {
    if let r = realpath(head, nil) {
      defer { free(r) }
      return ([String(cString: r)] + tail.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
    }
    tail.append(URL(fileURLWithPath: head).lastPathComponent)
    head = URL(fileURLWithPath: head).deletingLastPathComponent().path
  }
  return "/" + tail.reversed().joined(separator: "/")
}
