import GramKernels
import GramNetwork
import GramStorage

/// What `ntkgram info` shows of a kernel file: its datasets, its network layer by layer (from
/// the `network` attribute), the computation path the network takes, and every attribute.
public struct KernelFileSummary: Sendable {
  public var lines: [String] = []

  public init(path: String) throws {
    let f = try H5File.open(path)
    lines.append("file: \(path)")
    for name in ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp", "/train/labels", "/test/labels"] where f.exists(name) {
      let d = try f.dataset(name)
      let type = d.scalarType?.rawValue ?? (d.isInteger ? "int64" : "?")
      let tiles = KernelRegion.of(d).flatMap { $0.isTiled ? ", in chunks of \($0.chunkRows)×\($0.chunkCols)" : nil } ?? ""
      lines.append("  \(name): \(d.shape.map(String.init).joined(separator: "×")) \(type)\(tiles)")
    }
    if let spec = try? KernelSpec.read(from: f) {
      lines.append("input shape: \(spec.inputShape.map(String.init).joined(separator: "×")) (preprocess \(spec.preprocess.rawValue)\(spec.zcaStrength.map { " with zca_strength \($0)" } ?? "")\(spec.augment == .none ? "" : ", training set augmented by \(spec.augment.rawValue)"), dot products \(spec.gramPrecision.rawValue)\(spec.network.isConvolutional && spec.empirical == nil ? ", recursion \(spec.computePrecision.rawValue)" : ""))")
      lines.append("network (\(spec.network.layers.count) layers; \(KernelFactory.path(of: spec.network, inputShape: spec.inputShape, empirical: spec.empirical != nil))):")
      lines += spec.network.lines.map { "  " + $0 }
    }
    lines.append("attributes:")
    for name in try f.attributeNames() {
      if let v = try f.attribute(name) { lines.append("  @\(name) = \(v)") }
    }
  }
}
