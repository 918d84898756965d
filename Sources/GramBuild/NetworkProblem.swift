import GramNetwork

/// What is wrong with a layer list that cannot make a kernel of the data, in the user's terms:
/// where the list came from (`origin`: the job file, `--layers`, `--preset`), and for a preset
/// — whose layers the user never wrote — its name, the images it got and the smallest it takes,
/// instead of an internal `kernel.layers[k]`.
public enum NetworkProblem {
  /// One line: `origin: problem`, rephrased for a preset. `data` names the samples (their file,
  /// and `--input-shape` when that gave their shape), `shape` is what the network saw.
  public static func describe(_ problem: String, network: Network, preset: String?, origin: String?,
                              data: String, shape: [Int]) -> String {
    let prefix = origin.map { "\($0): " } ?? ""
    guard let preset else { return prefix + problem }
    guard shape.count == 3 else {
      return "\(prefix)preset \(preset) needs images (H×W×C samples), but \(data) has flat rows of \(shape.reduce(1, *)) features: give their shape with --input-shape H,W,C ([data] input_shape)"
    }
    let smallest = network.smallestImage
    if shape[0] < smallest.height || shape[1] < smallest.width {
      let pools = network.layers.filter { if case .avgPool = $0 { true } else { false } }.count
      return "\(prefix)preset \(preset) takes images of at least \(smallest.height)×\(smallest.width) pixels" +
        (pools > 0 ? " (each of its \(pools) average pools halves them)" : "") +
        ", but \(data) has images of \(shape[0])×\(shape[1]) (\(shape[2]) channel\(shape[2] == 1 ? "" : "s")): use larger images, or write the network as a layer list with fewer pools (--layers, [[kernel.layers]])"
    }
    return "\(prefix)preset \(preset): \(withoutPosition(problem))"
  }

  /// `problem` without its leading `kernel.layers[k] (type): ` (a preset's layers are not the
  /// user's to find).
  static func withoutPosition(_ problem: String) -> String {
    guard problem.hasPrefix("kernel.layers["), let end = problem.range(of: ": ") else { return problem }
    return String(problem[end.upperBound...])
  }
}
