/// How a dense or convolutional layer's weights are scaled (neural-tangents' `parameterization`).
public enum Parameterization: String, Sendable, CaseIterable {
  /// `f = (W_std/√n)·W·x + b_std·b` with unit-variance parameters.
  case ntk
  /// `f = W·x + b` with `W ~ N(0, W_std²/n)`, `b ~ N(0, b_std²)`: the NTK depends on the widths.
  case standard
}

/// Spatial padding of a convolution or pooling window (neural-tangents' `Padding`).
public enum Padding: String, Sendable, CaseIterable {
  /// Output size ⌈in/stride⌉; the odd padding pixel goes at the end (`lax.padtype_to_pads`).
  case same = "SAME"
  /// No padding: output size ⌊(in − window)/stride⌋ + 1.
  case valid = "VALID"
  /// Wrap-around (output size as SAME).
  case circular = "CIRCULAR"
}

/// The weights of a `dense` or `conv` layer.
public struct Affine: Sendable, Equatable {
  public var wStd: Double
  /// nil: no bias at all (not the same as 0 under the standard parameterization).
  public var bStd: Double?
  /// Output features (dense) or channels (conv): the fan-in of the next layer.
  public var width: Int
  public var parameterization: Parameterization

  public init(wStd: Double, bStd: Double?, width: Int, parameterization: Parameterization) {
    self.wStd = wStd
    self.bStd = bStd
    self.width = width
    self.parameterization = parameterization
  }
}

/// A convolution's window: `filter`, `strides` and `padding` over (height, width).
public struct Window: Sendable, Equatable {
  public var size: [Int]
  public var strides: [Int]
  public var padding: Padding

  public init(size: [Int], strides: [Int], padding: Padding) {
    self.size = size
    self.strides = strides
    self.padding = padding
  }
}

/// One layer of a network, in neural-tangents' `stax` vocabulary and conventions.
///
/// `dense` on an H×W×C input sees the flat vector of its H·W·C values (as `Flatten()` then
/// `Dense` in stax, whose `Dense` would act on the channels of every pixel: write that as a
/// `conv` with a 1×1 filter).
public enum Layer: Sendable, Equatable {
  case dense(Affine)
  case conv(Affine, Window)
  /// `window` (its `size`, `strides`, `padding`), and `normalize_edges`.
  case avgPool(Window, normalizeEdges: Bool)
  case globalAvgPool
  case flatten
  case activation(Activation)

  /// The layer's `type` in job files and in the canonical encoding.
  public var typeName: String {
    switch self {
    case .dense: "dense"
    case .conv: "conv"
    case .avgPool: "avg_pool"
    case .globalAvgPool: "global_avg_pool"
    case .flatten: "flatten"
    case .activation(let a): a.name
    }
  }

  /// Every `type` a layer table may have.
  public static let typeNames = ["dense", "conv", "avg_pool", "global_avg_pool", "flatten"] + Activation.validNames

  public var isActivation: Bool { if case .activation = self { true } else { false } }
}

/// A layer list (or one of its layers) that cannot describe a network: says where and why.
public struct NetworkError: Error, CustomStringConvertible, Equatable {
  /// 0-based position in the layer list (`kernel.layers[position]`), nil for the whole list.
  public let position: Int?
  /// The layer's type, when known.
  public let layerType: String?
  public let problem: String

  public init(position: Int?, layerType: String? = nil, _ problem: String) {
    self.position = position
    self.layerType = layerType
    self.problem = problem
  }

  public var description: String {
    guard let position else { return problem }
    return "kernel.layers[\(position)]" + (layerType.map { " (\($0))" } ?? "") + ": " + problem
  }
}
