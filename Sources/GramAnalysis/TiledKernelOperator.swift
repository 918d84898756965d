import CLAPACK
import Foundation
import GramMicroKernels
import GramSolver
import GramStorage
import GramTiling
import GramTransport

/// The train kernel of a kernel file as a distributed `KernelOperator`.
///
/// Each rank owns a balanced share of the upper-triangle tiles (`TileAssignment`) and uses each
/// tile twice (`K_rc·x_c` into rows r, `K_rcᵀ·x_r` into rows c), which halves the I/O of a
/// full-matrix pass; partial products are summed over the ranks with `allReduce`. Tiles are
/// kept in memory, in their stored precision, while they fit in `memoryBudget` bytes; the rest
/// are read from the file on every pass, one tile-aligned chunk at a time with HDF5's chunk
/// cache bypassed (a cache would only copy each chunk twice). Products accumulate in float64.
///
/// In a file of format 2 or later the tiles that fit are not copied at all: the dataset is
/// mapped read-only (`MappedRegion`) and each tile is used in place, rows `n` apart (contiguous)
/// or one chunk's width apart (tiled: a tile is its chunk). Nothing is read before the first
/// pass but the check that every value is finite; the pages are the page cache's, and ranks on
/// one host share them.
///
/// Every tile is checked once, at its first read (the finite check, in the same sweep), against
/// the checksum the build stored for it (`/tiles/checksums`): a changed value is an error naming
/// the file, the dataset and the tile, whichever rank reads it and whatever the layout.
public final class TiledKernelOperator: KernelOperator {
  public let n: Int
  public let diagonal: [Double]
  public private(set) var passes = 0
  let comm: Communicator
  let dataset: H5Dataset
  /// The dataset's bytes for `pread` (format 2 and later): a tile is one read per row
  /// (contiguous) or one read (tiled), with no HDF5 sieve buffer copying around it.
  let region: (file: RegionFile, region: KernelRegion)?
  let plan: TilePlan
  let mine: [Int]
  var cache: [Int: StoredValues] = [:]
  /// The stored tile checksums (nil: the file records none), and the tiles already checked.
  let checksums: TileChecksums?
  let kernel: String
  var checkedTiles = Set<Int>()
  /// The dataset mapped, and the tiles used from the mapping.
  let mapped: MappedRegion?
  var mappedTiles = Set<Int>()
  public let cachedTiles: Int
  public let streamedTiles: Int
  public let fileName: String

  /// `/train/<kernel>` of `path` (checked square and float) and the file's tile edge.
  public static func stored(path: String, kernel: String) throws -> (dataset: H5Dataset, tile: Int) {
    let file = try H5File.open(path)
    guard file.exists(KernelFileLayout.train(kernel)) else { throw StorageError(path, "no dataset \(KernelFileLayout.train(kernel))") }
    let dataset = try file.dataset(KernelFileLayout.train(kernel), chunkCacheBytes: 0)
    guard dataset.shape.count == 2, dataset.shape[0] == dataset.shape[1], dataset.shape[0] > 0, dataset.scalarType != nil else {
      throw StorageError(path, "\(KernelFileLayout.train(kernel)) is not a square float matrix (shape \(dataset.shape))")
    }
    var tile = 1024
    if case .int(let t)? = try file.attribute("tile"), t > 0 { tile = Int(t) }
    return (dataset, tile)
  }

