/// What a process's resident set counts when it uses tiles of a row-major matrix in place from
/// a shared, read-only mapping of the file that stores it (the solve's kept tiles).
///
/// A page of a file mapping counts once it is mapped, and Linux maps a read fault's whole
/// aligned window of pages already in the page cache (fault-around, `fault_around_bytes`,
/// 64 KiB by default), not the one page touched. A tile's rows are short pieces of long matrix
/// rows (4 KiB of a 240 KiB row for float32 tiles of 1024 at n = 60,000), so the windows around
/// them take in pages of the neighbouring tiles, and of the lower triangle no rank uses: the
/// resident set is the union of the windows that the tiles' rows cross, 2.4 times the tiles'
/// bytes there. Side-by-side tiles of a tile row share their windows; the count is exact for a
/// given byte offset of the matrix in the file and window size.
public enum MappedFootprint {
  /// Linux's default fault-around window.
  public static let faultAroundBytes = 65_536

  /// Bytes of the union of the `window`-aligned windows crossed by the rows of `tiles`, in an
  /// `n`-column row-major matrix of `bytesPerValue`-byte values starting `offset` bytes into
  /// the file.
  public static func bytes(of tiles: [Tile], columns n: Int, bytesPerValue: Int, offset: Int = 0,
                           window: Int = faultAroundBytes) -> Int {
    precondition(window > 0 && bytesPerValue > 0 && offset >= 0, "MappedFootprint.bytes: bad window, value size or offset")
    var windows = 0
    var last = -1  // the last window counted; rows are visited in file order
    for (_, row) in Dictionary(grouping: tiles, by: { $0.rows.lowerBound }).sorted(by: { $0.key < $1.key }) {
      // The tile row's side-by-side tiles as runs of columns.
      var runs: [Range<Int>] = []
      for t in row.sorted(by: { $0.cols.lowerBound < $1.cols.lowerBound }) where !t.cols.isEmpty {
        if let end = runs.last?.upperBound, end == t.cols.lowerBound {
          runs[runs.count - 1] = runs[runs.count - 1].lowerBound ..< t.cols.upperBound
        } else {
          runs.append(t.cols)
        }
      }
      for i in row[0].rows {
        for cols in runs {
          let first = (offset + (i * n + cols.lowerBound) * bytesPerValue) / window
          let end = (offset + (i * n + cols.upperBound) * bytesPerValue - 1) / window
          windows += max(0, end - max(first, last + 1) + 1)
          last = max(last, end)
        }
      }
    }
    return windows * window
  }

  /// The same for a tiled file (`KernelRegion` with chunks of `tile`, clamped to `n`): a tile is
  /// its chunk, one contiguous range, and the windows are those its bytes cross, counted from
  /// the first chunk (the file aligns it to 64 KiB). A chunk whose size is a whole number of
  /// windows maps exactly its bytes.
  public static func bytes(ofTiles tiles: [Tile], chunkedBy tile: Int, columns n: Int, bytesPerValue: Int,
                           window: Int = faultAroundBytes) -> Int {
    precondition(window > 0 && bytesPerValue > 0 && tile > 0, "MappedFootprint.bytes: bad window, value size or tile")
    let edge = min(tile, n), across = (n + edge - 1) / edge
    let chunkBytes = edge * edge * bytesPerValue
    func index(_ t: Tile) -> Int { (t.rows.lowerBound / edge) * across + t.cols.lowerBound / edge }
    var windows = 0
    var last = -1
    for t in tiles.sorted(by: { index($0) < index($1) }) where !t.rows.isEmpty && !t.cols.isEmpty {
      let start = index(t) * chunkBytes
      let end = start + ((t.rows.count - 1) * edge + t.cols.count) * bytesPerValue
      let (first, final) = (start / window, (end - 1) / window)
      windows += max(0, final - max(first, last + 1) + 1)
      last = max(last, final)
    }
    return windows * window
  }
}
