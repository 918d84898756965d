import CZlib

/// PNG encoding of a `Raster` (8-bit RGB, no interlace): the signature, IHDR, one IDAT holding
/// the zlib stream of the filtered rows, IEND; every chunk with its CRC-32. Bytes only, no I/O.
public enum PNG {
  /// The 8 bytes every PNG file starts with.
  public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  public static func encode(_ image: Raster) -> [UInt8] {
    var header: [UInt8] = []
    append32(UInt32(image.width), to: &header)
    append32(UInt32(image.height), to: &header)
    header += [8, 2, 0, 0, 0]  // bit depth 8, colour type 2 (RGB), deflate, adaptive filters, no interlace
    var out = signature
    appendChunk("IHDR", header, to: &out)
    appendChunk("IDAT", deflate(filteredRows(image)), to: &out)
    appendChunk("IEND", [], to: &out)
    return out
  }

  /// Each row prefixed by its filter byte: "Up" (2, the difference from the row above) for
  /// every row but the first ("None"): charts are mostly rows like the one above, which deflate
  /// then stores in a few bytes.
  static func filteredRows(_ image: Raster) -> [UInt8] {
    let stride = image.width * 3
    var data = [UInt8]()
    data.reserveCapacity((stride + 1) * image.height)
    image.pixels.withUnsafeBufferPointer { p in
      for y in 0..<image.height {
        data.append(y == 0 ? 0 : 2)
        for i in 0..<stride {
          let v = p[y * stride + i]
          data.append(y == 0 ? v : v &- p[(y - 1) * stride + i])
        }
      }
    }
    return data
  }

  /// The zlib stream (RFC 1950) of `data` at the best compression.
  static func deflate(_ data: [UInt8]) -> [UInt8] {
    var size = compressBound(uLong(data.count))
    var out = [UInt8](repeating: 0, count: Int(size))
    let status = data.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in compress2(dst.baseAddress, &size, src.baseAddress, uLong(data.count), 9) }
    }
    precondition(status == Z_OK, "zlib compress2 failed (\(status)) with a buffer of compressBound bytes")
    return Array(out.prefix(Int(size)))
  }

  /// Length, type, data, CRC-32 of type and data.
  static func appendChunk(_ type: String, _ data: [UInt8], to out: inout [UInt8]) {
    let body = Array(type.utf8) + data
    append32(UInt32(data.count), to: &out)
    out += body
    let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
    append32(UInt32(crc), to: &out)
  }

  static func append32(_ v: UInt32, to out: inout [UInt8]) {
    out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
  }
}