  /// Opens `/train/<kernel>` of `path`.
  public init(path: String, kernel: String, comm: Communicator, memoryBudget: Int) throws {
    fileName = path
    let (dataset, tile) = try Self.stored(path: path, kernel: kernel)
    self.dataset = dataset
    self.kernel = kernel
    checksums = try TileChecksums.read(H5File.open(path))
    n = dataset.shape[0]
    region = try KernelRegion.of(dataset).map { (try RegionFile(path: path, writable: false), $0) }
    plan = TilePlan(trainCount: n, testCount: 0, tileSize: tile)
    self.comm = comm
    mine = TileAssignment(plan: plan, ranks: comm.size).tiles(of: comm.rank)
    // Keep tiles (mapped, or copied when the file is chunked) in order while they fit; read the
    // diagonal from the diagonal tiles.
    let keep = Set(plan.kept(mine, bytesPerValue: dataset.scalarType!.byteCount, budget: memoryBudget))
    var diag = [Double](repeating: 0, count: n)
    var failure: Error? = nil
    var mapping: MappedRegion? = nil
    do {
      if let region {
        mapping = try MappedRegion(path: path, region: region.region)
        for t in mine.filter(keep.contains).map(plan.tile) { region.file.readAhead(region.region, row: t.rows.lowerBound, col: t.cols.lowerBound) }
      }
      for index in mine {
        let t = plan.tile(index)
        let fits = keep.contains(index)
        if let mapping, fits, mapping.region.isStrided(rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound,
                                                       rows: t.rows.count, cols: t.cols.count) {
          let (finite, sum) = mapping.scan(rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound, rows: t.rows.count, cols: t.cols.count)
          guard finite else { throw StorageError(path, "\(dataset.name) has NaN or infinite values in \(t)") }
          try checksums?.check(sum, index: index, kernel: kernel, dataset: dataset.name, tile: t)
          checkedTiles.insert(index)
          mappedTiles.insert(index)
          if t.isDiagonal { for i in t.rows { diag[i] = mapping.value(row: i, col: i) } }
          continue
        }
        guard fits || t.isDiagonal else { continue }  // streamed later; read now only for the diagonal
        let values = try Self.read(dataset, index, t, path: path, region: region, checksums: checksums, kernel: kernel,
                                   checked: &checkedTiles)
        if t.isDiagonal {
          let d = values.doubles
          for i in 0..<t.rows.count { diag[t.rows.lowerBound + i] = d[i * t.cols.count + i] }
        }
        if fits { cache[index] = values }
      }
    } catch { failure = error }
    mapped = mappedTiles.isEmpty ? nil : mapping
    try comm.raiseIfAnyFailed(failure)
    try comm.allReduce(&diag, .sum)
    diagonal = diag
    var counts = [Double(keep.count), Double(mine.count - keep.count)]
    try comm.allReduce(&counts, .sum)
    cachedTiles = Int(counts[0])
    streamedTiles = Int(counts[1])
  }

  static func readTile(_ d: H5Dataset, _ t: Tile, path: String, region: (file: RegionFile, region: KernelRegion)? = nil) throws -> StoredValues {
    let v = try region.map { try $0.file.read($0.region, rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound, rows: t.rows.count, cols: t.cols.count) }
      ?? d.readStored(start: [t.rows.lowerBound, t.cols.lowerBound], count: [t.rows.count, t.cols.count])
    guard v.allFinite else { throw StorageError(path, "\(d.name) has NaN or infinite values in \(t)") }
    return v
  }

  /// Tile `index` (`t`) read from the file, checked against its stored checksum the first time.
  func read(_ index: Int, _ t: Tile) throws -> StoredValues {
    try Self.read(dataset, index, t, path: fileName, region: region, checksums: checksums, kernel: kernel, checked: &checkedTiles)
  }

  /// `readTile`, and the tile's checksum against the stored one unless `checked` holds it.
  static func read(_ d: H5Dataset, _ index: Int, _ t: Tile, path: String, region: (file: RegionFile, region: KernelRegion)?,
                   checksums: TileChecksums?, kernel: String, checked: inout Set<Int>) throws -> StoredValues {
    let values = try readTile(d, t, path: path, region: region)
    if !checked.contains(index) {
      try checksums?.check(values.checksum, index: index, kernel: kernel, dataset: d.name, tile: t)
      checked.insert(index)
    }
    return values
  }

  /// Columns of K: in a file of format 2 or later the whole symmetric matrix is stored, so
  /// column j is row j, read with `pread` (one read, or one per chunk it crosses; never the
  /// mapping: a whole row would map pages of other ranks' tiles into this rank's resident set);
  /// the rows are shared out over the ranks and summed. Format-1 files take one pass with unit
  /// vectors.
  public func columns(_ indices: [Int]) throws -> DenseBlock {
    guard let region else { return try unitVectorColumns(indices) }
    let s = indices.count
    var out = DenseBlock(rows: n, cols: s)
    var failure: Error? = nil
    do {
      for (k, j) in indices.enumerated() where k % comm.size == comm.rank {
        let stored = try region.file.read(region.region, rowStart: j, colStart: 0, rows: 1, cols: n)
        guard stored.allFinite else { throw StorageError(fileName, "\(dataset.name) has NaN or infinite values in row \(j)") }
        let row = stored.doubles
        for i in 0..<n { out.values[i * s + k] = row[i] }
      }
    } catch { failure = error }
    try comm.raiseIfAnyFailed(failure)
    try comm.allReduce(&out.values, .sum)
    return out
  }

