import Foundation
@testable import GramBuild
import GramData
import GramStorage
import GramTiling
import GramTransport
import Testing

/// The build's data read in chunks against the same data read whole.
@Suite("streamed inputs")
struct StreamedInputsTests {
  /// Same checksums, statistics and rows (held blocks only) as the whole reading, for every
  /// preprocessing; and a data file changed between the first reading and the held rows' is an
  /// error naming it, never a different kernel.
  @Test("streamed and whole readings agree; data changed during a build is refused", arguments: Preprocess.allCases)
  func agreeAndRefuseChanges(preprocess: Preprocess) throws {
    let d = try BuildDriverTests.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try BuildDriverTests.writeData(d)
    var s = BuildDriverTests.settings(d, out: d + "/k.h5")
    s.preprocess = preprocess
    let driver = BuildDriver(settings: s, comm: LocalCommunicator.group(size: 1)[0])
    // Read in chunks, not kept (as data beyond `BuildPlan.keptDataBytes` is); read in chunks and
    // kept from that one reading (small data); read whole.
    let streamed = try driver.loadStreamed(keeping: 0), kept = try driver.loadStreamed(), whole = try driver.loadWhole()
    #expect(streamed.trainMatrix == nil && whole.trainMatrix != nil)
    #expect(kept.trainMatrix == whole.trainMatrix && kept.testMatrix == whole.testMatrix)
    for read in [streamed, kept] {
      #expect(read.trainChecksum == whole.trainChecksum && read.testChecksum == whole.testChecksum)
      #expect(read.trainValuesChecksum == whole.trainValuesChecksum && read.testValuesChecksum == whole.testValuesChecksum)
      #expect(read.statistics == whole.statistics)
    }
    let plan = TilePlan(trainCount: streamed.trainRows, testCount: streamed.testRows, tileSize: s.tileSize)
    // The rank of 12 holding the fewest rows.
    let assignment = TileAssignment(plan: plan, ranks: 12)
    let rows = (0..<12).map { rank -> (train: RowBlocks, test: RowBlocks) in
      let held = TileAssignment.blocks(of: assignment.tiles(of: rank), plan: plan)
      return (RowBlocks(blocks: held.train, tileSize: s.tileSize, total: plan.trainCount),
              RowBlocks(blocks: held.test, tileSize: s.tileSize, total: plan.testCount))
    }.min { $0.train.count + $0.test.count < $1.train.count + $1.test.count }!
    #expect(rows.train.count < plan.trainCount)
    let a = try streamed.heldRows(rows), b = try whole.heldRows(rows), c = try kept.heldRows(rows)
    #expect(a.train == b.train && a.test == b.test)
    #expect(c.train == b.train && c.test == b.test)
    #expect(a.train == whole.trainMatrix!.rows(rows.train.sampleRanges))
    // Another content under the same name before the held rows are read.
    try NPY.write(DenseArray(rows: 41, cols: 9, values: (0..<(41 * 9)).map { Double($0) / 100 }), to: d + "/train.npy")
    do {
      _ = try streamed.heldRows(rows)
      Issue.record("a changed data file was read without an error")
    } catch let e as StorageError {
      #expect(e.description.contains("train.npy") && e.description.contains("changed while the build was reading it"), "\(e)")
    }
  }

  /// A flipped training set (the mirrors read in a second sweep of the file) and its zca fit
  /// (two more sweeps) give the same rows, checksums and whitening,
  /// bit for bit, as the whole reading.
  @Test("augmented and whitened: streamed and whole readings agree")
  func augmentedAgree() throws {
    let d = try BuildDriverTests.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try BuildDriverTests.writeData(d)
    var s = BuildDriverTests.settings(d, out: d + "/k.h5")
    s.preprocess = .zca
    s.zcaStrength = 0.01
    s.inputShape = [3, 3, 1]
    s.train.augment = .flip
    let driver = BuildDriver(settings: s, comm: LocalCommunicator.group(size: 1)[0])
    let streamed = try driver.loadStreamed(keeping: 0), whole = try driver.loadWhole()
    #expect(streamed.trainRows == 82 && whole.trainRows == 82 && streamed.testRows == 13)
    #expect(streamed.trainChecksum == whole.trainChecksum && streamed.trainValuesChecksum == whole.trainValuesChecksum)
    #expect(streamed.testValuesChecksum == whole.testValuesChecksum)
    #expect(streamed.statistics == whole.statistics && whole.statistics?.whitening?.count == 81)
    let all = (train: RowBlocks(blocks: [0, 6, 11], tileSize: 7, total: 82), test: RowBlocks(blocks: [1], tileSize: 7, total: 13))
    let a = try streamed.heldRows(all), b = try whole.heldRows(all)
    #expect(a.train == b.train && a.test == b.test)
    // Row 41 + i is row i mirrored (columns reversed in a 3 × 3 × 1 image), before whitening.
    let raw = try loadSplit(s.train, inputShape: [3, 3, 1]).samples
    for i in [0, 17, 40] {
      for y in 0..<3 { for x in 0..<3 { #expect(raw[41 + i, y * 3 + x] == raw[i, y * 3 + 2 - x]) } }
    }
    // The statistics of a fresh streamed split are the whole reading's.
    let split = try StreamedSplit(s.train, inputShape: [3, 3, 1])
    #expect(split.rows == 82 && split.labels == nil)
    #expect(try PreprocessStatistics.of(split, for: .zca, zcaStrength: 0.01) == whole.statistics)
  }
}
