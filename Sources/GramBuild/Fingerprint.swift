import GramKernels
import GramStorage

/// The identity of a build's result: a checksum of the (preprocessed) samples, the kernel
/// spec, the storage precision and the tile size. Checkpoints carry it, so a folder from
/// another job is recognised, and the kernel file records it.
func fingerprint(train: Matrix, test: Matrix?, network: FullyConnected, dtype: ScalarType, tileSize: Int) -> String {
  let parts: [UInt64] = [
    checksum64(train.values), UInt64(train.rows), UInt64(train.cols),
    checksum64(test?.values ?? []), UInt64(test?.rows ?? 0),
    checksum64(Array((network.summary + "|" + dtype.rawValue + "|tile=\(tileSize)").utf8)),
  ]
  return hex(checksum64(parts))
}
