import GramNetwork

/// Makes the kernel of a layer list: the one place that knows which architectures exist.
///
/// A new architecture (convolutional, empirical) adds its case here and its `GramKernel`
/// conformance beside `FullyConnected`; the build, the verifier and the planner call only this.
public enum KernelFactory {
  /// The kernel of `network` on samples of shape `inputShape` (`[d]` or `[H, W, C]`).
  /// Throws a `NetworkError` naming the first layer that cannot take its input or that is not
  /// implemented.
  public static func make(network: Network, inputShape: [Int], gramPrecision: GramPrecision,
                          computePrecision: ComputePrecision = .float64,
                          parameters: NetworkParameters? = nil) throws -> any GramKernel {
    _ = try network.shapes(input: inputShape)
    if computePrecision != .float64 && (parameters != nil || !network.isConvolutional) {
      throw KernelSpecError("compute_precision \(computePrecision.rawValue) applies to the convolutional kernels only (\(parameters != nil ? "empirical kernels compute in float64" : "fully-connected kernels: gram_precision sets their dot products"))")
    }
    if let parameters {
      guard gramPrecision == .float64 else {
        throw KernelSpecError("gram_precision float32 is not implemented for empirical kernels (their products are float64)")
      }
      return EmpiricalKernel(network: try ConcreteNetwork(network: network, inputShape: inputShape, parameters: parameters))
    }
    if network.isConvolutional {
      return try Convolutional(network: network, inputShape: inputShape, gramPrecision: gramPrecision,
                               computePrecision: computePrecision)
    }
    return try FullyConnected(network: network, gramPrecision: gramPrecision)
  }

  /// Which computation a network takes on inputs of `inputShape`, and why, for `ntkgram info`
  /// and `plan`.
  public static func path(of network: Network, inputShape: [Int], empirical: Bool = false) -> String {
    if empirical { return "empirical: each sample's forward and backward pass, then per layer a Gram of its inputs times a Gram of its output derivatives" }
    guard network.isConvolutional else { return "fully connected: one dot product per pair, then the layer recursion" }
    if let conv = try? Convolutional(network: network, inputShape: inputShape) { return conv.pathDescription }
    return "convolutional"
  }
}
