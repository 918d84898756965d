import Foundation
import GramNetwork
import Testing
@testable import GramBuild

@Suite("what the messages name: the cause of an overflow, where verified data was read")
struct MessagesTests {
  @Test("an overflowing self-pair blames the data, a layer's W_std or b_std, or a weights file and its dataset")
  func overflowCause() throws {
    let out: (Double) -> Bool = { !$0.isFinite }
    let row = [0.5, -2, 3]
    func cause(_ network: Network, _ row: [Double], empirical: EmpiricalSpec? = nil) throws -> OverflowCause {
      let spec = KernelSpec(network: network, inputShape: [3], preprocess: .none, gramPrecision: .float64, empirical: empirical)
      let k = try spec.makeKernel()
      #expect(k.referenceEntry(row, row).contains(where: out))
      return OverflowCause.find(kernel: k, row: row, spec: spec, outOfRange: out)
    }
    let usual = Network.fullyConnected(depth: 2, activation: .relu, wStd: 1.5, bStd: 0.1, width: 8)
    #expect(try cause(usual, row.map { $0 * 1e200 }) == .data)
    let wide = Network.fullyConnected(depth: 2, activation: .relu, wStd: 1e200, bStd: 0.1, width: 8)
    #expect(try cause(wide, row) == .hyperparameter(position: 0, type: "dense", name: "W_std", value: 1e200))
    let biased = Network.fullyConnected(depth: 2, activation: .erf, wStd: 1, bStd: 1e300, width: 8)
    #expect(try cause(biased, row) == .hyperparameter(position: 0, type: "dense", name: "b_std", value: 1e300))
    // Weights read from a file: the dataset with the largest values, when they (not W_std) are large.
    var parameters = try NetworkParameters.draw(usual, inputShape: [3], seed: 1)
    let largest = parameters.dense[1].W.map { abs($0) }.max()! * 1e200
    parameters.dense[1].W = parameters.dense[1].W.map { $0 * 1e200 }
    let given = EmpiricalSpec(parameters: parameters, seed: nil, source: "w.h5")
    #expect(try cause(usual, row, empirical: given) == .weightsFile(path: "w.h5", dataset: "/params/2/W", position: 2, largest: largest))
    let drawn = try NetworkParameters.draw(wide, inputShape: [3], seed: 1)
    let plain = EmpiricalSpec(parameters: drawn, seed: nil, source: "w.h5")
    guard case .hyperparameter(_, "dense", "W_std", 1e200) = try cause(wide, row, empirical: plain) else {
      Issue.record("a file of usual weights under W_std 1e200 blamed the file"); return
    }
    #expect(OverflowCause.unitNorm([0, 3 * 0x1p1000, -4 * 0x1p1000]) == [0, 0.6, -0.8])
    #expect(OverflowCause.unitNorm([0, 0]) == [0, 0])
  }

  @Test("verify's note on data given anew: none for the recorded file, both places for a copy, moved for a gone one")
  func placeNote() throws {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("place-\(getpid())").path
    try FileManager.default.createDirectory(atPath: d + "/sub", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Data("x".utf8).write(to: URL(fileURLWithPath: d + "/x.npy"))
    try FileManager.default.createSymbolicLink(atPath: d + "/sub/link.npy", withDestinationPath: d + "/x.npy")
    try FileManager.default.copyItem(atPath: d + "/x.npy", toPath: d + "/sub/copy.npy")
    let recorded = d + "/x.npy"
    for same in [recorded, d + "/sub/../x.npy", d + "/./x.npy", d + "/sub/link.npy"] {
      #expect(KernelVerifier.placeNote(same, recorded: recorded) == "", "\(same)")
    }
    #expect(KernelVerifier.placeNote(nil, recorded: recorded) == "")
    #expect(KernelVerifier.placeNote(d + "/sub/copy.npy", recorded: recorded) == " (read from \(d)/sub/copy.npy, not from the recorded \(recorded))")
    #expect(KernelVerifier.placeNote(d + "/sub/copy.npy", recorded: d + "/gone.npy") == " (moved: now at \(d)/sub/copy.npy)")
    // An HDF5 file's other dataset is other data.
    #expect(KernelVerifier.placeNote(d + "/x.h5:/b", recorded: d + "/x.h5:/a") != "")
  }
}