  /// Bytes of the kernel file's mapping in this rank's resident set now (0 when nothing is
  /// mapped): what `ntkgram plan` predicts as the mapped pages (`SolveMemory.mappedBytes`).
  public var mappedResidentBytes: Int { mapped?.residentBytes() ?? 0 }

  /// Rows shared out evenly and contiguously over the ranks.
  public var ownedRows: Range<Int> { (n * comm.rank / comm.size) ..< (n * (comm.rank + 1) / comm.size) }

  public func sumOverProcesses(_ values: inout [Double]) throws { try comm.allReduce(&values, .sum) }

  /// Blocks up to this many columns take the fused one-sweep product; wider ones, dgemm.
  static let fusedColumnLimit = 32

  public func apply(_ x: DenseBlock) throws -> DenseBlock {
    precondition(x.rows == n, "TiledKernelOperator.apply: wrong row count")
    if x.cols > Self.fusedColumnLimit { return try applyWide(x) }
    let c = x.cols
    let lanes = (c + 3) / 4
    // x and y with their columns padded to whole SIMD4s (see `symmetricTileProduct`).
    var xp = [SIMD4<Double>](repeating: SIMD4(), count: n * lanes)
    for i in 0..<n { for j in 0..<c { xp[i * lanes + j / 4][j % 4] = x.values[i * c + j] } }
    var yp = [SIMD4<Double>](repeating: SIMD4(), count: n * lanes)
    var failure: Error? = nil
    if c > 0 { do {
      for index in mine {
        let t = plan.tile(index)
        let stored = mappedTiles.contains(index) ? nil : try cache[index] ?? read(index, t)
        xp.withUnsafeBufferPointer { xb in yp.withUnsafeMutableBufferPointer { yb in
          func product<T: BinaryFloatingPoint>(_ k: UnsafePointer<T>, ld: Int) {
            symmetricTileProduct(k, rows: t.rows.count, cols: t.cols.count, rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound,
                                 diagonal: t.isDiagonal, x: xb.baseAddress!, y: yb.baseAddress!, lanes: lanes, ld: ld)
          }
          guard let stored else {
            let mapped = mapped!
            switch mapped.region.scalarType {
            case .float32: product(mapped.pointer(Float.self, row: t.rows.lowerBound, col: t.cols.lowerBound), ld: mapped.region.rowStride)
            case .float64: product(mapped.pointer(Double.self, row: t.rows.lowerBound, col: t.cols.lowerBound), ld: mapped.region.rowStride)
            }
            return
          }
          switch stored {
          case .float32(let v): v.withUnsafeBufferPointer { product($0.baseAddress!, ld: t.cols.count) }
          case .float64(let v): v.withUnsafeBufferPointer { product($0.baseAddress!, ld: t.cols.count) }
          }
        } }
      }
    } catch { failure = error } }
    // A rank that failed to read a tile still meets the others here, so none waits forever.
    try comm.raiseIfAnyFailed(failure)
    var y = DenseBlock(rows: n, cols: c)
    for i in 0..<n { for j in 0..<c { y.values[i * c + j] = yp[i * lanes + j / 4][j % 4] } }
    try comm.allReduce(&y.values, .sum)
    passes += 1
    return y
  }
  /// Tile `index` (`t`) as values: from the mapping or the cache, else read from the file.
  func tile(_ index: Int, _ t: Tile) throws -> StoredValues {
    if let mapped, mappedTiles.contains(index) {
      return mapped.read(rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound, rows: t.rows.count, cols: t.cols.count)
    }
    return try cache[index] ?? read(index, t)
  }

