import Foundation
import GramBuild
import GramEvents
import GramStorage
import GramTraining
import GramTransport
import Testing

/// `train` reports every step to its sink, recorded or not, with that step's training loss.
@Suite("train's progress, in-process ranks", .serialized)
struct TrainProgressTests {
  static func settings(_ d: String, times: [Double], out: String) -> TrainSettings {
    var build = BuildDriverTests.settings(d, out: out)
    build.test = nil
    build.empirical = .seed(3)
    var s = TrainSettings(build: build)
    s.times = times
    s.targets = d + "/y.npy"
    s.learningRate = 0.5
    return s
  }

  static func losses(_ sink: CollectingSink) -> [Int: Double] {
    var out: [Int: Double] = [:]
    for case .progress(.training(let step, _, let loss, _, _)) in sink.entries { out[step] = loss }
    return out
  }

  @Test("every step between the recorded ones is reported, with the loss a run recording it gets", arguments: [1, 2])
  func everyStep(ranks: Int) throws {
    let d = try BuildDriverTests.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try BuildDriverTests.writeData(d)
    try NPY.write(DenseArray(rows: 41, cols: 1, values: (0..<41).map { Double($0 % 3) - 1 }), to: d + "/y.npy")
    let sparse = Self.settings(d, times: [0, 12], out: d + "/sparse.h5")
    let sinks = (0..<ranks).map { _ in CollectingSink() }
    _ = try onRanks(ranks) { comm in try TrainDriver(settings: sparse, comm: comm, events: sinks[comm.rank]).run() }
    let reported = Self.losses(sinks[0])
    #expect(Set(reported.keys) == Set(0...12), "\(reported.keys.sorted())")
    #expect(ranks == 1 || Self.losses(sinks[1]).isEmpty)  // rank 0 reports
    // The loss reported at an unrecorded step is the one a run recording that step writes.
    let dense = Self.settings(d, times: [0, 4, 9, 12], out: d + "/dense.h5")
    let report = try onRanks(ranks) { comm in try TrainDriver(settings: dense, comm: comm).run() }[0]
    for p in report.points {
      let shown = try #require(reported[p.step])
      #expect(abs(shown - p.trainLoss) <= 1e-12 * p.trainLoss, "step \(p.step): \(shown) against \(p.trainLoss)")
    }
    // Reporting changes no weight: the sparse run's final parameters are the dense run's.
    let a = try H5File.open(d + "/sparse.h5"), b = try H5File.open(d + "/dense.h5")
    for name in ["/params/0/W", "/params/2/W", "/params/4/W", "/params/4/b"] {
      #expect(try a.dataset(name).readAll() == b.dataset(name).readAll(), "\(name)")
    }
  }
}