  /// Wide blocks (the Nyström sketch): widen each tile to float64 and use two dgemms.
  func applyWide(_ x: DenseBlock) throws -> DenseBlock {
    precondition(x.rows == n, "TiledKernelOperator.apply: wrong row count")
    var y = DenseBlock(rows: n, cols: x.cols)
    let c = x.cols
    var scratch: [Double] = []
    var failure: Error? = nil
    if c > 0 { do {
      for index in mine {
        let t = plan.tile(index)
        let stored = try tile(index, t)
        let (m, w) = (t.rows.count, t.cols.count)
        switch stored {
        case .float64(let v): scratch = v
        case .float32(let v):
          if scratch.count != v.count { scratch = [Double](repeating: 0, count: v.count) }
          for k in v.indices { scratch[k] = Double(v[k]) }
        }
        scratch.withUnsafeBufferPointer { kp in x.values.withUnsafeBufferPointer { xp in y.values.withUnsafeMutableBufferPointer { yp in
          // y[rows] += K_rc · x[cols]
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(c), Int32(w), 1,
                      kp.baseAddress, Int32(w), xp.baseAddress! + t.cols.lowerBound * c, Int32(c),
                      1, yp.baseAddress! + t.rows.lowerBound * c, Int32(c))
          if !t.isDiagonal {
            // y[cols] += K_rcᵀ · x[rows]
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(w), Int32(c), Int32(m), 1,
                        kp.baseAddress, Int32(w), xp.baseAddress! + t.rows.lowerBound * c, Int32(c),
                        1, yp.baseAddress! + t.cols.lowerBound * c, Int32(c))
          }
        } } }
      }
    } catch { failure = error } }
    // A rank that failed to read a tile still meets the others here, so none waits forever.
    try comm.raiseIfAnyFailed(failure)
    try comm.allReduce(&y.values, .sum)
    passes += 1
    return y
  }
}

/// `K(test, train) · α` streamed tile by tile from `/test/<kernel>`, split over the ranks.
public func crossKernelProduct(path: String, kernel: String, alpha: DenseBlock, comm: Communicator) throws -> DenseBlock {
  let file = try H5File.open(path)
  let name = KernelFileLayout.test(kernel)
  guard file.exists(name) else { throw StorageError(path, "no dataset \(name): the kernel file has no test set") }
  let d = try file.dataset(name, chunkCacheBytes: 0)
  guard d.shape.count == 2, d.shape[1] == alpha.rows else {
    throw StorageError(path, "\(name) has shape \(d.shape), but α has \(alpha.rows) rows")
  }
  let (m, n) = (d.shape[0], d.shape[1])
  guard n > 0 else { throw StorageError(path, "\(name) has shape \(d.shape): no training columns") }
  var tile = 1024
  if case .int(let t)? = try file.attribute("tile"), t > 0 { tile = Int(t) }
  let plan = TilePlan(trainCount: n, testCount: m, tileSize: tile)
  let testTiles = Array(plan.trainTileCount ..< plan.count)
  let mine = TileAssignment(plan: plan, tiles: testTiles, ranks: comm.size).tiles(of: comm.rank)
  // A cross kernel (`build --against`) records the test tiles only, from index 0.
  let checksums = try TileChecksums.read(file)
  let firstRecorded = checksums?.tiles == plan.testTileCount && !file.exists(KernelFileLayout.train(kernel)) ? plan.trainTileCount : 0
  let recordedPlan = firstRecorded > 0 ? TilePlan(trainCount: n, testCount: m, tileSize: tile, includesTrain: false) : plan
  var out = DenseBlock(rows: m, cols: alpha.cols)
  let c = alpha.cols
  var failure: Error? = nil
  do {
  let region = try KernelRegion.of(d).map { (file: try RegionFile(path: path, writable: false), region: $0) }
  for index in mine {
    let t = plan.tile(index)
    let stored = try TiledKernelOperator.readTile(d, t, path: path, region: region)
    try checksums?.check(stored.checksum, index: index - firstRecorded, kernel: kernel, dataset: name,
                         tile: recordedPlan.tile(index - firstRecorded))
    let k = stored.doubles
    k.withUnsafeBufferPointer { kp in alpha.values.withUnsafeBufferPointer { ap in out.values.withUnsafeMutableBufferPointer { op in
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(t.rows.count), Int32(c), Int32(t.cols.count), 1,
                  kp.baseAddress, Int32(t.cols.count), ap.baseAddress! + t.cols.lowerBound * c, Int32(c),
                  1, op.baseAddress! + t.rows.lowerBound * c, Int32(c))
    } } }
  } } catch { failure = error }
  try comm.raiseIfAnyFailed(failure)
  try comm.allReduce(&out.values, .sum)
  return out
}

/// The OpenBLAS core type to restart with on this CPU, when OpenBLAS chose kernels without
/// AVX2 (`preferredLinearAlgebraCore`); nil to keep its choice.
public func preferredLinearAlgebraCoreForThisCPU() -> String? {
  preferredLinearAlgebraCore(avx512: GramISA.avx512.isSupported, avx2: GramISA.avx2.isSupported)
}
